"""Winograd F(4x4, 3x3) convolutions compute what the direct convolution computes, within
float rounding, and fall back to it exactly wherever they do not apply."""
import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import max_abs_diff, randomize, tool_module

from hrnet_mm import HRNetV2
from hrnet_mm import winograd as wg
from hrnet_mm.fast import fuse_conv_bn, optimize_for_inference
from hrnet_mm.models.blocks import BasicBlock
from hrnet_mm.winograd import (WinogradConv2d, use_winograd, winograd_conv2d,
                               winograd_weight)


def _close(y, ref, rel=2e-6):
    """Within float rounding of the direct convolution: a few ulps of the output's range,
    times the transform's growth (its matrices hold entries up to 8)."""
    err = (y - ref).abs().max().item()
    assert err <= rel * 16 * max(ref.abs().max().item(), 1.0), err
    return err


SHAPES = [
    (2, 16, 24, 13, 30),   # sizes that are no multiple of the tile: padded and cropped
    (1, 8, 8, 4, 4),       # one tile
    (1, 5, 3, 1, 1),       # smaller than a tile; widths below one vector
    (3, 18, 36, 17, 8),    # HRNet-W18's widths: partial vectors of input and output
    (1, 50, 70, 24, 36),   # several blocks of 16 tiles and of 24 output channels, a last
]                          # block of 16 channels (70 -> 72), 2 channels past a vector (50)


@pytest.mark.parametrize('n, cin, cout, h, w', SHAPES)
@pytest.mark.parametrize('reference', [False, True], ids=['kernel', 'reference'])
@pytest.mark.parametrize('bias', [True, False])
def test_equals_the_direct_convolution(n, cin, cout, h, w, reference, bias):
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    x = torch.randn(n, cin, h, w)
    with torch.no_grad():
        ref = conv(x)
        y = winograd_conv2d(x, winograd_weight(conv.weight), conv.bias, reference=reference)
        assert y.shape == ref.shape
        assert y.is_contiguous(memory_format=torch.channels_last)
        _close(y, ref)
        # an unrelated kernel is far off: the check above can fail
        other = winograd_conv2d(x, winograd_weight(torch.randn_like(conv.weight)), conv.bias,
                                reference=reference)
        assert (other - ref).abs().max() > 1e-2


@pytest.mark.parametrize('n, cin, cout, h, w', SHAPES)
def test_residual_and_relu_are_added_in_the_same_pass(n, cin, cout, h, w):
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    x, res = torch.randn(n, cin, h, w), torch.randn(n, cout, h, w)
    u = winograd_weight(conv.weight)
    with torch.no_grad():
        ref = conv(x)
        for residual, relu, want in ((res, False, ref + res), (None, True, ref.relu()),
                                     (res, True, (ref + res).relu())):
            y = winograd_conv2d(x, u, conv.bias, residual, relu)
            _close(y, want)
            _close(y, winograd_conv2d(x, u, conv.bias, residual, relu, reference=True))
        assert (winograd_conv2d(x, u, conv.bias, relu=True) >= 0).all()


def test_the_kernel_agrees_with_the_reference_and_with_itself_on_any_thread_count():
    conv = nn.Conv2d(36, 36, 3, padding=1)
    x = torch.randn(2, 36, 40, 72).contiguous(memory_format=torch.channels_last)
    u = winograd_weight(conv.weight)
    threads = torch.get_num_threads()
    with torch.no_grad():
        ref = winograd_conv2d(x, u, conv.bias, reference=True)
        y = winograd_conv2d(x, u, conv.bias)
        try:
            torch.set_num_threads(1)
            one = winograd_conv2d(x, u, conv.bias)
        finally:
            torch.set_num_threads(threads)
    assert max_abs_diff([y], [ref]) <= 1e-5
    assert torch.equal(one, y)  # blocks of tiles are independent: no order of sums changes


