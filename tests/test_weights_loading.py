"""Loading is explicit and safe: reports, strict mode, refusals, one-line errors, resume."""
import os
import pickle
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import randomize

from hrnet_mm import HRNetV2
from hrnet_mm.weights import (CheckpointError, UnsafeCheckpointError, load_checkpoint_file,
                              load_pretrained)

V2P32 = dict(type='v2p', out_channels=32)


def _one_line(exc_info):
    text = str(exc_info.value)
    assert '\n' not in text, text
    return text


@pytest.fixture(scope='module')
def small_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp('ckpt') / 'small.pth'
    model = randomize(HRNetV2(arch='w18_small_v1', representation=V2P32))
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()},
                'meta': {'epoch': 3}}, path)
    return path, model


def test_report_names_missing_and_unexpected_keys(small_ckpt):
    path, src = small_ckpt
    model = HRNetV2(arch='w18_small_v1', representation='v1')
    report = load_pretrained(model, str(path))
    # v1 has no pyramid and fuses only into branch 0 at the end
    assert report.missing == []
    assert 'head.reduction_conv.conv.weight' in report.unexpected
    assert 'stage4.0.fuse_layers.1.0.0.0.weight' in report.unexpected
    assert report.layout == 'hrnet_mm'
    assert 'unexpected (not in the model): ' in report.summary()
    # what matched was loaded
    assert torch.equal(model.conv1.weight, src.conv1.weight)


def test_strict_mode_fails_on_missing_keys(tmp_path, small_ckpt):
    path, src = small_ckpt
    state = load_checkpoint_file(str(path))['state_dict']
    del state['backbone.stage2.0.branches.0.0.conv1.weight']
    torch.save(state, tmp_path / 'partial.pth')
    model = HRNetV2(arch='w18_small_v1', representation=V2P32,
                    init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'partial.pth'),
                                  prefix='backbone.', strict=True))
    with pytest.raises(CheckpointError) as e:
        model.init_weights()
    assert 'strict load failed: layout hrnet_mm; 1 missing in the checkpoint: ' \
           'stage2.0.branches.0.0.conv1.weight' in _one_line(e)
    # non-strict: loads the rest and reports the name
    report = load_pretrained(HRNetV2(arch='w18_small_v1', representation=V2P32),
                             str(tmp_path / 'partial.pth'))
    assert report.missing == ['stage2.0.branches.0.0.conv1.weight']


def test_init_cfg_pretrained_loads_strictly_when_everything_fits(small_ckpt):
    path, src = small_ckpt
    model = HRNetV2(arch='w18_small_v1', representation=V2P32,
                    zero_init_residual=True,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.',
                                  strict=True))
    model.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_checkpoint_file(str(tmp_path / 'nope.pth'))
    assert _one_line(e) == f'checkpoint not found: {tmp_path / "nope.pth"}'
    # a folder given for a file (a work dir for its latest checkpoint) is named as such
    with pytest.raises(FileNotFoundError) as e:
        load_checkpoint_file(str(tmp_path))
    assert _one_line(e) == f'{tmp_path} is a folder, not a checkpoint file'


@pytest.mark.parametrize('legacy', [False, True])
def test_truncated_file(tmp_path, small_ckpt, legacy):
    path, _ = small_ckpt
    full = tmp_path / 'full.pth'
    torch.save(load_checkpoint_file(str(path)), full, _use_new_zipfile_serialization=not legacy)
    data = full.read_bytes()
    cut = tmp_path / 'cut.pth'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_file(str(cut))
    assert _one_line(e).startswith(f'{cut}: truncated or not a PyTorch checkpoint (')


def test_empty_and_text_files(tmp_path):
    for name, content in [('empty.pth', b''), ('notes.pth', b'just some text')]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match='truncated or not a PyTorch checkpoint') as e:
            load_checkpoint_file(str(tmp_path / name))
        _one_line(e)


