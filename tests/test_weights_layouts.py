"""Every published layout: build the source model from random weights, save it, convert it,
load it strictly into hrnet_mm, and get the same outputs (max abs difference <= 1e-5)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from helpers import fcn_head, heatmap_head, max_abs_diff, randomize

from hrnet_mm import HRNetV2
from hrnet_mm.models import get_arch
from hrnet_mm.weights import convert_state_dict, detect_layout, load_checkpoint_file

ATOL = 1e-5
ROOT = Path(__file__).resolve().parents[1]


def _eval(*modules):
    for m in modules:
        randomize(m, seed=len(list(m.parameters())))
        m.eval()  # the mmdet/mmseg train() returns None: no chaining


def _sub(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _convert_file(tmp_path, source_state, **check):
    """Save like the publishers do, convert with the command-line tool, read the result."""
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(source_state, src)
    cmd = [sys.executable, str(ROOT / 'tools' / 'convert_weights.py'), str(src), str(dst)]
    for key, value in check.items():
        cmd += [f'--{key}', value]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    converted = load_checkpoint_file(str(dst))
    return converted['state_dict'], converted['meta']['hrnet_mm'], proc.stdout


def _strict(model, state):
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    return model


def _x(h=64, w=64):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize('timm_name, arch', [('hrnet_w18', 'w18'),
                                             ('hrnet_w18_small', 'w18_small_v1'),
                                             ('hrnet_w18_small_v2', 'w18_small_v2')])
def test_official_classification_and_timm(tmp_path, timm_name, arch):
    """timm's hrnet_w* keep the official HRNet-Image-Classification layout."""
    timm = pytest.importorskip('timm')
    ref = timm.create_model(timm_name, pretrained=False)
    _eval(ref)
    state, meta, out = _convert_file(tmp_path, ref.state_dict(), arch=arch,
                                     representation='cls')
    assert meta['converted_from'] == 'official_cls' and meta['unmapped'] == []
    assert "loads strictly into HRNetV2({'arch'" in out
    # the tool's own lines, not the load's mmengine log line on top of them
    assert all(line.startswith(('  ', str(tmp_path))) for line in out.splitlines()), out
    ours = _strict(HRNetV2(arch=arch, representation='cls'), _sub(state, 'backbone.'))
    x = _x()
    with torch.no_grad():
        assert max_abs_diff([ref(x)], ours(x)) <= ATOL


def test_cls_weights_load_whole_through_init_cfg(tmp_path):
    """ImageNet weights as published (no conversion by hand) through init_cfg, strictly."""
    timm = pytest.importorskip('timm')
    ref = timm.create_model('hrnet_w18_small', pretrained=False)
    _eval(ref)
    torch.save(ref.state_dict(), tmp_path / 'imagenet.pth')
    ours = HRNetV2(arch='w18_small_v1', representation='cls', init_cfg=dict(
        type='Pretrained', checkpoint=str(tmp_path / 'imagenet.pth'), strict=True))
    ours.init_weights()
    ours.eval()
    x = _x()
    with torch.no_grad():
        assert max_abs_diff([ref(x)], ours(x)) <= ATOL


def test_official_pose(tmp_path):
    from mmpose.models.backbones import HRNet
    table = get_arch('w18_small_v1')
    table['stage4']['multiscale_output'] = False
    trunk, final_layer = HRNet(extra=table), nn.Conv2d(16, 17, 1)
    _eval(trunk, final_layer)
    # deep-high-resolution-net.pytorch: one module, the trunk at the top level + final_layer
    source = {**trunk.state_dict(), **{f'final_layer.{k}': v
                                       for k, v in final_layer.state_dict().items()}}
    assert detect_layout(source) == 'official_pose'
    state, meta, _ = _convert_file(tmp_path, source, arch='w18_small_v1', representation='v1')
    assert meta['unmapped'] == []
    ours = _strict(HRNetV2(arch='w18_small_v1', representation='v1'), _sub(state, 'backbone.'))
    head = _strict(heatmap_head(16, out_channels=17, deconv_out_channels=None),
                   _sub(state, 'head.'))
    x = _x(128, 96)
    with torch.no_grad():
        expected = final_layer(trunk(x)[0])
        got = head(ours(x))
    assert max_abs_diff([expected], [got]) <= ATOL


