"""Winograd F(4x4, 3x3) convolutions compute what the direct convolution computes, within
float rounding, and fall back to it exactly wherever they do not apply."""
import copy

import pytest
import torch
import torch.nn as nn
from helpers import max_abs_diff, randomize

from hrnet_mm import HRNetV2
from hrnet_mm import winograd as wg
from hrnet_mm.fast import fuse_conv_bn, optimize_for_inference
from hrnet_mm.winograd import (WinogradConv2d, use_winograd, winograd_conv2d,
                               winograd_weight)


@pytest.fixture
def eager_transforms(monkeypatch):
    """The transforms without inductor: the same arithmetic, no compiling in most tests."""
    monkeypatch.setattr(wg, '_transforms', lambda: (wg.input_transform, wg.output_transform))


def _close(y, ref, rel=2e-6):
    """Within float rounding of the direct convolution: a few ulps of the output's range,
    times the transform's growth (its matrices hold entries up to 8)."""
    err = (y - ref).abs().max().item()
    assert err <= rel * 16 * max(ref.abs().max().item(), 1.0), err
    return err


@pytest.mark.parametrize('n, cin, cout, h, w', [
    (2, 16, 24, 13, 30),   # sizes that are no multiple of the tile: padded and cropped
    (1, 8, 8, 4, 4),       # one tile
    (1, 5, 3, 1, 1),       # smaller than a tile
    (3, 32, 32, 17, 8),
])
@pytest.mark.parametrize('bias', [True, False])
def test_equals_the_direct_convolution(n, cin, cout, h, w, bias):
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    x = torch.randn(n, cin, h, w)
    with torch.no_grad():
        ref = conv(x)
        y = winograd_conv2d(x, winograd_weight(conv.weight), conv.bias, compiled=False)
    assert y.shape == ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last)
    _close(y, ref)
    # an unrelated kernel is far off: the check above can fail
    other = winograd_conv2d(x, winograd_weight(torch.randn_like(conv.weight)), conv.bias,
                            compiled=False)
    assert (other - ref).abs().max() > 1e-2


def test_the_compiled_transforms_equal_the_eager_ones():
    """What users run: inductor's kernels of the transforms (one shape: ~25 s of compiling)."""
    conv = nn.Conv2d(16, 16, 3, padding=1)
    u = winograd_weight(conv.weight)
    x = torch.randn(2, 16, 9, 14).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        eager = winograd_conv2d(x, u, conv.bias, compiled=False)
        compiled = winograd_conv2d(x, u, conv.bias)
        _close(compiled, conv(x))
    assert compiled.is_contiguous(memory_format=torch.channels_last)
    assert max_abs_diff([eager], [compiled]) <= 1e-5


def test_the_weight_transform_is_g_w_gt_in_double():
    w = torch.randn(4, 3, 3, 3)
    u = winograd_weight(w)
    assert u.shape == (36, 3, 4) and u.dtype == torch.float32
    g = torch.tensor(wg._G, dtype=torch.float64)
    # entry (a, b) of G w G^T for output channel 2, input channel 1
    want = g @ w[2, 1].double() @ g.T
    assert torch.allclose(u[:, 1, 2].double(), want.reshape(36), atol=1e-7)


def test_module_uses_winograd_only_for_fp32_cpu_inference(eager_transforms):
    conv = nn.Conv2d(8, 8, 3, padding=1)
    fast = WinogradConv2d.from_conv(conv)
    assert fast.weight is conv.weight and fast.bias is conv.bias
    x = torch.randn(1, 8, 10, 12)
    with torch.no_grad():
        assert fast.uses_winograd(x)
        y = fast(x)
        _close(y, conv(x))
        assert not torch.equal(y, conv(x))  # the Winograd path ran, not the direct one
        assert not fast.uses_winograd(x.double())
        assert not fast.uses_winograd(x.to(torch.bfloat16))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not fast.uses_winograd(x)
            assert torch.equal(fast(x), conv(x))
    # training: the direct convolution, with its gradients
    assert not fast.uses_winograd(x)
    y = fast(x)
    assert torch.equal(y, conv(x))
    y.sum().backward()
    assert conv.weight.grad is not None


def test_state_dict_is_the_convolutions_and_new_weights_are_noticed(eager_transforms):
    conv = nn.Conv2d(8, 8, 3, padding=1)
    fast = WinogradConv2d.from_conv(copy.deepcopy(conv)).eval()
    assert list(fast.state_dict()) == list(conv.state_dict()) == ['weight', 'bias']
    x = torch.randn(1, 8, 12, 12)
    other = nn.Conv2d(8, 8, 3, padding=1)
    with torch.no_grad():
        fast(x)  # caches the transformed kernel of the first weights
        fast.load_state_dict(other.state_dict())
        _close(fast(x), other(x))
        fast.weight.mul_(2)  # in place, e.g. a BN folded after the conversion
        other.weight.mul_(2)
        _close(fast(x), other(x))
        clone = copy.deepcopy(fast)
        clone.weight.add_(1)
        _close(fast(x), other(x))  # the copy's change stays in the copy
        assert (clone(x) - other(x)).abs().max() > 1e-2


