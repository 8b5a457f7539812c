"""Side-by-side benchmark of HRNetV2 against the stock HRNets of mmseg, mmdet, mmpose (and timm).

Everything runs in one process: each reference is built, its weights are loaded into an
HRNetV2 configured to compute the same thing, the outputs are checked to agree, and then the
models are timed in turns (interleaved repeats, median), so that a busy machine slows all of
them alike. ``tools/benchmark.py`` is the command line; this module holds the parts.
"""
import contextlib
import copy
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import compiling
from .complexity import count
from .cuda_graphs import CUDAGraphed
from .fast import AUTOCAST_DTYPES, optimize_for_inference, use_channels_last
from .models import HRNetV2, get_arch
from .padding import pad_channels as pad_model_channels
from .peak import device_peak
from .regions import compile_regions
from .streams import parallel_branches

PRECISIONS = {'fp32': torch.float32, **AUTOCAST_DTYPES}
#: Which representations each reference computes.
REFERENCE_REPRESENTATIONS = {
    'mmseg': ('branches', 'v1', 'v2'),
    'mmdet': ('branches', 'v1', 'v2p'),
    'mmpose': ('branches', 'v1'),
    'timm': ('cls', ),
}
TIMM_NAMES = {'w18_small_v1': 'hrnet_w18_small', 'w18_small_v2': 'hrnet_w18_small_v2'}


class Reference(nn.Module):
    """A stock HRNet plus the library's own code for the representation; returns a tuple."""

    def __init__(self, trunk: nn.Module, post: Optional[nn.Module] = None,
                 concat: bool = False) -> None:
        super().__init__()
        self.trunk, self.post, self.concat = trunk, post, concat
        self.channels_last = False  # set by fast.use_channels_last: NHWC input as well

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.trunk(x)
        if not isinstance(out, (tuple, list)):
            return (out, )  # timm: logits
        if self.concat:  # mmseg's resize_concat input transform
            size = out[0].shape[2:]
            return (torch.cat([F.interpolate(o, size=size, mode='bilinear', align_corners=False)
                               for o in out], dim=1), )
        if self.post is not None:
            return tuple(self.post(out))
        return tuple(out)


def randomize_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Deterministic, non-trivial weights: fan-in-scaled convs, norms near 1, BN statistics
    away from (0, 1) (so that eval-mode outputs exercise every parameter and buffer)."""
    from torch.nn.modules.batchnorm import _BatchNorm
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / fan_in)**0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
                m.weight.copy_(0.25 + 0.5 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                if isinstance(m, _BatchNorm):
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model


def build_pair(library: str, arch: str, representation: str,
               seed: Optional[int] = 0) -> Tuple[nn.Module, HRNetV2]:
    """The stock model of ``library`` and an HRNetV2 with its weights, computing the same.

    ``seed`` gives both deterministic random weights (:func:`randomize_weights`); ``None``
    keeps the reference's own initialisation.
    """
    if representation not in REFERENCE_REPRESENTATIONS[library]:
        raise ValueError(f'{library} has no {representation!r} representation; it has '
                         f'{list(REFERENCE_REPRESENTATIONS[library])}')
    table = get_arch(arch)
    multiscale = representation != 'v1'
    upsample = 'bilinear' if library == 'mmseg' else 'nearest'
    if library == 'timm':
        import timm
        ref = Reference(timm.create_model(TIMM_NAMES.get(arch, f'hrnet_{arch}')))
        state = ref.trunk.state_dict()
    elif library == 'mmpose':
        from mmpose.models.backbones import HRNet
        table['stage4']['multiscale_output'] = multiscale
        ref = Reference(HRNet(extra=table))
        state = ref.trunk.state_dict()
    else:
        module = __import__(f'{library}.models.backbones', fromlist=['HRNet'])
        trunk = module.HRNet(extra=table, multiscale_output=multiscale)
        post = None
        if representation == 'v2p':
            from mmdet.models.necks import HRFPN
            post = HRFPN(in_channels=table['stage4']['num_channels'], out_channels=256)
        ref = Reference(trunk, post, concat=representation == 'v2')
        state = dict(trunk.state_dict())
        if post is not None:
            state.update({f'head.{k}': v for k, v in post.state_dict().items()})
    if seed is not None:
        randomize_weights(ref, seed)
    ours = HRNetV2(arch=arch, representation=representation, upsample_mode=upsample)
    ours.load_state_dict(state, strict=True)
    return ref, ours


# ---------------------------------------------------------------------- measuring
@dataclass
class Row:
    """One model's measurements (``profile``: per mode, see :func:`profile_step`)."""
    name: str
    precision: Optional[str] = None
    infer_img_s: Optional[float] = None
    infer_peak_mib: Optional[float] = None
    train_img_s: Optional[float] = None
    train_peak_mib: Optional[float] = None
    max_abs_diff: Optional[float] = None
    #: seconds of the first call per mode: compiling (and CUDA graph capture) included
    first_call_s: Dict[str, float] = field(default_factory=dict)
    profile: Dict[str, dict] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


#: How far a model's outputs may be from the reference's before a benchmark refuses to time
#: them: fp32 elementwise; reduced precision as ``||a - b|| / ||b||``, because two bf16 runs
#: that round in a different order differ by about 1% of the norm (measured 1.25e-2 between
#: stock mmpose W18 and hrnet_mm in bf16 on an H100), and their largest single difference
#: grows with the outputs' scale and count (0.17 for W32 at batch 64).
#: fp32 on a GPU with cuDNN's TF32 on (torch's default) rounds convolution inputs to 10 bits,
#: and a model with other channel counts (``--pad-channels``) rounds elsewhere: max abs diff
#: 5.7e-3 for the padded W18 detector on an H100, about 1e-3 of the norm; the CUDA tests
#: measure TF32 at 3e-4 to 6e-4 of the norm from fp32.
AGREEMENT = dict(fp32=('max abs diff', 1e-4), tf32=('relative diff', 1e-2),
                 reduced=('relative diff', 5e-2))


