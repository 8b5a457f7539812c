"""Channel padding (hrnet_mm.padding): same outputs, same checkpoints, exact zeros in training."""
import copy
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import max_abs_diff, padded_parts, randomize
from torch.nn.modules.batchnorm import _BatchNorm

from hrnet_mm import HRNetV2
from hrnet_mm.bench import format_table, run
from hrnet_mm.fast import fuse_conv_bn, optimize_for_inference
from hrnet_mm.padding import pad_channels, padded_width, unpad_channels

REPRESENTATIONS = ['branches', 'v1', 'v2', 'v2p', 'cls']
ROOT = Path(__file__).resolve().parents[1]


def plain(representation='branches', seed=0, **kwargs):
    # w18_small_v2: widths 18, 36, 72, 144, as W18's
    return randomize(HRNetV2(arch='w18_small_v2', representation=representation, **kwargs),
                     seed)


@pytest.mark.parametrize('representation', REPRESENTATIONS)
def test_padded_model_computes_the_same(representation):
    model = plain(representation).eval()
    padded = pad_channels(copy.deepcopy(model), 8)
    x = torch.rand(2, 3, 61, 83)  # odd size: the fusion resizes to exact sizes
    with torch.no_grad():
        expected, got = model(x), padded(x)
    assert max_abs_diff(expected, got) <= 1e-5
    assert padded.feature_info == model.feature_info and padded.channel_multiple == 8
    convs = {n: m for n, m in padded.named_modules() if isinstance(m, nn.Conv2d)}
    trunk = {n: m for n, m in convs.items() if not n.startswith('head.')}
    assert trunk['conv1'].in_channels == 3
    assert all(m.out_channels % 8 == 0 and (n == 'conv1' or m.in_channels % 8 == 0)
               for n, m in trunk.items())
    assert trunk['stage2.0.branches.0.0.conv1'].weight.shape == (24, 24, 3, 3)
    # the representation reads the real channels and keeps its widths
    head = {n: m for n, m in model.named_modules() if n.startswith('head.')}
    assert all(convs[n].weight.shape == m.weight.shape for n, m in head.items()
               if isinstance(m, nn.Conv2d))


def test_state_dict_keeps_the_standard_layout_and_loads_either_way(tmp_path):
    model = plain('v2p').eval()
    padded = pad_channels(copy.deepcopy(model), 8)
    expected, got = model.state_dict(), padded.state_dict()
    assert list(expected) == list(got)
    for k, v in expected.items():
        assert got[k].shape == v.shape and torch.equal(got[k], v), k
        # a tensor of its own, not a view that would save the padded storage
        assert got[k].untyped_storage().nbytes() == v.numel() * v.element_size(), k
    # a plain checkpoint into a padded model, strictly; a padded one's into a plain model
    other = plain('v2p', seed=1).eval()
    pad_channels(other, 8).load_state_dict(expected, strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model(x), other(x)) <= 1e-5
        assert not padded_parts(other) or all(
            (t == (1 if k.endswith('running_var') else 0)).all()
            for k, t in padded_parts(other).items())
        fresh = plain('v2p', seed=2).eval()
        fresh.load_state_dict(padded.state_dict(), strict=True)
        assert max_abs_diff(model(x), fresh(x)) <= 1e-5
    # mmengine's checkpoint writer and loader (their own state_dict recursion)
    from mmengine.runner import load_checkpoint, save_checkpoint
    save_checkpoint({'state_dict': padded.state_dict()}, str(tmp_path / 'padded.pth'))
    into = pad_channels(plain('v2p', seed=3).eval(), 8)
    load_checkpoint(into, str(tmp_path / 'padded.pth'), strict=True, logger='silent')
    with torch.no_grad():
        assert max_abs_diff(model(x), into(x)) <= 1e-5


