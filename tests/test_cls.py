"""Classification, the paper's fourth task, through mmpretrain: registration, the configs, and
mmpretrain's own HRNet classifier's weights giving the same logits in hrnet_mm's."""
import importlib.util
from pathlib import Path

import pytest
import torch
from helpers import max_abs_diff, randomize
from mmengine.config import Config
from mmengine.registry import DefaultScope

import hrnet_mm
from hrnet_mm.registry import build_in_library
from hrnet_mm.weights import convert_state_dict

pytestmark = pytest.mark.skipif(importlib.util.find_spec('mmpretrain') is None,
                                reason='mmpretrain is not installed')
ROOT = Path(__file__).resolve().parents[1]


def _build(config: str):
    cfg = Config.fromfile(config)
    model = build_in_library(cfg.model, 'mmpretrain')
    model.eval()
    return cfg, model


def _mmpretrain_config(name: str) -> str:
    import mmpretrain
    return str(Path(mmpretrain.__file__).parent / '.mim/configs' / name)


def test_registered_into_mmpretrain():
    from mmpretrain.registry import MODELS
    assert 'mmpretrain' in hrnet_mm.REGISTERED_LIBRARIES
    assert MODELS.get('HRNetV2') is hrnet_mm.HRNetV2
    assert MODELS.get('ClsRepresentation') is hrnet_mm.models.ClsRepresentation


@pytest.mark.parametrize('arch', ['w18'])
def test_mmpretrain_checkpoint_gives_the_same_logits(arch, tmp_path):
    """mmpretrain's own HRNet-W18 classifier (HRNet + HRFuseScales + pooling + LinearClsHead)
    with random weights; its checkpoint, converted (layout mmpretrain), loads strictly into
    configs/cls/hrnet-w18-c and gives the same logits."""
    _, theirs = _build(_mmpretrain_config(f'hrnet/hrnet-{arch}_4xb32_in1k.py'))
    randomize(theirs)
    theirs.eval()
    conversion = convert_state_dict({'state_dict': theirs.state_dict()})
    assert conversion.layout == 'mmpretrain' and conversion.unmapped == []
    cfg, ours = _build(str(ROOT / f'configs/cls/hrnet-{arch}-c_4xb32_in1k.py'))
    result = ours.load_state_dict(conversion.state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = theirs(x, mode='tensor'), ours(x, mode='tensor')
    assert expected.shape == (2, 1000)
    assert max_abs_diff([expected], [got]) <= 1e-4 * expected.abs().max().item()


def _unscoped(value):
    """A config value without the ``_scope_`` keys mmengine adds to what it inherits across
    libraries (``mmpretrain::``)."""
    if isinstance(value, dict):
        return {k: _unscoped(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [_unscoped(v) for v in value]
    return value


@pytest.mark.parametrize('arch', ['w18', 'w48'])
def test_hrnet_config_differs_from_mmpretrains_only_in_the_model_parts(arch):
    ours = Config.fromfile(str(ROOT / f'configs/cls/hrnet-{arch}-c_4xb32_in1k.py'))
    theirs = Config.fromfile(_mmpretrain_config(f'hrnet/hrnet-{arch}_4xb32_in1k.py'))
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper', 'param_scheduler',
                'train_cfg', 'data_preprocessor', 'auto_scale_lr'):
        assert _unscoped(ours[key]) == _unscoped(theirs[key]), key
    assert ours.model.head.topk == theirs.model.head.topk == (1, 5)
    assert ours.model.neck is None and ours.model.backbone.representation == 'cls'


def test_cls_neck_in_mmpretrain_feeds_its_linear_head():
    """The classification representation as a neck (``num_classes=0``: pooled features) between
    an HRNetV2 trunk and mmpretrain's LinearClsHead."""
    model = build_in_library(dict(
        type='ImageClassifier',
        backbone=dict(type='HRNetV2', arch='w18_small_v1'),
        neck=dict(type='ClsRepresentation', in_channels=[16, 32, 64, 128], num_classes=0),
        head=dict(type='LinearClsHead', num_classes=5, in_channels=2048)), 'mmpretrain')
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 64), mode='tensor')
    assert logits.shape == (2, 5)