def _official_seg_head(channels, num_classes):
    # HRNet-Semantic-Segmentation's last_layer
    return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=True), nn.Conv2d(channels, num_classes, 1))


def _resize_concat(feats):
    size = feats[0].shape[2:]
    return torch.cat([F.interpolate(f, size=size, mode='bilinear', align_corners=False)
                      for f in feats], dim=1)


def test_official_segmentation(tmp_path):
    from mmseg.models.backbones import HRNet
    trunk, last_layer = HRNet(extra=get_arch('w18_small_v1')), _official_seg_head(240, 19)
    _eval(trunk, last_layer)
    # saved from the official FullModel wrapper: everything under model., plus the loss weights
    source = {f'model.{k}': v for k, v in trunk.state_dict().items()}
    source.update({f'model.last_layer.{k}': v for k, v in last_layer.state_dict().items()})
    source['loss.criterion.weight'] = torch.rand(19)
    state, meta, out = _convert_file(tmp_path, source, arch='w18_small_v1', representation='v2')
    assert meta['converted_from'] == 'official_seg'
    assert meta['unmapped'] == ['loss.criterion.weight']
    assert 'could not map 1 keys (left out): loss.criterion.weight' in out
    ours = _strict(HRNetV2(arch='w18_small_v1', representation='v2', upsample_mode='bilinear'),
                   _sub(state, 'backbone.'))
    head = _strict(fcn_head(240, 240), _sub(state, 'decode_head.'))
    x = _x()
    with torch.no_grad():
        expected = last_layer(_resize_concat(trunk(x)))
        got = head(ours(x))
    assert max_abs_diff([expected], [got]) <= ATOL


def test_mmdet_detector(tmp_path):
    from mmdet.models.backbones import HRNet
    from mmdet.models.necks import HRFPN
    trunk, neck = HRNet(extra=get_arch('w18_small_v1')), HRFPN([16, 32, 64, 128], 64)
    _eval(trunk, neck)
    source = {'state_dict': {**{f'backbone.{k}': v for k, v in trunk.state_dict().items()},
                             **{f'neck.{k}': v for k, v in neck.state_dict().items()},
                             'rpn_head.rpn_conv.weight': torch.rand(64, 64, 3, 3)},
              'meta': dict(epoch=12)}
    state, meta, _ = _convert_file(tmp_path, source, arch='w18_small_v1', representation='v2p')
    assert meta['converted_from'] == 'mmdet'
    assert torch.equal(state['rpn_head.rpn_conv.weight'],
                       source['state_dict']['rpn_head.rpn_conv.weight'])
    ours = _strict(HRNetV2(arch='w18_small_v1',
                           representation=dict(type='v2p', out_channels=64)),
                   _sub(state, 'backbone.'))
    x = _x()
    with torch.no_grad():
        assert max_abs_diff(neck(trunk(x)), ours(x)) <= ATOL


def test_mmseg_fcn_hrnet(tmp_path):
    from mmseg.models.backbones import HRNet
    trunk = HRNet(extra=get_arch('w18_small_v1'))
    head = fcn_head([16, 32, 64, 128], 240, in_index=(0, 1, 2, 3),
                     input_transform='resize_concat')
    _eval(trunk, head)
    source = {'state_dict': {**{f'backbone.{k}': v for k, v in trunk.state_dict().items()},
                             **{f'decode_head.{k}': v for k, v in head.state_dict().items()}}}
    state, meta, _ = _convert_file(tmp_path, source)
    assert meta['converted_from'] == 'mmseg'
    ours = _strict(HRNetV2(arch='w18_small_v1', representation='v2', upsample_mode='bilinear'),
                   _sub(state, 'backbone.'))
    our_head = _strict(fcn_head(240, 240), _sub(state, 'decode_head.'))
    x = _x()
    with torch.no_grad():
        assert max_abs_diff([head(trunk(x))], [our_head(ours(x))]) <= ATOL


