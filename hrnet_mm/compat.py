"""Narrow fixes for the pinned OpenMMLab stack meeting newer packages already in an environment.

Each fix is applied when ``hrnet_mm`` is imported; a library that is not installed is skipped.

Example:
    >>> from hrnet_mm.compat import skip_mmpretrain_multimodal
    >>> skip_mmpretrain_multimodal()  # doctest: +SKIP  (True where transformers >= 5)
"""
from __future__ import annotations

import functools
import importlib.abc
import sys
from importlib import metadata
from types import ModuleType
from typing import Callable

import torch


def _major(package: str) -> int | None:
    """The major version of an installed distribution, or None where it is not installed."""
    try:
        return int(metadata.version(package).split('.')[0])
    except (metadata.PackageNotFoundError, ValueError):
        return None


def skip_mmpretrain_multimodal() -> bool:
    """Leave out mmpretrain 1.x's multimodal models where transformers >= 5 is installed.

    mmpretrain 1.2.0 imports its BLIP / BLIP-2 / LLaVA models whenever transformers >= 4.28
    is installed, and they subclass names that transformers 5 no longer has
    (``transformers.modeling_utils.find_pruneable_heads_and_indices`` and others): the import
    ends in ``TypeError: NoneType takes no arguments``, and with it every import of
    ``mmpretrain.models``, ``mmdet.models`` (its ReID preprocessor imports mmpretrain) and
    ``mmseg.models`` (which imports mmdet's). Images with a recent transformers (the GPU
    machines this project is measured on have 5.17) cannot build any detector or segmentor.

    This marks mmpretrain's multimodal extra as unavailable, exactly as mmpretrain itself does
    where transformers is missing: those models are registered as placeholders that say what
    to install, and nothing else changes. It must run before ``mmpretrain.models`` is
    imported, which importing ``hrnet_mm`` does (configs import it through
    ``custom_imports``).

    Returns:
        bool: True where the multimodal models were left out.
    """
    if (_major('transformers') or 0) < 5 or (_major('mmpretrain') or 2) >= 2:
        return False
    if 'mmpretrain.models' in sys.modules:
        return False  # too late to change
    try:
        from mmpretrain.utils import dependency
    except Exception:  # noqa: BLE001  a broken mmpretrain: registration warns about it later
        return False
    dependency.WITH_MULTIMODAL = False
    return True


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``fix(module)`` right after module ``name`` is first imported, once."""

    def __init__(self, name: str, fix: Callable[[ModuleType], None]) -> None:
        self.name, self.fix = name, fix

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # the other finders find the module itself
        spec = next((s for s in (f.find_spec(fullname, path, target) for f in sys.meta_path
                                 if hasattr(f, 'find_spec')) if s is not None), None)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_fix(module: ModuleType) -> None:
            exec_module(module)
            self.fix(module)

        spec.loader.exec_module = exec_and_fix
        return spec


def _after_import(name: str, fix: Callable[[ModuleType], None]) -> None:
    """``fix(module)`` now if module ``name`` is imported, else right after its first import
    (importing it here would cost every ``import hrnet_mm`` its time: mmcv.ops, 1.3 s)."""
    if name in sys.modules:
        fix(sys.modules[name])
    else:
        sys.meta_path.insert(0, _AfterImport(name, fix))


def roi_align_bfloat16() -> None:
    """Let mmcv's ``RoIAlign`` pool bfloat16 maps, which its kernels cannot (mmcv 2.1.0).

    Two-stage detectors (Faster / Cascade R-CNN) failed to train under bf16 AMP (mmengine's
    ``AmpOptimWrapper(dtype='bfloat16')``), with any backbone: ``"roi_align_forward_cuda_kernel"
    not implemented for 'BFloat16'`` (seen on an H200; the CPU kernel has none either). bfloat16
    maps are pooled in float32 and the result given back in bfloat16, as float16 maps get theirs
    in float16; other dtypes run as before. Applied when ``mmcv.ops`` is imported (now, or
    later by whoever needs it; mmcv without compiled ops never imports it).
    """
    _after_import('mmcv.ops.roi_align', _pool_bfloat16_in_float32)


def _pool_bfloat16_in_float32(module: ModuleType) -> None:
    forward = module.RoIAlign.forward
    if getattr(forward, 'hrnet_mm_bfloat16', False):
        return

    @functools.wraps(forward)
    def pool(self, input: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        if input.dtype != torch.bfloat16:
            return forward(self, input, rois)
        return forward(self, input.float(), rois.float()).to(torch.bfloat16)

    pool.hrnet_mm_bfloat16 = True
    module.RoIAlign.forward = pool


def mmpose_to_numpy_bfloat16() -> bool:
    """Let mmpose's ``to_numpy`` take bfloat16 tensors, which numpy has no type for.

    mmpose's heads compute their training accuracy from ``to_numpy(predictions)``; under bf16
    AMP the predictions are bfloat16 and every training step ended in ``TypeError: Got
    unsupported ScalarType BFloat16`` (seen on an H200 with mmpose's own HRNet as with
    hrnet_mm's). bfloat16 tensors are converted to float32 first; other inputs run as before.
    The mmpose modules already imported get the new function too (they hold the name).

    Returns:
        bool: True where mmpose is installed and its ``to_numpy`` now takes bfloat16.
    """
    try:
        from mmpose.utils import tensor_utils
    except Exception:  # noqa: BLE001  no mmpose (or a broken one: registration warns)
        return False
    original = tensor_utils.to_numpy
    if getattr(original, 'hrnet_mm_bfloat16', False):
        return True

    @functools.wraps(original)
    def to_numpy(x, *args, **kwargs):
        # sequences come back here one tensor at a time: the original calls the module's name
        if isinstance(x, torch.Tensor) and x.dtype == torch.bfloat16:
            x = x.float()
        return original(x, *args, **kwargs)

    to_numpy.hrnet_mm_bfloat16 = True
    for name, module in list(sys.modules.items()):
        if name.split('.')[0] == 'mmpose' and getattr(module, 'to_numpy', None) is original:
            module.to_numpy = to_numpy
    return True


def mmengine_amp_compilable() -> bool:
    """Keep mmengine's ``autocast`` version check out of ``torch.compile``'s graph.

    mmengine's ``compile`` option compiles the whole ``train_step``, ``AmpOptimWrapper``'s
    autocast context included, and that context parses torch's version string on every call.
    torch 2.11's dynamo traces into that parser and stops with ``InternalTorchDynamoError:
    AttributeError: 'UserDefinedExceptionObjectVariable' object has no attribute
    'call_setattr'``: every compiled run with AMP failed (seen on an H200; the same on the CPU
    with torch 2.11; torch 2.14 gets through). The check now runs eagerly, outside the graph.
    Applied when ``torch._dynamo`` is imported (now, or later by the first compile, which
    needs it): importing it here would cost every ``import hrnet_mm`` 0.8-1.2 s.

    Returns:
        bool: True where mmengine is installed and its check runs outside the graph.
    """
    try:
        from mmengine.runner import amp
    except Exception:  # noqa: BLE001  no usable mmengine: nothing compiles through it
        return False
    _after_import('torch._dynamo', lambda _: _digit_version_eager(amp))
    return True


def _digit_version_eager(amp: ModuleType) -> None:
    if getattr(amp.digit_version, 'hrnet_mm_eager', False):
        return
    eager = torch.compiler.disable(amp.digit_version)
    eager.hrnet_mm_eager = True
    amp.digit_version = eager


def compiles_cuda_graphs(compile_cfg: object) -> bool:
    """Whether mmengine's ``compile`` setting makes inductor replay CUDA graphs.

    ``mode='reduce-overhead'`` and ``'max-autotune'`` do, as does
    ``options={'triton.cudagraphs': True}`` or ``backend='cudagraphs'``; ``True``, ``None`` and
    the other modes do not.

    Example:
        >>> compiles_cuda_graphs(dict(mode='reduce-overhead')), compiles_cuda_graphs(True)
        (True, False)
    """
    if not isinstance(compile_cfg, dict):
        return False
    options = compile_cfg.get('options') or {}
    return (compile_cfg.get('mode') in ('reduce-overhead', 'max-autotune')
            or bool(options.get('triton.cudagraphs'))
            or compile_cfg.get('backend') == 'cudagraphs')


def mmengine_compiled_steps_eager() -> bool:
    """Keep the optimizer step out of mmengine's compiled ``train_step`` where it makes CUDA
    graphs.

    mmengine's ``compile`` compiles the whole ``train_step``, ``optim_wrapper.update_params``
    included. With CUDA graphs (``compile=dict(mode='reduce-overhead')``) the optimizer's state
    (SGD's momentum, Adam's moments) is then made inside a graph, in memory that the graph's
    next replay overwrites: the second step stops with ``accessing tensor output of CUDAGraphs
    that has been overwritten by a subsequent run`` (seen on an H100 with torch 2.11, the seg
    demo under bf16 AMP; any model compiled so). For those settings the runner's optimizer
    wrappers now step eagerly, outside the graphs (model forward and backward stay compiled);
    other settings are left as they were.

    Returns:
        bool: True where mmengine's Runner is installed and now does so.
    """
    try:
        from mmengine.runner import Runner
    except Exception:  # noqa: BLE001  no usable mmengine: nothing compiles through it
        return False
    original = Runner._maybe_compile
    if getattr(original, 'hrnet_mm_eager_steps', False):
        return True

    @functools.wraps(original)
    def _maybe_compile(self, target: str) -> None:
        original(self, target)
        if target == 'train_step' and compiles_cuda_graphs(self.cfg.get('compile')):
            if eager_optimizer_steps(self.optim_wrapper):
                self.logger.info('compile with CUDA graphs: the optimizer steps eagerly, '
                                 'outside the graphs (hrnet_mm.compat)')

    _maybe_compile.hrnet_mm_eager_steps = True
    Runner._maybe_compile = _maybe_compile
    return True


def eager_optimizer_steps(optim_wrapper: object) -> bool:
    """Make each optimizer wrapper's ``step`` (one, or each of an ``OptimWrapperDict``) run
    eagerly when called from compiled code; returns whether any was changed.

    Example:
        >>> from mmengine.optim import OptimWrapper
        >>> wrapper = OptimWrapper(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1))
        >>> eager_optimizer_steps(wrapper), eager_optimizer_steps(wrapper)
        (True, False)
    """
    values = getattr(optim_wrapper, 'optim_wrappers', None)
    wrappers = list(values.values()) if isinstance(values, dict) else [optim_wrapper]
    changed = False
    for wrapper in wrappers:
        if not getattr(wrapper.step, 'hrnet_mm_eager', False):
            wrapper.step = torch.compiler.disable(wrapper.step)  # the bound method, eagerly
            wrapper.step.hrnet_mm_eager = True
            changed = True
    return changed
