"""Fast paths keep the outputs of the plain model within their stated tolerances."""
import copy
import re

import pytest
import torch
import torch.nn as nn
from helpers import max_abs_diff, randomize, tool_module
from torch.nn.modules.batchnorm import _BatchNorm

from hrnet_mm import HRNetV2
from hrnet_mm.bench import build_pair, format_table, peak_memory_mib, run
from hrnet_mm.fast import (autocast_backbone, export_onnx, fuse_conv_bn,
                           optimize_for_inference, rounding_noise)
from hrnet_mm.models.blocks import BasicBlock
from hrnet_mm.models.fusion import FP16_MAX, HRModule

REPRESENTATIONS = ['branches', 'v1', 'v2', 'v2p', 'cls']


def _model(representation='branches', **kwargs):
    return randomize(HRNetV2(arch='w18_small_v1', representation=representation,
                             **kwargs)).eval()


@pytest.mark.parametrize('representation', REPRESENTATIONS)
def test_fuse_conv_bn_keeps_outputs(representation):
    model = _model(representation)
    fused = fuse_conv_bn(copy.deepcopy(model))
    assert not any(isinstance(m, _BatchNorm) for m in fused.modules())
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert max_abs_diff(model(x), fused(x)) <= 1e-4


def test_optimize_for_inference_compiles_fullgraph():
    model = _model('v2p')
    fast = optimize_for_inference(copy.deepcopy(model), compile=True, fullgraph=True,
                                  backend='eager')
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model(x), fast(x)) <= 1e-4


def test_channels_last_argument_same_outputs_and_gradients():
    plain = _model().train()
    nhwc = HRNetV2(arch='w18_small_v1', channels_last=True).train()
    nhwc.load_state_dict(plain.state_dict())
    assert nhwc.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64)
    outs = []
    for m in (plain, nhwc):
        y = m(x)
        sum(o.square().mean() for o in y).backward()
        outs.append(y)
    assert outs[1][0].is_contiguous(memory_format=torch.channels_last)
    assert max_abs_diff(outs[0], outs[1]) <= 1e-4
    assert max_abs_diff([p.grad for p in plain.parameters()],
                        [p.grad for p in nhwc.parameters()]) <= 1e-4


@pytest.mark.parametrize('representation', ['v2', 'cls'])
def test_compiled_training_step_matches_eager(representation):
    """Forward and backward traced as whole graphs (aot_eager: the autograd graph too)."""
    torch._dynamo.reset()
    eager = _model(representation, channels_last=True).train()
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend='aot_eager')
    x = torch.rand(2, 3, 64, 64)
    outs = []
    for m in (eager, compiled):
        y = m(x)
        sum(o.square().mean() for o in y).backward()
        outs.append(y)
    assert max_abs_diff(outs[0], outs[1]) <= 1e-4
    assert max_abs_diff([p.grad for p in eager.parameters()],
                        [p.grad for p in compiled_model.parameters()]) <= 1e-4


@pytest.mark.parametrize('representation', ['branches', 'v2p', 'cls'])
def test_onnx_export_agrees_with_onnxruntime(tmp_path, representation):
    ort = pytest.importorskip('onnxruntime')
    model = _model(representation)
    path = export_onnx(model, str(tmp_path / 'm.onnx'), (1, 3, 64, 96))
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    x = torch.rand(1, 3, 64, 96)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x)
    assert len(got) == len(expected)
    assert max_abs_diff(expected, [torch.from_numpy(g) for g in got]) <= 1e-4


def test_onnx_export_of_folded_model_with_dynamic_size(tmp_path):
    ort = pytest.importorskip('onnxruntime')
    model = _model('v2')
    path = export_onnx(fuse_conv_bn(copy.deepcopy(model)), str(tmp_path / 'm.onnx'),
                       (1, 3, 64, 64), dynamic_hw=True)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for size in [(64, 64), (96, 160)]:
        x = torch.rand(1, 3, *size)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            assert max_abs_diff(model(x), [torch.from_numpy(g) for g in got]) <= 1e-4


@pytest.mark.parametrize('precision, tol', [(torch.bfloat16, 0.1), (torch.float16, 0.02)])
def test_amp_training_step_is_finite_and_close(precision, tol):
    model = _model('v2').train()
    x = torch.rand(2, 3, 64, 64)
    reference = model(x)[0]
    with torch.autocast('cpu', dtype=precision):
        out = model(x)[0]
    assert out.dtype == precision
    loss = out.float().mean()
    loss.backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    rel = (out.float() - reference).abs().max() / reference.abs().max()
    assert rel <= tol