def _agreement_kind(precision: str, device: torch.device) -> str:
    if precision != 'fp32':
        return 'reduced'
    tf32 = device.type == 'cuda' and torch.backends.cudnn.allow_tf32
    return 'tf32' if tf32 else 'fp32'


def check_agreement(outs_a: Sequence[torch.Tensor], outs_b: Sequence[torch.Tensor],
                    precision: str, what: str) -> float:
    """The largest elementwise difference of two models' outputs; raises ``RuntimeError``
    (naming ``what``) where they differ by more than :data:`AGREEMENT` allows for ``precision``.

    Example:
        >>> check_agreement([torch.ones(2)], [torch.ones(2)], 'bf16', 'a and b')
        0.0
    """
    pairs = [(p.float(), q.float()) for p, q in zip(outs_a, outs_b)]
    diff = max((p - q).abs().max().item() for p, q in pairs)
    kind = _agreement_kind(precision, pairs[0][0].device)
    measure, tol = AGREEMENT[kind]
    if kind == 'fp32':
        value = diff
    else:
        value = (sum(((p - q)**2).sum() for p, q in pairs)
                 / sum((p**2).sum() for p, _ in pairs).clamp_min(1e-30)).sqrt().item()
    if not value <= tol:  # a NaN disagrees too
        shown = 'fp32 with TF32' if kind == 'tf32' else precision
        raise RuntimeError(f'{what} disagree in {shown}: {measure} {value:.3g} > {tol}')
    return diff


def _max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor, device: torch.device,
                  precision: str, precision_b: Optional[str] = None) -> float:
    """Largest difference between the outputs of two models on ``x`` (``b`` may run in
    another precision)."""
    with torch.no_grad():
        with _autocast(device, precision):
            out_a = a(x)
        with _autocast(device, precision_b or precision):
            out_b = b(x)
        return max((p.float() - q.float()).abs().max().item() for p, q in zip(out_a, out_b))


def _total_tracker():
    """torch's ``MemTracker`` that keeps only the total peak. The stock one also updates a
    peak per module after every op, walking every module seen so far: on W18 that made the
    tracked training step 10x slower than the step itself, for numbers nobody reads here."""
    from torch.distributed._tools import mem_tracker

    class TotalPeakTracker(mem_tracker.MemTracker):
        def _update_peak_stats(self, peak_state) -> None:
            for dev, snap in self._curr_mem_snap.items():
                if self._peak_mem.get(dev, 0) < snap[mem_tracker._TOTAL_KEY]:
                    self._peak_mem[dev] = snap[mem_tracker._TOTAL_KEY]
                    self._peak_mem_snap[dev] = dict(snap)

    return TotalPeakTracker()


def peak_memory_mib(step: Callable[[], None], device: torch.device,
                    modules: Sequence[nn.Module] = (), optimizer=None) -> float:
    """Peak memory of one ``step``: the CUDA allocator's peak, or on the CPU torch's
    ``MemTracker`` (every tensor alive at once: parameters, gradients, activations, temps)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    tracker = _total_tracker()
    for m in modules:
        tracker.track_external(m)
    if optimizer is not None:
        tracker.track_external(optimizer)
    # The tracker hooks every parameter's gradient, which needs requires_grad; inference
    # models (folded ones) may have it off. Under inference_mode no gradient is made anyway.
    frozen = [p for m in modules for p in m.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        with tracker:
            step()
    finally:
        for p in frozen:
            p.requires_grad_(False)
    return tracker.get_tracker_snapshot('peak')[device]['Total'] / 2**20


def _time_interleaved(steps: Dict[str, Callable[[], None]], device: torch.device,
                      warmup: int, repeats: int, progress: Callable[[str], None],
                      first: Optional[Dict[str, float]] = None,
                      on_round: Optional[Callable[[Dict[str, float], str], None]] = None,
                      failed: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """Median seconds per call of each step, the steps taking turns; ``first`` (if given)
    gets each step's first call in seconds (a warm-up, or the first repeat). ``on_round``
    (if given) is called with the medians so far and what is done: after each step's first
    warm-up (a compile can take minutes) and after each round of repeats, so that a run cut
    short keeps them. ``failed`` (if given) gets the error of each step that raises, in one
    line, and the others go on without it (a GPU run is too short to lose the other rows)."""
    steps = dict(steps)

    def timed(step: Callable[[], None]) -> float:
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        return time.perf_counter() - start

    def attempt(name: str) -> Optional[float]:
        try:
            return timed(steps[name])
        except Exception as e:
            if failed is None:
                raise
            failed[name] = one_line_error(e)
            progress(f'{name}: failed, left out ({failed[name]})')
            del steps[name], times[name]
            return None

    def done(what: str, times: Dict[str, List[float]]) -> None:
        if on_round is not None:
            on_round({name: statistics.median(t) for name, t in times.items() if t}, what)

    times: Dict[str, List[float]] = {name: [] for name in steps}
    count = len(steps)
    for i in range(warmup):
        for k, name in enumerate(list(steps)):
            progress(f'warm-up {i + 1}/{warmup}: {name}')
            t = attempt(name)
            if i == 0 and first is not None and t is not None:
                first[name] = t
            if i == 0:
                done(f'first call of {k + 1} of {count} rows', times)
    for r in range(repeats):
        for name in list(steps):
            progress(f'repeat {r + 1}/{repeats}: {name}')
            t = attempt(name)
            if t is None:
                continue
            times[name].append(t)
            if r == 0 and warmup == 0 and first is not None:
                first[name] = t
        done(f'{r + 1} of {repeats} repeats', times)
    return {name: statistics.median(t) for name, t in times.items()}


def one_line_error(e: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, at most ``limit`` characters."""
    lines = str(e).strip().splitlines()
    return f'{type(e).__name__}: {lines[0] if lines else ""}'[:limit]


