"""Safe checkpoint reading, and loading (any known layout) into an HRNetV2.

Every file is read with ``torch.load(weights_only=True)`` plus the allow-list of
:mod:`.safe_globals`: a checkpoint that needs other code to unpickle is refused, never run.
Every failure is one line that says what is wrong with which file.
"""
import os
import os.path as osp
import pickle
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .layouts import Conversion, branch_widths, convert_state_dict, legacy_renames
from .safe_globals import allow_mmengine_checkpoints


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: truncated, unsafe, or of another architecture."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would run code (other than allow-listed types) to unpickle."""


def openmmlab_url(checkpoint: str) -> str:
    """The http URL behind an ``open-mmlab://`` / ``openmmlab://`` name (mmengine's table)."""
    from mmengine.runner.checkpoint import get_deprecated_model_names, get_external_models
    name = checkpoint.split('://', 1)[1]
    name = get_deprecated_model_names().get(name, name)
    urls = get_external_models()
    if name not in urls:
        raise CheckpointError(f'{checkpoint}: not in mmengine\'s open-mmlab model table')
    return urls[name]


def resolve(checkpoint: str) -> str:
    """A local path for ``checkpoint``: http(s) and ``open-mmlab://`` names are downloaded
    into torch's hub cache (once)."""
    if checkpoint.startswith(('open-mmlab://', 'openmmlab://')):
        checkpoint = openmmlab_url(checkpoint)
    if checkpoint.startswith(('http://', 'https://')):
        cache = osp.join(torch.hub.get_dir(), 'checkpoints')
        os.makedirs(cache, exist_ok=True)
        path = osp.join(cache, osp.basename(checkpoint.split('?')[0]))
        if not osp.exists(path):
            try:
                torch.hub.download_url_to_file(checkpoint, path, progress=True)
            except OSError as e:  # URLError and socket errors are OSErrors
                reason = getattr(e, 'reason', None) or e
                raise CheckpointError(
                    f'{checkpoint}: cannot download it ({reason}); offline, download it '
                    f'elsewhere into {path}, or give a local file '
                    "(init_cfg=dict(type='Pretrained', checkpoint='/path/to/file.pth')), or "
                    'train from scratch (init_cfg=None)') from None
        return path
    if '://' in checkpoint:
        raise CheckpointError(f'{checkpoint}: scheme not read by hrnet_mm (it reads local '
                              'files, http(s) URLs and open-mmlab:// names): download the '
                              'file and pass its path')
    return checkpoint


def load_checkpoint_file(checkpoint: str) -> dict:
    """Read a checkpoint safely.

    Raises:
        FileNotFoundError: No such file.
        UnsafeCheckpointError: Unpickling it would need code outside the allow-list.
        CheckpointError: The file is truncated, empty or not a PyTorch checkpoint.
    """
    path = resolve(checkpoint)
    if osp.isdir(path):
        raise FileNotFoundError(f'{path} is a folder, not a checkpoint file')
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        # Added for good, not in a `safe_globals` context: leaving one removes them again,
        # and mmengine's own loads (resume) after this one would then fail.
        allow_mmengine_checkpoints()
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if 'Weights only load failed' in msg:
            raise UnsafeCheckpointError(
                f'{path}: refused: unpickling it would call {_refused_global(msg)}, which is '
                'not allow-listed; checkpoints load with weights_only=True (tensors, '
                "containers and mmengine's log types only)") from None
        raise CheckpointError(f'{path}: truncated or not a PyTorch checkpoint '
                              f'({_first_line(msg)})') from None
    except Exception as e:  # noqa: BLE001 - torch raises many types on a bad file
        raise CheckpointError(f'{path}: truncated or not a PyTorch checkpoint '
                              f'({type(e).__name__}: {_first_line(str(e))})') from None
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: holds a {type(obj).__name__}, not a state dict')
    return obj


def _refused_global(msg: str) -> str:
    """The code a weights_only load refused to run, from torch's (long) message."""
    for pattern in (r'Unsupported global: GLOBAL ([\w.]+)', r'unsupported GLOBAL ([\w.]+)',
                    r'refused (getattr\([^)]*\))'):
        found = re.search(pattern, msg)
        if found:
            return found.group(1)
    return 'code outside the allow-list'


def _first_line(msg: str) -> str:
    """The first sentence of a (multi-line) message."""
    return msg.strip().splitlines()[0].split('. ')[0][:200] if msg.strip() else ''


@dataclass
class LoadReport:
    """What happened when weights were loaded into a model."""
    layout: str
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    unmapped: List[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f'layout {self.layout}']
        for name, keys in (('missing in the checkpoint', self.missing),
                           ('unexpected (not in the model)', self.unexpected),
                           ('could not be mapped', self.unmapped)):
            if keys:
                parts.append(f'{len(keys)} {name}: {", ".join(keys)}')
        if len(parts) == 1:
            parts.append('all keys matched')
        return '; '.join(parts)


