"""The tools refuse weights that do not fit, and end every failure with one line and exit 1
(the traceback with --debug), from the user's command."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tool_module
from mmengine.config import Config

import hrnet_mm  # noqa: F401
from hrnet_mm.registry import build_in_library

ROOT = Path(__file__).resolve().parents[1]
SEG = ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'




def _model(**backbone):
    cfg = Config.fromfile(str(SEG))
    cfg.model.backbone.update(backbone)
    return build_in_library(cfg.model, 'mmseg')


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


# ---------------------------------------------------------------------- broken datasets
DET = ROOT / 'configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py'
POSE = ROOT / 'configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py'


@pytest.fixture
def broken(demo_dir, tmp_path):
    """A copy of the demo dataset to break, and the data config pieces that point at it."""
    import shutil
    root = tmp_path / 'data/hrnet_mm_demo'
    shutil.copytree(demo_dir / 'data/hrnet_mm_demo', root)
    return tmp_path, root


def _check(config, cwd, splits=('train', 'val')):
    import os

    from hrnet_mm.data import check_data
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return check_data(Config.fromfile(str(config)), splits)
    finally:
        os.chdir(old)


def _first(path):
    import json
    return json.loads(path.read_text())


@pytest.mark.parametrize('config, break_it, message', [
    (DET, lambda r: next((r / 'images/train').iterdir()).write_bytes(b''),
     'image file is empty (0 bytes)'),
    (DET, lambda r: next((r / 'images/val').iterdir()).unlink(), 'image file is missing'),
    (DET, lambda r: (r / 'annotations/instances_train.json').write_text('{"images": [1,'),
     'annotations/instances_train.json: not a JSON file (Expecting value at line 1'),
    (DET, lambda r: (r / 'annotations/instances_val.json').write_text(
        '{"annotations": [], "categories": []}'),
     'annotations/instances_val.json: no "images" list: a COCO file holds'),
    (POSE, lambda r: (r / 'annotations/person_keypoints_train.json').write_text(
        __import__('json').dumps({**_first(r / 'annotations/person_keypoints_train.json'),
                                  'annotations': [{'id': 7, 'image_id': 1, 'category_id': 1,
                                                   'bbox': [0, 0, 9, 9],
                                                   'keypoints': [0] * 50}]})),
     'annotation id 7 (image 1) has 50 keypoint values; 51 expected'),
    (SEG, lambda r: next((r / 'masks/train').iterdir()).unlink(),
     'segmentation map of'),
])
def test_broken_dataset_is_one_line_naming_the_file(broken, config, break_it, message):
    cwd, root = broken
    break_it(root)
    from hrnet_mm.data import DatasetError
    with pytest.raises(DatasetError, match=re.escape(message)):
        _check(config, cwd)


def test_boxes_the_dataset_skips_are_said(broken):
    import json
    cwd, root = broken
    path = root / 'annotations/instances_train.json'
    coco = json.loads(path.read_text())
    coco['annotations'][0]['bbox'][2] = -5
    path.write_text(json.dumps(coco))
    warnings = _check(DET, cwd)
    assert len(warnings) == 1 and 'instances_train.json: 1 boxes with zero or negative width ' \
        'or height are skipped by the dataset (first: annotation id' in warnings[0]
    assert _check(DET, cwd, ('val', )) == []


def test_train_tool_stops_on_a_broken_dataset_in_one_line(broken):
    cwd, root = broken
    image = next((root / 'images/train').iterdir())
    image.write_bytes(b'')
    line = _error_line(_tool('train', DET, '--work-dir', cwd / 'w', cwd=cwd))
    # as the README shows it: the file first, no exception type
    assert line.startswith(f'error: {image.relative_to(cwd)}: image file is empty (0 bytes)')


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f'touch {self.marker}', ))


def test_test_tool_refuses_a_crafted_checkpoint_in_one_line(demo_dir, tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'x': _RunsCode(tmp_path / 'ran')}, path)
    line = _error_line(_tool('test', SEG, path, '--work-dir', tmp_path / 'w', cwd=demo_dir))
    assert f'{path}: refused: unpickling it would call posix.system' in line
    assert not (tmp_path / 'ran').exists()


def test_train_tool_unusable_work_dir_and_bad_option_in_one_line(demo_dir, tmp_path):
    (tmp_path / 'file').write_text('')
    proc = _tool('train', SEG, '--work-dir', tmp_path / 'file/work', cwd=demo_dir)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1] == (
        f'train.py: error: --work-dir {tmp_path / "file/work"}: {tmp_path / "file"} is a file, '
        'not a folder')
    line = _error_line(_tool('train', SEG, '--work-dir', tmp_path / 'w', '--cfg-options',
                             'model.backbone.arch=w99', cwd=demo_dir))
    assert "arch='w99' is not known; allowed: [" in line


def test_precision_check_verdict_and_metric_choice():
    pc = tool_module('precision_check')
    result = dict(metric='coco/AP', precision='bf16', fp32=63.77, bf16=61.94,
                  noise=[63.7, 62.16, 64.55])
    assert pc.summary(result).splitlines() == [
        'coco/AP: fp32 63.77',
        'coco/AP: bf16 backbone 61.94 (-1.83)',
        'coco/AP: fp32 with bf16-sized rounding noise, 3 draws: mean 63.47 (-0.30; -1.61 to '
        '+0.78)',
        "bf16 changes coco/AP by -1.83: beyond the noise draws' range"]
    assert pc.summary(dict(result, bf16=62.5)).endswith("-1.27: within the noise draws' range")
    metrics = {'aAcc': 90.0, 'mIoU': 50.0}
    assert pc.pick_metric(metrics) == 'mIoU' and pc.pick_metric(metrics, 'aAcc') == 'aAcc'
    assert pc.pick_metric({'acc': 1.0}) == 'acc'
    with pytest.raises(ValueError, match=r"--metric 'coco/AP': the evaluator reports "
                                         r"\['aAcc', 'mIoU'\]"):
        pc.pick_metric(metrics, 'coco/AP')
    assert pc.metric_scale('coco/AP') == (100, '%') and pc.metric_scale('mIoU') == (1, '%')
    assert pc.metric_scale('EPE') == (1, '')


def test_precision_check_refuses_bad_weights_and_a_wrong_metric_in_one_line(demo_dir, tmp_path):
    ckpt = _ckpt(tmp_path / 'nan.pth', _model(),
                 lambda s: s['backbone.conv1.weight'].fill_(float('nan')))
    line = _error_line(_tool('precision_check', SEG, ckpt, '--work-dir', tmp_path / 'w',
                             cwd=demo_dir))
    assert f'{ckpt}: 1 tensors hold NaN or Inf' in line
    ckpt = _ckpt(tmp_path / 'ok.pth', _model())
    line = _error_line(_tool('precision_check', SEG, ckpt, '--work-dir', tmp_path / 'w',
                             '--metric', 'coco/AP', cwd=demo_dir))
    assert "--metric 'coco/AP': the evaluator reports ['aAcc', 'mAcc', 'mIoU']" in line


def test_complexity_and_benchmark_refuse_a_bad_padding_in_one_line(tmp_path):
    proc = _tool('complexity', '--arch', 'w18', '--pad-channels', '1', '--shape', '64', '64',
                 cwd=tmp_path)
    assert _error_line(proc) == ('error: pad_channels=1: must be an int >= 2 (e.g. 8), or None '
                                 '(no padding) (--debug shows the traceback)')
    proc = _tool('benchmark', '--pad-channels', '0', cwd=tmp_path)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        'benchmark.py: error: --pad-channels 0: must be an int >= 2 (e.g. 8)')


@pytest.mark.parametrize('tool, args', [
    ('benchmark', []), ('test', [SEG, 'x.pth']), ('precision_check', [SEG, 'x.pth'])])
def test_an_out_file_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys, tool,
                                                                     args):
    """Not after minutes of measuring or evaluating, when the results are lost."""
    module = tool_module(tool)
    out = tmp_path / 'missing' / 'r.json'
    with pytest.raises(SystemExit) as exit_:
        module.parse_args([*map(str, args), '--out', str(out)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f': error: --out {out}: {out.parent} is not a folder this run can write into')
    module.parse_args([*map(str, args), '--out', str(tmp_path / 'r.json')])  # a folder: fine


@pytest.mark.parametrize('tool, args, error', [
    ('benchmark', ['--batch', '0'], 'argument --batch: 0: must be an int >= 1'),
    ('benchmark', ['--size', '512', '0'], 'argument --size: 0: must be an int >= 1'),
    ('benchmark', ['--repeats', '0'], 'argument --repeats: 0: must be an int >= 1'),
    ('benchmark', ['--warmup', '-1'], 'argument --warmup: -1: must be an int >= 0'),
    ('benchmark', ['--threads', 'two'], "argument --threads: 'two': must be an int >= 1"),
    ('benchmark', ['--device', 'gpu'], '--device gpu: not a torch device (cpu, cuda, cuda:1, ...)'),
    ('complexity', ['--arch', 'w18', '--shape', '0', '0'],
     'argument --shape: 0: must be an int >= 1'),
    ('precision_check', [SEG, 'x.pth', '--draws', '0'], 'argument --draws: 0: must be an int >= 1'),
    ('main_job', ['--seeds', '0'], 'argument --seeds: 0: must be an int >= 1'),
    ('main_job', ['--scale', '0'], '--scale 0.0: must be positive'),
])
def test_a_bad_number_is_refused_when_the_arguments_are_read(capsys, tool, args, error):
    """Not by torch after the models are built (--batch 0 failed in a max() of an empty
    tensor, --size 512 0 in a convolution, --repeats 0 after the whole run in a median)."""
    with pytest.raises(SystemExit) as exit_:
        tool_module(tool).parse_args([*map(str, args)])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f': error: {error}')


@pytest.mark.parametrize('args, error', [
    (['--fast', 'channels_last', 'graphs', '--device', 'cpu'],
     '--fast graphs: CUDA graphs need a GPU; here --device cpu'),
    (['--fast', 'compile', 'graphs'],
     '--fast compile graphs: at most one of compile, freeze, cudagraphs, graphs'),
    (['--fast', 'freeze', 'cudagraphs'],
     '--fast freeze cudagraphs: at most one of compile, freeze, cudagraphs, graphs'),
    (['--streams', '--device', 'cpu'], '--streams: CUDA streams need a GPU; here --device cpu'),
    (['--fast', 'regions', 'cudagraphs'],
     '--fast regions cudagraphs: cudagraphs compiles the whole model; regions goes alone or '
     'with graphs'),
    (['--model', 'faster_rcnn', '--fast', 'channels_last', 'regions'],
     '--fast regions: for --model backbone; here --model faster_rcnn'),
])
def test_benchmark_refuses_fast_paths_that_cannot_run_together_or_here(capsys, args, error):
    """Not after the models are built (graphs on the CPU), nor one silently dropped (with
    compile and cudagraphs both given, a detector run compiled with only one of them)."""
    with pytest.raises(SystemExit) as exit_:
        tool_module('benchmark').parse_args(args)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f': error: {error}')


def test_benchmark_refuses_streams_with_a_compiler(capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)  # as on a GPU machine
    with pytest.raises(SystemExit) as exit_:
        tool_module('benchmark').parse_args(['--device', 'cuda', '--streams', '--fast',
                                             'channels_last', 'cudagraphs'])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        ': error: --streams with --fast cudagraphs: torch.compile traces one stream (the '
        'parallel branches run eagerly, as CUDA graphs or compiled by regions: --fast graphs, '
        'regions)')
    args = tool_module('benchmark').parse_args(['--device', 'cuda', '--streams', '--fast',
                                                'channels_last', 'graphs'])
    assert args.streams and args.fast == ['channels_last', 'graphs']


def test_every_gpu_check_case_is_a_valid_benchmark_command(monkeypatch):
    """tools/gpu_check.sh's cases as the GPU machine runs them: arguments that would fail
    there would cost a run of scarce GPU time (the CPU dry run has no such arguments for the
    heavier cases)."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    script = (ROOT / 'tools/gpu_check.sh').read_text()
    cases = re.findall(r'^  "([a-z0-9_]+)\|(\d+)\|([^|]*)\|', script, flags=re.M)
    assert len(cases) >= 15 and 'pose_w32_regions' in [c[0] for c in cases]
    for name, _, gpu_args in cases:
        args = tool_module('benchmark').parse_args(
            [*shlex.split(gpu_args), '--device', 'cuda', '--profile', '--out', '/tmp/x.json'])
        assert ('regions' in args.fast) == ('regions' in name), name