def _train_step(model: nn.Module, x: torch.Tensor, device: torch.device,
                precision: str) -> Tuple[Callable[[], None], torch.optim.Optimizer]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == 'fp16')

    def step():
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            outs = model(x)
        loss = sum(o.float().mean() for o in outs)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return step, optimizer


#: What torch's profiler library (kineto) writes to the process's stderr on every profile:
#: its start and stop trace points, and on a machine without a GPU its failed GPU probe.
PROFILER_CHATTER = re.compile(r'^(USDT|ERROR):\S+ \S+ \d+:\d+ '
                              r'(SyncActivityProfilerHandler|DeviceProperties)\.cpp:\d+\] '
                              r'(profiler_start|profiler_stop|gpuGetDeviceCount failed)')


@contextlib.contextmanager
def _without_profiler_chatter() -> Iterator[None]:
    """Keep :data:`PROFILER_CHATTER` off the console (two lines per profiled row). Kineto
    writes to file descriptor 2 from C++, so that descriptor is caught for the while; every
    other line written meanwhile is passed on to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode(errors='replace')
    other = [line for line in text.splitlines() if not PROFILER_CHATTER.match(line)]
    if other:
        print('\n'.join(other), file=sys.stderr, flush=True)


def device_work(events: Sequence[Any], cuda: bool) -> List[Any]:
    """The profiler events that are the device's work: on CUDA its kernels; on the CPU the
    outermost ``aten::`` operators, those inside no other one (an operator's parent may be no
    operator: backward's run inside ``autograd::engine::evaluate_function``, and counting
    only parentless ones left a training step's whole backward out)."""
    from torch.autograd import DeviceType
    if cuda:
        return [e for e in events if e.device_type == DeviceType.CUDA]

    def outermost(e) -> bool:
        parent = e.cpu_parent
        while parent is not None:
            if parent.name.startswith('aten::'):
                return False
            parent = parent.cpu_parent
        return True

    return [e for e in events if e.name.startswith('aten::') and outermost(e)]


#: What a kernel (CUDA) or outermost operator (CPU) does, by its name, lower-cased: the first
#: pattern that matches gives its kind; ``other`` for none (:func:`kernel_kind`).
KERNEL_KINDS = (
    ('batch norm', r'batch_?norm|(^|[^a-z])bn_|welford'),
    ('resize', r'upsample|interpolate'),
    ('layout', r'nchwtonhwc|nhwctonchw'),
    ('conv / matmul', r'conv|gemm|xmma|fprop|dgrad|wgrad|cutlass|cudnn|winograd|(^|:)mm$|'
                      r'addmm|linear|matmul'),
    ('optimizer', r'multi_tensor|foreach|fused_sgd|fused_adam'),
    ('copy', r'copy|memcpy|memset|cat_?array|(^|:)cat$|fill|zero_'),
    ('reduction', r'reduce|(^|:)(sum|mean)$'),
    ('elementwise', r'elementwise|add|mul|relu|threshold|clamp|where|div|sub|pow'),
)
_KIND_RES = tuple((kind, re.compile(pattern)) for kind, pattern in KERNEL_KINDS)


def kernel_kind(name: str) -> str:
    """The :data:`KERNEL_KINDS` kind of a CUDA kernel's or a torch operator's name.

    Example:
        >>> kernel_kind('sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc')
        'conv / matmul'
        >>> kernel_kind('aten::native_batch_norm_backward'), kernel_kind('aten::max_pool2d')
        ('batch norm', 'other')
    """
    low = name.lower()
    return next((kind for kind, pattern in _KIND_RES if pattern.search(low)), 'other')


def short_kernel_name(name: str, limit: int = 90) -> str:
    """A kernel's name without ``void``, torch's namespaces and its argument list, cut to
    ``limit`` characters (CUDA kernel names are whole C++ signatures).

    Example:
        >>> short_kernel_name('void at::native::reduce_kernel<512, 1>(at::native::R<float>)')
        'reduce_kernel<512, 1>'
    """
    name = re.sub(r'^void |at::native::|\(anonymous namespace\)::|c10::', '', name)
    if name.endswith(')'):  # cut the argument list: back to its matching '('
        depth = 0
        for i in range(len(name) - 1, 0, -1):
            depth += {')': 1, '(': -1}.get(name[i], 0)
            if depth == 0:
                name = name if name[i - 1] == ' ' else name[:i]  # 'Memset (Device)' stays
                break
    return name if len(name) <= limit else name[:limit - 3] + '...'


def _by_kind(kernels: Sequence[Any], top: int = 10) -> Tuple[Dict[str, float], list]:
    """Summed kernel ms per kind, largest first, and the ``top`` kernels by summed time
    (``[name, ms, count]``)."""
    kinds: Dict[str, float] = {}
    names: Dict[str, List[float]] = {}
    # A step launches thousands of kernels of a few hundred names, each a C++ signature of up
    # to some kilobytes: each name is read once (10,000 reads took 2 s here).
    seen: Dict[str, Tuple[str, str]] = {}
    for e in kernels:
        ms = (e.time_range.end - e.time_range.start) / 1e3
        if e.name not in seen:
            seen[e.name] = kernel_kind(e.name), short_kernel_name(e.name)
        kind, short = seen[e.name]
        kinds[kind] = kinds.get(kind, 0.0) + ms
        total = names.setdefault(short, [0.0, 0])
        total[0] += ms
        total[1] += 1
    by_kind = {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
    largest = sorted(names.items(), key=lambda kv: -kv[1][0])[:top]
    return by_kind, [[n, round(ms, 3), c] for n, (ms, c) in largest]


def profile_step(step: Callable[[], None], device: torch.device, step_s: float) -> dict:
    """Where one ``step``'s time goes: device kernel time, kernel launches, and the share of
    the (unprofiled, median) step time ``step_s`` in which the device runs no kernel; then
    the kernel time by kind (``by_kind``, :func:`kernel_kind`: durations summed, so kernels
    that overlap on parallel streams each count) and the ``top_kernels`` by time.

    On CUDA the kernels are the profiler's device events (overlapping ones counted once); on
    the CPU, torch's outermost operators stand in for them (:func:`device_work`).
    """
    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == 'cuda'
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync(device)
    with _without_profiler_chatter(), profile(activities=activities) as prof:
        step()
        _sync(device)
    kernels = device_work(prof.events(), cuda)
    spans = sorted((e.time_range.start, e.time_range.end) for e in kernels)
    busy_us, end = 0.0, float('-inf')
    for a, b in spans:  # the union of the intervals
        if b > end:
            busy_us += b - max(a, end)
            end = b
    busy_ms = busy_us / 1e3
    by_kind, top = _by_kind(kernels)
    return dict(kernel_ms=round(busy_ms, 3), launches=len(kernels),
                step_ms=round(step_s * 1e3, 3),
                idle_pct=round(max(0.0, 100 * (1 - busy_ms / (step_s * 1e3))), 1),
                by_kind=by_kind, top_kernels=top)


def _compiled(model: nn.Module, fast: Sequence[str]) -> nn.Module:
    """``compile``: inductor; ``freeze``: inductor with freezing (weights as constants: on the
    CPU, oneDNN convolutions with prepacked weights and fused bias / ReLU / add; inference only,
    a training step compiles as with ``compile``); ``cudagraphs``: inductor with CUDA graphs
    (``reduce-overhead``), which replays a static-shape step without its thousands of kernel
    launches; ``graphs``: the eager model's CUDA graphs, no compiling
    (:class:`~hrnet_mm.cuda_graphs.CUDAGraphed`)."""
    if 'graphs' in fast:
        return CUDAGraphed(model)
    if 'cudagraphs' in fast:
        return compiling.compile(model, mode='reduce-overhead')
    if 'freeze' in fast:
        return compiling.compile(model, options={'freezing': True})
    return compiling.compile(model) if 'compile' in fast else model


def _stock_fast(ref: nn.Module, fast: Sequence[str], mode: str) -> nn.Module:
    """What a user can do to the stock model with the generic tools: mmcv's ``fuse_conv_bn``
    (inference), ``channels_last``, ``torch.compile`` (with freezing, or CUDA graphs);
    ``regions``: the stock model compiled whole (it has no parallel branches to keep, and
    one region fuses the most)."""
    model = copy.deepcopy(ref)
    if mode == 'infer' and 'fold' in fast:
        from mmcv.cnn import fuse_conv_bn as mmcv_fuse_conv_bn
        mmcv_fuse_conv_bn(model.eval())
    if 'channels_last' in fast:
        use_channels_last(model)
    if 'regions' in fast:
        model = compiling.compile(model, dynamic=False)
    return _compiled(model, fast)


def _ours_fast(ours: nn.Module, fast: Sequence[str], mode: str,
               pad: Optional[int] = None) -> nn.Module:
    """HRNetV2 with the fast paths, and (``pad``) its channels padded to that multiple."""
    model = copy.deepcopy(ours)
    if pad:
        pad_model_channels(model, pad)
    if mode == 'infer':
        model = optimize_for_inference(model, fuse_bn='fold' in fast,
                                       channels_last='channels_last' in fast,
                                       winograd='winograd' in fast)
    elif 'channels_last' in fast:
        use_channels_last(model)
    if 'regions' in fast:  # compiled between its forks and joins: streams still apply
        compile_regions(model)
    return _compiled(model, fast)


def winograd_conflicts(device: str, precision: str, modes: Sequence[str],
                       model: str = 'backbone') -> Dict[str, str]:
    """The settings that keep a Winograd row from being measured (Winograd runs in fp32
    inference of the backbone on the CPU), as {setting: value}; empty where none does."""
    checks = {'device': (device, torch.device(device).type == 'cpu'),
              'precision': (precision, precision == 'fp32'),
              'modes': (' '.join(modes), 'infer' in modes),
              'model': (model, model == 'backbone')}
    return {name: value for name, (value, ok) in checks.items() if not ok}


def run(arch: str = 'w18', representation: str = 'branches', batch: int = 1,
        size: Sequence[int] = (512, 1024), precision: str = 'fp32', device: str = 'cpu',
        references: Sequence[str] = ('mmseg', ), modes: Sequence[str] = ('infer', 'train'),
        fast: Sequence[str] = ('fold', 'channels_last'), with_cp: bool = False,
        warmup: int = 1, repeats: int = 5, memory: bool = True,
        fast_precision: Optional[str] = None, stock_fast: bool = True,
        pad_channels: Optional[int] = None, winograd: bool = False, streams: bool = False,
        profile: bool = False, progress: Callable[[str], None] = print,
        save: Optional[Callable[[dict], None]] = None) -> dict:
    """Run the benchmark; returns a JSON-able dict (see ``tools/benchmark.py``).

    Rows: each reference and HRNetV2 with its weights (plain, ``precision``); with ``fast``,
    HRNetV2 with those fast paths and (``stock_fast``) the first reference with the same
    generic tools, both in ``fast_precision`` (default ``precision``); ``pad_channels`` adds
    the fast HRNetV2 with its channels padded to that multiple (:mod:`hrnet_mm.padding`, an
    HRNet-specific path that the stock model has no counterpart of); ``winograd`` adds the
    fast HRNetV2 inferring with Winograd convolutions (:mod:`hrnet_mm.winograd`; fp32 on the
    CPU with AVX2; eager with the other fast paths, its C++ kernel built on first use, and set
    against the stock row with every fast path, compiling included); ``streams`` adds the
    fast HRNetV2 with its branches on parallel CUDA streams (:mod:`hrnet_mm.streams`, GPU;
    on the CPU the same as the fast row); ``with_cp`` adds a training row.
    ``profile`` adds :func:`profile_step`'s figures for every row. ``save`` (if given) gets
    the results measured so far after each round of repeats and each row's memory or
    profile, with ``partial`` saying how far the run got: a run cut short (a time limit)
    keeps them.
    """
    dev = torch.device(device)
    wrong = winograd_conflicts(device, fast_precision or precision, modes)
    if winograd and wrong:
        raise ValueError('winograd: fp32 inference on the CPU only; here '
                         + ', '.join(f'{k}={v!r}' for k, v in wrong.items()))
    x = torch.randn(batch, 3, *size, device=dev)
    refs = [r for r in references if representation in REFERENCE_REPRESENTATIONS[r]]
    if not refs:
        raise ValueError(f'no reference computes representation={representation!r}; '
                         f'references: {REFERENCE_REPRESENTATIONS}')
    fast_precision = fast_precision or precision
    plain: Dict[str, nn.Module] = {}
    rows: Dict[str, Row] = {}
    baseline = refs[0]
    for lib in refs:
        progress(f'building {lib} and its HRNetV2 twin ({arch}, {representation})')
        ref, ours = build_pair(lib, arch, representation)
        plain[lib] = ref.to(dev)
        plain[f'hrnet_mm ({lib} config)'] = ours.to(dev)
        with torch.no_grad(), _autocast(dev, precision):
            diff = check_agreement(ref.eval()(x), ours.eval()(x), precision,
                                   f'{lib} and hrnet_mm')
        rows[lib] = Row(lib, precision)
        rows[f'hrnet_mm ({lib} config)'] = Row(f'hrnet_mm ({lib} config)', precision,
                                               max_abs_diff=diff)
    suffix = f' {fast_precision}' if fast_precision != precision else ''
    fast_names = {'ours': f'hrnet_mm fast [{", ".join(fast)}]{suffix}',
                  'stock': f'{baseline} fast [{", ".join(fast)}]{suffix}'}
    if pad_channels:
        padded = ', '.join([*fast, f'pad {pad_channels}'])
        fast_names['padded'] = f'hrnet_mm fast [{padded}]{suffix}'
    # the Winograd model runs eagerly: its kernel is C++, which torch.compile does not trace
    winograd_paths = [*(f for f in fast if f not in RUNNERS), 'winograd']
    if winograd:
        fast_names['winograd'] = f'hrnet_mm fast [{", ".join(winograd_paths)}]{suffix}'
    if streams:  # named before the runner: the graphs of the parallel model
        stream_paths = [*(f for f in fast if f not in RUNNERS), 'streams',
                        *(f for f in fast if f in RUNNERS)]
        fast_names['streams'] = f'hrnet_mm fast [{", ".join(stream_paths)}]{suffix}'

    results = dict(arch=arch, representation=representation, batch=batch, size=list(size),
                   precision=precision, fast_precision=fast_precision,
                   device=_device_name(dev), baseline=baseline,
                   fast=list(fast), pad_channels=pad_channels, with_cp=with_cp,
                   warmup=warmup, repeats=repeats, torch=torch.__version__,
                   python=platform.python_version(),
                   threads=torch.get_num_threads(), date=time.strftime('%Y-%m-%d'))
    ours_name = f'hrnet_mm ({baseline} config)'
    # how far from the device's limit: multiply-adds of one image, and the peak per precision
    results['gmacs_per_image'] = count(plain[ours_name].eval(), x[:1]).gflops
    results['peak'] = {p: device_peak(dev, p)._asdict()
                       for p in dict.fromkeys((precision, fast_precision))}

    def now(partial: Optional[str] = None) -> dict:
        # each hrnet_mm fast row and the stock row with the same generic tools (the rows of
        # the modes set up so far)
        pairs = {fast_names[k]: fast_names['stock']
                 for k in ('ours', 'padded', 'winograd', 'streams')
                 if k in fast_names and fast_names[k] in rows and fast_names['stock'] in rows}
        return snapshot(dict(results, stock_pairs=pairs), rows, partial)

    measure = dict(dev=dev, x=x, rows=rows, warmup=warmup, repeats=repeats, memory=memory,
                   profile=profile, progress=progress,
                   checkpoint=lambda what: save(now(what)) if save else None)

    def add_fast_rows(models: Dict[str, nn.Module], mode: str, paths: Sequence[str]) -> None:
        """HRNetV2 with the fast ``paths`` (and padded), the stock model with the same
        generic ones."""
        if paths:
            models[fast_names['ours']] = _ours_fast(plain[ours_name], paths, mode)
            if stock_fast:
                models[fast_names['stock']] = _stock_fast(plain[baseline], paths, mode)
        if pad_channels:
            models[fast_names['padded']] = _ours_fast(plain[ours_name], paths, mode,
                                                      pad_channels)
        if winograd and mode == 'infer':
            models[fast_names['winograd']] = _ours_fast(plain[ours_name], winograd_paths, mode)
        if streams:
            models[fast_names['streams']] = parallel_branches(
                _ours_fast(plain[ours_name], paths, mode))
        for name in fast_names.values():
            if name in models:
                rows.setdefault(name, Row(name, fast_precision))

    if 'infer' in modes:
        models = dict(plain)
        add_fast_rows(models, 'infer', fast)
        for name in fast_names.values():
            if name not in models:
                continue
            try:
                rows[name].max_abs_diff = _max_abs_diff(plain[baseline], models[name], x, dev,
                                                        precision, fast_precision)
            except Exception as e:  # the other rows are still measured, this one said
                error = one_line_error(e)
                rows[name].notes.append(f'infer: {error}')
                progress(f'{name}: failed, left out ({error})')
                del models[name]
        _measure_inference(models, **measure)
    if 'train' in modes:
        models = {name: copy.deepcopy(m) for name, m in plain.items()}
        add_fast_rows(models, 'train', [f for f in fast if f != 'fold'])  # fold: inference only
        if with_cp:
            ours = plain[ours_name]
            cpm = HRNetV2(arch=arch, representation=representation, with_cp=True,
                          upsample_mode=ours.upsample_mode).to(dev)
            cpm.load_state_dict(ours.state_dict())
            models['hrnet_mm with_cp'] = cpm
            rows['hrnet_mm with_cp'] = Row('hrnet_mm with_cp', precision)
        _measure_training({name: m.train() for name, m in models.items()}, **measure)
    return now()


def snapshot(results: dict, rows: Dict[str, Row], partial: Optional[str] = None) -> dict:
    """``results`` with its rows as measured so far; ``partial``: how far a run got, for the
    saves made before its end (a run cut short keeps them)."""
    out = dict(results, rows=[asdict(r) for r in rows.values()])
    if partial:
        out['partial'] = partial
    return out


def _measure_inference(models: Dict[str, nn.Module], dev, x, rows, warmup, repeats, memory,
                       profile, progress, checkpoint) -> None:
    """Inference images/s (and peak memory, profile) of every model, in turns."""

    def infer_step(m, precision):
        def step():
            with torch.inference_mode(), _autocast(dev, precision):
                m(x)
        return step

    steps = {name: infer_step(m.eval(), rows[name].precision) for name, m in models.items()}
    measure_rows(steps, models, {}, 'infer', dev, x.shape[0], rows, warmup, repeats, memory,
                 profile, progress, checkpoint)


def _measure_training(models: Dict[str, nn.Module], dev, x, rows, warmup, repeats, memory,
                      profile, progress, checkpoint) -> None:
    """Training-step images/s (forward, backward, SGD step) of every model, in turns."""
    steps, optims = {}, {}
    for name, m in models.items():
        steps[name], optims[name] = _train_step(m, x, dev, rows[name].precision)
    measure_rows(steps, models, optims, 'train', dev, x.shape[0], rows, warmup, repeats, memory,
                 profile, progress, checkpoint)


def measure_rows(steps: Dict[str, Callable[[], None]], models: Dict[str, nn.Module],
                 optims: Dict[str, torch.optim.Optimizer], mode: str, dev: torch.device,
                 batch: int, rows: Dict[str, Row], warmup: int, repeats: int, memory: bool,
                 profile: bool, progress: Callable[[str], None],
                 checkpoint: Callable[[str], None]) -> None:
    """Time the steps in turns (:func:`_time_interleaved`) into their rows' ``{mode}_img_s``
    and ``first_call_s``, then (``memory``, ``profile``) each one's peak memory and profile.
    ``checkpoint(what is measured so far)`` is called after each round of repeats and each
    row's memory or profile: a run cut short keeps the medians of the rounds it finished.
    A step that raises while timed is left out, its error in its row's ``notes``."""

    def on_round(seconds: Dict[str, float], done: str) -> None:
        for name, sec in first.items():
            rows[name].first_call_s[mode] = round(sec, 3)
        for name, sec in seconds.items():
            setattr(rows[name], f'{mode}_img_s', batch / sec)
        checkpoint(f'{mode}: {done}')

    first: Dict[str, float] = {}
    failed: Dict[str, str] = {}
    seconds = _time_interleaved(steps, dev, warmup, repeats, progress, first, on_round,
                                failed)
    for name, error in failed.items():
        rows[name].notes.append(f'{mode}: {error}')
    steps = {name: step for name, step in steps.items() if name not in failed}
    for i, (name, step) in enumerate(steps.items() if memory else ()):
        progress(f'{mode} memory: {name}')
        setattr(rows[name], f'{mode}_peak_mib',
                peak_memory_mib(step, dev, [models[name]], optims.get(name)))
        checkpoint(f'{mode} memory: {i + 1} of {len(steps)} rows')
    for i, (name, step) in enumerate(steps.items() if profile else ()):
        progress(f'{mode} profile: {name}')
        rows[name].profile[mode] = profile_step(step, dev, seconds[name])
        checkpoint(f'{mode} profile: {i + 1} of {len(steps)} rows')


def conv_width_probe(widths: Sequence[int] = (18, 24, 32, 36, 40, 48), batch: int = 2,
                     size: Sequence[int] = (200, 304), precision: str = 'bf16',
                     device: str = 'cpu', repeats: int = 20,
                     progress: Callable[[str], None] = print) -> dict:
    """Forward + backward time of one 3x3 conv + BN + ReLU at each channel width, on an NHWC
    map of ``size`` (stride 4 of 800x1216 by default): whether padding HRNet's narrow widths
    (18, 36) to multiples of 8 would pay on the device. Returns ms per width."""
    dev = torch.device(device)
    times = {}
    for c in widths:
        progress(f'conv width {c}')
        layer = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                              nn.ReLU()).to(dev).to(memory_format=torch.channels_last)
        x = torch.randn(batch, c, *size, device=dev).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)

        def step():
            with _autocast(dev, precision):
                y = layer(x)
            y.float().sum().backward()

        times[c] = 1e3 * _time_interleaved({c: step}, dev, 3, repeats, lambda msg: None)[c]
    return dict(model='conv_widths', batch=batch, size=list(size), precision=precision,
                device=_device_name(dev), torch=torch.__version__,
                date=time.strftime('%Y-%m-%d'), ms={str(c): round(t, 4) for c, t in times.items()})


