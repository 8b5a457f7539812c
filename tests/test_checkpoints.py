"""Checkpoints survive kills, auto-resume skips damaged ones, and a resumed run is the same run.

The fault test kills training (``kill -9``) at random moments and while a checkpoint is being
written, again and again, with ``max_keep_ckpts=1`` and a checkpoint every iteration (the
setting that lost every checkpoint before), and checks after each kill that an intact
checkpoint is found and that training resumes to the end.
"""
import os
import os.path as osp
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

import hrnet_mm  # noqa: F401  installs the safe checkpoints
from hrnet_mm.engine import checkpoints as ckpts

ROOT = Path(__file__).resolve().parents[1]
SEG = ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'




def _save(path, value):
    ckpts.save_checkpoint({'state_dict': {'w': torch.full((4, ), float(value))}}, str(path))


# ---------------------------------------------------------------------- writing
def test_mmengine_writes_through_the_atomic_save():
    import mmengine.runner.runner as runner_module
    from mmengine.registry import HOOKS
    assert runner_module.save_checkpoint is ckpts.save_checkpoint
    assert runner_module.find_latest_checkpoint is ckpts.find_latest_checkpoint
    assert HOOKS.get('CheckpointHook') is ckpts.SafeCheckpointHook


def test_a_failed_write_leaves_the_old_file_untouched(tmp_path, monkeypatch):
    path = tmp_path / 'iter_1.pth'
    _save(path, 1)
    real_save = torch.save

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b'PK\x03\x04 half a checkpoint')
        raise KeyboardInterrupt  # as a kill would stop it

    monkeypatch.setattr(torch, 'save', dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        _save(path, 2)
    monkeypatch.setattr(torch, 'save', real_save)
    assert ckpts.is_intact(str(path))
    assert torch.load(path)['state_dict']['w'][0] == 1
    assert (tmp_path / 'iter_1.pth.tmp').exists()  # the partial write, never under the name


def test_is_intact_tells_truncated_and_corrupt_files(tmp_path):
    path = tmp_path / 'iter_1.pth'
    _save(path, 1)
    data = path.read_bytes()
    assert ckpts.is_intact(str(path))
    (tmp_path / 'short.pth').write_bytes(data[:len(data) // 2])
    assert not ckpts.is_intact(str(tmp_path / 'short.pth'))
    with zipfile.ZipFile(path) as archive:  # where the tensor's bytes start
        info = next(i for i in archive.infolist() if i.filename.endswith('/data/0'))
    header = info.header_offset
    start = header + 30 + int.from_bytes(data[header + 26:header + 28], 'little') + \
        int.from_bytes(data[header + 28:header + 30], 'little')
    flipped = bytearray(data)
    flipped[start] ^= 0xFF  # one flipped bit pattern in the weights: their CRC fails
    (tmp_path / 'flipped.pth').write_bytes(bytes(flipped))
    assert not ckpts.is_intact(str(tmp_path / 'flipped.pth'))
    assert not ckpts.is_intact(str(tmp_path / 'missing.pth'))


# ---------------------------------------------------------------------- finding
def test_auto_resume_skips_a_truncated_newest_checkpoint(tmp_path, monkeypatch):
    for i in (1, 2, 3):
        _save(tmp_path / f'iter_{i}.pth', i)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_3.pth'))
    data = (tmp_path / 'iter_3.pth').read_bytes()
    (tmp_path / 'iter_3.pth').write_bytes(data[:100])
    said = []
    monkeypatch.setattr(ckpts, 'print_log', lambda msg, **kwargs: said.append(msg))
    assert ckpts.find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')
    assert said == [f'checkpoint {tmp_path}/iter_3.pth is damaged (truncated or corrupt): '
                    'skipped, resuming from an earlier one']


def test_auto_resume_when_last_checkpoint_names_a_missing_file(tmp_path):
    _save(tmp_path / 'iter_2.pth', 2)
    _save(tmp_path / 'iter_10.pth', 10)  # numbers, not names, order them
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_4.pth'))
    assert ckpts.checkpoint_candidates(str(tmp_path))[:3] == [
        str(tmp_path / 'iter_4.pth'), str(tmp_path / 'iter_10.pth'), str(tmp_path / 'iter_2.pth')]
    assert ckpts.find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    (tmp_path / 'iter_10.pth').write_bytes(b'')
    (tmp_path / 'iter_2.pth').write_bytes(b'not a zip')
    assert ckpts.find_latest_checkpoint(str(tmp_path)) is None
    assert ckpts.find_latest_checkpoint(str(tmp_path / 'empty')) is None


# ---------------------------------------------------------------------- runs
def _cfg(work_dir, iters, **hook):
    cfg = Config.fromfile(str(SEG))
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0,
                                end=iters)]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=1,
                                        save_last=True, **hook)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=100)
    cfg.log_level = 'WARNING'
    return cfg


