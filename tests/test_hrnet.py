"""HRNetV2 behaviour: shapes, declared outputs, parameter counts, training state, errors."""
import copy

import pytest
import torch
import torch.nn as nn
from helpers import fcn_head, heatmap_head, max_abs_diff, randomize
from torch.nn.modules.batchnorm import _BatchNorm

from hrnet_mm import HRNetV2
from hrnet_mm.models import FeatureInfo, get_arch
from hrnet_mm.models.blocks import BasicBlock, Bottleneck

ARCHS = ['w18_small_v1', 'w18_small_v2', 'w18', 'w30', 'w32', 'w40', 'w44', 'w48', 'w64']
REPRESENTATIONS = ['branches', 'v1', 'v2', 'v2p']  # the spatial ones
ALL_REPRESENTATIONS = REPRESENTATIONS + ['cls']


def _widths(arch):
    return get_arch(arch)['stage4']['num_channels']


def _expected_shapes(arch, representation, n, h, w, out_channels=256, num_outs=5):
    """What each representation must return, from the paper's definitions."""
    c = _widths(arch)
    sizes = [(h, w)]  # stride-4 size after two stride-2 convs (k3, p1): ceil halving twice
    for _ in range(2):
        sizes[0] = ((sizes[0][0] + 1) // 2, (sizes[0][1] + 1) // 2)
    for _ in range(3):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    if representation == 'branches':
        return [(n, ci, *s) for ci, s in zip(c, sizes)]
    if representation == 'v1':
        return [(n, c[0], *sizes[0])]
    if representation == 'v2':
        return [(n, sum(c), *sizes[0])]
    h4, w4 = sizes[0]
    return [(n, out_channels, h4 // 2**i, w4 // 2**i) for i in range(num_outs)]


@pytest.mark.parametrize('representation', REPRESENTATIONS)
@pytest.mark.parametrize('arch', ARCHS)
def test_shapes_and_declared_outputs(arch, representation):
    model = HRNetV2(arch=arch, representation=representation).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == _expected_shapes(arch, representation, 1, 64, 96)
    # The declaration matches what comes out: channels, and stride relative to the input.
    assert model.out_channels == tuple(o.shape[1] for o in outs)
    assert model.out_strides == tuple(64 // o.shape[2] for o in outs)
    assert [(f.channels, f.stride) for f in model.feature_info] == list(
        zip(model.out_channels, model.out_strides))


@pytest.mark.parametrize('representation', REPRESENTATIONS)
@pytest.mark.parametrize('size', [(250, 330), (97, 65), (67, 99)])
def test_odd_input_sizes(representation, size):
    model = HRNetV2(arch='w18_small_v1', representation=representation).eval()
    with torch.no_grad():
        outs = model(torch.rand(2, 3, *size))
    assert [tuple(o.shape) for o in outs] == _expected_shapes('w18_small_v1', representation,
                                                              2, *size)


def test_bilinear_fusion_odd_size_and_differs_from_nearest():
    torch.manual_seed(0)
    nearest = randomize(HRNetV2(arch='w18_small_v1')).eval()
    bilinear = HRNetV2(arch='w18_small_v1', upsample_mode='bilinear').eval()
    bilinear.load_state_dict(nearest.state_dict())
    x = torch.rand(1, 3, 250, 330)
    with torch.no_grad():
        a, b = nearest(x), bilinear(x)
    assert [o.shape for o in a] == [o.shape for o in b]
    assert max_abs_diff(a, b) > 1e-3  # the mode really is used


def test_v2p_options():
    model = HRNetV2(arch='w18_small_v1', representation=dict(
        type='v2p', out_channels=32, num_outs=3, pooling_type='MAX')).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 16, 16), (1, 32, 8, 8), (1, 32, 4, 4)]
    assert model.out_strides == (4, 8, 16)
    assert model.head.pool is torch.nn.functional.max_pool2d


def test_v2p_input_too_small_for_the_pyramid_says_so():
    model = HRNetV2(arch='w18_small_v1', representation='v2p').eval()
    with pytest.raises(ValueError, match=r'the V2 map is \(9, 9\), too small for num_outs=5 '
                       r'pyramid levels \(pooling by 16\): feed an input of at least 64x64'):
        model(torch.rand(1, 3, 33, 35))
    small = HRNetV2(arch='w18_small_v1', representation=dict(type='v2p', num_outs=3)).eval()
    assert [o.shape[-1] for o in small(torch.rand(1, 3, 33, 35))] == [9, 4, 2]


def test_custom_table_changes_branch_widths():
    table = get_arch('w18_small_v1')
    table['stage3']['num_channels'] = [24, 40, 64]
    table['stage4'].update(num_channels=[24, 48, 64, 128], block='BOTTLENECK')
    model = HRNetV2(extra=table).eval()
    # Existing branches whose width changes get their own transition conv.
    assert isinstance(model.transition2[0], nn.Sequential)
    assert isinstance(model.transition2[1], nn.Sequential)
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert model.out_channels == (96, 192, 256, 512)  # Bottleneck: 4x the table's widths
    assert [o.shape[1] for o in outs] == [96, 192, 256, 512]


def _params(model):
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize('arch, expected', [('w18', 9.56), ('w32', 29.31), ('w40', 45.52),
                                            ('w48', 65.33)])
def test_backbone_parameter_counts(arch, expected):
    assert _params(HRNetV2(arch=arch)) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize('arch, expected', [('w32', 28.54), ('w48', 63.60)])
def test_pose_parameter_counts(arch, expected):
    """SimpleBaseline-style top-down pose net: V1 + mmpose's 1x1 heatmap head (17 joints)."""
    backbone = HRNetV2(arch=arch, representation='v1')
    head = heatmap_head(backbone.out_channels[0], out_channels=17,
                       deconv_out_channels=None)
    assert _params(backbone) + _params(head) == pytest.approx(expected, abs=0.01)


def test_segmentation_parameter_count():
    """HRNetV2-W48 + mmseg's FCN head as in the paper: 1x1 conv 720->720, BN, ReLU, 1x1->19."""
    backbone = HRNetV2(arch='w48', representation='v2')
    head = fcn_head(720, 720, num_classes=19)
    assert _params(backbone) + _params(head) == pytest.approx(65.86, abs=0.01)


@pytest.mark.parametrize('arch', ['w18_small_v1', 'w32'])
def test_cls_gives_logits(arch):
    model = HRNetV2(arch=arch, representation=dict(type='cls', num_classes=10)).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, 3, 64, 80))
    assert len(logits) == 1 and logits[0].shape == (2, 10)
    assert model.feature_info == (FeatureInfo(10, None), )
    assert HRNetV2(arch=arch, representation='cls').out_channels == (1000, )
    # the official head: 128/256/512/1024-wide Bottlenecks, 2048 features
    assert [m[0].conv3.out_channels for m in model.head.incre_modules] == [128, 256, 512, 1024]
    assert model.head.classifier.in_features == 2048