@pytest.mark.parametrize('head_prefix', ['head.', 'keypoint_head.'])  # mmpose 1.x and 0.x
def test_mmpose_topdown(tmp_path, head_prefix):
    from mmpose.models.backbones import HRNet
    trunk = HRNet(extra=get_arch('w18_small_v1'))
    head = heatmap_head(16, out_channels=17, deconv_out_channels=None)
    _eval(trunk, head)
    source = {'state_dict': {**{f'backbone.{k}': v for k, v in trunk.state_dict().items()},
                             **{f'{head_prefix}{k}': v for k, v in head.state_dict().items()}}}
    state, meta, _ = _convert_file(tmp_path, source, arch='w18_small_v1', representation='v1')
    assert meta['converted_from'] == 'mmpose'
    ours = _strict(HRNetV2(arch='w18_small_v1', representation='v1'), _sub(state, 'backbone.'))
    our_head = _strict(heatmap_head(16, out_channels=17, deconv_out_channels=None),
                       _sub(state, 'head.'))
    x = _x(128, 96)
    with torch.no_grad():
        assert max_abs_diff([head(trunk(x))], [our_head(ours(x))]) <= ATOL


class _MMPretrainHRFuseScales(nn.Module):
    """mmpretrain's HRFuseScales neck + GAP + LinearClsHead, from the installed libraries' parts
    (mmdet ResLayer/Bottleneck and mmcv ConvModule have mmpretrain's parameter names)."""

    def __init__(self, in_channels, num_classes=1000):
        super().__init__()
        from mmcv.cnn import ConvModule
        from mmdet.models.backbones.resnet import Bottleneck
        from mmdet.models.layers import ResLayer
        widths = [128, 256, 512, 1024]
        self.increase_layers = nn.ModuleList(
            ResLayer(Bottleneck, c, w // 4, 1) for c, w in zip(in_channels, widths))
        self.downsample_layers = nn.ModuleList(
            ConvModule(a, b, 3, stride=2, padding=1, norm_cfg=dict(type='BN'), bias=False)
            for a, b in zip(widths[:-1], widths[1:]))
        self.final_layer = ConvModule(1024, 2048, 1, norm_cfg=dict(type='BN'), bias=False)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, feats):
        feat = self.increase_layers[0](feats[0])
        for i, down in enumerate(self.downsample_layers):
            feat = down(feat) + self.increase_layers[i + 1](feats[i + 1])
        return self.fc(self.final_layer(feat).mean(dim=(2, 3)))


def test_mmpretrain_classifier(tmp_path):
    from mmdet.models.backbones import HRNet  # mmpretrain's HRNet has the same names
    trunk, neck_head = HRNet(extra=get_arch('w18_small_v1')), _MMPretrainHRFuseScales(
        [16, 32, 64, 128])
    _eval(trunk, neck_head)
    source = {f'backbone.{k}': v for k, v in trunk.state_dict().items()}
    for k, v in neck_head.state_dict().items():
        source[f'head.{k}' if k.startswith('fc.') else f'neck.0.{k}'] = v
    state, meta, _ = _convert_file(tmp_path, {'state_dict': source}, arch='w18_small_v1',
                                   representation='cls')
    assert meta['converted_from'] == 'mmpretrain' and meta['unmapped'] == []
    ours = _strict(HRNetV2(arch='w18_small_v1', representation='cls'), _sub(state, 'backbone.'))
    x = _x()
    with torch.no_grad():
        assert max_abs_diff([neck_head(trunk(x))], ours(x)) <= ATOL


def test_bare_backbone_and_hrnet_mm_layouts_round_trip():
    from mmdet.models.backbones import HRNet
    trunk = HRNet(extra=get_arch('w18_small_v1'))
    conv = convert_state_dict(trunk.state_dict())
    assert conv.layout == 'backbone'
    again = convert_state_dict({'state_dict': conv.state_dict})
    assert again.layout == 'hrnet_mm' and again.state_dict.keys() == conv.state_dict.keys()
    _strict(HRNetV2(arch='w18_small_v1'), _sub(again.state_dict, 'backbone.'))


def test_unknown_layout_and_forced_layout_errors():
    with pytest.raises(ValueError, match=r"not an HRNet checkpoint: no 'layer1.0.conv1.weight' "
                       r'under any known prefix \(first keys: fc.weight\)'):
        convert_state_dict({'fc.weight': torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"layout='caffe' is not known; allowed: \["):
        convert_state_dict({'fc.weight': torch.zeros(2, 2)}, layout='caffe')


def test_tool_reports_errors_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / 'convert_weights.py'),
                           str(tmp_path / 'absent.pth'), str(tmp_path / 'out.pth')],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f'error: checkpoint not found: {tmp_path / "absent.pth"}'
