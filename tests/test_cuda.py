"""On a GPU: equivalence with the stock HRNets, training in every precision, the fast paths, and
the demo configs through tools/train.py, ``mim train`` and tools/test.py with mmengine's AMP.

Every test here is marked ``cuda`` and skipped where torch sees no GPU (CI has none); run them
with ``python -m pytest -m cuda`` on a GPU machine (``tools/gpu_check.sh`` does, with the
benchmarks). ``HRNET_MM_CUDA_TESTS_ON=cpu`` runs the same code on the CPU, as a dry run of this
file (AMP through mmengine is GPU-only there and is left out).

Tolerances (each test records what it measured, as ``record_property``):

- fp32 with TF32 off: max abs difference <= 1e-4 to the stock model and to the plain model;
- TF32 on (cuDNN and matmul): relative difference (``||a - b|| / ||b||`` over all outputs) to
  the stock model in the same mode <= 1e-3, and to fp32 <= 1e-2;
- bf16 autocast: to fp32 no more than 1.5x the stock model's own bf16 error, and to the stock
  model in bf16 no more than 2.5x that error, at most 5e-2 (two bf16 runs that round in another
  order differ by about the error of each: 1.25e-2 for mmpose W18 on an H100, errors 0.9e-2);
- training step gradients relative to fp32, BN statistics fixed: bf16 <= 0.05, fp16 (with a
  GradScaler) <= 0.02 (measured on the CPU: 0.004-0.009 and 0.001-0.005).
"""
import copy
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import max_abs_diff, padded_parts, randomize
from torch.nn.modules.batchnorm import _BatchNorm

from hrnet_mm import HRNetV2
from hrnet_mm.bench import build_pair, peak_memory_mib
from hrnet_mm.cuda_graphs import CUDAGraphed
from hrnet_mm.fast import fuse_conv_bn, optimize_for_inference
from hrnet_mm.models.blocks import BasicBlock
from hrnet_mm.models.fusion import FP16_MAX, HRModule
from hrnet_mm.regions import compile_regions
from hrnet_mm.streams import _SIDE_STREAMS, parallel_branches

pytestmark = pytest.mark.cuda
DEVICE = torch.device(os.environ.get('HRNET_MM_CUDA_TESTS_ON', 'cuda'))
ON_GPU = DEVICE.type == 'cuda'
ROOT = Path(__file__).resolve().parents[1]
REPRESENTATIONS = ['branches', 'v1', 'v2', 'v2p', 'cls']