@pytest.mark.parametrize('kwargs, says', [
    (dict(kernel_size=3, stride=2, padding=1), 'stride=(2, 2)'),
    (dict(kernel_size=1), "kernel_size=(1, 1), padding=(0, 0)"),
    (dict(kernel_size=3, padding=2, dilation=2), 'padding=(2, 2), dilation=(2, 2)'),
    (dict(kernel_size=3, padding=1, groups=4), 'groups=4'),
    (dict(kernel_size=3, padding=1, padding_mode='reflect'), "padding_mode='reflect'"),
])
def test_other_convolutions_are_refused_in_one_line(kwargs, says):
    with pytest.raises(ValueError) as error:
        WinogradConv2d.from_conv(nn.Conv2d(8, 8, **kwargs))
    assert str(error.value) == ('WinogradConv2d computes 3x3 convolutions with stride 1, '
                                'padding 1, dilation 1, groups 1 and zero padding; this one has '
                                + says)


def test_hrnet_with_winograd_keeps_the_fast_models_outputs(eager_transforms):
    model = randomize(HRNetV2(arch='w18_small_v1', representation='v2')).eval()
    folded = fuse_conv_bn(copy.deepcopy(model))
    fast = use_winograd(copy.deepcopy(folded), min_channels=1)
    convs = [m for m in folded.modules() if type(m) is nn.Conv2d and not wg.unsupported(m)]
    assert len(convs) > 20
    assert sum(isinstance(m, WinogradConv2d) for m in fast.modules()) == len(convs)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ref, y = folded(x), fast(x)
        assert max_abs_diff(ref, y) <= 1e-4
        assert max_abs_diff(model(x), y) <= 1e-4
        assert not torch.equal(ref[0], y[0])


def test_optimize_for_inference_converts_the_wide_convolutions_only():
    model = optimize_for_inference(HRNetV2(arch='w48'), winograd=True)
    converted = [m for m in model.modules() if isinstance(m, WinogradConv2d)]
    # the 3x3 stride-1 convolutions of branches 2-4 (96, 192, 384 channels); none of 48
    assert {m.in_channels for m in converted} == {96, 192, 384}
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in converted)
    assert not any(m.bias is None for m in converted)  # BN folded into them first
    with pytest.raises(ValueError, match='^winograd=True and compile=True do not combine'):
        optimize_for_inference(HRNetV2(arch='w18_small_v1'), winograd=True, compile=True)


def test_benchmark_row_and_its_refusals(eager_transforms):
    from hrnet_mm.bench import format_table, run
    said = []
    res = run(arch='w18_small_v1', size=(64, 64), modes=('infer', ), repeats=1, warmup=0,
              memory=False, winograd=True, progress=said.append)
    rows = {r['name']: r for r in res['rows']}
    name = 'hrnet_mm fast [fold, channels_last, winograd]'
    # the silent minute of compiling is announced
    assert f'checking {name} against mmseg: its first call compiles the Winograd transforms ' \
        '(about 25 s per map size on 2 cores, seconds once cached)' in said
    assert rows[name]['infer_img_s'] > 0 and rows[name]['max_abs_diff'] <= 1e-4
    assert res['stock_pairs'][name] == 'mmseg fast [fold, channels_last]'
    table = format_table(res)
    assert f'| {name} | fp32 |' in table
    assert f'{name} against mmseg fast [fold, channels_last] (the stock model' in table
    assert 'Winograd rows: the same count of the direct convolution, an effective rate' in table
    # its transforms compile in the output check: that is its first call in the table
    assert rows[name]['first_call_s']['output check'] > 0
    assert f'First call, compiling included: {name} output check ' in table
    for kwargs, here in ((dict(precision='bf16'), "precision='bf16'"),
                         (dict(modes=('train', )), "modes='train'"),
                         (dict(fast_precision='bf16', modes=('train', 'infer')),
                          "precision='bf16'")):
        with pytest.raises(ValueError) as err:
            run(arch='w18_small_v1', size=(64, 64), winograd=True, progress=lambda m: None,
                **kwargs)
        assert str(err.value) == f'winograd: fp32 inference on the CPU only; here {here}'


def test_benchmark_tool_refuses_winograd_outside_cpu_fp32_inference(capsys):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).parents[1] / 'tools' / 'benchmark.py'
    spec = importlib.util.spec_from_file_location('benchmark_tool', path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for args, here in ((['--modes', 'train'], '--modes train'),
                       (['--precision', 'bf16'], '--precision bf16'),
                       (['--fast-precision', 'bf16'], '--fast-precision bf16'),
                       (['--model', 'faster_rcnn'], '--model faster_rcnn'),
                       (['--modes', 'train', '--precision', 'bf16'],
                        '--precision bf16, --modes train')):
        with pytest.raises(SystemExit):
            tool.parse_args(['--winograd', *args])
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
            f': error: --winograd: fp32 inference of the backbone on the CPU only; here {here}')
    assert tool.parse_args(['--winograd', '--device', 'cpu']).winograd