#: HRNet's 3x3 stride-1 convolutions at 1x3x512x1024: (channels, height, width) of W18's and
#: W48's four branches and stage 1's 64 channels.
WINOGRAD_SHAPES = ((18, 128, 256), (36, 64, 128), (72, 32, 64), (144, 16, 32), (64, 128, 256),
                   (48, 128, 256), (96, 64, 128), (192, 32, 64), (384, 16, 32))


def winograd_probe(shapes: Sequence[Tuple[int, int, int]] = WINOGRAD_SHAPES, batch: int = 1,
                   repeats: int = 10, progress: Callable[[str], None] = print) -> dict:
    """fp32 inference of one 3x3 stride-1 convolution with bias per shape (channels in and
    out, height, width; NHWC), the direct one (oneDNN, through ``F.conv2d``) and Winograd's
    (:mod:`hrnet_mm.winograd`), interleaved, same weights, outputs checked first. Returns
    ms per shape and method, and the largest difference relative to the output's range."""
    from .winograd import WinogradConv2d
    out = {}
    for c, h, w in shapes:
        progress(f'winograd convolution {c} channels at {h}x{w}')
        conv = nn.Conv2d(c, c, 3, padding=1).eval().to(memory_format=torch.channels_last)
        fast = WinogradConv2d.from_conv(conv)
        x = torch.randn(batch, c, h, w).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = conv(x)
            rel = ((fast(x) - ref).abs().max() / ref.abs().max()).item()
            ms = _time_interleaved({'direct': lambda: conv(x), 'winograd': lambda: fast(x)},
                                   torch.device('cpu'), 2, repeats, lambda msg: None)
        out[f'{c}x{h}x{w}'] = dict(direct_ms=round(1e3 * ms['direct'], 4),
                                   winograd_ms=round(1e3 * ms['winograd'], 4),
                                   speedup=round(ms['direct'] / ms['winograd'], 3),
                                   max_rel_diff=float(f'{rel:.2e}'))
    return dict(model='winograd_convs', batch=batch, precision='fp32',
                device=_device_name(torch.device('cpu')), torch=torch.__version__,
                threads=torch.get_num_threads(), date=time.strftime('%Y-%m-%d'), convs=out)