def test_cls_needs_four_branches():
    table = get_arch('w18_small_v1')
    table['stage4'].update(num_branches=3, num_blocks=[2, 2, 2], num_channels=[16, 32, 64])
    assert HRNetV2(extra=table).out_channels == (16, 32, 64)
    with pytest.raises(ValueError, match=r"representation='cls' needs 4 maps, got "
                       r'in_channels=\[16, 32, 64\]'):
        HRNetV2(extra=table, representation='cls')


def test_cls_parameter_count_is_the_official_classifier():
    """HRNet-W18-C has 21.3M parameters (HRNet-Image-Classification's table)."""
    assert _params(HRNetV2(arch='w18', representation='cls')) == pytest.approx(21.3, abs=0.05)


@pytest.mark.parametrize('representation', ALL_REPRESENTATIONS)
def test_every_parameter_is_used(representation):
    """V1's last module computes only the stride-4 output: no parameter is left without grad."""
    model = HRNetV2(arch='w18_small_v1', representation=representation)
    sum(o.mean() for o in model(torch.rand(2, 3, 64, 64))).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_v1_last_module_fuses_into_one_output():
    model = HRNetV2(arch='w32', representation='v1')
    assert len(model.stage4[-1].fuse_layers) == 1
    assert len(model.stage4[0].fuse_layers) == 4
    assert not any(k.startswith('stage4.2.fuse_layers.1') for k in model.state_dict())


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 3, 4])
def test_frozen_stages_freeze_weights_and_bn_statistics(frozen_stages):
    model = HRNetV2(arch='w18_small_v1', frozen_stages=frozen_stages)
    frozen_prefixes = (['conv1', 'bn1', 'conv2', 'bn2'] if frozen_stages >= 0 else [])
    frozen_prefixes += ['layer1', 'transition1'][:2 * (frozen_stages >= 1)]
    for k in range(2, frozen_stages + 1):
        frozen_prefixes += [f'stage{k}'] + ([f'transition{k}'] if k < 4 else [])
    is_frozen = lambda name: name.split('.')[0] in frozen_prefixes  # noqa: E731

    model.train()
    before = copy.deepcopy(model.state_dict())
    model(torch.rand(2, 3, 64, 64))
    after = model.state_dict()
    for name, p in model.named_parameters():
        assert p.requires_grad == (not is_frozen(name)), name
    for name, buf in after.items():
        if name.endswith('running_mean'):
            changed = not torch.equal(before[name], buf)
            assert changed == (not is_frozen(name)), name
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm):
            assert m.training == (not is_frozen(name)), name