def test_every_benchmark_command_of_the_readme_is_valid(monkeypatch):
    """What users copy: each ``tools/benchmark.py`` line of the README parses (a GPU seen
    where the line asks for one)."""
    readme = (ROOT / 'README.md').read_text()
    lines = re.findall(r'^\.venv/bin/python tools/benchmark\.py(.*?)(?:\s+#.*)?$', readme,
                       flags=re.M)
    assert len(lines) >= 8 and any('regions' in line for line in lines)
    for line in lines:
        gpu = '--device cuda' in line
        monkeypatch.setattr(torch.cuda, 'is_available', lambda gpu=gpu: gpu)
        tool_module('benchmark').parse_args([*shlex.split(line), '--out', '/tmp/x.json'])


def test_benchmark_on_a_gpu_torch_does_not_see_is_refused_in_one_line(capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(SystemExit) as exit_:
        tool_module('benchmark').parse_args(['--device', 'cuda'])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        f': error: --device cuda: torch sees no GPU here (torch {torch.__version__}; '
        'use --device cpu)')


def test_converter_refuses_a_destination_it_cannot_write_before_converting(tmp_path, capsys):
    """It wrote nothing and raised a torch traceback after loading and converting."""
    module = tool_module('convert_weights')
    src = str(tmp_path / 'src.pth')
    for dst, error in [(tmp_path / 'missing' / 'out.pth',
                        f'{tmp_path / "missing"} is not a folder this run can write into'),
                       (tmp_path, 'is a folder; name a file in it')]:
        with pytest.raises(SystemExit) as exit_:
            module.parse_args([src, str(dst)])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
            f': error: dst {dst}: {error}')
    with pytest.raises(SystemExit):
        module.parse_args([src, str(tmp_path / 'out.pth'), '--arch', 'w99'])
    assert "argument --arch: invalid choice: 'w99'" in capsys.readouterr().err