class _RunsCode:
    """A pickle that would run a shell command when loaded with weights_only=False."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_code_in_a_checkpoint_is_refused_not_run(tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(1)}, 'x': _RunsCode(marker)}, path)
    with pytest.raises(UnsafeCheckpointError) as e:
        load_checkpoint_file(str(path))
    assert _one_line(e).startswith(f'{path}: refused: unpickling it would call posix.system')
    assert not marker.exists()
    # ... also through init_cfg
    model = HRNetV2(arch='w18_small_v1', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(UnsafeCheckpointError):
        model.init_weights()
    assert not marker.exists()


class _GetattrEscape:
    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return (getattr, (HistoryBuffer, '__init__'))


def test_getattr_is_only_allowed_for_history_buffer_methods(tmp_path):
    path = tmp_path / 'getattr.pth'
    torch.save({'x': _GetattrEscape()}, path)
    with pytest.raises(UnsafeCheckpointError) as e:
        load_checkpoint_file(str(path))
    assert "would call getattr(<class 'mmengine.logging.history_buffer.HistoryBuffer'>, " \
           "'__init__')" in _one_line(e)


def test_weights_of_another_width(tmp_path):
    w48 = HRNetV2(arch='w48')
    path = tmp_path / 'w48.pth'
    torch.save({f'backbone.{k}': v for k, v in w48.state_dict().items()}, path)
    del w48
    with pytest.raises(CheckpointError) as e:
        load_pretrained(HRNetV2(arch='w32'), str(path))
    assert _one_line(e) == (
        f'{path}: weights of an HRNet with branch widths (48, 96) (W48) into a model with '
        '(32, 64) (W32); first mismatch transition1.0.0.weight: checkpoint (48, 256, 3, 3) vs '
        'model (32, 256, 3, 3)')


def test_not_an_hrnet_checkpoint(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'fc.weight': torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError) as e:
        load_pretrained(HRNetV2(arch='w18_small_v1'), str(path))
    assert 'not an HRNet checkpoint' in _one_line(e)


def test_unknown_scheme_is_refused():
    with pytest.raises(CheckpointError, match=r's3://bucket/w.pth: scheme not read by hrnet_mm'):
        load_checkpoint_file('s3://bucket/w.pth')


TOY_RUN = textwrap.dedent("""
    import sys, torch, torch.nn as nn
    from mmengine.model import BaseModel
    from mmengine.runner import Runner
    from torch.utils.data import Dataset
    if sys.argv[2] == 'hrnet_mm':
        import hrnet_mm  # noqa: F401  (what custom_imports does in a config)

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, x, y, mode='tensor'):
            out = self.fc(x)
            return dict(loss=((out - y) ** 2).mean()) if mode == 'loss' else out

    class Data(Dataset):
        metainfo = dict(classes=('a', 'b'))
        def __len__(self):
            return 8
        def __getitem__(self, i):
            return dict(x=torch.rand(2), y=torch.rand(1))

    def runner(epochs, resume):
        return Runner(
            model=Toy(), work_dir=sys.argv[1], resume=resume,
            train_dataloader=dict(dataset=Data(), batch_size=2, collate_fn=dict(
                type='default_collate'), sampler=dict(type='DefaultSampler', shuffle=True)),
            train_cfg=dict(by_epoch=True, max_epochs=epochs),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
            default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)))

    runner(1, False).train()
    r = runner(2, True)
    r.train()
    print('resumed at epoch', r.epoch)
""")


@pytest.mark.parametrize('import_hrnet_mm', [True, False])
def test_mmengine_resume_works_with_hrnet_mm_imported(tmp_path, import_hrnet_mm):
    """mmengine 0.10.7 + torch >= 2.6: resuming fails unless its types are allow-listed."""
    script = tmp_path / 'toy.py'
    script.write_text(TOY_RUN)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / 'work'),
         'hrnet_mm' if import_hrnet_mm else 'plain'], capture_output=True, text=True,
        timeout=300)
    if import_hrnet_mm:
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert 'resumed at epoch 2' in proc.stdout
    else:  # the failure the allow-list exists for; if mmengine fixes it, this test says so
        assert proc.returncode != 0
        assert 'HistoryBuffer' in proc.stderr


# ------------------------------------------------------------ crafted files and the allow-list
class _Dtype:
    """Pickles as numpy.dtype(code) with a crafted BUILD state."""

    def __init__(self, code, state):
        self.code, self.state = code, state

    def __reduce__(self):
        return (np.dtype, (self.code, False, True), self.state)


class _Array:
    """Pickles as numpy's own array reconstruction, with a crafted state."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct
        return (_reconstruct, (np.ndarray, (0, ), b'b'), self.state)


class _Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __call__(self, *args):  # pickle wants a callable where the result is called again
        raise NotImplementedError

    def __reduce__(self):
        return (self.func, self.args)


FAR_FIELD = (3, '|', None, ('a', ), {'a': (np.dtype('f8'), 2**40)}, 8, 1, 16)