def test_fp16_fusion_sums_do_not_overflow():
    """Two branches each near the float16 limit: a float16 sum is inf, the fusion is not."""
    module = HRModule(BasicBlock, [1, 1], [8, 8], [8, 8], num_outputs=2).eval()
    with torch.no_grad():
        for m in module.modules():  # turn every branch and path into an identity-ish map
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
            if isinstance(m, _BatchNorm):
                m.weight.fill_(1.0)
                m.bias.fill_(40000.0)
    x = [torch.rand(1, 8, 16, 16), torch.rand(1, 8, 8, 8)]
    with torch.no_grad():
        fp32 = module(x)
        half = copy.deepcopy(module).half()([t.half() for t in x])
    naive = (fp32[0].half() + fp32[0].half())  # what an fp16 sum of two such maps gives
    assert torch.isinf(naive).any()
    for a, b in zip(fp32, half):
        assert b.dtype == torch.float16 and torch.isfinite(b).all()
        # values beyond the float16 range saturate at its largest value instead of inf
        assert torch.equal(b.float(), a.clamp(max=FP16_MAX).half().float())


def test_cpu_peak_memory_is_torch_memtrackers_total_peak():
    """peak_memory_mib keeps only MemTracker's total peak (the per-module peaks it skips made
    the count 10x slower than the step): the number must be the stock tracker's."""
    from torch.distributed._tools.mem_tracker import MemTracker
    model = HRNetV2(arch='w18_small_v1').train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.rand(2, 3, 64, 96)

    def step():
        opt.zero_grad()
        sum(o.mean() for o in model(x)).backward()
        opt.step()
    step()  # both counts start with the gradients of a previous step alive
    stock = MemTracker()
    stock.track_external(model, opt)
    with stock:
        step()
    expected = stock.get_tracker_snapshot('peak')[torch.device('cpu')]['Total'] / 2**20
    assert peak_memory_mib(step, torch.device('cpu'), [model], opt) == expected
    # parameters and gradients alone are a lower bound the count must exceed
    params = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert expected > 2 * params


def test_with_cp_peak_training_memory_is_at_most_0_6_of_mmseg():
    """A memory count (every live tensor), not a timing: deterministic for fixed shapes."""
    ref, ours = build_pair('mmseg', 'w18', 'branches')
    cp_model = HRNetV2(arch='w18', with_cp=True, upsample_mode='bilinear')
    cp_model.load_state_dict(ours.state_dict())
    x = torch.rand(2, 3, 256, 256)

    def peak(model):
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step():
            opt.zero_grad()
            sum(o.mean() for o in model(x)).backward()
            opt.step()
        return peak_memory_mib(step, torch.device('cpu'), [model], opt)

    stock, checkpointed = peak(ref), peak(cp_model)
    assert checkpointed <= 0.6 * stock, (checkpointed, stock)
    assert peak(ours) == pytest.approx(stock, rel=0.05)  # without with_cp: the same as mmseg


def test_benchmark_runs_and_reports(tmp_path):
    results = run(arch='w18_small_v1', representation='branches', batch=1, size=(64, 64),
                  references=('mmseg', 'mmpose'), fast=('fold', 'channels_last'),
                  with_cp=True, warmup=0, repeats=1, progress=lambda msg: None)
    names = [r['name'] for r in results['rows']]
    assert names == ['mmseg', 'hrnet_mm (mmseg config)', 'mmpose', 'hrnet_mm (mmpose config)',
                     'hrnet_mm fast [fold, channels_last]', 'mmseg fast [fold, channels_last]',
                     'hrnet_mm with_cp']
    rows = {r['name']: r for r in results['rows']}
    assert rows['hrnet_mm (mmseg config)']['max_abs_diff'] <= 1e-4
    # the stock model with mmcv's own folding and NHWC computes the same
    assert rows['mmseg fast [fold, channels_last]']['max_abs_diff'] <= 1e-4
    assert all(rows[n]['infer_img_s'] > 0 for n in names[:-1])
    assert rows['hrnet_mm with_cp']['infer_img_s'] is None
    assert all(rows[n]['train_peak_mib'] > 0 for n in names)
    table = format_table(results)
    assert table.count('\n| ') == len(names) + 1 and 'ratios vs mmseg' in table
    assert '\n|' + '---|' * 13 + '\n' in table
    # every measured column has its ratio; fold is named where it does not apply, and said so
    ours_line = next(line for line in table.splitlines()
                     if line.startswith('| hrnet_mm fast [fold, channels_last] |'))
    cells = [c.strip() for c in ours_line.split('|')[1:-1]]
    fast_row = rows['hrnet_mm fast [fold, channels_last]']
    assert cells[5] == f"{fast_row['infer_peak_mib'] / rows['mmseg']['infer_peak_mib']:.2f}x"
    assert cells[9] == f"{fast_row['train_peak_mib'] / rows['mmseg']['train_peak_mib']:.2f}x"
    assert ('fold (conv + BN folding) applies to inference: the training columns of the rows '
            'named with it are measured without it.') in table
    # achieved GFLOP/s beside the device's peak
    from hrnet_mm.complexity import count
    macs = count(HRNetV2(arch='w18_small_v1'), torch.rand(1, 3, 64, 64)).gflops
    assert results['gmacs_per_image'] == pytest.approx(macs)
    peak = results['peak']['fp32']
    assert peak['gflops'] > 0 and 'FLOP/cycle' in peak['how']
    from hrnet_mm.peak import matmul_gflops
    assert peak['gflops'] >= 0.5 * matmul_gflops(torch.get_num_threads())
    r = rows['mmseg']
    infer = 2 * macs * r['infer_img_s']
    line = next(line for line in table.splitlines() if line.startswith('| mmseg |'))
    assert line.endswith(f"| {infer:.1f} ({100 * infer / peak['gflops']:.0f}%) | "
                         f"{3 * 2 * macs * r['train_img_s']:.1f} "
                         f"({300 * 2 * macs * r['train_img_s'] / peak['gflops']:.0f}%) |")
    assert f"Peak: fp32: {peak['how']}" in table
    # what hrnet_mm adds beyond the generic tools: its fast row against the stock fast row
    ours = rows['hrnet_mm fast [fold, channels_last]']
    stock = rows['mmseg fast [fold, channels_last]']
    infer, train = (ours[f'{m}_img_s'] / stock[f'{m}_img_s'] for m in ('infer', 'train'))
    assert ('\nhrnet_mm fast [fold, channels_last] against mmseg fast [fold, channels_last] (the '
            f'stock model with the same generic tools): infer {infer:.2f}x, train {train:.2f}x\n'
            ) in table
    # no warm-up: the first call is the one timed repeat
    assert rows['mmseg']['first_call_s']['infer'] == pytest.approx(
        1 / rows['mmseg']['infer_img_s'], abs=1e-3)
    assert 'First call' not in table  # nothing compiled


