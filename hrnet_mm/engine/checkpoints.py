"""Checkpoints that survive a kill at any moment, and auto-resume that skips a damaged one.

mmengine 0.10.7 writes a checkpoint straight to its final path, writes ``last_checkpoint``
the same way, and its ``CheckpointHook`` deletes the oldest checkpoint (``max_keep_ckpts``)
*before* the new one is written: a kill during the write can leave no intact checkpoint at
all, and ``last_checkpoint`` naming a file that is missing or truncated, on which every
``--resume`` crashes. Importing hrnet_mm (a config's ``custom_imports`` does, so ``mim train``
and the libraries' own tools too) makes these narrow changes:

- a checkpoint on the local disk is written to ``<name>.tmp`` in the same folder, flushed,
  ``fsync``-ed and renamed over ``<name>``, so that it is either complete or absent;
  ``last_checkpoint`` is replaced the same way; other storage backends are left as they are;
- ``CheckpointHook`` removes the checkpoint that ``max_keep_ckpts`` lets go only after the
  new one and ``last_checkpoint`` are on disk;
- auto-resume (``resume=True`` without a file) takes the newest *intact* checkpoint of the
  work dir: a newest one that is missing, truncated or damaged is skipped with a warning that
  names it;
- weights that do not fit are refused in one line (:func:`~hrnet_mm.weights.check_fit`):
  for a resume and for testing every tensor must fit; for ``load_from`` in training the heads
  may differ (fine-tuning to other classes), the backbone and neck may not; NaN or Inf never;
- the random number generators (python, numpy, torch, CUDA) are saved in every checkpoint and
  restored on resume exactly where the uninterrupted run stood, so that a resumed run ends
  with the weights the uninterrupted one has (with ``num_workers=0``: data workers keep
  random states of their own).

Example:
    >>> import hrnet_mm  # noqa: F401  (installs the above)
    >>> from mmengine.runner import find_latest_checkpoint  # now skips damaged files
"""
import os
import os.path as osp
import random
import re
import zipfile
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import get_world_size, is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

_STEP = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')
_ORIGINAL = {}
#: The checkpoint auto-resume chose last, per work dir (to name it in errors).
_FOUND: Dict[str, str] = {}
#: Parts of a model that ``load_from`` may leave unfitted in training (fine-tuning a head).
HEADS = ('decode_head.', 'auxiliary_head.', 'rpn_head.', 'roi_head.', 'bbox_head.', 'mask_head.',
         'head.', 'keypoint_head.')


def _is_local(path: str) -> bool:
    return '://' not in path


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder or '.', os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, write) -> None:
    """``write(f)`` into ``<path>.tmp``, then flush, fsync and rename it over ``path``."""
    tmp = f'{path}.tmp'
    with open(tmp, 'wb') as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(osp.dirname(path))


def save_checkpoint(checkpoint: dict, filename: str, file_client_args=None,
                    backend_args=None) -> None:
    """mmengine's ``save_checkpoint``, atomic on the local disk (see the module's text)."""
    if file_client_args is None and backend_args is None and _is_local(filename):
        os.makedirs(osp.dirname(filename) or '.', exist_ok=True)
        atomic_write(filename, lambda f: torch.save(checkpoint, f))
        return
    _ORIGINAL['save_checkpoint'](checkpoint, filename, file_client_args=file_client_args,
                                 backend_args=backend_args)


def is_intact(path: str) -> bool:
    """Whether ``path`` is a complete torch checkpoint: a zip archive whose every record
    reads back with its checksum (truncation and damage both fail)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def _step(path: str) -> int:
    match = _STEP.match(osp.basename(path))
    return int(match.group(1)) if match else -1


def checkpoint_candidates(work_dir: str) -> List[str]:
    """The work dir's checkpoints, newest first: the one ``last_checkpoint`` names, then every
    ``iter_N.pth`` / ``epoch_N.pth`` beside it by decreasing ``N``."""
    named = None
    save_file = osp.join(work_dir, 'last_checkpoint')
    if osp.exists(save_file):
        with open(save_file) as f:
            named = f.read().strip() or None
    folders = {work_dir} | ({osp.dirname(named)} if named and _is_local(named) else set())
    found = [osp.join(d, n) for d in folders if osp.isdir(d) for n in os.listdir(d)
             if _STEP.match(n)]
    ordered = sorted(found, key=lambda p: (_step(p), osp.getmtime(p)), reverse=True)
    if named:
        ordered = [named] + [p for p in ordered if osp.abspath(p) != osp.abspath(named)]
    return ordered


def find_latest_checkpoint(path: str) -> Optional[str]:
    """The newest intact checkpoint of the work dir ``path`` (``None`` if there is none);
    each newer one that is missing or damaged is named in a warning."""
    candidates = checkpoint_candidates(path)
    if not candidates:
        print_log('Did not find last_checkpoint to be resumed.')
        return None
    for candidate in candidates:
        if not _is_local(candidate):
            return candidate  # remote storage: as mmengine does
        if is_intact(candidate):
            _FOUND[path] = candidate
            return candidate
        state = 'missing' if not osp.exists(candidate) else 'damaged (truncated or corrupt)'
        print_log(f'checkpoint {candidate} is {state}: skipped, resuming from an earlier one',
                  logger='current', level=30)
    print_log(f'no intact checkpoint in {path}: training starts from the beginning',
              logger='current', level=30)
    return None


RNG_KEY = 'hrnet_mm_rng'


def rng_states() -> dict:
    """Every random number generator's state, as tensors and ints (``weights_only`` loads)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    states = dict(python=random.getstate(), torch=torch.get_rng_state(),
                  numpy=dict(keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                             has_gauss=int(has_gauss), gauss=float(gauss)))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # This process's own GPU only: in a multi-GPU run every rank restores it into its own
        # GPU (the ranks share seeds, so their GPUs' generators advanced alike); the main
        # process's generators of the other GPUs never advanced.
        states['cuda'] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict) -> None:
    """Restore :func:`rng_states`' result. Its tensors may come back on a GPU (mmengine's
    resume loads checkpoints with ``map_location`` on the GPU): states are read on the CPU."""
    version, internal, gauss = states['python']
    random.setstate((version, tuple(internal), gauss))
    n = states['numpy']
    np.random.set_state(('MT19937', n['keys'].cpu().numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['gauss']))
    torch.set_rng_state(states['torch'].cpu())
    if 'cuda' in states and torch.cuda.is_available():
        cuda = states['cuda']
        if isinstance(cuda, (list, tuple)):  # every GPU's, as saved by earlier hrnet_mm 0.2.0
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        else:
            torch.cuda.set_rng_state(cuda.cpu())  # into this process's GPU


