"""Every file under configs/ loads, builds its model from random weights, and runs a forward."""
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

import hrnet_mm
from hrnet_mm.models import get_arch
from hrnet_mm.registry import build_in_library

ROOT = Path(__file__).resolve().parents[1] / 'configs'
LIBRARY = {'det': 'mmdet', 'seg': 'mmseg', 'pose': 'mmpose', 'cls': 'mmpretrain'}
# configs/_base_ and configs/_demo_ hold pieces that full configs inherit, not configs
CONFIGS = sorted(p for p in ROOT.rglob('*.py') if not {'_base_', '_demo_'} & set(p.parts))


def _few_detections(test_cfg: dict) -> None:
    """20 boxes before NMS and 5 detections, every score kept: with random weights a detector
    would otherwise run its box and mask heads on up to 1000 boxes (HTC: 12 s on 2 cores),
    and a score threshold could leave the mask heads nothing to run on."""
    for stage in [test_cfg, *(v for v in test_cfg.values() if isinstance(v, dict))]:
        for key, most in (('nms_pre', 20), ('topk', 5), ('max_per_img', 5)):
            if key in stage:
                stage[key] = min(stage[key], most)
        if 'score_thr' in stage:
            stage['score_thr'] = 0.0


def _build(path: Path):
    cfg = Config.fromfile(str(path))
    library = LIBRARY[path.parent.name]
    if library == 'mmdet':
        _few_detections(cfg.model.test_cfg)
    model = build_in_library(cfg.model, library)
    model.eval()
    return cfg, library, model


def test_there_is_a_config_per_paper_model():
    names = {p.stem for p in CONFIGS}
    for arch in ('w18', 'w32', 'w40'):
        assert {f'faster-rcnn_hrnetv2p-{arch}_1x_coco', f'faster-rcnn_hrnetv2p-{arch}_2x_coco',
                f'cascade-rcnn_hrnetv2p-{arch}_20e_coco'} <= names
    assert {'fcos_hrnetv2p-w18_gn-head_1x_coco', 'fcos_hrnetv2p-w32_gn-head_1x_coco'} <= names
    for arch in ('w18', 'w32', 'w40'):  # the Mask R-CNN family of mmdet's HRNet model zoo
        assert {f'mask-rcnn_hrnetv2p-{arch}_1x_coco', f'mask-rcnn_hrnetv2p-{arch}_2x_coco',
                f'cascade-mask-rcnn_hrnetv2p-{arch}_20e_coco',
                f'htc_hrnetv2p-{arch}_20e_coco'} <= names
    assert {'centernet_hrnetv2-w18_8xb16-crop512-140e_coco',
            'centernet_hrnetv2-w32_8xb16-crop512-140e_coco'} <= names
    for name in [n for n in names if 'hrnetv2p' in n or 'centernet_hrnet' in n]:
        text = (ROOT / 'det' / f'{name}.py').read_text()
        baseline = text.split("_base_ = './")[1].split("'")[0]
        assert (ROOT / 'det' / baseline).exists(), name
    for arch in ('w18-small-v2', 'w18', 'w48'):
        for data in ('4xb2-80k_cityscapes-512x1024', '4xb4-80k_pascal-context-59-480x480',
                     '4xb4-80k_lip-473x473'):
            assert f'fcn_hrnetv2-{arch}_{data}' in names
    assert len([n for n in names if n.startswith('td-hm_hrnetv1')]) == 4
    assert {f'hrnet-{w}-c_4xb32_in1k' for w in ('w18', 'w30', 'w32', 'w40', 'w44', 'w48',
                                                 'w64')} <= names
    assert {f'resnet{d}_8xb32_in1k' for d in (50, 101, 152)} <= names
    assert len([n for n in names if n.startswith('td-hm_res')]) == 6


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: f'{p.parent.name}/{p.stem}')
def test_config_builds_and_runs(path):
    cfg, library, model = _build(path)
    if 'hrnet' in path.stem:
        assert type(model.backbone) is hrnet_mm.HRNetV2
    # every config, the ResNet baselines too: `mim train` then gets hrnet_mm's environment
    # fixes (transformers >= 5 with mmpretrain 1.2.0) and its safe checkpoints
    assert 'hrnet_mm' in cfg.custom_imports['imports']
    text = path.read_text()
    assert '# Published result' in text  # each config names its reference (or its absence)
    with torch.no_grad():
        if library == 'mmdet':
            from mmdet.structures import DetDataSample
            x = torch.rand(1, 3, 128, 160)
            meta = dict(img_shape=(128, 160), ori_shape=(128, 160), scale_factor=(1.0, 1.0),
                        pad_shape=(128, 160), batch_input_shape=(128, 160),
                        border=(0, 128, 0, 160))  # CenterNet's test crop: none here
            found = model.predict(x, [DetDataSample(metainfo=meta)])[0].pred_instances
            assert found.bboxes.shape == (5, 4)  # every head ran on boxes
            if 'mask' in path.stem or 'htc' in path.stem:
                assert found.masks.shape == (5, 128, 160)
        elif library == 'mmseg':
            logits = model(torch.rand(1, 3, 96, 128), None, mode='tensor')
            assert logits.shape[:2] == (1, cfg.model.decode_head.num_classes)
            stride = 4 if 'hrnet' in path.stem else 8  # V2 at 1/4; dilated ResNet-D8 at 1/8
            assert logits.shape[2:] == (96 // stride, 128 // stride)
        elif library == 'mmpretrain':
            logits = model(torch.rand(1, 3, 64, 64), mode='tensor')
            num_classes = 3 if path.stem.startswith('demo') else 1000
            assert logits.shape == (1, num_classes)
        else:
            heatmaps = model(torch.rand(1, 3, 256, 192), None, mode='tensor')
            assert heatmaps.shape == (1, 17, 64, 48)


def _model_without(cfg, *keys):
    model = cfg.to_dict()['model']
    return {k: v for k, v in model.items() if k not in keys}


@pytest.mark.parametrize('path', [p for p in CONFIGS if p.parent.name == 'det' and 'hrnet' in
                                  p.stem], ids=lambda p: p.stem)
def test_detector_differs_from_its_resnet_baseline_only_in_backbone_and_neck(path):
    cfg = Config.fromfile(str(path))
    base_file = path.read_text().split("_base_ = '")[1].split("'")[0]  # './<baseline>.py'
    base = Config.fromfile(str(path.parent / base_file))
    centernet = path.stem.startswith('centernet')
    differs = ['backbone', 'neck'] + (['data_preprocessor'] if 'fcos' in path.stem else []) + (
        ['bbox_head'] if centernet else [])
    assert _model_without(cfg, *differs) == _model_without(base, *differs)
    assert base.model.neck.type == ('CTResNetNeck' if centernet else 'FPN')
    if path.stem.endswith('_fpn'):  # the ablation's branches + FPN: the FPN sees other widths
        assert cfg.model.backbone.representation == 'branches'
        assert {**cfg.model.neck, 'in_channels': None} == {**base.model.neck, 'in_channels': None}
        return
    assert cfg.model.neck is None
    if centernet:  # the head reads the V2 map: only its input width changes
        head, base_head = cfg.model.bbox_head.to_dict(), base.model.bbox_head.to_dict()
        branches = get_arch(cfg.model.backbone.arch)['stage4']['num_channels']
        assert head.pop('in_channels') == sum(branches)
        assert base_head.pop('in_channels') == base.model.neck.num_deconv_filters[-1]
        assert head == base_head
    assert base.model.backbone.type == 'ResNet'