def test_norm_eval_keeps_bn_in_eval_and_statistics_fixed():
    model = HRNetV2(arch='w18_small_v1', norm_eval=True)
    assert model.train() is model
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    before = copy.deepcopy(model.state_dict())
    model(torch.rand(2, 3, 64, 64))
    for name, buf in model.state_dict().items():
        if 'running' in name:
            assert torch.equal(before[name], buf), name
    # ... while the parameters still train
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize('representation', ['branches', 'v2p'])
def test_with_cp_gives_same_outputs_and_gradients(representation):
    plain = randomize(HRNetV2(arch='w18_small_v1', representation=representation))
    ckpt = HRNetV2(arch='w18_small_v1', representation=representation, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(2, 3, 64, 64)
    outs = []
    for model in (plain, ckpt):
        model.train()
        y = model(x)
        sum((o * o).mean() for o in y).backward()
        outs.append(y)
    assert max_abs_diff(outs[0], outs[1]) <= 1e-5
    grads = [[p.grad for p in m.parameters()] for m in (plain, ckpt)]
    assert max_abs_diff(*grads) <= 1e-5
    # checkpointing is really on: the blocks hold the flag
    assert all(b.with_cp for b in ckpt.modules() if isinstance(b, (BasicBlock, Bottleneck)))


def test_zero_init_residual_zeroes_last_norm_so_blocks_start_as_identity():
    model = HRNetV2(arch='w18_small_v1', zero_init_residual=True)
    model.init_weights()
    blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    assert len(blocks) == 1 + 2 * 2 + 3 * 2 + 4 * 2  # layer1, then 2 blocks per branch
    for b in blocks:
        assert torch.count_nonzero(b.last_norm.weight) == 0
        assert torch.count_nonzero(b.last_norm.bias) == 0
        # the other norms keep the default init (weight 1)
        assert torch.all(getattr(b, b.norm1_name).weight == 1)
    block = model.stage2[0].branches[0][1]  # a BasicBlock without projection
    x = torch.randn(1, 16, 8, 8)
    model.eval()
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))


def test_blocks_have_the_public_norm_attributes_of_the_libraries_blocks():
    """Code written against mmdet/mmpose HRNet reads block.norm1 ... block.norm3 (mmpose's own
    backbone test checks zero_init_residual through Bottleneck.norm3)."""
    from mmpose.models.backbones import HRNet
    from mmpose.models.backbones.resnet import BasicBlock as PoseBasic
    from mmpose.models.backbones.resnet import Bottleneck as PoseBottleneck
    table = get_arch('w18_small_v1')
    ref = randomize(HRNet(extra=table))
    ours = HRNetV2(arch='w18_small_v1')
    ours.load_state_dict(ref.state_dict(), strict=False)
    pairs = list(zip([m for m in ours.modules() if isinstance(m, (BasicBlock, Bottleneck))],
                     [m for m in ref.modules() if isinstance(m, (PoseBasic, PoseBottleneck))]))
    assert len(pairs) == 1 + 2 * 2 + 3 * 2 + 4 * 2
    for block, theirs in pairs:
        names = ['norm1', 'norm2'] + (['norm3'] if isinstance(theirs, PoseBottleneck) else [])
        assert not hasattr(block, 'norm3') or 'norm3' in names
        for name in names:
            assert getattr(block, name) is getattr(block, getattr(block, f'{name}_name'))
            assert torch.equal(getattr(block, name).weight, getattr(theirs, name).weight)
    # as mmpose's test reads it
    model = HRNetV2(arch='w18_small_v1', zero_init_residual=True)
    model.init_weights()
    for m in model.modules():
        if isinstance(m, Bottleneck):
            assert torch.count_nonzero(m.norm3.weight) == 0 and m.norm3 is m.bn3
        elif isinstance(m, BasicBlock):
            assert torch.count_nonzero(m.norm2.weight) == 0 and m.norm1.weight.eq(1).all()
    gn = HRNetV2(arch='w18_small_v1', norm_cfg=dict(type='GN', num_groups=2))
    assert gn.layer1[0].norm3 is gn.layer1[0].gn3


def test_without_zero_init_residual_last_norm_is_one():
    model = HRNetV2(arch='w18_small_v1')
    model.init_weights()
    assert all(torch.all(b.last_norm.weight == 1) for b in model.modules()
               if isinstance(b, (BasicBlock, Bottleneck)))