class _RestoreBeforeNext:
    """Wraps a training loop's data iterator: after ``skip`` batches (the ones an iteration
    loop replays on resume) it restores the saved random states, then steps aside."""

    def __init__(self, loop, skip: int, states: dict) -> None:
        self.loop, self.inner, self.left, self.states = loop, loop.dataloader_iterator, skip, states

    def __iter__(self):
        return self

    def __next__(self):
        if self.left == 0:
            set_rng_states(self.states)
            self.loop.dataloader_iterator = self.inner
        self.left -= 1
        return next(self.inner)


class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that lets an old checkpoint go (``max_keep_ckpts``) only
    after the new one and ``last_checkpoint`` are safely on disk, and saves (and on resume
    restores) the random number generators' states. Registered as ``CheckpointHook``, so every
    config gets it."""

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault('meta', {})[RNG_KEY] = rng_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # mmengine calls this before it loads the weights into the model: check them first.
        self._check_weights(runner, checkpoint)
        self._restore_random_states(runner, checkpoint)

    @staticmethod
    def _check_weights(runner, checkpoint: dict) -> None:
        from mmengine.model import is_model_wrapper
        from mmengine.runner import BaseLoop

        from ..weights import check_fit
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        state = {re.sub(r'^module\.', '', k): v
                 for k, v in checkpoint.get('state_dict', checkpoint).items()}
        training = isinstance(runner._train_loop, BaseLoop)
        source = runner._load_from or _FOUND.get(runner.work_dir, 'the checkpoint')
        check_fit(model, state, source,
                  may_differ=HEADS if training and not runner._resume else ())

    @staticmethod
    def _restore_random_states(runner, checkpoint: dict) -> None:
        states = checkpoint.get('meta', {}).get(RNG_KEY)
        # Only a resume continues the run (load_from starts a new one); every process would
        # get the main process's states: right only where they all had the same.
        if states is None or not runner._resume:
            return
        if get_world_size() > 1 and runner.cfg.get('randomness', {}).get('diff_rank_seed'):
            return
        loop = runner.train_loop
        # (runner.resume sets loop._iter only after this hook: read it from the checkpoint)
        skip = checkpoint['meta'].get('iter', 0)
        if hasattr(loop, 'dataloader_iterator') and skip > 0:
            # the iteration loop replays `skip` batches first: restore after those
            loop.dataloader_iterator = _RestoreBeforeNext(loop, skip, states)
        else:
            set_rng_states(states)

    def _save_checkpoint_with_step(self, runner, step, meta):
        retired = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                retired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(self.out_dir, ckpt_filename, self.file_client_args,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta,
                               by_epoch=self.by_epoch, backend_args=self.backend_args,
                               **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                     lambda f: f.write(self.last_ckpt.encode()))
        if retired is not None:
            old = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(retired))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
            elif self.file_backend.isdir(old):  # deepspeed writes folders
                self.file_backend.rmtree(old)


def install() -> None:
    """Put the above in place of mmengine's (idempotent)."""
    import mmengine.runner as runner_pkg
    import mmengine.runner.checkpoint as ckpt_module
    import mmengine.runner.runner as runner_module
    if _ORIGINAL:
        return
    _ORIGINAL['save_checkpoint'] = ckpt_module.save_checkpoint
    # every namespace that holds mmengine's functions by name
    for module in (ckpt_module, runner_module, runner_pkg):
        module.save_checkpoint = save_checkpoint
        module.find_latest_checkpoint = find_latest_checkpoint
    HOOKS.register_module(name='CheckpointHook', module=SafeCheckpointHook, force=True)