DEMO = ROOT / 'configs/cls/demo_hrnet-w18-small-v1-c.py'


def test_embedded_dataset_has_a_classification_split(demo_dir):
    from hrnet_mm.data import CLASSES
    data = demo_dir / 'data/hrnet_mm_demo/cls'
    for split in ('train', 'val'):
        lines = (data / f'{split}.txt').read_text().splitlines()
        files, labels = zip(*(line.split() for line in lines))
        assert all((data / split / f).is_file() for f in files)
        assert set(labels) == {str(i) for i in range(len(CLASSES))}  # every class is there
    import cv2
    assert cv2.imread(str(data / 'val' / files[0])).shape == (64, 64, 3)


def test_demo_classifier_trains_and_beats_untrained(demo_dir, tmp_path, monkeypatch):
    from mmengine.runner import Runner
    monkeypatch.chdir(demo_dir)
    cfg = Config.fromfile(str(DEMO))
    cfg.work_dir = str(tmp_path)
    cfg.train_cfg.max_iters = 60
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    before = runner.test()['accuracy/top1']
    runner.train()
    after = runner.test()['accuracy/top1']
    assert after > before and after > 50, (before, after)  # 3 classes: chance is 33


def test_mim_train_and_test_mmpretrain(demo_dir, tmp_path):
    """`mim train mmpretrain <config>`: mmpretrain's own train.py on hrnet_mm's classifier."""
    import subprocess
    import sys
    mim = Path(sys.executable).parent / 'mim'
    train = subprocess.run([str(mim), 'train', 'mmpretrain', str(DEMO), '--work-dir',
                            str(tmp_path), '--cfg-options', 'train_cfg.max_iters=2'],
                           cwd=demo_dir, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert (tmp_path / 'iter_2.pth').exists()
    test = subprocess.run([str(mim), 'test', 'mmpretrain', str(DEMO), '--checkpoint',
                           str(tmp_path / 'iter_2.pth'), '--work-dir', str(tmp_path)],
                          cwd=demo_dir, capture_output=True, text=True, timeout=600)
    assert test.returncode == 0, test.stdout[-2000:] + test.stderr[-2000:]
    assert 'accuracy/top1' in test.stdout + test.stderr


def test_data_root_reads_imagenet_class_folders(demo_dir, tmp_path):
    """--data-root on ImageNet's layout: train/<class>/, val/<class>/; classes from the
    folders, and the classifier's width follows them."""
    import shutil

    from mmpretrain.registry import DATASETS

    from hrnet_mm.data import DatasetError, use_data_root
    src = demo_dir / 'data/hrnet_mm_demo/cls'
    names = ['box', 'disc', 'person']  # folder order: alphabetical
    for split in ('train', 'val'):
        for line in (src / f'{split}.txt').read_text().splitlines():
            f, label = line.split()
            cls = ('person', 'box', 'disc')[int(label)]
            (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
            shutil.copy(src / split / f, tmp_path / split / cls / f)
    (tmp_path / 'train' / 'cat').mkdir()  # a fourth class, so the width must change
    first = (src / 'train.txt').read_text().split()[0]
    shutil.copy(src / 'train' / first, tmp_path / 'train' / 'cat' / first)
    cfg = Config.fromfile(str(DEMO))
    summary = use_data_root(cfg, str(tmp_path))
    assert summary.endswith('4 classes')
    assert cfg.model.backbone.representation.num_classes == 4
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        train = DATASETS.build(cfg.train_dataloader.dataset)
    assert train.metainfo['classes'] == tuple(sorted(names + ['cat']))
    assert len(train) == len((src / 'train.txt').read_text().splitlines()) + 1
    with pytest.raises(DatasetError, match=r'neither cls/train.txt and cls/val.txt .* nor the '
                       r"folders \['train', 'val'\]"):
        use_data_root(Config.fromfile(str(DEMO)), str(tmp_path / 'train' / 'cat'))