def test_zero_init_residual_does_not_touch_pretrained_weights(tmp_path):
    src = randomize(HRNetV2(arch='w18_small_v1'))
    path = tmp_path / 'w.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in src.state_dict().items()}}, path)
    model = HRNetV2(arch='w18_small_v1', zero_init_residual=True,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize('norm_cfg, norm_type', [
    (dict(type='SyncBN'), nn.SyncBatchNorm),
    (dict(type='GN', num_groups=16), nn.GroupNorm),
    (dict(type='BN', requires_grad=False), nn.BatchNorm2d),
])
def test_norm_layers(norm_cfg, norm_type):
    model = HRNetV2(arch='w32', norm_cfg=norm_cfg)
    norms = [m for m in model.modules() if isinstance(m, (_BatchNorm, nn.GroupNorm))]
    assert norms and all(isinstance(m, norm_type) for m in norms)
    if norm_type is nn.GroupNorm:
        assert 'gn1.weight' in model.state_dict() and model.gn1.num_groups == 16
        with torch.no_grad():
            assert model.eval()(torch.rand(1, 3, 64, 64))[0].shape == (1, 32, 16, 16)
    if norm_cfg.get('requires_grad') is False:
        assert not any(p.requires_grad for m in norms for p in m.parameters())


def test_conv_cfg_is_used():
    """Every conv, pyramid included, is built from conv_cfg (here weight-standardised convs)."""
    from mmcv.cnn.bricks.conv_ws import ConvWS2d
    model = HRNetV2(arch='w18_small_v1', representation='v2p', conv_cfg=dict(type='ConvWS'))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is ConvWS2d for m in convs)
    plain = HRNetV2(arch='w18_small_v1', representation='v2p')
    plain.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model.eval()(x), plain.eval()(x)) > 1e-3  # the conv type acts


def test_in_channels():
    model = HRNetV2(arch='w18_small_v1', in_channels=1).eval()
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model(torch.rand(1, 1, 32, 32))[0].shape == (1, 16, 8, 8)