def test_the_packed_kernel_is_blocks_of_24_output_channels():
    u = torch.randn(36, 5, 50)
    p = wg.pack_weight(u)
    assert p.shape == (36, 5, 56) and p.is_contiguous()  # 50 padded to 56 = 24 + 24 + 8
    flat = p.reshape(36, -1)
    assert torch.equal(flat[:, :5 * 24].reshape(36, 5, 24), u[:, :, :24])
    assert torch.equal(flat[:, 5 * 24:5 * 48].reshape(36, 5, 24), u[:, :, 24:48])
    last = flat[:, 5 * 48:].reshape(36, 5, 8)
    assert torch.equal(last[:, :, :2], u[:, :, 48:]) and not last[:, :, 2:].any()


def test_the_kernel_refuses_wrong_arguments_in_one_line():
    """The compiled kernel reads and writes raw memory: anything it would read past, or read
    as the wrong type, is refused before it runs."""
    k = wg.kernel_conv3x3
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 8, 3, 3)
    u = wg.pack_weight(winograd_weight(w))
    first = 'winograd: the input must be a float32 CPU tensor (N, C, H, W) in channels_last memory'
    packed = 'winograd: the packed kernel must be float32 (36, 8, 8), got '
    residual = "winograd: the residual must be a float32 channels_last tensor of the output's shape"
    for call, says in (
            (lambda: k(x.contiguous(), u, None, None, False, 8), first),
            (lambda: k(x.double(), u, None, None, False, 8), first),
            (lambda: k(x[0], u, None, None, False, 8), first),
            (lambda: k(x, u[:, :4], None, None, False, 8), packed + '[36, 4, 8]'),
            (lambda: k(x, u, None, None, False, 16), 'winograd: the packed kernel must be '
             'float32 (36, 8, 16), got [36, 8, 8]'),
            (lambda: k(x, u.double(), None, None, False, 8), packed + '[36, 8, 8]'),
            (lambda: k(x, u.transpose(1, 2), None, None, False, 8), packed + '[36, 8, 8]'),
            (lambda: k(x, u, torch.zeros(3), None, False, 8),
             'winograd: the bias must be float32 of 8 values'),
            (lambda: k(x, u, torch.zeros(8, dtype=torch.float64), None, False, 8),
             'winograd: the bias must be float32 of 8 values'),
            (lambda: k(x, u, torch.zeros(16)[::2], None, False, 8),
             'winograd: the bias must be float32 of 8 values'),
            (lambda: k(x, u, None, x[:, :, :3].contiguous(
                memory_format=torch.channels_last), False, 8), residual),
            (lambda: k(x, u, None, x.contiguous(), False, 8), residual),
            (lambda: k(x, u, None, x.double(), False, 8), residual)):
        with pytest.raises(RuntimeError) as err:
            call()
        assert str(err.value) == says
    # the same arguments, right: the kernel runs and computes the convolution
    _close(k(x, u, None, x, True, 8), winograd_conv2d(x, winograd_weight(w), None, x, True,
                                                      reference=True))


MEMORY_LIMITED = """
import resource, sys
import hrnet_mm.winograd as wg
entry = wg._kernel()
with open('/proc/self/statm') as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
# 1 GB more address space than the process has: a thread's buffers of 2.4 GB cannot be had
resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), resource.RLIM_INFINITY))
# every pointer is left out: the buffers are allocated before anything is read or written
print(entry(None, None, None, None, None, 1, 1 << 20, 4, 4, 8, False))
"""


