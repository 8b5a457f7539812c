"""With the same weights, HRNetV2 computes what the mmdet / mmseg / mmpose HRNets compute.

Each reference model gets random weights (BN statistics included); its state_dict loads
strictly into HRNetV2, and the outputs (eval, fp32) agree within 1e-5.
"""
import pytest
import torch
from helpers import max_abs_diff, randomize

from hrnet_mm import HRNetV2
from hrnet_mm.models import get_arch

ATOL = 1e-5
ARCHS = ['w18_small_v1', 'w18']


def _reference(model):
    # The reference train()/eval() of mmdet and mmseg return None, so no chaining.
    randomize(model)
    model.eval()
    return model


def _load_strict(ours: HRNetV2, state_dict: dict) -> HRNetV2:
    result = ours.load_state_dict(state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return ours.eval()


def _input(h=128, w=96, seed=1):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('arch', ARCHS)
def test_branches_equal_mmdet_hrnet(arch):
    from mmdet.models.backbones import HRNet
    ref = _reference(HRNet(extra=get_arch(arch)))
    ours = _load_strict(HRNetV2(arch=arch, representation='branches'), ref.state_dict())
    x = _input()
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert len(got) == 4
    assert max_abs_diff(expected, got) <= ATOL


@pytest.mark.parametrize('arch', ARCHS)
def test_v2p_equals_mmdet_hrnet_hrfpn(arch):
    from mmdet.models.backbones import HRNet
    from mmdet.models.necks import HRFPN
    table = get_arch(arch)
    ref = _reference(HRNet(extra=table))
    neck = _reference(HRFPN(in_channels=table['stage4']['num_channels'], out_channels=64))
    state = dict(ref.state_dict())
    state.update({f'head.{k}': v for k, v in neck.state_dict().items()})
    ours = _load_strict(
        HRNetV2(arch=arch, representation=dict(type='v2p', out_channels=64)), state)
    x = _input()
    with torch.no_grad():
        expected, got = neck(ref(x)), ours(x)
    assert len(got) == 5
    assert max_abs_diff(expected, got) <= ATOL


def test_v2p_with_strided_pyramid_equals_hrfpn_stride_2():
    """The FCOS variant: HRFPN(stride=2), levels at strides 8 ... 128."""
    from mmdet.models.backbones import HRNet
    from mmdet.models.necks import HRFPN
    ref = _reference(HRNet(extra=get_arch('w18_small_v1')))
    neck = _reference(HRFPN(in_channels=[16, 32, 64, 128], out_channels=32, stride=2))
    state = dict(ref.state_dict())
    state.update({f'head.{k}': v for k, v in neck.state_dict().items()})
    ours = _load_strict(HRNetV2(arch='w18_small_v1', representation=dict(
        type='v2p', out_channels=32, pyramid_stride=2)), state)
    x = _input(128, 128)
    with torch.no_grad():
        expected, got = neck(ref(x)), ours(x)
    assert max_abs_diff(expected, got) <= ATOL
    assert ours.out_strides == (8, 16, 32, 64, 128)
    assert [128 // o.shape[-1] for o in got[:3]] == [8, 16, 32]


@pytest.mark.parametrize('arch', ARCHS)
def test_v2_equals_mmseg_hrnet_resize_concat(arch):
    from mmseg.models.backbones import HRNet
    from mmseg.models.utils import resize
    ref = _reference(HRNet(extra=get_arch(arch)))
    ours = _load_strict(HRNetV2(arch=arch, representation='v2', upsample_mode='bilinear'),
                        ref.state_dict())
    x = _input()
    with torch.no_grad():
        feats = ref(x)
        # mmseg's BaseDecodeHead._transform_inputs with input_transform='resize_concat'
        expected = torch.cat([resize(f, size=feats[0].shape[2:], mode='bilinear',
                                     align_corners=False) for f in feats], dim=1)
        got = ours(x)
    assert len(got) == 1
    assert max_abs_diff([expected], got) <= ATOL


@pytest.mark.parametrize('arch', ARCHS)
def test_v1_equals_mmpose_hrnet(arch):
    from mmpose.models.backbones import HRNet
    table = get_arch(arch)
    table['stage4']['multiscale_output'] = False  # mmpose's default, spelled out
    ref = _reference(HRNet(extra=table))
    ours = _load_strict(HRNetV2(arch=arch, representation='v1'), ref.state_dict())
    x = _input(128, 96)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert len(expected) == len(got) == 1
    assert max_abs_diff(expected, got) <= ATOL



MMPOSE_INIT = [dict(type='Normal', std=0.001, layer=['Conv2d']),
               dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]


def test_mmpose_initialisation_as_the_readme_gives_it():
    """HRNetV2 initialises convs with Kaiming, mmpose's HRNet with Normal(0, 0.001): the README
    names the init_cfg that gives mmpose's start, and with it both start identical."""
    from mmpose.models.backbones import HRNet
    table = get_arch('w18_small_v1')
    table['stage4']['multiscale_output'] = False
    torch.manual_seed(3)
    ref = HRNet(extra=table)
    ref.init_weights()
    torch.manual_seed(3)
    ours = HRNetV2(arch='w18_small_v1', representation='v1', init_cfg=MMPOSE_INIT)
    ours.init_weights()
    theirs = ref.state_dict()
    assert ours.state_dict().keys() == theirs.keys()
    assert all(torch.equal(v, theirs[k]) for k, v in ours.state_dict().items())
    # the default differs, by orders of magnitude in the convolutions' scale
    torch.manual_seed(3)
    default = HRNetV2(arch='w18_small_v1', representation='v1')
    default.init_weights()
    assert default.conv1.weight.std() > 50 * ref.conv1.weight.std()


@pytest.mark.parametrize('library', ['mmdet', 'mmpose'])
def test_fusion_sums_keep_the_stock_dtypes_when_a_resize_returns_float32(library, monkeypatch):
    """Under CUDA autocast a resized map comes back float32 (torch 2.11 on an H100 and an
    H200), so the stock fusion adds a float32 map into a bfloat16 one in place. The first GPU
    runs found hrnet_mm's stride-4 output float32 there (a new sum promotes) where the stock's
    is bfloat16; here that resize is reproduced on the CPU for both models, in bfloat16."""
    from mmdet.models.backbones import HRNet as MMDetHRNet
    from mmpose.models.backbones import HRNet as MMPoseHRNet
    interpolate = torch.nn.functional.interpolate
    monkeypatch.setattr(torch.nn.functional, 'interpolate',
                        lambda *a, **k: interpolate(*a, **k).float())
    table = get_arch('w18_small_v1')
    if library == 'mmdet':
        ref, representation = MMDetHRNet(extra=table), 'branches'
    else:
        table['stage4']['multiscale_output'] = False
        ref, representation = MMPoseHRNet(extra=table), 'v1'
    ref = _reference(ref).to(torch.bfloat16)
    ours = _load_strict(HRNetV2(arch='w18_small_v1', representation=representation),
                        ref.state_dict()).to(torch.bfloat16)
    x = _input().to(torch.bfloat16)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert [o.dtype for o in got] == [o.dtype for o in expected] == [torch.bfloat16] * len(got)
    assert max_abs_diff(expected, got) == 0  # the same sums, rounded alike