def check_shapes(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """One-line error on the first shape mismatch, naming both widths when they differ."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            # a backbone's own keys, or a whole model's (backbone.*)
            prefix = 'backbone.' if key.startswith('backbone.') else ''
            theirs, ours = branch_widths(state, prefix), branch_widths(own, prefix)
            what = (f'weights of an HRNet with branch widths {theirs} (W{theirs[0]}) into a '
                    f'model with {ours} (W{ours[0]})' if theirs and ours and theirs != ours
                    else 'weights of another architecture')
            raise CheckpointError(
                f'{source}: {what}; first mismatch {key}: checkpoint '
                f'{tuple(value.shape)} vs model {tuple(own[key].shape)}')


def check_finite(state: Dict[str, torch.Tensor], source: str) -> None:
    """One-line :class:`CheckpointError` if a floating-point tensor holds NaN or Inf."""
    bad = [k for k, v in state.items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f'{source}: {len(bad)} tensors hold NaN or Inf (first: {bad[0]}): '
                              'the weights of a diverged run, not usable')


def upgrade_legacy(model: nn.Module, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``state`` with the hrnet_mm 0.1 keys of every HRNetV2 in ``model`` renamed, as
    HRNetV2's own load hook renames them (here for the checks that compare keys first)."""
    state = dict(state)
    for name, module in model.named_modules():
        renames = getattr(getattr(module, 'head', None), 'legacy_keys', None)
        if renames:
            prefix = f'{name}.' if name else ''
            for old, new in legacy_renames(state, renames, prefix).items():
                state[new] = state.pop(old)
    return state


def check_fit(model: nn.Module, state: Dict[str, torch.Tensor], source: str,
              may_differ: Tuple[str, ...] = ()) -> None:
    """One-line :class:`CheckpointError` unless ``state`` fits ``model`` exactly: every model
    tensor present with its shape, no other key, every value finite. Keys under the prefixes
    ``may_differ`` (a head being fine-tuned) may be missing, unexpected or of another shape.

    Example:
        >>> check_fit(model, torch.load('iter_200.pth')['state_dict'], 'iter_200.pth')
    """
    check_finite(state, source)
    state = upgrade_legacy(model, state)
    own = model.state_dict()
    free = (lambda k: k.startswith(may_differ)) if may_differ else (lambda k: False)
    shaped = [k for k, v in state.items() if k in own and own[k].shape != v.shape and not free(k)]
    if shaped:
        check_shapes(model, {k: state[k] for k in shaped}, source)
    missing = [k for k in own if k not in state and not free(k)]
    unexpected = [k for k in state if k not in own and not free(k)]
    if missing or unexpected:
        parts = [f'{len(keys)} {what} (first: {keys[0]})' for keys, what in
                 ((missing, 'model tensors missing'), (unexpected, 'unexpected tensors')) if keys]
        raise CheckpointError(f'{source}: does not fit the model: {", ".join(parts)}: '
                              'weights of another model or config (a published checkpoint of '
                              'another layout: tools/convert_weights.py converts it)')


def load_pretrained(model: nn.Module, checkpoint: str, prefix: Optional[str] = 'backbone.',
                    strict: bool = False, layout: Optional[str] = None) -> LoadReport:
    """Load a checkpoint of any known layout into ``model`` (an HRNetV2 or a full model).

    The checkpoint is converted to hrnet_mm's layout first (see
    :func:`~hrnet_mm.weights.layouts.convert_state_dict`), then the keys under ``prefix``
    (``'backbone.'`` for a backbone, ``None`` or ``''`` for a full model) are loaded.

    Args:
        model: The module to load into.
        checkpoint: A path or an http(s) URL.
        prefix: Which part of the converted checkpoint to load.
        strict: Fail on missing or unexpected keys instead of reporting them.
        layout: Force a source layout instead of detecting it.

    Returns:
        A :class:`LoadReport`; also logged.

    Raises:
        CheckpointError: Also for ``strict`` with missing/unexpected keys, and for weights of
            another width.
    """
    raw = load_checkpoint_file(checkpoint)
    try:
        conv: Conversion = convert_state_dict(raw, layout)
    except ValueError as e:
        raise CheckpointError(f'{checkpoint}: {e}') from None
    return load_converted(model, conv, checkpoint, prefix, strict)


def load_converted(model: nn.Module, conv: Conversion, source: str,
                   prefix: Optional[str] = 'backbone.', strict: bool = False) -> LoadReport:
    """Load an already converted checkpoint (see :func:`load_pretrained`); ``source`` names
    it in reports and errors."""
    state = conv.state_dict
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise CheckpointError(f'{source}: no keys under prefix {prefix!r} after '
                                  f'converting from layout {conv.layout!r}')
    state = upgrade_legacy(model, state)
    check_shapes(model, state, source)
    check_finite(state, source)
    result = model.load_state_dict(state, strict=False)
    report = LoadReport(conv.layout, list(result.missing_keys), list(result.unexpected_keys),
                        conv.unmapped)
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f'{source}: strict load failed: {report.summary()}')
    print_log(f'loaded {source}: {report.summary()}', logger='current')
    return report