def test_buffers_that_cannot_be_allocated_are_a_memory_error_not_a_crash(monkeypatch):
    """Each thread allocates its transform buffers (36 x 16 tiles x the padded widths) before
    it reads anything: where that fails, the C entry returns 1 (no C++ exception may leave
    it), and the call raises a one-line MemoryError. In a process of its own, with its
    address space limited, so that no machine's overcommit setting lets it succeed."""
    proc = subprocess.run([sys.executable, '-c', MEMORY_LIMITED], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == '1', proc.stderr[-2000:]
    x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    u = wg.pack_weight(winograd_weight(torch.randn(8, 8, 3, 3)))
    monkeypatch.setattr(wg, '_kernel', lambda: lambda *args: 1)
    with pytest.raises(MemoryError) as err:
        wg.kernel_conv3x3(x, u, None, None, False, 8)
    assert str(err.value) == 'winograd: no memory for the buffers of a convolution of 8 to 8 ' \
        'channels'


def test_widths_past_the_kernels_32_bit_offsets_are_refused():
    """Such widths would overflow the kernel's int offsets: the converter keeps them direct,
    the kernel refuses them in one line (an 8-channel input is enough to ask)."""
    assert wg.unsupported(nn.Conv2d(8, wg.MAX_CHANNELS + 1, 3, padding=1)) == \
        f'8 to {wg.MAX_CHANNELS + 1} channels (at most {wg.MAX_CHANNELS})'
    assert wg.unsupported(nn.Conv2d(8, wg.MAX_CHANNELS, 3, padding=1)) == ''
    x = torch.randn(1, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError) as err:
        wg.kernel_conv3x3(x, torch.zeros(36, 8, 8), None, None, False, 1 << 31)
    assert str(err.value) == (f'winograd: at most {wg.MAX_CHANNELS} channels in and out (the '
                              f'kernel indexes its buffers with 32-bit ints), got 8 to '
                              f'{1 << 31}')


def test_a_failed_build_says_why_in_one_line(tmp_path, monkeypatch, capsys):
    """The build is announced (it takes seconds) and a compiler error is one line."""
    broken = tmp_path / 'winograd_cpu.cpp'
    broken.write_text('#error this kernel does not compile\n')
    monkeypatch.setattr(wg, 'KERNEL_SOURCE', broken)
    monkeypatch.setenv('HRNET_MM_CACHE', str(tmp_path / 'cache'))
    wg._kernel.cache_clear()
    try:
        with pytest.raises(RuntimeError) as err:
            wg._kernel()
    finally:
        wg._kernel.cache_clear()
    build = wg.cache_dir()
    assert build.parent == tmp_path / 'cache'
    assert capsys.readouterr().err == (f'hrnet_mm.winograd: building the CPU kernel once (a few '
                                       f'seconds) into {build}\n')
    msg = str(err.value)
    assert '\n' not in msg
    # the compiler's own error, not ninja's "build stopped"
    assert msg.startswith(f'hrnet_mm.winograd: building the CPU kernel in {build} failed '
                          f'({broken}:1:2: error: #error this kernel does not compile)')
    assert msg.endswith('); it needs a C++ compiler and ninja, as torch.compile on the CPU does')


def test_the_cache_folder_follows_the_source(tmp_path, monkeypatch):
    monkeypatch.setenv('HRNET_MM_CACHE', str(tmp_path))
    first = wg.cache_dir()
    other = tmp_path / 'winograd_cpu.cpp'
    other.write_text(wg.KERNEL_SOURCE.read_text() + '// changed\n')
    monkeypatch.setattr(wg, 'KERNEL_SOURCE', other)
    assert first.parent == wg.cache_dir().parent == tmp_path
    assert first != wg.cache_dir()  # a changed source is built anew, never a stale .so loaded


def test_a_cpu_without_avx2_computes_the_direct_convolution(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability', lambda: 'DEFAULT')
    assert wg.kernel_unsupported() == 'the CPU has no AVX2 (torch: DEFAULT)'
    conv = nn.Conv2d(8, 8, 3, padding=1)
    fast = WinogradConv2d.from_conv(conv)
    x = torch.randn(1, 8, 10, 12)
    with torch.no_grad():
        assert not fast.uses_winograd(x)
        assert torch.equal(fast(x), conv(x))


def test_the_weight_transform_is_g_w_gt_in_double():
    w = torch.randn(4, 3, 3, 3)
    u = winograd_weight(w)
    assert u.shape == (36, 3, 4) and u.dtype == torch.float32
    g = torch.tensor(wg._G, dtype=torch.float64)
    # entry (a, b) of G w G^T for output channel 2, input channel 1
    want = g @ w[2, 1].double() @ g.T
    assert torch.allclose(u[:, 1, 2].double(), want.reshape(36), atol=1e-7)


def test_module_uses_winograd_only_for_fp32_cpu_inference():
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


def test_state_dict_is_the_convolutions_and_new_weights_are_noticed():
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


def test_hrnet_with_winograd_keeps_the_fast_models_outputs():
    model = randomize(HRNetV2(arch='w18_small_v1', representation='v2')).eval()
    folded = fuse_conv_bn(copy.deepcopy(model))
    convs = [m for m in folded.modules() if type(m) is nn.Conv2d and not wg.unsupported(m)]
    assert len(convs) > 20
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ref = folded(x)
        for fuse in (False, True):
            fast = use_winograd(copy.deepcopy(folded), fuse=fuse)
            assert sum(isinstance(m, WinogradConv2d) for m in fast.modules()) == len(convs)
            # every BasicBlock of stages 2-4 (2 + 3 + 4 branches of 2 blocks)
            assert sum(isinstance(m, wg.FusedBasicBlock) for m in fast.modules()) == \
                (18 if fuse else 0)
            assert sum(type(m) is BasicBlock for m in fast.modules()) == (0 if fuse else 18)
            assert isinstance(fast.layer1, wg.FusedBottlenecks) == fuse
            assert fast.state_dict().keys() == folded.state_dict().keys()
            y = fast(x)
            assert max_abs_diff(ref, y) <= 1e-4
            assert max_abs_diff(model(x), y) <= 1e-4
            assert not torch.equal(ref[0], y[0])


def test_fused_block_and_sequential_equal_the_folded_ones_in_inference_and_training():
    down = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24))
    block = randomize(BasicBlock(16, 24, downsample=down)).eval()
    seq = randomize(nn.Sequential(nn.Conv2d(24, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True))).eval()
    folded = fuse_conv_bn(nn.Sequential(block, seq))
    fast = use_winograd(copy.deepcopy(folded))
    assert isinstance(fast[0], wg.FusedBasicBlock)
    assert isinstance(fast[1][2], nn.Identity) and fast[1][0].fused_relu
    assert fast.state_dict().keys() == folded.state_dict().keys()
    x = torch.randn(2, 16, 11, 14)
    with torch.no_grad():
        ref, y = folded(x), fast(x)
    _close(y, ref)
    assert (y >= 0).all() and not torch.equal(y, ref)
    # training (gradients): the direct convolutions, the same ReLUs and adds, exactly
    fast.train(), folded.train()
    xg = x.clone().requires_grad_()
    y = fast(xg)
    assert torch.equal(y, folded(x))
    y.sum().backward()
    assert xg.grad is not None and fast[0].conv1.weight.grad is not None


