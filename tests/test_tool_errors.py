"""The tools refuse weights that do not fit, and end every failure with one line and exit 1
(the traceback with --debug), from the user's command."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import hrnet_mm  # noqa: F401
from hrnet_mm.data import generate

ROOT = Path(__file__).resolve().parents[1]
SEG = ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'


@pytest.fixture(scope='module')
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    generate(str(root / 'data/hrnet_mm_demo'), num_train=8, num_val=4)
    return root


def _model(**backbone):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(str(SEG))
    cfg.model.backbone.update(backbone)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def _ckpt(path, model, change=None):
    state = model.state_dict()
    if change:
        change(state)
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


def _tool(name, *args, cwd):
    return subprocess.run([sys.executable, str(ROOT / f'tools/{name}.py'), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def _error_line(proc):
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and last.endswith('(--debug shows the traceback)'), last
    assert 'Traceback' not in proc.stderr
    return last


def test_test_tool_refuses_weights_of_another_width(demo_dir, tmp_path):
    ckpt = _ckpt(tmp_path / 'w48.pth', _model(arch='w48'))
    line = _error_line(_tool('test', SEG, ckpt, '--work-dir', tmp_path / 'w', cwd=demo_dir))
    assert f'{ckpt}: weights of an HRNet with branch widths (48, 96) (W48) into a model with ' \
           '(16, 32) (W16); first mismatch backbone.' in line


def test_test_tool_refuses_nan_weights(demo_dir, tmp_path):
    ckpt = _ckpt(tmp_path / 'nan.pth', _model(),
                 lambda s: s['backbone.conv1.weight'].fill_(float('nan')))
    line = _error_line(_tool('test', SEG, ckpt, '--work-dir', tmp_path / 'w', cwd=demo_dir))
    assert f'{ckpt}: 1 tensors hold NaN or Inf (first: backbone.conv1.weight)' in line
    debug = _tool('test', SEG, ckpt, '--work-dir', tmp_path / 'w', '--debug', cwd=demo_dir)
    assert debug.returncode != 0 and 'Traceback' in debug.stderr


def test_test_tool_refuses_a_checkpoint_missing_tensors(demo_dir, tmp_path):
    ckpt = _ckpt(tmp_path / 'part.pth', _model(), lambda s: s.pop('decode_head.conv_seg.weight'))
    line = _error_line(_tool('test', SEG, ckpt, '--work-dir', tmp_path / 'w', cwd=demo_dir))
    assert 'does not fit the model: 1 model tensors missing (first: ' \
           'decode_head.conv_seg.weight)' in line


def test_converter_check_refuses_nan_weights(tmp_path):
    from hrnet_mm import HRNetV2
    state = HRNetV2(arch='w18_small_v1').state_dict()
    state['conv1.weight'].fill_(float('inf'))
    torch.save(state, tmp_path / 'inf.pth')
    proc = _tool('convert_weights', tmp_path / 'inf.pth', tmp_path / 'out.pth', '--arch',
                 'w18_small_v1', cwd=tmp_path)
    assert proc.returncode == 1
    assert '1 tensors hold NaN or Inf (first: conv1.weight)' in proc.stderr
    assert 'checked: loads strictly' not in proc.stdout


def test_load_from_may_differ_in_the_head_not_in_the_backbone(demo_dir, tmp_path):
    # fine-tuning to other classes: the head differs, the backbone fits -> trains
    other_head = _ckpt(tmp_path / 'head.pth', _model(),
                       lambda s: s.update({'decode_head.conv_seg.weight': torch.zeros(7, 240, 1, 1),
                                           'decode_head.conv_seg.bias': torch.zeros(7)}))
    ok = _tool('train', SEG, '--work-dir', tmp_path / 'a', '--cfg-options',
               'train_cfg.max_iters=1', f'load_from={other_head}', cwd=demo_dir)
    assert ok.returncode == 0, ok.stderr[-2000:]
    other_backbone = _ckpt(tmp_path / 'w48.pth', _model(arch='w48'))
    line = _error_line(_tool('train', SEG, '--work-dir', tmp_path / 'b', '--cfg-options',
                             'train_cfg.max_iters=1', f'load_from={other_backbone}',
                             cwd=demo_dir))
    assert '(W48) into a model with (16, 32) (W16)' in line