def format_winograd_probe(results: dict) -> str:
    """:func:`winograd_probe`'s results as a Markdown table."""
    lines = [f"3x3 stride-1 convolutions, batch {results['batch']}, fp32 inference, "
             f"{results['device']}, torch {results['torch']}, {results['threads']} threads, "
             f"{results['date']}", '',
             '| channels | map | direct ms | Winograd ms | speed-up | max diff / max output |',
             '|---|---|---|---|---|---|']
    for key, r in results['convs'].items():
        c, h, w = key.split('x')
        lines.append(f"| {c} | {h}x{w} | {r['direct_ms']:.2f} | {r['winograd_ms']:.2f} | "
                     f"{r['speedup']:.2f}x | {r['max_rel_diff']:.1e} |")
    return '\n'.join(lines)


def _device_name(dev: torch.device) -> str:
    if dev.type == 'cuda':
        return torch.cuda.get_device_name(dev)
    return f'cpu: {platform.processor() or platform.machine()}'


def achieved(results: dict, row: dict, mode: str, precision: str) -> str:
    """``GFLOP/s (x% of peak)`` of a row's mode: 2 FLOPs per multiply-add, training 3 passes."""
    img_s, macs = row.get(f'{mode}_img_s'), results.get('gmacs_per_image')
    if not img_s or not macs:
        return ''
    gflops = 2 * macs * img_s * (3 if mode == 'train' else 1)
    peak = ((results.get('peak') or {}).get(precision) or {}).get('gflops')
    return f'{gflops:.1f} ({100 * gflops / peak:.0f}%)' if peak else f'{gflops:.1f}'