@pytest.mark.parametrize('first_projects', [True, False])
def test_fused_bottlenecks_add_in_place_only_into_their_own_maps(first_projects):
    from hrnet_mm.models.blocks import Bottleneck, make_res_layer
    inplanes = 32 if first_projects else 64  # 64 = 16 x 4: the first block's shortcut is x
    layer = randomize(make_res_layer(Bottleneck, inplanes, 16, 3, None, dict(type='BN'), False))
    assert (layer[0].downsample is not None) == first_projects
    folded = fuse_conv_bn(nn.Sequential(layer))
    fast = use_winograd(copy.deepcopy(folded))
    assert isinstance(fast[0], wg.FusedBottlenecks)
    assert fast.state_dict().keys() == folded.state_dict().keys()
    x = torch.randn(2, inplanes, 9, 13).contiguous(memory_format=torch.channels_last)
    kept = x.clone()
    with torch.no_grad():
        ref, y = folded(x), fast(x)
    _close(y, ref)
    assert torch.equal(x, kept)  # the caller's map is never written
    assert (y >= 0).all()
    # gradients: the plain path, equal to the folded chain's
    y = fast(x.requires_grad_())
    assert torch.equal(y, folded(x))
    y.sum().backward()
    assert x.grad is not None


def test_optimize_for_inference_converts_every_3x3_stride_1_convolution():
    model = optimize_for_inference(HRNetV2(arch='w48'), winograd=True)
    converted = [m for m in model.modules() if isinstance(m, WinogradConv2d)]
    # stage 1's 64-channel convolutions, every branch's (48 to 384 channels), transition 1's
    assert {m.in_channels for m in converted} == {64, 48, 96, 192, 384, 256}
    assert not any(type(m) is nn.Conv2d and not wg.unsupported(m) for m in model.modules())
    assert sum(isinstance(m, wg.FusedBasicBlock) for m in model.modules()) == 104
    assert isinstance(model.layer1, wg.FusedBottlenecks)
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in converted)
    assert not any(m.bias is None for m in converted)  # BN folded into them first
    with pytest.raises(ValueError, match='^winograd=True and compile=True do not combine'):
        optimize_for_inference(HRNetV2(arch='w18_small_v1'), winograd=True, compile=True)