@contextmanager
def tf32(enabled: bool):
    """TF32 for cuDNN convolutions and matmuls on or off (cuDNN's default is on)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def autocast(dtype):
    return torch.autocast(DEVICE.type, dtype=dtype, enabled=dtype is not None)


def rel(a, b) -> float:
    """``||a - b|| / ||b||`` over sequences of tensors (in float32)."""
    num = sum(((x.float() - y.float())**2).sum() for x, y in zip(a, b))
    den = sum((y.float()**2).sum() for y in b)
    return (num / den).sqrt().item()


def _model(representation='branches', arch='w18_small_v1', **kwargs):
    return randomize(HRNetV2(arch=arch, representation=representation, **kwargs)).to(DEVICE)


def _x(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(DEVICE)


# ---------------------------------------------------------------------- equivalence
@pytest.mark.parametrize('library, representation', [
    ('mmdet', 'branches'), ('mmdet', 'v2p'), ('mmseg', 'v2'), ('mmpose', 'v1')])
def test_equal_to_stock_in_fp32_tf32_and_bf16(library, representation, record_property):
    ref, ours = build_pair(library, 'w18', representation)
    ref, ours = ref.to(DEVICE).eval(), ours.to(DEVICE).eval()
    x = _x(2, 3, 256, 192)
    with torch.no_grad():
        with tf32(False):
            stock32, ours32 = ref(x), ours(x)
        with tf32(True):
            stock_tf32, ours_tf32 = ref(x), ours(x)
        with tf32(False), autocast(torch.bfloat16):
            stock_bf16, ours_bf16 = ref(x), ours(x)
    measured = dict(fp32_abs=max_abs_diff(stock32, ours32),
                    tf32_vs_stock=rel(ours_tf32, stock_tf32), tf32_vs_fp32=rel(ours_tf32, stock32),
                    bf16_vs_stock=rel(ours_bf16, stock_bf16), bf16_vs_fp32=rel(ours_bf16, stock32),
                    stock_bf16_vs_fp32=rel(stock_bf16, stock32),
                    bf16_dtypes=[str(o.dtype) for o in ours_bf16],
                    stock_bf16_dtypes=[str(o.dtype) for o in stock_bf16])
    record_property('measured', json.dumps(measured))
    assert measured['fp32_abs'] <= 1e-4, measured
    assert measured['tf32_vs_stock'] <= 1e-3 and measured['tf32_vs_fp32'] <= 1e-2, measured
    # bf16: no further from fp32 than the stock model in bf16 is (rounding in another order
    # moves the error, not its size: measured 0.0094 against the stock's own), and from the
    # stock bf16 output by about two such errors (0.0125 for mmpose W18 on an H100).
    stock_err = measured['stock_bf16_vs_fp32']
    assert measured['bf16_vs_fp32'] <= max(1.5 * stock_err, 1e-3), measured
    assert measured['bf16_vs_stock'] <= max(2.5 * stock_err, 1e-3) <= 5e-2, measured
    # the maps a head gets are of the stock model's dtypes (on an H100 and an H200 the
    # stride-4 map was float32 under bf16 autocast, the stock's bfloat16: a resize returns
    # float32 there, and a new sum promoted; reproduced on the CPU in test_equivalence)
    assert measured['bf16_dtypes'] == measured['stock_bf16_dtypes'], measured


# ---------------------------------------------------------------------- training steps
def _grads_after_step(model, x, dtype):
    """One training step's loss and gradients under autocast ``dtype`` (None: fp32)."""
    model.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=dtype == torch.float16)
    with autocast(dtype):
        outs = model(x)
    loss = sum(o.float().square().mean() for o in outs)
    scaler.scale(loss).backward()
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    return loss.item(), [p.grad.float() / scale for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize('representation', REPRESENTATIONS)
def test_training_step_in_fp32_bf16_fp16(representation, record_property):
    """Finite losses and gradients in every precision; gradients close to fp32 with the BN
    statistics fixed (``norm_eval``: with batch statistics of 2 small images, the stock
    models' low-precision gradients differ from fp32 by 40% and more, ours exactly alike)."""
    x = _x(2, 3, 128, 128)
    measured = {}
    with tf32(False):
        for norm_eval in (False, True):
            model = _model(representation, norm_eval=norm_eval).train()
            loss32, grads32 = _grads_after_step(model, x, None)
            for name, dtype, tol in [('bf16', torch.bfloat16, 0.05), ('fp16', torch.float16, 0.02)]:
                loss, grads = _grads_after_step(model, x, dtype)
                assert torch.isfinite(torch.tensor(loss)), (name, loss)
                assert all(torch.isfinite(g).all() for g in grads), name
                assert len(grads) == len(grads32)
                key = f'{name}{"_norm_eval" if norm_eval else ""}'
                measured[key] = dict(loss=abs(loss - loss32) / abs(loss32),
                                     grads=rel(grads, grads32))
                if norm_eval:
                    assert measured[key]['grads'] <= tol, (name, measured)
    record_property('measured', json.dumps(measured))


def test_fp16_fusion_sums_saturate():
    """Two branches near the float16 limit: a float16 sum is inf, the fusion saturates."""
    module = HRModule(BasicBlock, [1, 1], [8, 8], [8, 8], num_outputs=2).eval()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
            if isinstance(m, _BatchNorm):
                m.weight.fill_(1.0)
                m.bias.fill_(40000.0)
    module.to(DEVICE)
    x = [_x(1, 8, 16, 16), _x(1, 8, 8, 8)]
    with torch.no_grad():
        fp32 = module(x)
        half = copy.deepcopy(module).half()([t.half() for t in x])
        with autocast(torch.float16):
            amp = module(x)
    assert torch.isinf(fp32[0].half() + fp32[0].half()).any()
    for a, b, c in zip(fp32, half, amp):
        assert b.dtype == torch.float16 and torch.isfinite(b).all()
        assert torch.equal(b.float(), a.clamp(max=FP16_MAX).half().float())
        assert torch.isfinite(c).all()


# ---------------------------------------------------------------------- fast paths
# Gradients are compared with the BN statistics fixed (norm_eval): batch statistics of two small
# images amplify float rounding (another conv algorithm) far beyond what the path changes.
def _outputs_and_gradients(models, x):
    """Each model's outputs and parameter gradients (fp32, TF32 off), the gradients cut to
    the first model's shapes (a padded model's extra channels left out)."""
    outs, grads = [], []
    with tf32(False):
        for m in models:
            y = m(x)
            sum(o.square().mean() for o in y).backward()
            outs.append(y)
            grads.append([p.grad[tuple(slice(0, n) for n in q.shape)]
                          for p, q in zip(m.parameters(), models[0].parameters())])
    return outs, grads


def test_channels_last_same_outputs_and_gradients():
    plain = _model(norm_eval=True).train()
    nhwc = HRNetV2(arch='w18_small_v1', norm_eval=True, channels_last=True).to(DEVICE).train()
    nhwc.load_state_dict(plain.state_dict())
    outs, grads = _outputs_and_gradients((plain, nhwc), _x(2, 3, 128, 128))
    assert outs[1][0].is_contiguous(memory_format=torch.channels_last)
    assert max_abs_diff(outs[0], outs[1]) <= 1e-4
    assert rel(grads[1], grads[0]) <= 1e-4


def test_padded_channels_same_outputs_gradients_and_zeros_in_bf16(record_property):
    """W18 widths padded to multiples of 8 (hrnet_mm.padding) under cuDNN's algorithms: the
    same outputs and gradients as the plain model, and the extra channels stay exactly zero
    through bf16 training steps (channels_last, as the benchmark runs it)."""
    from hrnet_mm.padding import pad_channels
    plain = _model('v2', arch='w18_small_v2', norm_eval=True).train()
    padded = pad_channels(copy.deepcopy(plain), 8)
    x = _x(2, 3, 128, 160)
    outs, grads = _outputs_and_gradients((plain, padded), x)
    measured = dict(fp32_out=max_abs_diff(outs[0], outs[1]), fp32_grads=rel(grads[1], grads[0]))
    fast = pad_channels(copy.deepcopy(plain).to(memory_format=torch.channels_last), 8)
    optimizer = torch.optim.SGD(fast.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    for _ in range(3):
        optimizer.zero_grad()
        with autocast(torch.bfloat16):
            loss = sum(o.float().square().mean() for o in fast(x))
        loss.backward()
        optimizer.step()
    extra = {k: t for k, t in padded_parts(fast).items() if not k.endswith('running_var')}
    assert extra  # the padded layers are there
    nonzero = sum(torch.count_nonzero(t).item() for t in extra.values())
    measured['bf16_nonzero_extra'] = nonzero
    record_property('measured', json.dumps(measured))
    assert measured['fp32_out'] <= 1e-4 and measured['fp32_grads'] <= 1e-4, measured
    assert nonzero == 0 and torch.isfinite(loss), measured


@pytest.mark.parametrize('representation', ['v2p', 'cls'])
def test_fuse_conv_bn_and_optimize_for_inference(representation):
    model = _model(representation).eval()
    x = _x(2, 3, 128, 160)
    with torch.no_grad(), tf32(False):
        plain = model(x)
        fused = fuse_conv_bn(copy.deepcopy(model))(x)
        fast_model = optimize_for_inference(copy.deepcopy(model))
        fast = fast_model(x)
    assert not any(isinstance(m, _BatchNorm) for m in fast_model.modules())
    assert max_abs_diff(plain, fused) <= 1e-4
    assert max_abs_diff(plain, fast) <= 1e-4


@pytest.mark.long(seconds=64)  # on an H100, 6 workers: started first
def test_compile_fullgraph_inference_and_training():
    """Inductor on the device: one graph for inference and for a training step."""
    torch._dynamo.reset()
    model = _model('v2', norm_eval=True).train()
    compiled_model = copy.deepcopy(model)
    compiled = torch.compile(compiled_model, fullgraph=True)
    x = _x(2, 3, 128, 128)
    with tf32(False):
        outs, grads = [], []
        for m, params in ((model, model), (compiled, compiled_model)):
            y = m(x)
            sum(o.square().mean() for o in y).backward()
            outs.append(y)
            grads.append([p.grad for p in params.parameters()])
        assert max_abs_diff(outs[0], outs[1]) <= 1e-4
        assert rel(grads[1], grads[0]) <= 1e-4
        fast = optimize_for_inference(copy.deepcopy(model), compile=True, fullgraph=True)
        with torch.no_grad():
            assert max_abs_diff(model.eval()(x), fast(x)) <= 1e-4


def test_with_cp_peak_memory_at_most_0_6_of_stock(record_property):
    ref, ours = build_pair('mmseg', 'w18', 'branches')
    cp_model = HRNetV2(arch='w18', with_cp=True, upsample_mode='bilinear')
    cp_model.load_state_dict(ours.state_dict())
    x = _x(2, 3, 512, 512) if ON_GPU else _x(2, 3, 256, 256)

    def peak(model):
        model.to(DEVICE).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step():
            opt.zero_grad()
            sum(o.mean() for o in model(x)).backward()
            opt.step()
        step()  # cuDNN's workspaces and autotuning happen before the measured step
        mib = peak_memory_mib(step, DEVICE, [model], opt)
        opt.zero_grad(set_to_none=True)
        model.cpu()  # the next model's peak counts every live tensor: not this one's
        return mib

    stock, checkpointed = peak(ref), peak(cp_model)
    record_property('measured', json.dumps(dict(stock_mib=stock, with_cp_mib=checkpointed)))
    assert checkpointed <= 0.6 * stock, (checkpointed, stock)


# ---------------------------------------------------------------------- CUDA graphs
needs_gpu = pytest.mark.skipif(not ON_GPU, reason='CUDA graphs need a GPU')


@needs_gpu
@pytest.mark.parametrize('parallel', [False, True], ids=['in_turn', 'parallel_branches'])
def test_cuda_graphs_inference_replays_the_eager_outputs(parallel):
    """Each call's own input (copied in, not the captured one), a graph per shape; with
    ``parallel_branches`` the graph is captured from four streams."""
    model = optimize_for_inference(_model('v2'))
    graphed = CUDAGraphed(parallel_branches(copy.deepcopy(model), parallel))
    with torch.inference_mode(), tf32(False):
        for x in (_x(2, 3, 128, 160, seed=1), _x(2, 3, 128, 160, seed=2),
                  _x(1, 3, 96, 128, seed=3)):
            assert max_abs_diff(model(x), [o.clone() for o in graphed(x)]) <= 1e-5
    assert len(graphed._graphs) == 2


def _apart_after_three_steps(eager: nn.Module, other: nn.Module, dtype) -> dict:
    """SGD with momentum, BN in training mode, three steps on three batches for both models:
    how far apart their losses, weights and BN statistics end (relative)."""
    models = (eager, other)
    optims = [torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for m in models]
    losses = [[], []]
    with tf32(False):
        for step in range(3):
            x = _x(2, 3, 128, 128, seed=10 + step)
            for i, (m, opt) in enumerate(zip(models, optims)):
                opt.zero_grad(set_to_none=True)
                with autocast(dtype):
                    outs = m(x)
                loss = sum(o.float().square().mean() for o in outs)
                loss.backward()
                opt.step()
                losses[i].append(loss.item())
    inner = getattr(other, 'module', other)
    params = [list(eager.parameters()), list(inner.parameters())]
    buffers = [list(eager.buffers()), list(inner.buffers())]
    assert [b.item() for b in inner.buffers() if b.dtype == torch.long] == \
        [b.item() for b in eager.buffers() if b.dtype == torch.long]  # num_batches_tracked
    return dict(losses=rel([torch.tensor(losses[1])], [torch.tensor(losses[0])]),
                params=rel(params[1], params[0]), buffers=rel(buffers[1], buffers[0]))


@needs_gpu
@pytest.mark.parametrize('parallel', [False, True], ids=['in_turn', 'parallel_branches'])
def test_cuda_graphs_training_follows_the_eager_model_step_for_step(parallel, record_property):
    """SGD with momentum, BN in training mode: after three steps on three batches the graphed
    model's weights and BN statistics are the eager one's (capturing's warm-up calls leave
    no trace in the statistics); bf16 autocast (its weight cache on, as by default) too. With
    ``parallel_branches`` the forward and backward graphs are captured from four streams
    (autograd runs each backward op on its forward op's stream)."""
    measured = {}
    for name, dtype in (('fp32', None), ('bf16', torch.bfloat16)):
        eager = _model('v2').train()
        graphed = CUDAGraphed(parallel_branches(copy.deepcopy(eager), parallel))
        measured[name] = _apart_after_three_steps(eager, graphed, dtype)
        tol = 1e-4 if dtype is None else 2e-2
        assert all(v <= tol for v in measured[name].values()), measured
        assert len(graphed._graphs) == 1
    record_property('measured', json.dumps(measured))


@needs_gpu
@pytest.mark.long(seconds=150)  # inductor compiles the regions three times: started first
def test_compiled_regions_on_streams_as_cuda_graphs_follow_the_eager_model(record_property):
    """The fastest combination: each region compiled by inductor (fused kernels), the regions
    of a module on parallel streams, the whole step as CUDA graphs. Inference within 1e-4 of
    the eager model (fp32, TF32 off); three SGD steps within 1e-3 (fp32) and 5e-2 (bf16:
    inductor rounds to bf16 at other points than eager kernels) of the eager steps."""
    torch._dynamo.reset()
    model = optimize_for_inference(_model('v2'))
    graphed = CUDAGraphed(compile_regions(parallel_branches(copy.deepcopy(model))))
    measured = {}
    with torch.inference_mode(), tf32(False):
        x = _x(2, 3, 128, 160, seed=1)
        measured['infer'] = max_abs_diff(model(x), [o.clone() for o in graphed(x)])
    for name, dtype, tol in (('fp32', None, 1e-3), ('bf16', torch.bfloat16, 5e-2)):
        eager = _model('v2').train()
        fast = CUDAGraphed(compile_regions(parallel_branches(copy.deepcopy(eager))))
        measured[name] = _apart_after_three_steps(eager, fast, dtype)
        assert all(v <= tol for v in measured[name].values()), measured
    record_property('measured', json.dumps(measured))
    assert measured['infer'] <= 1e-4, measured


@needs_gpu
def test_cuda_graphs_past_max_graphs_run_eagerly_with_one_warning():
    model = _model('v2').eval()
    graphed = CUDAGraphed(copy.deepcopy(model), max_graphs=1)
    with torch.no_grad(), tf32(False):
        graphed(_x(1, 3, 64, 64))
        with pytest.warns(UserWarning, match=r'^CUDAGraphed: 1 graphs captured \(max_graphs\); '
                                             r'input shape \(1, 3, 96, 96\)'):
            out = graphed(_x(1, 3, 96, 96))
        assert max_abs_diff(model(_x(1, 3, 96, 96)), out) <= 1e-5
    assert len(graphed._graphs) == 1


def test_parallel_branches_same_outputs_and_gradients_as_in_turn(record_property):
    """Eagerly, each module's branches and exchange outputs on their own streams (W18: four):
    the same kernels on the same data as in turn. Three batches in a row, so that memory
    handed out again too early (a map still read on another stream) would show."""
    plain = _model(arch='w18', norm_eval=True).train()
    parallel = parallel_branches(copy.deepcopy(plain))
    measured = dict(outputs=0.0, grads=0.0)
    for seed in range(3):
        for m in (plain, parallel):
            m.zero_grad(set_to_none=True)
        outs, grads = _outputs_and_gradients((plain, parallel), _x(2, 3, 128, 160, seed=seed))
        measured = dict(outputs=max(measured['outputs'], max_abs_diff(outs[0], outs[1])),
                        grads=max(measured['grads'], rel(grads[1], grads[0])))
    record_property('measured', json.dumps(measured))
    assert len(_SIDE_STREAMS) >= 3 or not ON_GPU  # the side streams were used
    assert measured['outputs'] <= 1e-5 and measured['grads'] <= 1e-5, measured


# ---------------------------------------------------------------------- the demo configs
DEMOS = {
    'det': ('configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py', 'coco/bbox_mAP'),
    'seg': ('configs/seg/demo_fcn_hrnetv2-w18-small-v1.py', 'mIoU'),
    'pose': ('configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py', 'coco/AP'),
}




def _tool(args, cwd):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _amp(dtype):
    """``--cfg-options`` for mmengine's AmpOptimWrapper with ``dtype`` (GPU-only)."""
    if not ON_GPU:
        return []
    return ['optim_wrapper.type=AmpOptimWrapper', f'optim_wrapper.dtype={dtype}',
            'optim_wrapper.loss_scale=dynamic']


@pytest.mark.long(seconds=100)  # on an H100, 6 workers: started first
@pytest.mark.parametrize('task', sorted(DEMOS))
def test_demo_trains_with_amp_resumes_and_is_tested(task, demo_dir, tmp_path):
    config, metric = DEMOS[task]
    work = tmp_path / 'work'
    train = [sys.executable, str(ROOT / 'tools/train.py'), str(ROOT / config), '--work-dir',
             str(work)]
    log = _tool(train + ['--cfg-options', 'train_cfg.max_iters=4'] + _amp('float16'), demo_dir)
    ckpt = torch.load(work / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 4
    # AmpOptimWrapper saves its loss scaler beside the optimizer (the console log is quiet)
    assert ('loss_scaler' in ckpt['optimizer']) == ON_GPU, log
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values() if v.is_floating_point())
    # resumed in bf16 (the loss scaler's state is restored too), two more iterations
    log = _tool(train + ['--resume', '--cfg-options', 'train_cfg.max_iters=6'] + _amp('bfloat16'),
                demo_dir)
    assert 'resumed epoch: 0, iter: 4' in log
    assert torch.load(work / 'iter_6.pth', map_location='cpu', weights_only=False)['meta']['iter'] == 6
    out = tmp_path / 'metrics.json'
    _tool([sys.executable, str(ROOT / 'tools/test.py'), str(ROOT / config), str(work / 'iter_6.pth'),
           '--work-dir', str(work), '--out', str(out)], demo_dir)
    value = json.loads(out.read_text())[metric]
    assert value == value and value >= 0  # a number, not NaN


@pytest.mark.long(seconds=180)  # on an H100, 6 workers: started first
def test_demo_trains_compiled_with_cuda_graphs(demo_dir, tmp_path, record_property):
    """mmengine's ``compile`` with CUDA graphs (``mode='reduce-overhead'``: the seg demo's
    crops have one shape) and bf16 AMP, as a user asks for speed in a config; the optimizer
    steps outside the graphs (hrnet_mm.compat); on the CPU the graphs are left out (about 3
    minutes of compiling on 2 cores)."""
    import time
    config, _ = DEMOS['seg']
    start = time.perf_counter()
    log = _tool([sys.executable, str(ROOT / 'tools/train.py'), str(ROOT / config), '--work-dir',
                 str(tmp_path), '--cfg-options', 'train_cfg.max_iters=6',
                 'compile.mode=reduce-overhead'] + _amp('bfloat16'), demo_dir)
    record_property('measured', json.dumps(dict(seconds=round(time.perf_counter() - start, 1))))
    ckpt = torch.load(tmp_path / 'iter_6.pth', map_location='cpu', weights_only=False)
    assert ckpt['meta']['iter'] == 6
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values() if v.is_floating_point())
    assert 'Model has been "compiled"' in log and 'Traceback' not in log
    # its optimizer state made inside a CUDA graph was overwritten by the next replay (an H100)
    assert 'compile with CUDA graphs: the optimizer steps eagerly, outside the graphs' in log


@pytest.mark.long(seconds=110)  # on an H100, 6 workers: started first
def test_cuda_graphs_hook_trains_a_demo_as_the_eager_model_and_tests_it(demo_dir, tmp_path,
                                                                        record_property):
    """The seg demo with ``custom_hooks = [dict(type='CUDAGraphsHook')]`` (a config inheriting
    the demo's; the branches on parallel streams, the hook's default) through tools/train.py:
    six iterations end where the eager run's end (fp32, the same seed), and tools/test.py
    evaluates the checkpoint through the graphs. On the CPU
    the hook leaves the model eager (one log line), so both runs are eager there."""
    config, metric = DEMOS['seg']
    graphed = tmp_path / 'graphed.py'
    graphed.write_text(f'_base_ = {str(ROOT / config)!r}\n'
                       "custom_hooks = [dict(type='CUDAGraphsHook')]\n")
    weights, logs = {}, {}
    for name, cfg in (('eager', ROOT / config), ('graphed', graphed)):
        work = tmp_path / name
        logs[name] = _tool([sys.executable, str(ROOT / 'tools/train.py'), str(cfg), '--work-dir',
                            str(work), '--cfg-options', 'train_cfg.max_iters=6'], demo_dir)
        state = torch.load(work / 'iter_6.pth', map_location='cpu', weights_only=False)
        weights[name] = {k: v for k, v in state['state_dict'].items() if v.is_floating_point()}
    assert list(weights['graphed']) == list(weights['eager'])  # the model's own keys
    measured = dict(weights=rel(list(weights['graphed'].values()),
                                list(weights['eager'].values())))
    record_property('measured', json.dumps(measured))
    assert measured['weights'] <= 1e-3, measured
    said = ('CUDAGraphsHook: EncoderDecoder.extract_feat runs as CUDA graphs, one per input '
            'shape (at most 4), the HRNet branches on parallel CUDA streams')
    assert (said in logs['graphed']) == ON_GPU and said not in logs['eager']
    assert ('CUDAGraphsHook: the model is on cpu' in logs['graphed']) != ON_GPU
    out = tmp_path / 'metrics.json'
    _tool([sys.executable, str(ROOT / 'tools/test.py'), str(graphed),
           str(tmp_path / 'graphed/iter_6.pth'), '--work-dir', str(tmp_path / 'graphed'),
           '--out', str(out)], demo_dir)
    value = json.loads(out.read_text())[metric]
    assert value == value and value >= 0


def _console_script(name: str) -> str:
    """A console script of this environment: beside the interpreter, or where pip puts a
    system Python's scripts (/usr/local/bin) or the user's (~/.local/bin)."""
    import shutil
    import sysconfig
    for folder in (Path(sys.executable).parent, sysconfig.get_path('scripts'),
                   sysconfig.get_path('scripts', f'{os.name}_user')):
        if (Path(folder) / name).exists():
            return str(Path(folder) / name)
    return shutil.which(name) or name


@pytest.mark.long(seconds=70)  # on an H100, 6 workers: started first
def test_mim_train_with_bf16_amp(demo_dir, tmp_path):
    mim = _console_script('mim')
    config = str(ROOT / DEMOS['seg'][0])
    log = _tool([str(mim), 'train', 'mmseg', config, '--work-dir', str(tmp_path),
                 '--cfg-options', 'train_cfg.max_iters=2'] + _amp('bfloat16'), demo_dir)
    ckpt = torch.load(tmp_path / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert ('loss_scaler' in ckpt['optimizer']) == ON_GPU, log


def test_mmcv_cuda_ops_agree_with_cpu():
    if not ON_GPU:
        pytest.skip('mmcv CUDA ops: GPU only')
    sys.path.insert(0, str(ROOT / 'tools'))
    from mmcv_ops import check
    assert 'agree with the CPU' in check('2.1.0', cuda=True)