def _fast_vs_stock_fast(results: dict) -> List[str]:
    """The ratio that says what hrnet_mm itself adds: its fast row against the stock model
    with the same generic tools (the strongest thing a user could do instead)."""
    rows = {r['name']: r for r in results['rows']}
    pairs = results.get('stock_pairs')
    if pairs is None:  # JSON of earlier runs: the stock row's name is the hrnet_mm row's
        pairs = {name: f"{results['baseline']} {name[len('hrnet_mm '):]}" for name in rows
                 if name.startswith('hrnet_mm fast ')}
    out = []
    for ours, stock in pairs.items():
        ratios = _ratios(rows[ours], rows[stock]) if ours in rows and stock in rows else ''
        if ratios:
            out += ['', f'{ours} against {stock} (the stock model with the same generic '
                    f'tools): {ratios}']
    return out


def _ratios(a: dict, b: dict) -> str:
    """``infer 1.02x, train 0.98x``: row ``a``'s speed over row ``b``'s, per mode both have."""
    return ', '.join(f'{mode} {a[f"{mode}_img_s"] / b[f"{mode}_img_s"]:.2f}x'
                     for mode in ('infer', 'train')
                     if a.get(f'{mode}_img_s') and b.get(f'{mode}_img_s'))


#: hrnet_mm's own paths that a row's name can carry, each set against the same row without
#: it: (the pattern in the name, the line's label, what the row without it lacks).
OWN_PATHS = ((r', pad \d+', 'Channel padding', 'padding'),
             (r', streams', 'Parallel branches', 'streams'))