def test_benchmark_row_and_its_refusals():
    from hrnet_mm.bench import format_table, run
    res = run(arch='w18_small_v1', size=(64, 64), modes=('infer', ), repeats=1, warmup=0,
              memory=False, winograd=True, progress=lambda m: None)
    rows = {r['name']: r for r in res['rows']}
    name = 'hrnet_mm fast [fold, channels_last, winograd]'
    assert rows[name]['infer_img_s'] > 0 and rows[name]['max_abs_diff'] <= 1e-4
    assert res['stock_pairs'][name] == 'mmseg fast [fold, channels_last]'
    table = format_table(res)
    assert f'| {name} | fp32 |' in table
    assert f'{name} against mmseg fast [fold, channels_last] (the stock model' in table
    assert 'Winograd rows: the same count of the direct convolution, an effective rate' in table
    assert 'First call' not in table  # nothing compiles in a run
    for kwargs, here in ((dict(precision='bf16'), "precision='bf16'"),
                         (dict(modes=('train', )), "modes='train'"),
                         (dict(fast_precision='bf16', modes=('train', 'infer')),
                          "precision='bf16'")):
        with pytest.raises(ValueError) as err:
            run(arch='w18_small_v1', size=(64, 64), winograd=True, progress=lambda m: None,
                **kwargs)
        assert str(err.value) == f'winograd: fp32 inference on the CPU only; here {here}'


def test_benchmark_tool_refuses_winograd_outside_cpu_fp32_inference(capsys):
    tool = tool_module('benchmark')
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
    for args, here in ((['--precision', 'bf16'], '--precision bf16'), ):
        with pytest.raises(SystemExit):
            tool.parse_args(['--model', 'winograd_convs', *args])
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
            f': error: --model winograd_convs: fp32 on the CPU only; here {here}')
    assert tool.parse_args(['--model', 'winograd_convs']).model == 'winograd_convs'


def test_a_build_killed_half_way_is_not_waited_on(tmp_path, monkeypatch, capsys):
    """kill -9 during a build leaves its own folder (with torch's lock file in it): the next
    process removes it and builds, instead of waiting forever on the lock."""
    monkeypatch.setenv('HRNET_MM_CACHE', str(tmp_path))
    broken = tmp_path / 'winograd_cpu.cpp'
    broken.write_text('#error this kernel does not compile\n')
    monkeypatch.setattr(wg, 'KERNEL_SOURCE', broken)
    build = wg.cache_dir()
    dead = subprocess.Popen(['true'])
    dead.wait()
    stale = Path(f'{build}.partial-{dead.pid}')
    stale.mkdir(parents=True)
    (stale / 'lock').write_text('')
    alive = Path(f'{build}.partial-{os.getppid()}')  # a build still running: kept
    alive.mkdir()
    wg._kernel.cache_clear()
    try:
        with pytest.raises(RuntimeError, match='failed'):
            wg._kernel()
    finally:
        wg._kernel.cache_clear()
    assert not stale.exists() and alive.exists()
    assert not build.exists()  # a failed build publishes nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, broken.name])


