"""HRNet's parts as modules a config can name: the multi-resolution module and each
representation, registered everywhere, equal to what HRNetV2 composes from them, and working
on another backbone's maps too."""
import importlib
import os.path as osp

import pytest
import torch
from helpers import max_abs_diff, randomize
from mmengine.config import Config

import hrnet_mm
from hrnet_mm import HRNetV2
from hrnet_mm.models import (PARTS, REPRESENTATIONS, ClsRepresentation, FeatureInfo, HRModule,
                             V2pRepresentation, get_arch)
from hrnet_mm.registry import build_in_library
from hrnet_mm.weights import check_fit, load_pretrained

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARCH = 'w18_small_v1'
WIDTHS = [16, 32, 64, 128]
NECKS = {'v1': 'V1Representation', 'v2': 'V2Representation', 'v2p': 'V2pRepresentation',
         'cls': 'ClsRepresentation'}


def _x(h=64, w=96, seed=1):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _renamed(state, old, new):
    return {(new + k[len(old):] if k.startswith(old) else k): v for k, v in state.items()}


@pytest.mark.parametrize('library', ['hrnet_mm', 'mmdet', 'mmseg', 'mmpose'])
def test_every_part_is_registered(library):
    registry = hrnet_mm.MODELS if library == 'hrnet_mm' else \
        importlib.import_module(f'{library}.registry').MODELS
    assert set(PARTS) == {'HRNetV2', 'HRModule', 'BranchesRepresentation', 'V1Representation',
                          'V2Representation', 'V2pRepresentation', 'ClsRepresentation'}
    for name, cls in PARTS.items():
        assert registry.get(name) is cls, name
    module = registry.build(dict(type='HRModule', block='BASIC', num_blocks=[1, 1],
                                 in_channels=[16, 32], num_channels=[16, 32]))
    assert type(module) is HRModule
    assert module.feature_info == (FeatureInfo(16, 4), FeatureInfo(32, 8))


@pytest.mark.parametrize('representation', list(NECKS))
def test_representation_as_a_neck_equals_hrnetv2_representation(representation):
    """``HRNetV2(representation=r)`` == ``HRNetV2('branches')`` + the registered module as a
    neck, with the same weights; the keys differ only by ``head.`` -> the neck's prefix."""
    whole = randomize(HRNetV2(arch=ARCH, representation=representation)).eval()
    trunk = HRNetV2(arch=ARCH, representation='branches').eval()
    neck = hrnet_mm.MODELS.build(dict(type=NECKS[representation], in_channels=WIDTHS)).eval()
    state = whole.state_dict()
    head = {k[5:]: v for k, v in state.items() if k.startswith('head.')}
    rest = {k: v for k, v in state.items() if not k.startswith('head.')}
    assert set(head) == set(neck.state_dict())
    if representation != 'v1':  # V1's last exchange computes only the stride-4 map
        assert set(rest) == set(trunk.state_dict())
    trunk.load_state_dict(rest, strict=representation != 'v1')
    neck.load_state_dict(head, strict=True)
    x = _x()
    with torch.no_grad():
        expected, got = whole(x), neck(trunk(x))
    assert max_abs_diff(expected, got) == 0
    assert neck.feature_info == whole.feature_info


def _detector(config, neck=None, representation=None):
    cfg = Config.fromfile(osp.join(ROOT, 'configs/det', config))
    if neck is not None:
        cfg.model.neck = neck
    if representation is not None:
        cfg.model.backbone.representation = representation
    return build_in_library(cfg.model, 'mmdet')


def test_v2p_neck_in_a_detector_equals_the_v2p_backbone():
    """The issue's config: ``backbone=dict(type='HRNetV2', representation='branches'),
    neck=dict(type='V2pRepresentation', ...)`` gives exactly ``representation='v2p'``."""
    ours = randomize(_detector('demo_faster-rcnn_hrnetv2p-w18-small-v1.py')).eval()
    split = _detector('demo_faster-rcnn_hrnetv2p-w18-small-v1.py', representation='branches',
                      neck=dict(type='V2pRepresentation', in_channels=WIDTHS,
                                out_channels=256, num_outs=5)).eval()
    mapped = _renamed(ours.state_dict(), 'backbone.head.', 'neck.')
    assert set(mapped) == set(split.state_dict())  # the documented mapping, nothing else
    split.load_state_dict(mapped, strict=True)
    x = _x(128, 96)
    with torch.no_grad():
        assert max_abs_diff(ours.extract_feat(x), split.extract_feat(x)) == 0