def test_benchmark_saves_what_it_measured_after_each_round():
    saved = []
    results = run(arch='w18_small_v1', representation='branches', batch=1, size=(64, 64),
                  references=('mmseg', ), modes=('infer', 'train'), fast=('channels_last', ),
                  warmup=1, repeats=2, progress=lambda msg: None, save=saved.append,
                  memory=False, profile=True)
    assert [s['partial'] for s in saved] == [
        *[f'infer: first call of {i} of 4 rows' for i in (1, 2, 3, 4)],
        'infer: 1 of 2 repeats', 'infer: 2 of 2 repeats',
        *[f'infer profile: {i} of 4 rows' for i in (1, 2, 3, 4)],
        *[f'train: first call of {i} of 4 rows' for i in (1, 2, 3, 4)],
        'train: 1 of 2 repeats', 'train: 2 of 2 repeats',
        *[f'train profile: {i} of 4 rows' for i in (1, 2, 3, 4)]]
    assert 'partial' not in results
    # each first call as it ends (a compile can take minutes): its row's only figure so far
    assert [bool(r['first_call_s']) for r in saved[1]['rows']] == [True, True, False, False]
    assert all(r['infer_img_s'] is None for r in saved[3]['rows'])
    # after the training repeats: every speed, and the figures that a report needs (peak,
    # multiply-adds, the stock pairs)
    timed = saved[15]
    assert all(r['train_img_s'] > 0 and 'train' not in r['profile'] for r in timed['rows'])
    assert all('infer' in r['profile'] for r in timed['rows'])
    assert {k: v for k, v in timed.items() if k not in ('rows', 'partial')} == \
        {k: v for k, v in results.items() if k != 'rows'}
    assert ('Cut short: measured up to "train: 2 of 2 repeats"; speeds are medians of the '
            'repeats done, empty cells were not reached.') in format_table(timed)
    assert 'Cut short' not in format_table(results)
    # what was not measured (memory=False) has no columns, rather than empty ones; a table cut
    # short keeps them all, its empty cells not reached yet
    assert format_table(results).splitlines()[2] == (
        '| model | precision | infer img/s | x | train img/s | x | max abs diff | '
        'infer GFLOP/s (% of peak) | train GFLOP/s (% of peak) |')
    assert '| infer peak MiB | x | train img/s |' in format_table(saved[0])