@pytest.mark.parametrize('tool, args', [
    ('train', [SEG]), ('test', [SEG, 'x.pth']), ('precision_check', [SEG, 'x.pth']),
    ('main_job', [])])
def test_a_cfg_option_without_a_value_is_refused_in_one_line(capsys, tool, args):
    """mmengine's DictAction failed with "not enough values to unpack (expected 2, got 1)"."""
    module = tool_module(tool)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args([*map(str, args), '--cfg-options', 'a=1', 'train_cfg.max_iters'])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        ': error: --cfg-options train_cfg.max_iters: expected KEY=VALUE, e.g. '
        'train_cfg.max_iters=100')
    parsed = module.parse_args([*map(str, args), '--cfg-options', 'a=1', 'b.c=[1,2]'])
    assert parsed.cfg_options == {'a': 1, 'b.c': [1, 2]}  # mmengine's parsing of values


@pytest.mark.parametrize('tool, args', [
    ('train', [SEG]), ('test', [SEG, 'x.pth']), ('precision_check', [SEG, 'x.pth']),
    ('main_job', [])])
def test_a_work_dir_that_is_a_file_is_refused_before_the_run(tmp_path, capsys, tool, args):
    """mmengine made it after the set-up: "FileExistsError: [Errno 17] File exists"."""
    (tmp_path / 'file').write_text('')
    module = tool_module(tool)
    for work_dir in (tmp_path / 'file', tmp_path / 'file' / 'deeper' / 'work'):
        with pytest.raises(SystemExit) as exit_:
            module.parse_args([*map(str, args), '--work-dir', str(work_dir)])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
            f': error: --work-dir {work_dir}: {tmp_path / "file"} is a file, not a folder')
    module.parse_args([*map(str, args), '--work-dir', str(tmp_path / 'new' / 'work')])  # fine