def test_mmdet_hrfpn_weights_load_into_the_v2p_neck_as_they_are():
    from mmdet.models.necks import HRFPN
    ref = randomize(HRFPN(in_channels=WIDTHS, out_channels=32, num_outs=4)).eval()
    neck = V2pRepresentation(WIDTHS, out_channels=32, num_outs=4).eval()
    neck.load_state_dict(ref.state_dict(), strict=True)
    feats = [torch.randn(1, c, 32 // 2**i, 24 // 2**i) for i, c in enumerate(WIDTHS)]
    with torch.no_grad():
        assert max_abs_diff(ref(feats), neck(feats)) <= 1e-6


def test_v2_and_v2p_on_a_resnet():
    """On a ResNet-18's four stages (64 ... 512 channels): V2p equals mmdet's HRFPN on them, and
    a Faster R-CNN with an R-18 and the V2p neck trains."""
    from mmdet.models.backbones import ResNet
    from mmdet.models.necks import HRFPN
    resnet = randomize(ResNet(depth=18))
    resnet.eval()  # (mmdet's train() returns None: no chaining)
    widths = [64, 128, 256, 512]
    ref = randomize(HRFPN(in_channels=widths, out_channels=64), seed=1).eval()
    v2p = hrnet_mm.MODELS.build(dict(type='V2pRepresentation', in_channels=widths,
                                     out_channels=64)).eval()
    v2p.load_state_dict(ref.state_dict(), strict=True)
    v2 = hrnet_mm.MODELS.build(dict(type='V2Representation', in_channels=widths))
    x = _x(128, 160)
    with torch.no_grad():
        feats = resnet(x)
        assert max_abs_diff(ref(feats), v2p(feats)) <= 1e-6
        (cat, ) = v2(feats)
    assert cat.shape == (2, 960, 32, 40) and v2.feature_info == (FeatureInfo(960, 4), )
    assert torch.equal(cat[:, :64], feats[0])

    from hrnet_mm.bench_det import synthetic_batch
    model = _detector('demo_faster-rcnn_r18_fpn.py',
                      neck=dict(type='V2pRepresentation', in_channels=widths,
                                out_channels=256, num_outs=5))
    model.train()
    batch = synthetic_batch(2, (128, 160))
    for sample in batch['data_samples']:
        sample.gt_instances.labels %= 3  # the demo's classes
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.neck.reduction_conv.conv.weight.grad.abs().sum() > 0


def test_hrmodule_from_a_config_equals_the_module_inside_hrnetv2():
    model = randomize(HRNetV2(arch=ARCH)).eval()
    inner = model.stage3[0]
    table = get_arch(ARCH)['stage3']
    built = hrnet_mm.MODELS.build(dict(
        type='HRModule', block=table['block'], num_blocks=list(table['num_blocks']),
        in_channels=[16, 32, 64], num_channels=list(table['num_channels']))).eval()
    built.load_state_dict(inner.state_dict(), strict=True)
    feats = [torch.randn(1, c, 16 // 2**i, 12 // 2**i) for i, c in enumerate([16, 32, 64])]
    with torch.no_grad():
        assert max_abs_diff(inner(feats), built(feats)) == 0
    assert built.feature_info == (FeatureInfo(16, 4), FeatureInfo(32, 8), FeatureInfo(64, 16))


@pytest.mark.parametrize('kwargs, pattern', [
    (dict(block='basic'), r"block='basic' is not known; allowed: \['BASIC', 'BOTTLENECK'\]"),
    (dict(num_blocks=[1]), r'one entry per branch in each of num_blocks=\[1\], '
     r'in_channels=\[16, 32\]'),
    (dict(num_outputs=3), r'num_outputs=3: must be an int from 1 to the number of branches'),
    (dict(in_channels=[16, 0]), r'in_channels=\[16, 0\]: must be a non-empty list of '
     r'positive ints'),
    (dict(upsample_mode='area'), r"upsample_mode='area' is not known"),
])
def test_hrmodule_checks_its_arguments(kwargs, pattern):
    args = dict(block='BASIC', num_blocks=[1, 1], in_channels=[16, 32], num_channels=[16, 32])
    with pytest.raises(ValueError, match=pattern):
        HRModule(**{**args, **kwargs})


@pytest.mark.parametrize('cfg, pattern', [
    (dict(type='V2pRepresentation', in_channels=[16, 32], pooling_type='avg'),
     r"pooling_type='avg' is not known; allowed: \['AVG', 'MAX'\]"),
    (dict(type='V2pRepresentation', in_channels=[16, 32], in_strides=[4]),
     r'in_strides=\[4\]: one per input map'),
    (dict(type='ClsRepresentation', in_channels=[16, 32]),
     r"representation='cls' needs 4 maps, got in_channels=\[16, 32\]"),
    (dict(type='V2Representation', in_channels=16),
     r'in_channels=16: must be a non-empty list of positive ints'),
])
def test_each_representation_checks_its_arguments(cfg, pattern):
    with pytest.raises(ValueError, match=pattern):
        hrnet_mm.MODELS.build(cfg)


def test_a_neck_fed_the_wrong_maps_says_so():
    neck = REPRESENTATIONS['v2']([16, 32, 64, 128])
    with pytest.raises(ValueError, match=r'V2Representation got 3 maps: expected a list of 4 '
                       r'maps \(in_channels=\[16, 32, 64, 128\]\)'):
        neck([torch.rand(1, 16, 8, 8)] * 3)
    with pytest.raises(ValueError, match=r'got a Tensor: expected a list of 4 maps'):
        neck(torch.rand(1, 16, 8, 8))


def test_cls_without_classifier_gives_pooled_features():
    """``num_classes=0``: the 2048-d features mmpretrain's LinearClsHead classifies."""
    full = randomize(ClsRepresentation(WIDTHS, num_classes=10)).eval()
    bare = ClsRepresentation(WIDTHS, num_classes=0).eval()
    bare.load_state_dict({k: v for k, v in full.state_dict().items()
                          if not k.startswith('classifier.')}, strict=True)
    feats = [torch.randn(2, c, 16 // 2**i, 16 // 2**i) for i, c in enumerate(WIDTHS)]
    with torch.no_grad():
        (pooled, ), (logits, ) = bare(feats), full(feats)
    assert pooled.shape == (2, 2048)
    assert torch.allclose(full.classifier(pooled), logits, atol=1e-6)


@pytest.mark.parametrize('representation, old', [
    ('v2p', lambda k: k.replace('head.', 'pyramid.', 1)),
    ('cls', lambda k: k[len('head.'):]),
])
def test_hrnet_mm_0_1_checkpoints_keep_loading(tmp_path, representation, old):
    """hrnet_mm 0.1 kept V2+p under ``pyramid.`` and the classification layers at the top:
    its files load strictly through ``load_state_dict``, ``Pretrained`` and the resume check."""
    src = randomize(HRNetV2(arch=ARCH, representation=representation)).eval()
    legacy = {old(k) if k.startswith('head.') else k: v for k, v in src.state_dict().items()}
    assert not any(k.startswith('head.') for k in legacy)
    x = _x()
    with torch.no_grad():
        expected = src(x)

    direct = HRNetV2(arch=ARCH, representation=representation)
    direct.load_state_dict(legacy, strict=True)
    path = tmp_path / 'old.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in legacy.items()}}, path)
    pretrained = HRNetV2(arch=ARCH, representation=representation)
    report = load_pretrained(pretrained, str(path), strict=True)
    assert report.missing == [] and report.unexpected == []
    check_fit(pretrained, legacy, 'old.pth')  # raises if a key did not fit
    with torch.no_grad():
        for model in (direct, pretrained):
            assert max_abs_diff(expected, model.eval()(x)) == 0