def test_published_layouts_load_through_init_cfg(tmp_path):
    """An mmseg-layout checkpoint (``backbone.*``) through ``init_cfg=Pretrained``, then
    padding; and loading into a model padded first."""
    model = plain('v2').eval()
    path = tmp_path / 'mmseg.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()}},
               path)
    loaded = HRNetV2(arch='w18_small_v2', representation='v2',
                     init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    loaded.init_weights()
    pad_channels(loaded.eval(), 8)
    from hrnet_mm.weights import load_pretrained
    first = pad_channels(plain('v2', seed=5).eval(), 8)
    load_pretrained(first, str(path), prefix='backbone.', strict=True)
    # padded from the start, as a config builds it: initialised plain, then padded again
    built = HRNetV2(arch='w18_small_v2', representation='v2', pad_channels=8,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    built.init_weights()
    assert built.channel_multiple == 8 and built.conv2.weight.shape == (64, 64, 3, 3)
    assert built.stage2[0].branches[0][0].conv1.weight.shape == (24, 24, 3, 3)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model(x), loaded(x)) <= 1e-5
        assert max_abs_diff(model(x), first(x)) <= 1e-5
        assert max_abs_diff(model(x), built.eval()(x)) <= 1e-5


@pytest.mark.parametrize('optimizer', ['sgd', 'adamw'])
def test_training_keeps_the_extra_channels_zero_and_trains_the_same(optimizer):
    model = plain('v2').train()
    padded = pad_channels(copy.deepcopy(model), 8)

    def make(m):
        if optimizer == 'sgd':
            return torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
        return torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.05)

    optims = [make(model), make(padded)]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.rand(2, 3, 64, 96, generator=g)
        for m, opt in zip((model, padded), optims):
            opt.zero_grad()
            sum(y.square().mean() for y in m(x)).backward()
            opt.step()
    parts = padded_parts(padded)
    assert len(parts) > 50
    for name, t in parts.items():
        if name.endswith('running_var'):
            continue  # the variance of a zero map: decays towards 0, which still maps 0 to 0
        assert torch.count_nonzero(t) == 0, name
    expected, got = model.state_dict(), padded.state_dict()
    assert max((expected[k].float() - got[k].float()).abs().max().item()
               for k in expected) <= 1e-5
    # and the weights did move
    start = plain('v2').state_dict()
    assert max((expected[k] - start[k]).abs().max().item()
               for k in expected if k.endswith('weight')) > 1e-3
    with torch.no_grad():
        x = torch.rand(1, 3, 64, 64)
        assert max_abs_diff(model.eval()(x), padded.eval()(x)) <= 1e-5


def test_padding_with_the_other_fast_paths():
    model = plain('v2').eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        expected = model(x)
        both = optimize_for_inference(pad_channels(copy.deepcopy(model), 16))
        assert both.stage2[0].branches[0][0].conv1.weight.shape == (32, 32, 3, 3)
        assert max_abs_diff(expected, both(x)) <= 1e-5
        folded_first = pad_channels(fuse_conv_bn(copy.deepcopy(model)), 8)
        assert max_abs_diff(expected, folded_first(x)) <= 1e-5


def test_unpad_gives_back_the_plain_model():
    model = plain('cls').eval()
    padded = pad_channels(copy.deepcopy(model), 8)
    assert unpad_channels(padded) is padded and padded.channel_multiple is None
    assert not padded_parts(padded)
    for (n, a), b in zip(model.named_parameters(), padded.parameters()):
        assert a.shape == b.shape and torch.equal(a, b), n
    assert not any(m._forward_pre_hooks for m in padded.modules())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model(x), padded(x)) == 0
        assert max_abs_diff(model(x), pad_channels(padded, 16)(x)) <= 1e-5  # padded again