def _own_path_effects(results: dict) -> List[str]:
    """Each row with channel padding or parallel branches against the same row without:
    whether that path pays on this device."""
    rows = {r['name']: r for r in results['rows']}
    out = []
    for pattern, label, without in OWN_PATHS:
        for name, row in rows.items():
            plain = re.sub(pattern, '', name)
            ratios = _ratios(row, rows[plain]) if plain != name and plain in rows else ''
            if ratios:
                out += ['', f'{label}: {name} against {plain} (the same without {without}): '
                        f'{ratios}']
    return out


#: Fast paths that set how a model runs, compiled or replayed as CUDA graphs (at most one per
#: run): their first call does more than a step. The Winograd row leaves them out: its C++
#: kernel is neither traced by inductor nor run on a GPU.
RUNNERS = ('compile', 'freeze', 'cudagraphs', 'graphs')


def _first_calls(rows: List[dict]) -> List[str]:
    """One line with the first call of each compiled or graphed row: what compiling or
    capturing costs before the speed shows (JSON files of earlier runs have no such figures)."""
    parts = [f"{r['name']} {mode} {sec:.1f} s" for r in rows
             for mode, sec in (r.get('first_call_s') or {}).items()
             if any(c in r['name'] for c in (*RUNNERS, 'regions'))]
    return (['', 'First call, compiling or graph capture included: ' + '; '.join(parts)]
            if parts else [])