def test_pretrained_with_prefix_loads(tmp_path):
    src = randomize(HRNetV2(arch='w18_small_v1', representation='v2p'))
    state = {f'backbone.{k}': v for k, v in src.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(1)  # other prefixes are not the backbone's business
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': state, 'meta': {}}, path)
    model = HRNetV2(arch='w18_small_v1', representation='v2p',
                    init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_pretrained_argument_is_an_init_cfg():
    model = HRNetV2(arch='w18_small_v1', pretrained='ckpt.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='ckpt.pth')
    with pytest.raises(ValueError, match=r"pretrained='ckpt.pth' and init_cfg=.*give one"):
        HRNetV2(arch='w18_small_v1', pretrained='ckpt.pth',
                init_cfg=dict(type='Pretrained', checkpoint='other.pth'))


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize('kwargs, pattern', [
    (dict(arch='w33'), r"arch='w33' is not known; allowed: \["),
    (dict(representation='v3'),
     r"representation='v3' is not known; allowed: \['branches', 'v1', 'v2', 'v2p', 'cls'\]"),
    (dict(frozen_stages=5), r'frozen_stages=5: must be an int from -1 .* to 4'),
    (dict(frozen_stages=-2), r'frozen_stages=-2: must be an int'),
    (dict(frozen_stages=1.0), r'frozen_stages=1.0: must be an int'),
    (dict(frozen_stages=True), r'frozen_stages=True: must be an int'),
    (dict(in_channels=True), r'in_channels=True: must be a positive int'),
    (dict(arch=['w32']), r"arch=\['w32'\]: must be a name \(a str\)"),
    (dict(norm_cfg=dict(type='FooNorm')),
     r"norm_cfg type 'FooNorm' is not a known norm layer; known: \['BN', .*'GN'.*'SyncBN'\]"),
    (dict(norm_cfg=dict(type='GN')), r"GN needs num_groups"),
    (dict(norm_cfg='BN'), r"norm_cfg='BN': must be a dict with a 'type'"),
    (dict(representation=dict(type='v2p', num_outs=True)),
     r'num_outs=True: must be a positive int'),
    (dict(upsample_mode='bicubic'),
     r"upsample_mode='bicubic' is not known; allowed: \['nearest', 'bilinear'\]"),
    (dict(in_channels=0), r'in_channels=0: must be a positive int'),
    (dict(representation='v2', out_channels=128),
     r"out_channels=128 only applies to representation='v2p', not 'v2'"),
    (dict(representation=dict(type='v2p', pooling_type='MIN')),
     r"pooling_type='MIN' is not known; allowed: \['AVG', 'MAX'\]"),
    (dict(representation=dict(type='v2p', num_outs=0)), r'num_outs=0: must be a positive int'),
    (dict(representation='v1', num_classes=10),
     r"num_classes=10 only applies to representation='cls', not 'v1'"),
    (dict(representation=dict(type='cls', num_classes=-1)),
     r'num_classes=-1: must be a positive int, or 0 for the pooled features'),
    (dict(representation=dict(type='v1', num_classes=10)),
     r"representation='v1' takes no num_classes=; its arguments: \['init_cfg'\]"),
    (dict(representation=dict(type='v2p', with_cp=True)),
     r"representation='v2p': with_cp= is set by HRNetV2 for all its parts; give it to "
     r'HRNetV2'),
    (dict(representation='v3'), r"representation='v3' is not known; allowed: \['branches', "),
    (dict(representation=dict(type='v2p', out_channels=128), out_channels=128),
     r"out_channels= is an argument of the representation: write "
     r"representation=dict\(type='v2p', out_channels=128\)"),
    (dict(extra={'stage1': {}}), r"extra: missing \['stage2', 'stage3', 'stage4'\]"),
])
def test_bad_config_raises_at_build(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        HRNetV2(**{'arch': 'w18_small_v1', **kwargs})


@pytest.mark.parametrize('change, pattern', [
    (lambda t: t['stage2'].update(foo=1), r"extra.stage2: unknown keys \['foo'\]; allowed: "),
    (lambda t: t['stage4'].update(num_branches=5, num_blocks=[1] * 5,
                                  num_channels=[16, 32, 64, 128, 256]),
     r'extra.stage4.num_branches=5: stage4 has at most 4 branches'),
    (lambda t: t['stage3'].update(num_modules=True), r'extra.stage3.num_modules=True: must be a '),
])
def test_bad_stage_table_raises_at_build(change, pattern):
    table = get_arch('w18_small_v1')
    change(table)
    with pytest.raises(ValueError, match=pattern):
        HRNetV2(extra=table)


@pytest.mark.parametrize('x, pattern', [
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
     r'input of dtype torch.uint8 into weights of torch.float32: convert the input'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.int64), r'input of dtype torch.int64'),
    (torch.zeros(1, 3, 64, 64, dtype=torch.float16),
     r'input of dtype torch.float16 .* or run under torch.autocast'),
    ([torch.zeros(3, 64, 64)], r'input is a list: expected a float tensor \(N, 3, H, W\)'),
])
def test_wrong_input_type_says_what_to_pass(x, pattern):
    model = HRNetV2(arch='w18_small_v1').eval()
    with pytest.raises(TypeError, match=pattern):
        model(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):  # mixed precision inputs are fine there
        assert model(torch.rand(1, 3, 64, 64).bfloat16())[0].dtype == torch.bfloat16


def test_multiscale_output_false_needs_v1():
    table = get_arch('w18_small_v1')
    table['stage4']['multiscale_output'] = False
    with pytest.raises(ValueError, match=r"multiscale_output=False .* use representation='v1'"):
        HRNetV2(extra=table)
    assert HRNetV2(extra=table, representation='v1').out_channels == (16, )


@pytest.mark.parametrize('shape', [(1, 1, 64, 64), (1, 4, 64, 64), (3, 64, 64)])
def test_wrong_input_raises(shape):
    model = HRNetV2(arch='w18_small_v1').eval()
    with pytest.raises(ValueError, match=r'input of shape .*: expected \(N, in_channels=3, H, W\)'):
        model(torch.rand(*shape))


# ---------------------------------------------------------------------- compile / layout
@pytest.mark.parametrize('representation', ALL_REPRESENTATIONS)
def test_compiles_fullgraph(representation):
    """Dynamo traces the whole model as one graph (no graph breaks) for every representation."""
    torch._dynamo.reset()
    model = randomize(HRNetV2(arch='w18_small_v1', representation=representation)).eval()
    compiled = torch.compile(model, fullgraph=True, backend='eager')
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model(x), compiled(x)) <= 1e-5


@pytest.mark.parametrize('representation', ALL_REPRESENTATIONS)
def test_channels_last(representation):
    model = randomize(HRNetV2(arch='w18_small_v1', representation=representation)).eval()
    x = torch.rand(2, 3, 61, 83)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    assert max_abs_diff(expected, got) <= 1e-4
    if got[0].dim() == 4:
        assert got[0].is_contiguous(memory_format=torch.channels_last)
