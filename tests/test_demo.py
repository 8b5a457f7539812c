"""The embedded dataset and the demo configs: real dataset classes, pipelines and evaluators."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from hrnet_mm.data import KEYPOINTS, generate

ROOT = Path(__file__).resolve().parents[1]
DEMOS = {
    'det': ROOT / 'configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py',
    'seg': ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py',
    'pose': ROOT / 'configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py',
}




def test_dataset_files_are_real_coco_and_masks(demo_dir, tmp_path):
    from pycocotools.coco import COCO
    from xtcocotools.coco import COCO as XTCOCO
    import cv2
    data = demo_dir / 'data/hrnet_mm_demo'
    instances = COCO(str(data / 'annotations/instances_val.json'))
    assert [c['name'] for c in instances.loadCats(instances.getCatIds())] == \
        ['person', 'box', 'disc']
    ann = instances.loadAnns(instances.getAnnIds())[0]
    mask = instances.annToMask(ann)
    assert mask.sum() == pytest.approx(ann['area'])
    keypoints = XTCOCO(str(data / 'annotations/person_keypoints_val.json'))
    person = keypoints.loadCats(1)[0]
    assert person['keypoints'] == list(KEYPOINTS) and len(person['skeleton']) == 19
    kp = keypoints.loadAnns(keypoints.getAnnIds())[0]['keypoints']
    assert len(kp) == 51
    seg = cv2.imread(str(data / 'masks/val/val_0000.png'), cv2.IMREAD_UNCHANGED)
    assert seg.shape == (160, 160) and set(seg.flatten()) <= {0, 1, 2, 3} and seg.max() > 0
    # deterministic: the same seed writes the same annotations
    generate(str(tmp_path / 'again'), num_train=24, num_val=8)
    assert (tmp_path / 'again/annotations/person_keypoints_train.json').read_text() == \
        (data / 'annotations/person_keypoints_train.json').read_text()


def _runner(config, work_dir, iters):
    cfg = Config.fromfile(str(config))
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.log_level = 'WARNING'
    return Runner.from_cfg(cfg)


@pytest.mark.parametrize('task, iters, metric', [('seg', 40, 'mIoU'), ('pose', 40, 'coco/AP')])
def test_demo_trains_and_beats_untrained(demo_dir, tmp_path, monkeypatch, task, iters, metric):
    monkeypatch.chdir(demo_dir)
    runner = _runner(DEMOS[task], tmp_path, iters)
    before = runner.test()[metric]
    runner.train()
    after = runner.test()[metric]
    assert after > before, (before, after)


def test_demo_detector_trains_and_is_evaluated_by_coco(demo_dir, tmp_path, monkeypatch):
    """A few iterations only (the main job trains it longer): the pipeline and CocoMetric run."""
    monkeypatch.chdir(demo_dir)
    runner = _runner(DEMOS['det'], tmp_path, 6)
    metrics = runner.test()
    assert {'coco/bbox_mAP', 'coco/bbox_mAP_50'} <= set(metrics)
    runner.train()
    assert runner.iter == 6
    assert (tmp_path / 'iter_6.pth').exists()


def test_two_process_distributed_training_agrees_on_weights(demo_dir, tmp_path):
    cfg = tmp_path / 'dist.py'
    cfg.write_text(f"_base_ = '{DEMOS['seg']}'\n"
                   "custom_hooks = [dict(type='WeightsDigestHook')]\n"
                   "train_cfg = dict(max_iters=4)\n")
    proc = subprocess.run(['bash', str(ROOT / 'tools/dist_train.sh'), str(cfg), '2',
                           '--work-dir', str(tmp_path / 'work')], cwd=demo_dir,
                          capture_output=True, text=True, timeout=600,
                          env={**__import__('os').environ, 'PORT': '29512'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = [(tmp_path / f'work/weights_rank{r}.sha256').read_text() for r in (0, 1)]
    assert digests[0] == digests[1] and len(digests[0].strip()) == 64
    # a console as quiet as one process's: rank 1's copies of the third-party warnings (and
    # torchrun's thread-count banner) are not on it; they are in rank 1's own log file
    console = proc.stdout + proc.stderr
    assert 'Warning' not in console and 'OMP_NUM_THREADS' not in console, console
    assert console.count('set-up (environment, config, hook order)') == 1
    assert console.count('evaluation output') == 1
    rank1 = list((tmp_path / 'work').glob('*/*_rank1.log'))
    assert len(rank1) == 1 and "UserWarning: ``build_loss`` would be deprecated" in \
        rank1[0].read_text()


def test_train_and_test_tools(demo_dir, tmp_path):
    work = tmp_path / 'work'
    train = subprocess.run(
        [sys.executable, str(ROOT / 'tools/train.py'), str(DEMOS['pose']), '--work-dir',
         str(work), '--cfg-options', 'train_cfg.max_iters=4'], cwd=demo_dir,
        capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    # mmengine's set-up dump (environment, config, hooks) is in the log file, named in a line
    console = train.stdout + train.stderr
    assert 'System environment' not in console and 'Hooks will be executed' not in console
    log = console.split('set-up (environment, config, hook order)')[1].split(': ')[1]
    assert 'System environment' in Path(log.split(' (--verbose')[0]).read_text()
    out = tmp_path / 'metrics.json'
    test = subprocess.run(
        [sys.executable, str(ROOT / 'tools/test.py'), str(DEMOS['pose']), str(work / 'iter_4.pth'),
         '--work-dir', str(work), '--out', str(out)], cwd=demo_dir, capture_output=True,
        text=True, timeout=600)
    assert test.returncode == 0, test.stderr[-3000:]
    assert 'coco/AP' in json.loads(out.read_text())
    # xtcocotools' evaluation dump went into the run's log, named on stderr; metrics shown
    console = test.stdout + test.stderr
    assert 'Average Precision' not in console and 'loading annotations' not in console
    assert 'pkg_resources' not in console and 'coco/AP: ' in console
    log = console.split('evaluation output')[1].split(': ')[1].split(' (--verbose')[0]
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in Path(log).read_text()
    verbose = subprocess.run(
        [sys.executable, str(ROOT / 'tools/test.py'), str(DEMOS['pose']), str(work / 'iter_4.pth'),
         '--work-dir', str(work), '--verbose'], cwd=demo_dir, capture_output=True, text=True,
        timeout=600)
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in verbose.stdout
    assert 'System environment' in verbose.stdout
    # the backbone in bf16, the heads in fp32: the same metrics, for comparing
    bf16 = subprocess.run(
        [sys.executable, str(ROOT / 'tools/test.py'), str(DEMOS['pose']), str(work / 'iter_4.pth'),
         '--work-dir', str(work), '--backbone-precision', 'bf16', '--out', str(out)],
        cwd=demo_dir, capture_output=True, text=True, timeout=600)
    assert bf16.returncode == 0, bf16.stderr[-3000:]
    bf16_ap = 100 * json.loads(out.read_text())['coco/AP']
    # fp32, bf16 and fp32 with bf16-sized rounding noise, side by side
    check = subprocess.run(
        [sys.executable, str(ROOT / 'tools/precision_check.py'), str(DEMOS['pose']),
         str(work / 'iter_4.pth'), '--work-dir', str(work), '--draws', '2', '--out', str(out)],
        cwd=demo_dir, capture_output=True, text=True, timeout=600)
    assert check.returncode == 0, check.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result['metric'] == 'coco/AP' and len(result['noise']) == 2
    assert result['bf16'] == pytest.approx(bf16_ap)  # what tools/test.py measured
    assert check.stdout.splitlines()[-1].startswith('bf16 changes coco/AP by ')
    assert 'Average Precision' not in check.stdout + check.stderr
    # resuming from the work dir (mmengine's checkpoint, loaded with weights_only=True)
    resume = subprocess.run(
        [sys.executable, str(ROOT / 'tools/train.py'), str(DEMOS['pose']), '--work-dir',
         str(work), '--resume', '--cfg-options', 'train_cfg.max_iters=6'], cwd=demo_dir,
        capture_output=True, text=True, timeout=600)
    assert resume.returncode == 0, resume.stderr[-3000:]
    assert (work / 'iter_6.pth').exists()


def test_mim_train_and_test(demo_dir, tmp_path):
    """`mim train <library> <config>` runs the library's own train.py on an hrnet_mm config."""
    mim = Path(sys.executable).parent / 'mim'
    config = str(DEMOS['seg'])
    train = subprocess.run([str(mim), 'train', 'mmseg', config, '--work-dir', str(tmp_path),
                            '--cfg-options', 'train_cfg.max_iters=2'], cwd=demo_dir,
                           capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert (tmp_path / 'iter_2.pth').exists()
    # the library's own train.py got hrnet_mm's checkpoint hook through the config's import
    import torch
    assert 'hrnet_mm_rng' in torch.load(tmp_path / 'iter_2.pth', map_location='cpu')['meta']
    test = subprocess.run([str(mim), 'test', 'mmseg', config, '--checkpoint',
                           str(tmp_path / 'iter_2.pth'), '--work-dir', str(tmp_path)],
                          cwd=demo_dir, capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stdout[-2000:] + test.stderr[-2000:]
    assert 'mIoU' in test.stdout + test.stderr