def test_inside_a_model_and_the_errors():
    class Segmentor(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.conv = plain('v1'), nn.Conv2d(18, 4, 1)

        def forward(self, x):
            return self.conv(self.backbone(x)[0])

    outer = Segmentor()
    assert pad_channels(outer, 8) is outer and outer.backbone.channel_multiple == 8
    assert outer.conv.weight.shape == (4, 18, 1, 1)  # layers outside HRNetV2 are left alone
    assert outer(torch.rand(1, 3, 64, 64)).shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match=r'^pad_channels: already padded to a multiple of 8; '
                                         r'unpad_channels\(model\) first$'):
        pad_channels(outer, 8)
    with pytest.raises(ValueError, match=r'^pad_channels: no HRNetV2 in this Conv2d$'):
        pad_channels(nn.Conv2d(3, 3, 1))
    for bad in (1, 0, '8', 8.0, None):
        with pytest.raises(ValueError, match=r'^multiple=.*: must be an int >= 2 \(e.g. 8\)$'):
            pad_channels(plain(), bad)
    for bad in (1, 0, '8', True):
        with pytest.raises(ValueError, match=r'^pad_channels=.*: must be an int >= 2 \(e.g. 8\), '
                                             r'or None \(no padding\)$'):
            HRNetV2(arch='w18_small_v2', pad_channels=bad)
    with pytest.raises(ValueError, match=r'^pad_channels: gn1 \(GroupNorm\) cannot be padded'):
        HRNetV2(arch='w18_small_v2', norm_cfg=dict(type='GN', num_groups=2), pad_channels=8)
    gn = HRNetV2(arch='w18_small_v2', norm_cfg=dict(type='GN', num_groups=2))
    shapes = [p.shape for p in gn.parameters()]
    with pytest.raises(ValueError, match=r'^pad_channels: gn1 \(GroupNorm\) cannot be padded; '
                                         r'only ungrouped Conv2d and BatchNorm layers can'):
        pad_channels(gn)
    assert [p.shape for p in gn.parameters()] == shapes  # checked before anything changed
    assert [padded_width(c, 8) for c in (18, 30, 36, 44, 64)] == [24, 32, 40, 48, 64]


def test_batchnorm_extra_channels_normalise_with_unit_variance():
    padded = pad_channels(plain().eval(), 8)
    bn = padded.stage2[0].branches[0][0].norm1
    assert isinstance(bn, _BatchNorm) and bn.num_features == 24
    assert torch.equal(bn.running_var[18:], torch.ones(6))
    assert torch.count_nonzero(bn.weight[18:]) == torch.count_nonzero(bn.bias[18:]) == 0


def test_benchmark_adds_a_padded_row():
    results = run(arch='w18_small_v1', representation='branches', batch=1, size=(64, 64),
                  references=('mmseg', ), fast=('channels_last', ), pad_channels=24,
                  warmup=0, repeats=1, memory=False, progress=lambda msg: None)
    rows = {r['name']: r for r in results['rows']}
    padded = 'hrnet_mm fast [channels_last, pad 24]'
    assert list(rows) == ['mmseg', 'hrnet_mm (mmseg config)', 'hrnet_mm fast [channels_last]',
                          'mmseg fast [channels_last]', padded]
    assert rows[padded]['max_abs_diff'] <= 1e-4
    assert rows[padded]['infer_img_s'] > 0 and rows[padded]['train_img_s'] > 0
    assert results['pad_channels'] == 24
    assert results['stock_pairs'] == {'hrnet_mm fast [channels_last]': 'mmseg fast [channels_last]',
                                      padded: 'mmseg fast [channels_last]'}
    ratio = rows[padded]['infer_img_s'] / rows['mmseg fast [channels_last]']['infer_img_s']
    table = format_table(results)
    assert (f'\n{padded} against mmseg fast [channels_last] (the stock model with the same '
            f'generic tools): infer {ratio:.2f}x') in table
    # and against itself without padding: whether padding pays on this device
    unpadded = rows['hrnet_mm fast [channels_last]']
    effect = [rows[padded][f'{m}_img_s'] / unpadded[f'{m}_img_s'] for m in ('infer', 'train')]
    assert (f'\nChannel padding: {padded} against hrnet_mm fast [channels_last] (the same '
            f'without padding): infer {effect[0]:.2f}x, train {effect[1]:.2f}x\n') in table