def format_table(results: dict) -> str:
    """A Markdown table; ratios are against the baseline reference (first in the list)."""
    rows = results['rows']
    base = next(r for r in rows if r['name'] == results['baseline'])

    def ratio(r, key):
        if r[key] is None or base[key] in (None, 0):
            return ''
        return f'{r[key] / base[key]:.2f}x'

    def num(v, fmt='.2f'):
        return '' if v is None else format(v, fmt)

    head = (f"{results['arch']} {results['representation']}, batch {results['batch']}, "
            f"{results['size'][0]}x{results['size'][1]}, {results['precision']}, "
            f"{results['device']}, torch {results['torch']}, {results['threads']} threads, "
            f"{results['date']}; ratios vs {results['baseline']}\n\n")
    if results.get('partial'):
        head += (f"Cut short: measured up to \"{results['partial']}\"; speeds are medians of "
                 'the repeats done, empty cells were not reached.\n\n')
    header = ['model', 'precision', 'infer img/s', 'x', 'infer peak MiB', 'x', 'train img/s',
              'x', 'train peak MiB', 'x', 'max abs diff', 'infer GFLOP/s (% of peak)',
              'train GFLOP/s (% of peak)']
    cells = []
    for r in rows:
        prec = r.get('precision') or results['precision']
        cells.append([
            r['name'], prec, num(r['infer_img_s']), ratio(r, 'infer_img_s'),
            num(r['infer_peak_mib'], '.0f'), ratio(r, 'infer_peak_mib'), num(r['train_img_s']),
            ratio(r, 'train_img_s'), num(r['train_peak_mib'], '.0f'),
            ratio(r, 'train_peak_mib'),
            '' if r['max_abs_diff'] is None else format(r['max_abs_diff'], '.1e'),
            achieved(results, r, 'infer', prec), achieved(results, r, 'train', prec)])
    # columns of what was not measured (a mode not run, --no-memory) are left out, not empty;
    # a column cut short by an interrupted run stays, its empty cells are "not reached"
    keep = [i for i in range(len(header))
            if i < 2 or any(c[i] for c in cells) or results.get('partial')]
    lines = ['| ' + ' | '.join(header[i] for i in keep) + ' |', '|' + '---|' * len(keep)]
    lines += ['| ' + ' | '.join(c[i] for i in keep) + ' |' for c in cells]
    if 'fold' in (results.get('fast') or ()) and any(r['train_img_s'] for r in rows):
        lines += ['', 'fold (conv + BN folding) applies to inference: the training columns of '
                  'the rows named with it are measured without it.']
    lines += _fast_vs_stock_fast(results)
    lines += _own_path_effects(results)
    lines += _first_calls(rows)
    for r in rows:
        if r.get('notes'):  # a row whose step failed: the others were measured without it
            lines += ['', f"Left out, it failed: {r['name']}: " + '; '.join(r['notes'])]
    peaks = results.get('peak') or {}
    if 'gmacs_per_image' in results:
        lines += ['', f"GFLOP/s = 2 x {results['gmacs_per_image']:.2f} G multiply-adds per "
                  "image x img/s (training: 3x, forward and backward). Peak: " +
                  '; '.join(f"{p}: {v['how']}" for p, v in peaks.items())]
        if any('winograd' in r['name'] for r in rows):
            lines += ['', 'Winograd rows: the same count of the direct convolution, an effective '
                      'rate; Winograd computes the 3x3 stride-1 convolutions with a quarter of '
                      'the products, so its rate can pass the peak.']
    profiled = [(r['name'], mode, p) for r in rows for mode, p in r.get('profile', {}).items()]
    if profiled:
        lines += ['', '| model | mode | step ms | kernel ms | launches | idle % |',
                  '|---|---|---|---|---|---|']
        lines += [f"| {name} | {mode} | {p['step_ms']:.1f} | {p['kernel_ms']:.1f} | "
                  f"{p['launches']} | {p['idle_pct']:.0f} |" for name, mode, p in profiled]
        lines += ['', PROFILE_LEGEND['cpu' if results['device'].startswith('cpu') else 'cuda']]
        lines += _kinds_table(profiled)
    return head + '\n'.join(lines)


def _kinds_table(profiled: List[Tuple[str, str, dict]]) -> List[str]:
    """The profiled rows' kernel time by kind (:func:`kernel_kind`): ms and share of the
    summed kernel time, the kinds in order of their time over all rows."""
    profiled = [(name, mode, p) for name, mode, p in profiled if p.get('by_kind')]
    if not profiled:  # a JSON of an earlier run
        return []
    totals: Dict[str, float] = {}
    for _, _, p in profiled:
        for kind, ms in p['by_kind'].items():
            totals[kind] = totals.get(kind, 0.0) + ms
    kinds = sorted(totals, key=lambda k: -totals[k])

    def cell(p: dict, kind: str) -> str:
        ms = p['by_kind'].get(kind)
        return '' if ms is None else f"{ms:.1f} ({100 * ms / sum(p['by_kind'].values()):.0f}%)"

    lines = ['', 'Kernel ms by kind (durations summed: kernels overlapping on parallel streams '
             'each count), share of the sum:', '',
             '| model | mode | ' + ' | '.join(kinds) + ' |', '|---|---|' + '---|' * len(kinds)]
    lines += [f'| {name} | {mode} | ' + ' | '.join(cell(p, k) for k in kinds) + ' |'
              for name, mode, p in profiled]
    return lines


#: What the profile table's columns mean on each kind of device (:func:`device_work`).
PROFILE_LEGEND = dict(
    cuda='kernel ms: the time the GPU runs kernels (overlapping ones counted once); launches: '
         'its kernels; idle %: the share of the step (unprofiled median) with no kernel running.',
    cpu='On the CPU: kernel ms is the time in torch\'s outermost operators, launches their '
        'count, idle % the share of the step (unprofiled median) outside them: Python, and C++ '
        'work outside torch\'s operators (mmcv\'s RoIAlign in a detector).')