class _StopAfter:
    """A hook that ends training after ``n`` iterations: an interruption at a checkpoint."""

    def __init__(self, n):
        self.n = n

    def __call__(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 >= self.n:  # runner.iter counts from 0 here
            runner.train_loop.stop_training = True


def _train(cfg, stop_after=None):
    runner = Runner.from_cfg(cfg)
    if stop_after is not None:
        from mmengine.hooks import Hook
        hook = Hook()
        hook.after_train_iter = _StopAfter(stop_after)
        runner.register_hook(hook, priority='LOWEST')
    runner.train()
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


class _OnGpu:
    """A tensor as mmengine's resume returns it on a GPU machine (``map_location`` on the
    GPU): only ``.cpu()`` gives the values; ``numpy()`` and torch's RNG setters refuse it."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor

    def cpu(self) -> torch.Tensor:
        return self.tensor

    def numpy(self):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")


def test_random_states_restore_from_tensors_loaded_onto_the_gpu():
    import numpy as np
    states = ckpts.rng_states()
    expected = random.random(), np.random.rand(), torch.rand(3)
    on_gpu = dict(states, torch=_OnGpu(states['torch']),
                  numpy=dict(states['numpy'], keys=_OnGpu(states['numpy']['keys'])))
    ckpts.set_rng_states(on_gpu)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(3), expected[2])


def test_each_process_saves_and_restores_its_own_gpus_random_state(monkeypatch):
    """Multi-GPU: rank k must get back the generator of its own GPU as it was (equal to the
    main process's own, the ranks sharing seeds), not the main process's never-used
    generator of GPU k, which restoring every GPU's state gave. Faked GPU calls: this checks
    which state goes where."""
    own, restored, restored_all = torch.tensor([7, 8], dtype=torch.uint8), [], []
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_rng_state', lambda device='cuda': own)
    monkeypatch.setattr(torch.cuda, 'set_rng_state', lambda s, device='cuda': restored.append(s))
    monkeypatch.setattr(torch.cuda, 'set_rng_state_all', restored_all.append)
    states = ckpts.rng_states()
    assert states['cuda'] is own
    ckpts.set_rng_states(dict(states, cuda=_OnGpu(own)))  # loaded onto the GPU
    assert len(restored) == 1 and torch.equal(restored[0], own) and restored_all == []
    ckpts.set_rng_states(dict(states, cuda=[own, own]))  # an earlier checkpoint: every GPU's
    assert len(restored) == 1 and len(restored_all) == 1


def test_resumed_run_ends_with_the_weights_of_the_uninterrupted_run(demo_dir, tmp_path,
                                                                     monkeypatch):
    """The demo segmentor has dropout (FCN head, 0.1): without the random states in the
    checkpoint, the resumed run draws other dropout masks and ends elsewhere."""
    monkeypatch.chdir(demo_dir)
    whole = _train(_cfg(tmp_path / 'whole', 5))
    _train(_cfg(tmp_path / 'parts', 5), stop_after=2)
    assert (tmp_path / 'parts/iter_2.pth').exists() and not (tmp_path / 'parts/iter_3.pth').exists()
    cfg = _cfg(tmp_path / 'parts', 5)
    cfg.resume = True
    resumed = _train(cfg)
    assert whole.keys() == resumed.keys()
    differ = [k for k in whole if not torch.equal(whole[k], resumed[k])]
    assert not differ, f'{len(differ)} of {len(whole)} tensors differ, e.g. {differ[:3]}'


def test_old_checkpoint_is_removed_only_after_the_new_one_is_safe(demo_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(demo_dir)
    _train(_cfg(tmp_path, 2, max_keep_ckpts=1))
    assert sorted(p.name for p in tmp_path.glob('iter_*.pth')) == ['iter_2.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_2.pth')

    def fails(*args, **kwargs):
        raise OSError('disk full')

    cfg = _cfg(tmp_path, 3, max_keep_ckpts=1)
    cfg.resume = True
    monkeypatch.setattr(ckpts, 'atomic_write', fails)
    with pytest.raises(OSError, match='disk full'):
        _train(cfg)
    monkeypatch.undo()
    # the save of iter 3 failed: iter 2 is still there, and still the one to resume from
    assert ckpts.is_intact(str(tmp_path / 'iter_2.pth'))
    assert ckpts.find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')


FAULT_CONFIG = '''
_base_ = {base!r}
train_cfg = dict(max_iters={iters})
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1, max_keep_ckpts=1,
                    save_last=False))
custom_imports = dict(imports=['hrnet_mm', 'fault_pad'], allow_failed_imports=False)
custom_hooks = [dict(type='PadCheckpointHook')]
log_level = 'WARNING'
'''

# Makes every checkpoint ~64 MB, so that writing one takes long enough to be killed inside.
FAULT_PAD = '''
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class PadCheckpointHook(Hook):
    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['pad'] = torch.rand(16 * 2**20)  # 64 MiB
'''


PAD_BYTES = 64 * 2**20  # every complete checkpoint is larger than its pad


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # removed between listing and looking
        return 0


def _complete(work: Path) -> bool:
    return work.exists() and any(_size(p) >= PAD_BYTES for p in work.glob('iter_*.pth'))


def _writing(work: Path) -> bool:
    """A checkpoint is being written: a temporary file (hrnet_mm), a checkpoint file short of
    its full size, or, once there was one, no complete checkpoint (mmengine deletes the old
    one before it serializes and writes the new one straight to its final name)."""
    return work.exists() and (any(work.glob('*.tmp')) or not _complete(work) or any(
        _size(p) < PAD_BYTES for p in work.glob('iter_*.pth')))


def _kill(proc, work, mid_write, kill_at):
    """kill -9 while a checkpoint is being written, once a first one was complete
    (``mid_write``), or at ``kill_at``. Returns whether it killed (not: the process ended by
    itself first) and whether a complete checkpoint was seen before the kill."""
    seen_complete = _complete(work)
    while proc.poll() is None and time.time() < kill_at + 90:
        if (mid_write and seen_complete and _writing(work)) or \
                (not mid_write and time.time() >= kill_at):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True, seen_complete
        seen_complete = seen_complete or _complete(work)
        time.sleep(0.001)
    return False, seen_complete


def test_no_sequence_of_kills_loses_the_last_good_checkpoint(demo_dir, tmp_path):
    (tmp_path / 'fault_pad.py').write_text(FAULT_PAD)
    config = tmp_path / 'fault.py'
    config.write_text(FAULT_CONFIG.format(base=str(SEG), iters=10000))
    work = tmp_path / 'work'
    env = dict(os.environ, PYTHONPATH=f'{tmp_path}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    cmd = [sys.executable, str(ROOT / 'tools/train.py'), str(config), '--work-dir', str(work),
           '--resume']
    rng = random.Random(0)
    ever_complete = False  # once a checkpoint was complete, one must always be there
    for trial in range(8):
        proc = subprocess.Popen(cmd, cwd=demo_dir, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # every other kill lands inside a checkpoint write, the others at a random moment
        killed, seen_complete = _kill(proc, work, mid_write=trial % 2 == 0,
                                      kill_at=time.time() + rng.uniform(2, 12))
        assert killed, f'training {trial} ended by itself (exit {proc.returncode})'
        ever_complete = ever_complete or seen_complete or _complete(work)
        if ever_complete:
            found = ckpts.find_latest_checkpoint(str(work))
            assert found is not None and ckpts.is_intact(found), \
                f'kill {trial} lost every checkpoint: {sorted(os.listdir(work))}'
    found = ckpts.find_latest_checkpoint(str(work))
    assert found is not None, os.listdir(work)
    step = int(osp.basename(found)[5:-4])
    done = subprocess.run(cmd + ['--cfg-options', f'train_cfg.max_iters={step + 2}'],
                          cwd=demo_dir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = ckpts.find_latest_checkpoint(str(work))
    assert osp.basename(last) == f'iter_{step + 2}.pth'
    assert torch.load(last, map_location='cpu')['meta']['iter'] == step + 2


def test_loading_pretrained_weights_keeps_mmengine_checkpoints_loadable(tmp_path):
    """A Pretrained backbone is loaded (init_weights) just before mmengine resumes: the
    allow-list must still be in force then."""
    from mmengine.logging.history_buffer import HistoryBuffer

    from hrnet_mm.weights.loading import load_checkpoint_file
    buffer = HistoryBuffer()
    buffer.update(1.5)
    torch.save({'message_hub': {'loss': buffer}}, tmp_path / 'iter_1.pth')
    _save(tmp_path / 'weights.pth', 1)
    load_checkpoint_file(str(tmp_path / 'weights.pth'))
    loaded = torch.load(tmp_path / 'iter_1.pth')['message_hub']['loss']
    assert loaded.current() == 1.5 and loaded.mean() == 1.5