def _segmentor(pad=None):
    """The demo segmentor config with W18's widths (w18_small_v2), optionally padded."""
    from mmengine.config import Config

    from hrnet_mm.registry import build_in_library
    cfg = Config.fromfile(str(ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'))
    cfg.model.backbone.update(arch='w18_small_v2', pad_channels=pad)
    cfg.model.decode_head.update(in_channels=270, channels=270)
    torch.manual_seed(0)
    model = build_in_library(cfg.model, 'mmseg')
    model.init_weights()
    return model


def test_config_switch_initialises_and_trains_as_the_plain_model():
    """``backbone=dict(type='HRNetV2', pad_channels=8)`` in an mmseg config: the same seed
    gives the same weights, a training step (loss, backward, SGD) the same update."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    models = [_segmentor(), _segmentor(pad=8)]
    assert models[1].backbone.channel_multiple == 8
    assert models[1].backbone.stage2[0].branches[0][0].conv1.weight.shape == (24, 24, 3, 3)
    a, b = (m.state_dict() for m in models)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.count_nonzero(t) == 0 for k, t in padded_parts(models[1].backbone).items()
               if not k.endswith('running_var'))
    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(2, 3, 64, 64, generator=g)
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 2, (1, 64, 64), generator=g))
        samples.append(sample)
    for m in models:
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        m.train()
        torch.manual_seed(1)  # the head's dropout
        losses = m.loss(inputs, samples)
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        opt.step()
    a, b = (m.state_dict() for m in models)
    for k in a:  # float rounding only (the padded convolutions sum in another order)
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5, msg=k)
    assert max((a[k].float() - s).abs().max().item()
               for k, s in _segmentor().state_dict().items() if k.endswith('weight')) > 1e-4


def test_layers_replaced_later_stay_covered():
    """mmengine's ``sync_bn`` converts every BN into a new SyncBatchNorm after the model is
    built: the checkpoint layout stays the standard one."""
    model = plain('v2').eval()
    padded = pad_channels(copy.deepcopy(model), 8)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(padded)
    assert isinstance(synced.stage2[0].branches[0][0].norm1, nn.SyncBatchNorm)
    assert synced.stage2[0].branches[0][0].norm1.num_features == 24
    expected, got = model.state_dict(), synced.state_dict()
    assert all(got[k].shape == v.shape and torch.equal(got[k], v) for k, v in expected.items())
    synced.load_state_dict(expected, strict=True)


def test_padded_model_traces_as_one_graph():
    """The slicing before the representation (a forward pre-hook) breaks no graph: dynamo
    traces the padded model whole (inductor compiles it alike; the eager backend is quick)."""
    model = pad_channels(plain('v2').eval(), 8)
    torch._dynamo.reset()
    traced = torch.compile(copy.deepcopy(model), backend='eager', fullgraph=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model(x), traced(x)) <= 1e-6


def _seg_runner(work_dir, iters, pad=None, **changes):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'))
    cfg.model.backbone.pad_channels = pad
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.log_level = 'WARNING'
    cfg.merge_from_dict(changes)
    return Runner.from_cfg(cfg)


def test_a_padded_run_saves_resumes_and_is_evaluated_plain(demo_dir, tmp_path, monkeypatch):
    """Through mmengine's Runner, as ``tools/train.py --cfg-options
    model.backbone.pad_channels=24`` runs it (W18-Small-v1's 16 ... 128 channels and the 64
    of the stem padded to multiples of 24): the checkpoint has the plain layout, the run
    resumes padded (the optimizer's momentum is padded), and the plain model evaluates the
    checkpoint to the padded model's metric."""
    monkeypatch.chdir(demo_dir)
    runner = _seg_runner(tmp_path / 'padded', 3, pad=24)
    runner.train()
    ckpt = torch.load(tmp_path / 'padded/iter_3.pth', map_location='cpu', weights_only=False)
    plain_shapes = {k: v.shape for k, v in _seg_runner(tmp_path / 'p', 1).model.state_dict()
                    .items()}
    assert {k: v.shape for k, v in ckpt['state_dict'].items()} == plain_shapes
    assert runner.model.backbone.conv1.weight.shape == (72, 3, 3, 3)
    padded_metric = runner.test()['mIoU']
    resumed = _seg_runner(tmp_path / 'padded', 4, pad=24, resume=True)
    resumed.train()
    assert resumed.iter == 4
    plain = _seg_runner(tmp_path / 'plain', 1, load_from=str(tmp_path / 'padded/iter_3.pth'))
    assert plain.test()['mIoU'] == pytest.approx(padded_metric, abs=1e-6)