def test_a_published_build_is_imported_without_building(tmp_path, monkeypatch, capsys):
    built = wg.cache_dir()
    wg._kernel()  # built (or imported) in the usual cache
    monkeypatch.setenv('HRNET_MM_CACHE', str(tmp_path))
    copy_ = wg.cache_dir()
    assert copy_.name == built.name
    copy_.mkdir()
    shutil.copy(built / f'{built.name}.so', copy_)  # the .so alone: what a published build has
    x = torch.randn(1, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    wg._kernel.cache_clear()
    try:
        with torch.no_grad():  # the copy's kernel computes
            y = wg.kernel_conv3x3(x, wg.pack_weight(winograd_weight(conv.weight)), conv.bias,
                                  None, False, 8)
            _close(y, conv(x))
    finally:
        wg._kernel.cache_clear()
    assert capsys.readouterr().err == ''


def test_the_per_convolution_benchmark():
    from hrnet_mm.bench import format_winograd_probe, winograd_probe
    said = []
    res = winograd_probe(shapes=((8, 12, 20), (18, 8, 8)), repeats=1, progress=said.append)
    assert said == ['winograd convolution 8 channels at 12x20',
                    'winograd convolution 18 channels at 8x8']
    r = res['convs']['8x12x20']
    assert r['direct_ms'] > 0 and r['winograd_ms'] > 0 and 0 < r['max_rel_diff'] <= 1e-4
    assert r['speedup'] == pytest.approx(r['direct_ms'] / r['winograd_ms'], rel=0.01)
    table = format_winograd_probe(res).splitlines()
    assert table[2] == ('| channels | map | direct ms | Winograd ms | speed-up | '
                        'max diff / max output |')
    assert table[4].startswith('| 8 | 12x20 | ') and table[5].startswith('| 18 | 8x8 | ')


def test_a_whole_mmseg_segmentor_infers_alike():
    """What users optimise: the library's model holding HRNetV2 (any 3x3 stride-1 convolution
    of its head would be converted too; the demo's FCN head has 1x1 ones)."""
    pytest.importorskip('mmseg')
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    cfg = Config.fromfile(str(Path(__file__).parents[1] / 'configs' / 'seg'
                              / 'demo_fcn_hrnetv2-w18-small-v1.py'))
    init_default_scope('mmseg')
    model = randomize(MODELS.build(cfg.model)).eval()
    fast = optimize_for_inference(copy.deepcopy(model), winograd=True)
    assert isinstance(fast.backbone.layer1, wg.FusedBottlenecks)
    assert not any(type(m) is nn.Conv2d and not wg.unsupported(m) for m in fast.modules())
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        ref, y = model._forward(x), fast._forward(x)
    assert y.shape == ref.shape
    _close(y, ref)
    assert not torch.equal(y, ref)


def test_converting_a_model_builds_the_kernel_then_and_there(monkeypatch):
    """A missing compiler shows when the model is converted, not in its first inference."""
    def broken():
        raise RuntimeError('hrnet_mm.winograd: building the CPU kernel in X failed (c++: not '
                           'found); it needs a C++ compiler and ninja, as torch.compile on the '
                           'CPU does')
    monkeypatch.setattr(wg, '_kernel', broken)
    with pytest.raises(RuntimeError, match=r'failed \(c\+\+: not found\)'):
        optimize_for_inference(HRNetV2(arch='w18_small_v1'), winograd=True)
    # nothing to convert, or no AVX2 (the direct convolution then): no build asked for
    use_winograd(nn.Sequential(nn.Conv2d(3, 8, 1)))
    monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability', lambda: 'DEFAULT')
    model = use_winograd(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)))
    assert isinstance(model[0], WinogradConv2d)


def test_processes_building_at_once_all_get_the_kernel(tmp_path):
    """Processes starting together (distributed inference) on a fresh machine each build in a
    folder of their own; one build is published, nothing partial is left."""
    code = ('import torch\nfrom hrnet_mm import winograd as wg\nk = wg.kernel_conv3x3\n'
            'x = torch.ones(1, 8, 4, 4).contiguous(memory_format=torch.channels_last)\n'
            'u = wg.pack_weight(wg.winograd_weight(torch.ones(8, 8, 3, 3)))\n'
            'print(k(x, u, None, None, False, 8)[0, 0, 1, 1].item())\n')
    env = dict(os.environ, HRNET_MM_CACHE=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == ['72.0', '72.0']  # 8 channels x 9 taps
    assert [p.name for p in tmp_path.iterdir()] == [wg.cache_dir().name]
