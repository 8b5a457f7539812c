"""The main job: matched pairs, one scale, seeds, the chart, a quiet console, real data."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tool_module

ROOT = Path(__file__).resolve().parents[1]


def _main_job():
    return tool_module('main_job')


@pytest.mark.parametrize('task', ['det', 'seg', 'pose', 'cls'])
def test_each_hrnet_has_a_resnet_of_its_size_and_compute(task):
    from hrnet_mm.complexity import build_from_config, count
    mj = _main_job()
    t = mj.TASKS[task]
    rows = []
    for model in t.models:
        net, forward, _, _ = build_from_config(str(ROOT / model.config))
        c = count(net, torch.rand(1, 3, *t.paper_size), forward)
        rows.append(dict(params_m=c.params_m, gflops=c.gflops))
    assert [m.family for m in t.models] == ['HRNet', 'ResNet']
    vs = mj.matched(rows[1], rows[0])
    assert vs['matched'], vs
    # and the rule can say no: the R-18 these demos were paired with before is 2x the size
    assert not mj.matched(dict(params_m=17.66, gflops=146.6),
                          dict(params_m=8.37, gflops=122.9))['matched']


def _row(task, model, family, untrained, trained):
    mj = _main_job()
    return dict(task=task, model=model, family=family, untrained=mj.spread(untrained),
                trained=mj.spread(trained))


def test_chart_one_colour_per_model_family_in_every_panel_and_the_legend():
    mj = _main_job()
    rows = [_row('det', 'Faster R-CNN HRNetV2p-W18-Small', 'HRNet', [0.0, 0.1], [30.0, 33.0]),
            _row('det', 'Faster R-CNN R-18 FPN, width 32', 'ResNet', [0.0, 0.0], [40.0, 41.0]),
            _row('pose', 'HRNet-W18-Small (V1)', 'HRNet', [0.0, 0.0], [60.0, 62.0]),
            _row('pose', 'SimpleBaseline R-18, width 12', 'ResNet', [0.0, 0.0], [55.0, 59.0])]
    fig = mj.chart(rows, seeds=2)
    from matplotlib.colors import to_hex
    for ax in fig.axes:
        bars = ax.patches  # in order: model 1 untrained, trained, model 2 untrained, trained
        faces = [to_hex(b.get_facecolor()) for b in bars]
        assert faces == [mj.LIGHT['HRNet'], mj.COLOURS['HRNet'], mj.LIGHT['ResNet'],
                         mj.COLOURS['ResNet']]
        assert [bool(b.get_hatch()) for b in bars] == [True, False, True, False]
        values = [t.get_text() for t in ax.texts]
        assert values[1] in ('31.5', '61.0')  # the mean is written on the bar
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ['HRNet, trained', 'HRNet, untrained', 'ResNet (size-matched), trained',
                      'ResNet (size-matched), untrained']
    assert [to_hex(h.get_facecolor()) for h in legend.legend_handles] == [
        mj.COLOURS['HRNet'], mj.LIGHT['HRNet'], mj.COLOURS['ResNet'], mj.LIGHT['ResNet']]


def test_ablation_pairs_one_hrnet_with_each_representation():
    """The paper's head comparison: the same trunk (equal state_dict keys up to the
    representation and its head), each representation that applies to the task."""
    from mmengine.config import Config
    mj = _main_job()
    assert {t: [m.family for m in mj.ABLATION[t].models] for t in mj.ABLATION} == {
        'det': ['V2+p', 'branches + FPN'], 'seg': ['V2', 'V1'], 'pose': ['V1', 'V2']}
    for task, t in mj.ABLATION.items():
        backbones = [Config.fromfile(str(ROOT / m.config)).model.backbone for m in t.models]
        assert {b.arch for b in backbones} == {'w18_small_v1'}
        reps = [b.representation if isinstance(b.representation, str) else
                b.representation['type'] for b in backbones]
        assert reps == {'det': ['v2p', 'branches'], 'seg': ['v2', 'v1'],
                        'pose': ['v1', 'v2']}[task]
        assert (t.key, t.iters) == (mj.TASKS[task].key, mj.TASKS[task].iters)  # same schedule


def test_ablation_chart_one_colour_per_representation():
    mj = _main_job()
    rows = [_row('seg', 'V2 + FCN', 'V2', [1.0], [50.0]), _row('seg', 'V1 + FCN', 'V1', [1.0],
                                                                  [40.0]),
            _row('pose', 'V1 heatmaps', 'V1', [0.0], [60.0]),
            _row('pose', 'V2 heatmaps', 'V2', [0.0], [62.0])]
    fig = mj.chart(rows, seeds=1, ablation=True)
    from matplotlib.colors import to_hex
    seg, pose = ([to_hex(b.get_facecolor()) for b in ax.patches] for ax in fig.axes)
    assert seg == [mj.LIGHT['V2'], mj.COLOURS['V2'], mj.LIGHT['V1'], mj.COLOURS['V1']]
    assert pose == [mj.LIGHT['V1'], mj.COLOURS['V1'], mj.LIGHT['V2'], mj.COLOURS['V2']]
    assert mj.COLOURS['V1'] != mj.COLOURS['V2']
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ['V2, trained', 'V2, untrained', 'V1, trained', 'V1, untrained']
    assert fig._suptitle.get_text().startswith('Which representation for which task')


def test_chart_whisker_stops_at_zero():
    """A spread wider than the mean (9.1 ± 12.8 measured) is not drawn below zero."""
    mj = _main_job()
    rows = [_row('seg', 'V1 + FCN', 'V1', [23.8, 2.4, 1.0], [22.9, 32.9, 32.4])]
    fig = mj.chart(rows, seeds=3, ablation=True)
    ax = fig.axes[0]
    lows = [min(seg[0][1], seg[1][1]) for c in ax.collections for seg in c.get_segments()]
    assert lows and min(lows) >= 0


def test_ablation_of_classification_alone_says_there_is_nothing_to_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/main_job.py'), '--ablation', '--tasks', 'cls',
         '--work-dir', str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert 'cls: left out: it has one representation, nothing to compare' in proc.stdout
    assert proc.stderr.strip().splitlines() == ['error: no task left to run (see the notes '
                                                'above)']


def test_chart_title_names_the_data_the_schedule_and_a_cut():
    """It said 'embedded dataset, short CPU schedules' for every run, --data-root and
    --scale included."""
    mj = _main_job()
    rows = [_row('seg', 'HRNetV2-W18-Small + FCN', 'HRNet', [1.0], [50.0])]
    title = mj.chart(rows, seeds=1)._suptitle.get_text()
    assert ' '.join(title.split()).endswith(', embedded dataset, short CPU schedules (one seed)')
    title = mj.chart(rows, seeds=1, data='/data/cityscapes', scale=4,
                     partial='1 of 2 models')._suptitle.get_text()
    assert ' '.join(title.split()) == (  # wrapped to the figure's width (below)
        'HRNet vs a ResNet of about its size and compute, /data/cityscapes, schedules x4 '
        '(one seed) cut short after 1 of 2 models; the others did not run')
    assert title.index('cut short') == title.index('\n', title.index('(one seed)')) + 1


@pytest.mark.parametrize('ablation', [False, True])
def test_chart_title_fits_a_figure_of_one_task(ablation):
    """--tasks seg makes a one-panel figure; its title ran off both sides."""
    mj = _main_job()
    rows = [_row('seg', 'HRNetV2-W18-Small + FCN', 'V2' if ablation else 'HRNet', [1.0],
                 [50.0])]
    fig = mj.chart(rows, seeds=3, ablation=ablation, data='/data/cityscapes', scale=0.05,
                   partial='1 of 2 models')
    fig.canvas.draw()
    box = fig._suptitle.get_window_extent()
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (box, fig.bbox.width)


def test_an_interrupted_main_job_keeps_the_models_it_finished(demo_dir, tmp_path):
    """Results were written only at the end: Ctrl-C or a kill in the last model of an
    hours-long run lost every finished one."""
    import os
    import signal
    import time
    work = tmp_path / 'mj'
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / 'tools/main_job.py'), '--tasks', 'seg', '--scale', '0.05',
         '--work-dir', str(work)], cwd=demo_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 300
        while not (work / 'results.json').exists() and proc.poll() is None:
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # in the second model's run
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130 and stderr.strip().splitlines()[-1] == 'interrupted', stderr
    assert stdout.strip().splitlines()[-1] == (
        f'written so far: {work}/results.md, results.json, results.png (1 of 2 models)')
    results = json.loads((work / 'results.json').read_text())
    assert results['partial'] == '1 of 2 models'
    assert [r['family'] for r in results['rows']] == ['HRNet']
    assert 'Cut short after 1 of 2 models' in (work / 'results.md').read_text()
    assert (work / 'results.png').stat().st_size > 10000
    assert not [f for f in os.listdir(work) if f.endswith('.tmp')]


def test_ablation_run_writes_its_own_results(demo_dir, tmp_path):
    work = tmp_path / 'abl'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/main_job.py'), '--ablation', '--tasks', 'pose',
         '--scale', '0.05', '--work-dir', str(work)], cwd=demo_dir, capture_output=True,
        text=True, timeout=900)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    results = json.loads((work / 'results.json').read_text())
    assert results['study'] == 'ablation'
    v1, v2 = results['rows']
    assert (v1['family'], v2['family']) == ('V1', 'V2')
    assert v2['params_m'] > v1['params_m']  # V2's head reads 240 channels, V1's 16
    md = (work / 'results.md').read_text()
    assert md.startswith('# Main job results: representations')
    assert 'V1 - V2, trained: ' in md and 'matched' not in md
    assert 'partial' not in results and 'Cut short' not in md  # complete: no trace of a cut


def test_main_job_console_seeds_and_percent(demo_dir, tmp_path):
    """Two seeds of the seg pair, very short: a quiet console, per-run logs, the spread."""
    work = tmp_path / 'mj'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/main_job.py'), '--tasks', 'seg', '--scale', '0.05',
         '--seeds', '2', '--work-dir', str(work)], cwd=demo_dir, capture_output=True,
        text=True, timeout=900)
    # the job may fail its trained > untrained check at 10 iterations; the output is the point
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    results = json.loads((work / 'results.json').read_text())
    assert results['unit'] == '%' and results['seeds'] == 2
    hrnet, resnet = results['rows']
    assert len(hrnet['trained_runs']) == 2 and hrnet['trained']['sd'] is not None
    assert hrnet['trained']['mean'] == pytest.approx(sum(hrnet['trained_runs']) / 2)
    assert resnet['vs_hrnet']['matched'] and 'vs_hrnet' not in hrnet
    out_lines = proc.stdout.splitlines()
    runs = [line for line in out_lines if line.startswith('[')]
    assert len(runs) == 4 and all('mIoU' in line and '% in' in line for line in runs)
    for line in runs:  # each names its log, which holds what the libraries printed
        log = Path(line.split('(log: ')[1].rstrip(')'))
        assert log.is_file() and 'mmengine - INFO' in log.read_text()
    noise = ('pkg_resources', 'Warning', 'mmengine - INFO', 'loading annotations')
    assert not [line for line in proc.stdout.splitlines() + proc.stderr.splitlines()
                if any(n in line for n in noise)]
    md = (work / 'results.md').read_text()
    assert '## seg: mIoU (%), 10 iterations' in md and 'matched' in md
    assert ' ± ' in md and (work / 'results.png').stat().st_size > 10000


def _coco_layout(demo_dir: Path, root: Path, categories=None) -> None:
    """The embedded dataset rearranged as COCO 2017 is laid out."""
    data = demo_dir / 'data/hrnet_mm_demo'
    (root / 'annotations').mkdir(parents=True)
    for split in ('train', 'val'):
        shutil.copytree(data / 'images' / split, root / f'{split}2017')
        for kind in ('instances', 'person_keypoints'):
            ann = json.loads((data / f'annotations/{kind}_{split}.json').read_text())
            if categories and kind == 'instances':
                ann['categories'] = categories
                ids = {c['id'] for c in categories}
                ann['annotations'] = [a for a in ann['annotations'] if a['category_id'] in ids]
            (root / f'annotations/{kind}_{split}2017.json').write_text(json.dumps(ann))


def test_data_root_finds_coco_layout_and_takes_its_classes(demo_dir, tmp_path):
    from mmengine.config import Config

    from hrnet_mm.data import use_data_root
    root = tmp_path / 'coco'
    _coco_layout(demo_dir, root, categories=[{'id': 1, 'name': 'person'},
                                             {'id': 3, 'name': 'disc'}])
    cfg = Config.fromfile(str(ROOT / 'configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py'))
    summary = use_data_root(cfg, str(root))
    assert summary == (f'{root}: annotations/instances_train2017.json, train2017/, '
                       'annotations/instances_val2017.json, val2017/; 2 classes')
    assert cfg.model.roi_head.bbox_head.num_classes == 2
    assert cfg.train_dataloader.dataset.metainfo == dict(classes=('person', 'disc'))
    assert cfg.val_evaluator.ann_file == f'{root}/annotations/instances_val2017.json'
    assert cfg.test_dataloader.dataset.data_prefix.img == 'val2017/'


def test_data_root_mmseg_layout_and_its_classes(demo_dir, tmp_path):
    from mmengine.config import Config

    from hrnet_mm.data import use_data_root
    data, root = demo_dir / 'data/hrnet_mm_demo', tmp_path / 'seg'
    for split in ('train', 'val'):
        shutil.copytree(data / 'images' / split, root / 'img_dir' / split)
        shutil.copytree(data / 'masks' / split, root / 'ann_dir' / split)
    (root / 'classes.txt').write_text('background\nperson\nbox\ndisc\nsky\n')
    cfg = Config.fromfile(str(ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'))
    assert use_data_root(cfg, str(root)).endswith('img_dir/val, ann_dir/val; 5 classes')
    assert cfg.model.decode_head.num_classes == 5
    assert cfg.val_dataloader.dataset.data_prefix == dict(img_path='img_dir/val',
                                                          seg_map_path='ann_dir/val')


def test_data_root_errors_name_the_problem(demo_dir, tmp_path):
    from mmengine.config import Config

    from hrnet_mm.data import DatasetError, use_data_root
    cfg = Config.fromfile(str(ROOT / 'configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py'))
    with pytest.raises(DatasetError, match='no such folder'):
        use_data_root(cfg, str(tmp_path / 'nowhere'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError, match=r"none of \['annotations/person_keypoints_train.json'"):
        use_data_root(Config.fromfile(cfg.filename), str(tmp_path / 'empty'))
    root = tmp_path / 'coco'
    _coco_layout(demo_dir, root)
    ann = root / 'annotations/person_keypoints_train2017.json'
    data = json.loads(ann.read_text())
    data['categories'][0]['keypoints'] = data['categories'][0]['keypoints'][:5]
    ann.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match='17 per person.*has 5'):
        use_data_root(Config.fromfile(cfg.filename), str(root))


def test_train_tool_on_a_coco_folder(demo_dir, tmp_path):
    """The README's real-data command, on the embedded data laid out as COCO."""
    root = tmp_path / 'coco'
    _coco_layout(demo_dir, root)
    work = tmp_path / 'work'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools/train.py'),
         str(ROOT / 'configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py'),
         '--data-root', str(root), '--work-dir', str(work),
         '--cfg-options', 'train_cfg.max_iters=2'], cwd=tmp_path, capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'data: {root}: annotations/instances_train2017.json, train2017/' in proc.stdout
    assert (work / 'iter_2.pth').exists()