@pytest.mark.parametrize('signal_name', ['SIGKILL', 'SIGINT'])
def test_a_benchmark_stopped_early_keeps_its_finished_rounds(tmp_path, signal_name):
    """The GPU run cuts a benchmark at its time limit (kill -9 at worst), a user presses
    Ctrl-C: the rounds done by then are kept; Ctrl-C also prints their table."""
    import json
    import os
    import signal
    import subprocess
    import sys
    out = tmp_path / 'bench.json'
    # Ctrl-C as at a terminal: a test run started in the background of a script (CI's `cmd &`)
    # ignores SIGINT, and a Python started so never raises KeyboardInterrupt
    proc = subprocess.Popen(
        [sys.executable, 'tools/benchmark.py', '--arch', 'w18_small_v1', '--size', '32', '32',
         '--modes', 'infer', '--warmup', '0', '--repeats', '100000', '--no-memory', '--device',
         'cpu', '--out', str(out)], cwd=os.path.dirname(os.path.dirname(__file__)),
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stderr:
            if 'repeat 3/' in line:
                break
        proc.send_signal(getattr(signal, signal_name))
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    results = json.loads(out.read_text())
    done = int(results['partial'].split()[1])
    assert results['partial'] == f'infer: {done} of 100000 repeats' and done >= 2
    assert [r['name'] for r in results['rows']] == [
        'mmseg', 'hrnet_mm (mmseg config)', 'hrnet_mm fast [fold, channels_last]',
        'mmseg fast [fold, channels_last]']
    assert all(r['infer_img_s'] > 0 for r in results['rows'])
    assert 'Cut short: measured up to "infer: ' in format_table(results)
    if signal_name == 'SIGINT':
        assert proc.returncode == 130 and stderr.splitlines()[-1] == 'interrupted'
        assert format_table(results) in stdout and f'written so far: {out}' in stdout


def test_benchmark_progress_is_one_line_rewritten_on_a_terminal_and_a_log_elsewhere():
    import io
    tool = tool_module('benchmark')

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream in (io.StringIO(), Terminal()):
        progress = tool.progress_printer(stream, start=0.0)
        progress('warm-up 1/1: mmseg')
        progress('repeat 1/3: mmseg')
        progress.done()
        progress.done()  # a second call (Ctrl-C after the end) adds nothing
        text = stream.getvalue()
        assert re.fullmatch(r'(\r\x1b\[K)?\[benchmark +\d+\.\ds\] warm-up 1/1: mmseg(\n|\r\x1b\[K)'
                            r'\[benchmark +\d+\.\ds\] repeat 1/3: mmseg\n', text), repr(text)
        # a log keeps every step on its own line; a terminal rewrites one
        assert text.count('\n') == (1 if isinstance(stream, Terminal) else 2)


def test_profile_keeps_the_profilers_own_lines_off_the_console(capfd):
    """torch's profiler library writes two trace lines per profile to stderr from C++ (and
    a failed GPU probe where there is no GPU): 16 lines in a CPU run of the benchmark."""
    import os

    from hrnet_mm.bench import PROFILER_CHATTER, profile_step
    for line in ('USDT:2026-11-26 20:14:15 16314:16314 SyncActivityProfilerHandler.cpp:39] '
                 'profiler_start',
                 'USDT:2026-11-26 20:14:15 16314:16314 SyncActivityProfilerHandler.cpp:46] '
                 'profiler_stop',
                 'ERROR:2026-11-26 20:14:15 16314:16314 DeviceProperties.cpp:56] '
                 'gpuGetDeviceCount failed with code 35'):
        assert PROFILER_CHATTER.match(line)
    assert not PROFILER_CHATTER.match('ERROR: out of memory')

    def step():
        os.write(2, b'a line of the step itself\n')
        torch.randn(256).sum()

    got = profile_step(step, torch.device('cpu'), 0.01)
    assert got['launches'] >= 2 and got['kernel_ms'] > 0
    assert capfd.readouterr().err == 'a line of the step itself\n'


def test_cpu_profile_counts_the_backward_operators():
    """On the CPU the outermost operators stand for the device's work: backward's too, which
    run under autograd's engine (only parentless operators were counted: a training step's
    profile left its backward out and showed the CPU idle 83-89% of a detector's step)."""
    from torch.profiler import profile

    from hrnet_mm.bench import device_work
    conv = torch.nn.Conv2d(8, 8, 3)
    x = torch.randn(2, 8, 32, 32)
    with profile() as prof:
        conv(x).sum().backward()
    names = [e.name for e in device_work(prof.events(), cuda=False)]
    assert 'aten::conv2d' in names and 'aten::convolution_backward' in names
    assert 'aten::convolution' not in names  # inside conv2d: counted once, as conv2d


def test_benchmark_reports_the_first_call_of_compiled_rows():
    import time as _time

    from hrnet_mm.bench import _first_calls, _time_interleaved
    calls = []

    def step():  # slow once, like a compile
        _time.sleep(0.2 if not calls else 0.001)
        calls.append(1)

    first = {}
    median = _time_interleaved({'a': step}, torch.device('cpu'), 1, 3, lambda m: None, first)
    assert first['a'] >= 0.2 and median['a'] < 0.1 and len(calls) == 4
    rows = [dict(name='mmseg', first_call_s={'infer': 0.9}),
            dict(name='hrnet_mm fast [channels_last, compile]', first_call_s={'infer': 65.23,
                                                                              'train': 120.0}),
            dict(name='hrnet_mm fast [channels_last, winograd]',
                 first_call_s={'output check': 24.96, 'infer': 0.5}),
            dict(name='mmseg fast [channels_last, graphs]', first_call_s={'train': 2.04})]
    # a Winograd row compiles nothing (its kernel is built once per machine, not per run)
    assert _first_calls(rows) == ['', 'First call, compiling or graph capture included: '
                                      'hrnet_mm fast [channels_last, compile] infer 65.2 s; '
                                      'hrnet_mm fast [channels_last, compile] train 120.0 s; '
                                      'mmseg fast [channels_last, graphs] train 2.0 s']
    assert _first_calls([dict(name='x [compile]')]) == []  # JSON of an earlier run


def test_benchmark_fast_precision_and_profile():
    results = run(arch='w18_small_v1', representation='v2', batch=1, size=(64, 64),
                  references=('mmseg', ), modes=('infer', ), fast=('channels_last', ),
                  fast_precision='bf16', warmup=0, repeats=1, memory=False, profile=True,
                  progress=lambda msg: None)
    rows = {r['name']: r for r in results['rows']}
    assert set(rows) == {'mmseg', 'hrnet_mm (mmseg config)', 'hrnet_mm fast [channels_last] bf16',
                         'mmseg fast [channels_last] bf16'}
    assert rows['mmseg']['precision'] == 'fp32'
    fast = rows['hrnet_mm fast [channels_last] bf16']
    assert fast['precision'] == 'bf16'
    assert 1e-4 < fast['max_abs_diff'] <= 5e-2  # bf16 against the fp32 stock model
    for r in rows.values():
        p = r['profile']['infer']
        assert p['launches'] > 10 and p['kernel_ms'] > 0 and 0 <= p['idle_pct'] <= 100
        # summed durations: at least the busy time (their union); the largest kind first
        kinds = p['by_kind']
        assert sum(kinds.values()) >= p['kernel_ms'] - 0.01
        assert list(kinds.values()) == sorted(kinds.values(), reverse=True)
        assert kinds['conv / matmul'] >= 0.3 * sum(kinds.values())
        top = p['top_kernels']
        assert [ms for _, ms, _ in top] == sorted((ms for _, ms, _ in top), reverse=True)
        assert 'aten::conv2d' in [name for name, _, _ in top]
        assert sum(c for _, _, c in top) <= p['launches']
    table = format_table(results)
    assert '| mode | step ms | kernel ms | launches | idle % |' in table
    assert ('\n\nOn the CPU: kernel ms is the time in torch\'s outermost operators, launches '
            'their count, idle % the share of the step (unprofiled median) outside them: '
            'Python, and C++ work outside torch\'s operators (mmcv\'s RoIAlign in a '
            'detector).\n\nKernel ms by kind') in table
    kinds = table.split('Kernel ms by kind')[1].splitlines()
    assert kinds[2].startswith('| model | mode | conv / matmul | ')
    mmseg = next(line for line in kinds if line.startswith('| mmseg | infer | '))
    share = float(re.search(r'\(([\d.]+)%\)', mmseg.split(' | ')[2]).group(1))
    conv = rows['mmseg']['profile']['infer']['by_kind']['conv / matmul']
    assert share == round(100 * conv / sum(rows['mmseg']['profile']['infer']['by_kind'].values()))


@pytest.mark.parametrize('name, kind', [
    ('sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64_'
     'warpgroupsize1x1x1_execute_segment_k_off_kernel__5x_cudnn', 'conv / matmul'),
    ('void cudnn::bn_fw_tr_1C11_kernel_NCHW<float, float, int, 512, true, 1>(cudnnTensorStruct, '
     'float const*, float*)', 'batch norm'),
    ('void at::native::batch_norm_collect_statistics_channels_last_kernel<at::native::WelfordOps'
     '<float, float, int, thrust::pair<float, float> >, float, float, 4>(float const*, int)',
     'batch norm'),
    ('void at::native::(anonymous namespace)::upsample_nearest2d_nhwc_out_frame<c10::BFloat16, '
     '&at::native::nearest_neighbor_compute_source_index>(c10::BFloat16 const*)', 'resize'),
    ('void cudnn::ops::nchwToNhwcKernel<float, float, float, false, true, '
     '(cudnnKernelDataType_t)2>(cudnn::ops::nchw2nhwc_params_t<float>, float const*, float*)',
     'layout'),
    ('void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>, '
     'at::detail::Array<char*, 3> >(int, at::native::CUDAFunctor_add<float>)', 'elementwise'),
    ('void at::native::elementwise_kernel<128, 2, at::native::gpu_kernel_impl_nocast<at::native::'
     'direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda(float)#1}>(int)', 'copy'),
    ('void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::'
     'func_wrapper_t<float, at::native::sum_functor<float, float, float> > > >(int)', 'reduction'),
    ('void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous '
     'namespace)::TensorListMetadata<3>, std::plus<float>, float>(int)', 'optimizer'),
    ('Memcpy DtoD (Device -> Device)', 'copy'),
    ('void roi_align_forward_cuda_kernel<float>(int, float const*, float*)', 'other'),
    ('aten::conv2d', 'conv / matmul'), ('aten::convolution_backward', 'conv / matmul'),
    ('aten::native_batch_norm_backward', 'batch norm'), ('aten::add_', 'elementwise'),
    ('aten::threshold_backward', 'elementwise'), ('aten::upsample_bilinear2d', 'resize'),
    ('aten::cat', 'copy'), ('aten::sum', 'reduction'), ('aten::_foreach_add_', 'optimizer'),
    ('aten::addmm', 'conv / matmul'), ('aten::max_pool2d', 'other')])
def test_kernels_and_operators_are_told_apart_by_kind(name, kind):
    from hrnet_mm.bench import kernel_kind
    assert kernel_kind(name) == kind


def test_kernel_names_are_shortened_to_what_tells_them_apart():
    from hrnet_mm.bench import short_kernel_name
    assert short_kernel_name(
        'void at::native::(anonymous namespace)::CatArrayBatchedCopy_contig<at::native::'
        '(anonymous namespace)::OpaqueType<4u>, unsigned int, 4, 64, 64>(at::native::(anonymous '
        'namespace)::OpaqueType<4u>*, int (*)(int), unsigned int)') == \
        'CatArrayBatchedCopy_contig<OpaqueType<4u>, unsigned int, 4, 64, 64>'
    assert short_kernel_name('Memset (Device)') == 'Memset (Device)'
    assert short_kernel_name('aten::conv2d') == 'aten::conv2d'
    long = short_kernel_name('sm90_xmma_' + 'x' * 200)
    assert len(long) == 90 and long.endswith('...')


def test_a_benchmark_row_that_fails_is_left_out_and_the_others_are_measured(monkeypatch):
    """As a CUDA graph capture failing on a GPU would: the row's error in one line, in the
    progress, the row and under the table; every other row measured (a GPU run is too short
    to lose them)."""
    import hrnet_mm.bench as bench

    class Broken(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            raise RuntimeError('CUDA error: operation not permitted when stream is capturing\n'
                               'CUDA kernel errors might be asynchronously reported')

    monkeypatch.setattr(bench, 'parallel_branches', Broken)
    lines = []
    results = run(arch='w18_small_v1', representation='v2', batch=1, size=(64, 64),
                  references=('mmseg', ), modes=('infer', 'train'), fast=('channels_last', ),
                  streams=True, warmup=1, repeats=1, memory=False, progress=lines.append)
    rows = {r['name']: r for r in results['rows']}
    broken = 'hrnet_mm fast [channels_last, streams]'
    error = 'RuntimeError: CUDA error: operation not permitted when stream is capturing'
    assert rows[broken]['notes'] == [f'infer: {error}', f'train: {error}']
    assert rows[broken]['infer_img_s'] is None and rows[broken]['train_img_s'] is None
    assert all(r['infer_img_s'] and r['train_img_s'] for n, r in rows.items() if n != broken)
    assert lines.count(f'{broken}: failed, left out ({error})') == 2
    assert (f'\n\nLeft out, it failed: {broken}: infer: {error}; train: {error}'
            in format_table(results))


@pytest.mark.parametrize('library, representation', [
    ('mmseg', 'v2'), ('mmdet', 'v2p'), ('mmdet', 'v1'), ('mmpose', 'v1'), ('timm', 'cls')])
def test_benchmark_pairs_compute_the_same(library, representation):
    ref, ours = build_pair(library, 'w18_small_v1', representation, seed=1)
    ref.eval()
    ours.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    assert max_abs_diff(expected, got) <= 1e-5
    assert expected[0].abs().mean() > 1e-2  # random weights, not a trivial output


def test_autocast_backbone_runs_backbone_and_neck_in_bf16_and_hands_on_float32():
    from mmdet.structures import DetDataSample
    from mmengine.config import Config

    from hrnet_mm.registry import build_in_library
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    cfg = Config.fromfile(str(root / 'configs/det/demo_faster-rcnn_hrnet-w18-small-v1_fpn.py'))
    torch.manual_seed(0)
    plain = build_in_library(cfg.model, 'mmdet').eval()  # HRNet branches + an FPN neck
    randomize(plain.backbone)
    model = autocast_backbone(copy.deepcopy(plain), 'bf16')
    assert list(model.state_dict()) == list(plain.state_dict())  # checkpoints load as before
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        ref, feats = plain.neck(plain.backbone(x)), model.neck(model.backbone(x))
        assert all(f.dtype == torch.float32 for f in feats)
        scale = max(r.abs().max().item() for r in ref)
        assert 0 < max_abs_diff(ref, feats) <= 5e-2 * scale  # bf16 inside: close, not equal
        # the whole detector predicts: RPN and RoI heads, box coding and NMS stay in fp32
        meta = dict(img_shape=(96, 128), ori_shape=(96, 128), scale_factor=(1.0, 1.0))
        result = model.predict(x, [DetDataSample(metainfo=meta)])[0]
        assert result.pred_instances.bboxes.dtype == torch.float32
    assert autocast_backbone(model, 'bf16') is model  # twice: still one autocast layer
    with pytest.raises(ValueError, match=r"precision='int8': one of \['bf16', 'fp16'\]"):
        autocast_backbone(model, 'int8')
    with pytest.raises(ValueError, match='Linear has no backbone module'):
        autocast_backbone(nn.Linear(2, 2))


def test_rounding_noise_perturbs_by_the_rounding_step_and_restores_the_model():
    class Pose(nn.Module):  # a model with a backbone, as mmpose's TopdownPoseEstimator
        def __init__(self):
            super().__init__()
            self.backbone = HRNetV2(arch='w18_small_v1', representation='v1')
            self.head = nn.Conv2d(16, 3, 1)

    model = randomize(Pose()).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 64, 64)

    def out():
        with torch.no_grad():
            return model.backbone(x)[0]

    ref = out()
    scale = ref.abs().max().item()
    diffs = {}
    for precision in ('bf16', 'fp16'):
        with rounding_noise(model, precision, seed=3):
            noisy = out()
            assert out().ne(noisy).any()  # new noise on every forward
        with rounding_noise(model, precision, seed=3):
            assert torch.equal(out(), noisy)  # a seed is one draw
        diffs[precision] = (noisy - ref).abs().max().item() / scale
    # bf16's step (2**-8) is 8x fp16's: errors of about that size, not more, not zero
    assert 1e-4 < diffs['bf16'] < 5e-2 and 1e-5 < diffs['fp16'] < diffs['bf16'] / 3
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-equal on exit
    assert torch.equal(out(), ref)  # and no hook left behind
    assert model.head.weight.equal(before['head.weight'])  # the head was never touched
    with pytest.raises(ValueError, match=r"precision='int8': one of \['bf16', 'fp16'\]"):
        with rounding_noise(model, 'int8'):
            pass
    with pytest.raises(ValueError, match='Linear has no backbone module'):
        with rounding_noise(nn.Linear(2, 2)):
            pass


@pytest.mark.slow
def test_benchmark_freeze_rows_compute_the_same():
    """``--fast freeze``: both models compiled with inductor freezing (about 2 minutes)."""
    torch._dynamo.reset()
    results = run(arch='w18_small_v1', representation='branches', batch=1, size=(64, 64),
                  references=('mmseg', ), modes=('infer', ),
                  fast=('fold', 'channels_last', 'freeze'), warmup=0, repeats=2, memory=False,
                  progress=lambda msg: None)
    rows = {r['name']: r for r in results['rows']}
    for name in ('hrnet_mm fast [fold, channels_last, freeze]',
                 'mmseg fast [fold, channels_last, freeze]'):
        assert rows[name]['max_abs_diff'] <= 1e-4 and rows[name]['infer_img_s'] > 0
        # compiling happened in the first call (of two timed ones), which the table names
        assert rows[name]['first_call_s']['infer'] > 1 / rows[name]['infer_img_s']
        assert f"{name} infer {rows[name]['first_call_s']['infer']:.1f} s" in format_table(
            results)


@pytest.mark.slow
@pytest.mark.parametrize('representation', REPRESENTATIONS)
def test_inductor_compile_fullgraph(representation):
    """The real compiler (C++ codegen), not only the tracer: minutes on 2 cores."""
    torch._dynamo.reset()
    model = _model(representation)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert max_abs_diff(model(x), compiled(x)) <= 1e-4


def test_device_peaks():
    from hrnet_mm.peak import cpu_peak, gpu_peak
    zen4 = {'vendor_id': 'AuthenticAMD', 'cpu family': '25', 'cpu MHz': '2600.0',
            'flags': 'fma avx2 avx512f avx512_bf16'}
    assert cpu_peak(2, 'fp32', zen4).gflops == pytest.approx(2 * 2.6 * 32)
    assert cpu_peak(2, 'bf16', zen4).gflops == pytest.approx(2 * 2.6 * 64)
    intel = {'vendor_id': 'GenuineIntel', 'cpu family': '6', 'cpu MHz': '2000',
             'flags': 'fma avx2 avx512f'}
    assert cpu_peak(4, 'fp32', intel).gflops == pytest.approx(4 * 2.0 * 64)
    avx2 = dict(intel, flags='fma avx2')
    assert cpu_peak(1, 'fp32', avx2).how == '1 threads x 2.00 GHz x 32 fp32 FLOP/cycle (AVX2: ' \
        '2 x 256-bit FMA pipes) = 64 GFLOP/s'
    assert cpu_peak(1, 'fp32', {}).gflops is None
    # a matmul faster than the estimate (the cores boost above the nominal clock) is the peak
    boosted = cpu_peak(2, 'fp32', zen4, measured=175.0)
    assert boosted.gflops == 175.0 and boosted.how.startswith('a 2048x2048 fp32 matmul reached')
    assert cpu_peak(2, 'fp32', zen4, measured=100.0).gflops == pytest.approx(2 * 2.6 * 32)
    assert gpu_peak('NVIDIA H100 80GB HBM3', 'fp32', tf32=True).gflops == 494700
    assert gpu_peak('NVIDIA H100 80GB HBM3', 'fp32', tf32=False).gflops == 66900
    assert gpu_peak('NVIDIA H200', 'bf16', tf32=True).gflops == 989400
    assert gpu_peak('NVIDIA H100 PCIe', 'bf16', tf32=True).gflops == 756000
    assert gpu_peak('Some Card', 'fp32', tf32=True).gflops is None


def test_bf16_peak_is_not_measured_on_a_cpu_without_bf16_instructions(monkeypatch):
    # there a bf16 matmul runs in reference code: the 2048x2048 one took minutes on AVX2
    from hrnet_mm import peak
    measured = []
    monkeypatch.setattr(peak, 'matmul_gflops',
                        lambda threads, precision: measured.append(precision) or 1.0)
    avx2 = {'vendor_id': 'AuthenticAMD', 'cpu family': '25', 'cpu MHz': '2000',
            'flags': 'fma avx2'}
    monkeypatch.setattr(peak, '_cpuinfo', lambda: avx2)
    bf16 = peak.device_peak(torch.device('cpu'), 'bf16', threads=2)
    assert measured == [] and bf16.gflops == pytest.approx(2 * 2.0 * 32)
    assert bf16.how.endswith('no bf16 instructions: bf16 at the fp32 rate at best) = 128 GFLOP/s')
    peak.device_peak(torch.device('cpu'), 'fp32', threads=2)
    assert measured == ['fp32']
    monkeypatch.setattr(peak, '_cpuinfo', lambda: dict(avx2, flags='fma avx2 avx512f avx512_bf16'))
    assert peak.device_peak(torch.device('cpu'), 'bf16', threads=2).gflops == \
        pytest.approx(2 * 2.0 * 64)
    assert measured == ['fp32', 'bf16']


def test_benchmark_agreement_bounds_per_precision(monkeypatch):
    """fp32 elementwise; bf16 (rounding in another order) and fp32 with TF32 on a GPU
    (another channel count rounds elsewhere) relative to the outputs' norm; NaN disagrees."""
    from hrnet_mm.bench import _agreement_kind, check_agreement
    ref = [torch.linspace(-50, 50, 1000)]
    noise = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    bf16_noise = [ref[0] * (1 + 0.01 * noise)]
    assert check_agreement(ref, [ref[0] + 5e-5], 'fp32', 'a and b') == pytest.approx(5e-5, rel=1e-2)
    with pytest.raises(RuntimeError,
                       match=r'^a and b disagree in fp32: max abs diff 0\.001 > 0\.0001$'):
        check_agreement(ref, [ref[0] + 1e-3], 'fp32', 'a and b')
    # 1% noise: a max abs diff far above 0.05, within bf16's bound of the norm
    assert check_agreement(ref, bf16_noise, 'bf16', 'a and b') > 0.05
    with pytest.raises(RuntimeError, match=r'disagree in bf16: relative diff 0\.1 > 0\.05'):
        check_agreement(ref, [ref[0] * 1.1], 'bf16', 'a and b')
    with pytest.raises(RuntimeError, match='relative diff nan'):
        check_agreement(ref, [ref[0] * float('nan')], 'fp16', 'a and b')
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', True)
    assert _agreement_kind('fp32', torch.device('cuda')) == 'tf32'
    assert _agreement_kind('fp32', torch.device('cpu')) == 'fp32'
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    assert _agreement_kind('fp32', torch.device('cuda')) == 'fp32'
    assert _agreement_kind('bf16', torch.device('cuda')) == 'reduced'