@pytest.mark.parametrize('name, payload, refused', [
    ('structured field at offset 2**40',
     _Array((1, (1, ), _Dtype('f8', FAR_FIELD), False, b'\0' * 8)), 'numpy dtype state'),
    ('dtype of Python objects', _Array((1, (1, ), _Dtype('O', (3, '|', None, None, None, -1, -1,
                                                                  63)), False, b'\0' * 8)),
     "numpy.dtype('O'"),
    ('array with fewer bytes than its shape',
     _Array((1, (1000, ), _Dtype('f8', (3, '<', None, None, None, -1, -1, 0)), False,
             b'\0' * 8)), 'of shape (1000,) with 8 bytes'),
    ('ndarray called directly', _Call(np.ndarray, (2**20, ), 'f8'), 'numpy.ndarray'),
])
def test_crafted_numpy_content_is_refused_before_any_array_exists(tmp_path, name, payload,
                                                                    refused):
    path = tmp_path / 'crafted.pth'
    torch.save({'message_hub': {'x': payload}}, path)
    with pytest.raises(pickle.UnpicklingError, match=re.escape(refused)):
        torch.load(path)  # weights_only=True, with hrnet_mm's allow-list
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint_file(str(path))


def test_crafted_getattr_cannot_register_statistics(tmp_path):
    """The getattr stand-in resolved any public callable of HistoryBuffer, register_statistics
    and mro included; now only the four statistics, and the file is refused at the getattr."""
    from mmengine.logging.history_buffer import HistoryBuffer
    before = dict(HistoryBuffer._statistics_methods)
    register = _Call(getattr, HistoryBuffer, 'register_statistics')
    path = tmp_path / 'register.pth'
    torch.save({'x': _Call(register, _Call(getattr, HistoryBuffer, 'mro'))}, path)
    for _ in range(2):  # the same refusal twice: nothing was registered the first time
        with pytest.raises(pickle.UnpicklingError, match="refused getattr.*'register_statistics'"):
            torch.load(path)
    assert HistoryBuffer._statistics_methods == before


def test_plain_numpy_content_still_loads(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    buffer = HistoryBuffer()
    for v in (1.0, 2.0, 4.0):
        buffer.update(v)
    arrays = {code: (np.arange(6) % 3).astype(code).reshape(2, 3)
              for code in ('f2', 'f4', 'f8', 'i1', 'i8', 'u1', 'b1')}
    torch.save({'hub': buffer, 'arrays': arrays, 'scalar': np.float64(2.5),
                'big_endian': np.arange(3, dtype='>i4')}, tmp_path / 'ok.pth')
    loaded = torch.load(tmp_path / 'ok.pth')
    assert loaded['hub'].mean() == pytest.approx(7 / 3) and loaded['hub'].current() == 4.0
    for code, array in arrays.items():
        assert loaded['arrays'][code].dtype == array.dtype
        assert np.array_equal(loaded['arrays'][code], array)
    assert loaded['scalar'] == 2.5 and isinstance(loaded['scalar'], np.float64)
    assert loaded['big_endian'].tolist() == [0, 1, 2]


def test_crafted_history_buffer_cannot_add_statistics(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    before = dict(HistoryBuffer._statistics_methods)
    crafted = HistoryBuffer()
    crafted.update(1.0)
    # pickled as mmengine pickles it, with one more statistic: mmengine would add it to the
    # dict all buffers share, for the rest of the process
    crafted.__dict__['statistics_methods'] = {**before, 'evil': HistoryBuffer.mean}
    crafted.__getstate__ = lambda: {k: v for k, v in crafted.__dict__.items()
                                    if k != '__getstate__'}
    path = tmp_path / 'stats.pth'
    torch.save({'x': crafted}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"HistoryBuffer statistics \[.*'evil'\]"):
        torch.load(path)
    assert HistoryBuffer._statistics_methods == before


def test_a_loaded_history_buffer_saves_as_mmengine_s_own(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(3.0)
    torch.save({'b': buffer}, tmp_path / 'a.pth')
    loaded = torch.load(tmp_path / 'a.pth')['b']
    assert isinstance(loaded, HistoryBuffer) and loaded.current() == 3.0
    torch.save({'b': loaded}, tmp_path / 'b.pth')
    # the second file names only mmengine's and numpy's types: it loads without hrnet_mm
    import zipfile
    with zipfile.ZipFile(tmp_path / 'b.pth') as z:
        data = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    assert b'hrnet_mm' not in data and b'HistoryBuffer' in data


def test_pretrained_url_offline_says_which_url_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    url = 'http://127.0.0.1:9/hrnetv2_w18_offline.pth'  # nothing listens on port 9
    model = HRNetV2(arch='w18_small_v1', init_cfg=dict(type='Pretrained', checkpoint=url))
    with pytest.raises(CheckpointError) as e:
        model.init_weights()
    line = _one_line(e)
    assert line.startswith(f'{url}: cannot download it (')
    assert 'give a local file' in line and 'init_cfg=None' in line
