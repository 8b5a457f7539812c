"""Side-by-side benchmark of HRNetV2 against the stock HRNets of mmseg, mmdet, mmpose (and timm).

Everything runs in one process: each reference is built, its weights are loaded into an
HRNetV2 configured to compute the same thing, the outputs are checked to agree, and then the
models are timed in turns (interleaved repeats, median), so that a busy machine slows all of
them alike. ``tools/benchmark.py`` is the command line; this module holds the parts.
"""
import contextlib
import copy
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fast import optimize_for_inference, use_channels_last
from .models import HRNetV2, get_arch

PRECISIONS = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
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

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
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
            state.update({f'pyramid.{k}': v for k, v in post.state_dict().items()})
    if seed is not None:
        randomize_weights(ref, seed)
    ours = HRNetV2(arch=arch, representation=representation, upsample_mode=upsample)
    ours.load_state_dict(state, strict=True)
    return ref, ours


# ---------------------------------------------------------------------- measuring
@dataclass
class Row:
    """One model's measurements."""
    name: str
    infer_img_s: Optional[float] = None
    infer_peak_mib: Optional[float] = None
    train_img_s: Optional[float] = None
    train_peak_mib: Optional[float] = None
    max_abs_diff: Optional[float] = None
    notes: List[str] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def _max_abs_diff(a: nn.Module, b: nn.Module, x: torch.Tensor, device: torch.device,
                  precision: str) -> float:
    """Largest difference between the outputs of two models on ``x``."""
    with torch.no_grad(), _autocast(device, precision):
        return max((p.float() - q.float()).abs().max().item() for p, q in zip(a(x), b(x)))


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
    from torch.distributed._tools.mem_tracker import MemTracker
    tracker = MemTracker()
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
                      warmup: int, repeats: int,
                      progress: Callable[[str], None]) -> Dict[str, float]:
    """Median seconds per call of each step, the steps taking turns."""
    for i in range(warmup):
        for name, step in steps.items():
            progress(f'warm-up {i + 1}/{warmup}: {name}')
            step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for r in range(repeats):
        for name, step in steps.items():
            progress(f'repeat {r + 1}/{repeats}: {name}')
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


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


def run(arch: str = 'w18', representation: str = 'branches', batch: int = 1,
        size: Sequence[int] = (512, 1024), precision: str = 'fp32', device: str = 'cpu',
        references: Sequence[str] = ('mmseg', ), modes: Sequence[str] = ('infer', 'train'),
        fast: Sequence[str] = ('fold', 'channels_last'), with_cp: bool = False,
        warmup: int = 1, repeats: int = 5, memory: bool = True,
        progress: Callable[[str], None] = print) -> dict:
    """Run the benchmark; returns a JSON-able dict (see ``tools/benchmark.py``)."""
    dev = torch.device(device)
    x = torch.randn(batch, 3, *size, device=dev)
    refs = [r for r in references if representation in REFERENCE_REPRESENTATIONS[r]]
    if not refs:
        raise ValueError(f'no reference computes representation={representation!r}; '
                         f'references: {REFERENCE_REPRESENTATIONS}')
    models: Dict[str, nn.Module] = {}
    rows: Dict[str, Row] = {}
    baseline = refs[0]
    for lib in refs:
        progress(f'building {lib} and its HRNetV2 twin ({arch}, {representation})')
        ref, ours = build_pair(lib, arch, representation)
        models[lib] = ref.to(dev)
        models[f'hrnet_mm ({lib} config)'] = ours.to(dev)
        diff = _max_abs_diff(ref.eval(), ours.eval(), x, dev, precision)
        tol = 1e-4 if precision == 'fp32' else 5e-2
        rows[lib] = Row(lib)
        rows[f'hrnet_mm ({lib} config)'] = Row(f'hrnet_mm ({lib} config)', max_abs_diff=diff)
        if diff > tol:
            raise RuntimeError(f'{lib} and hrnet_mm disagree: max abs diff {diff:.3g} > {tol}')
    base_ours = models[f'hrnet_mm ({baseline} config)']
    fast_name = f'hrnet_mm fast [{", ".join(fast)}]' if fast else None

    results = dict(arch=arch, representation=representation, batch=batch, size=list(size),
                   precision=precision, device=_device_name(dev), baseline=baseline,
                   fast=list(fast), with_cp=with_cp, warmup=warmup, repeats=repeats,
                   torch=torch.__version__, python=platform.python_version(),
                   threads=torch.get_num_threads(), date=time.strftime('%Y-%m-%d'))

    if 'infer' in modes:
        infer = dict(models)
        if fast_name:
            fm = optimize_for_inference(copy.deepcopy(base_ours), fuse_bn='fold' in fast,
                                        channels_last='channels_last' in fast,
                                        compile='compile' in fast)
            infer[fast_name] = fm
            rows[fast_name] = Row(fast_name)
            rows[fast_name].max_abs_diff = _max_abs_diff(base_ours, fm, x, dev, precision)

        def infer_step(m):
            def step():
                with torch.inference_mode(), _autocast(dev, precision):
                    m(x)
            return step

        steps = {name: infer_step(m.eval()) for name, m in infer.items()}
        for name, sec in _time_interleaved(steps, dev, warmup, repeats, progress).items():
            rows[name].infer_img_s = batch / sec
        if memory:
            for name, step in steps.items():
                progress(f'inference memory: {name}')
                rows[name].infer_peak_mib = peak_memory_mib(step, dev, [infer[name]])

    if 'train' in modes:
        train = {name: copy.deepcopy(m).train() for name, m in models.items()}
        if fast_name and ('channels_last' in fast or 'compile' in fast):
            fm = copy.deepcopy(base_ours).train()
            if 'channels_last' in fast:
                use_channels_last(fm)
            train[fast_name] = torch.compile(fm) if 'compile' in fast else fm
            rows.setdefault(fast_name, Row(fast_name))
        if with_cp:
            cp_name = 'hrnet_mm with_cp'
            cpm = HRNetV2(arch=arch, representation=representation, with_cp=True,
                          upsample_mode=base_ours.upsample_mode).to(dev)
            cpm.load_state_dict(base_ours.state_dict())
            train[cp_name] = cpm.train()
            rows[cp_name] = Row(cp_name)
        steps, optims = {}, {}
        for name, m in train.items():
            steps[name], optims[name] = _train_step(m, x, dev, precision)
        for name, sec in _time_interleaved(steps, dev, warmup, repeats, progress).items():
            rows[name].train_img_s = batch / sec
        if memory:
            for name, step in steps.items():
                progress(f'training memory: {name}')
                rows[name].train_peak_mib = peak_memory_mib(step, dev, [train[name]],
                                                            optims[name])

    results['rows'] = [asdict(r) for r in rows.values()]
    return results


def _device_name(dev: torch.device) -> str:
    if dev.type == 'cuda':
        return torch.cuda.get_device_name(dev)
    return f'cpu: {platform.processor() or platform.machine()}'


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
    lines = ['| model | infer img/s | x | infer peak MiB | train img/s | x | train peak MiB | '
             'x | max abs diff |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(
            f"| {r['name']} | {num(r['infer_img_s'])} | {ratio(r, 'infer_img_s')} | "
            f"{num(r['infer_peak_mib'], '.0f')} | {num(r['train_img_s'])} | "
            f"{ratio(r, 'train_img_s')} | {num(r['train_peak_mib'], '.0f')} | "
            f"{ratio(r, 'train_peak_mib')} | "
            f"{'' if r['max_abs_diff'] is None else format(r['max_abs_diff'], '.1e')} |")
    return head + '\n'.join(lines)
