"""The device's peak arithmetic rate, so a benchmark can say how far from it a model runs.

CPU: an estimate from the cores in use, the clock and the vector units (FMA width and pipes),
or what a large matmul measurably reaches where that is more (the clock a VM reports is the
nominal one); GPU: the card's datasheet figure (dense, no sparsity) for the precision the
convolutions run in. Both in GFLOP/s, counting a fused multiply-add as 2 FLOPs.

Example:
    >>> cpu_peak(2, 'fp32').how   # AMD EPYC (Zen 4), 2 threads
    '2 threads x 2.60 GHz x 32 fp32 FLOP/cycle (AMD Zen 4: AVX-512 on 2 x 256-bit FMA pipes)
    = 166 GFLOP/s'
    >>> device_peak(torch.device('cpu'), 'fp32', threads=2).how
    'a 2048x2048 fp32 matmul reached 175 GFLOP/s, above the estimate 2 threads x 2.60 GHz ...'
"""
import re
from typing import NamedTuple, Optional

import torch

#: Datasheet TFLOP/s (dense): name pattern -> {precision: TFLOP/s}. fp32 on tensor cores is TF32.
GPU_DATASHEET = (
    (r'H100.*PCIe', {'fp32': 51.2, 'tf32': 378.0, 'bf16': 756.0, 'fp16': 756.0}),
    (r'H100|H200|GH200', {'fp32': 66.9, 'tf32': 494.7, 'bf16': 989.4, 'fp16': 989.4}),
    (r'A100', {'fp32': 19.5, 'tf32': 156.0, 'bf16': 312.0, 'fp16': 312.0}),
)


class Peak(NamedTuple):
    gflops: Optional[float]  # None: not known for this device
    how: str


def gpu_peak(name: str, precision: str, tf32: bool) -> Peak:
    """The datasheet figure of a card by its name (``torch.cuda.get_device_name``)."""
    kind = 'tf32' if precision == 'fp32' and tf32 else precision
    for pattern, table in GPU_DATASHEET:
        if re.search(pattern, name):
            return Peak(1000 * table[kind], f'{name} datasheet, {kind} dense: {table[kind]} TFLOP/s')
    return Peak(None, f'{name}: no datasheet figure known to hrnet_mm.peak')


def _cpuinfo() -> dict:
    info = {}
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def flops_per_cycle(info: dict) -> tuple:
    """fp32 FLOP/cycle of one core from its flags and vendor: 2 (FMA) x lanes x FMA pipes."""
    flags = set(info.get('flags', '').split())
    vendor, family = info.get('vendor_id', ''), int(info.get('cpu family', '0') or 0)
    if 'avx512f' in flags:
        if vendor == 'AuthenticAMD' and family == 25:
            return 32, 'AMD Zen 4: AVX-512 on 2 x 256-bit FMA pipes'
        return 64, 'AVX-512: 2 x 512-bit FMA pipes'
    if 'avx2' in flags and 'fma' in flags:
        return 32, 'AVX2: 2 x 256-bit FMA pipes'
    return 8, 'SSE: 2 x 128-bit pipes, no FMA'


def matmul_gflops(threads: int, precision: str = 'fp32', n: int = 2048, repeats: int = 5) -> float:
    """The best rate of an ``n x n`` matmul on ``threads`` threads: what the CPU reaches."""
    import time
    dtype = torch.bfloat16 if precision == 'bf16' else torch.float32
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        best = float('inf')
        for _ in range(repeats + 1):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * n ** 3 / best / 1e9


def cpu_peak(threads: int, precision: str = 'fp32', info: Optional[dict] = None,
             measured: Optional[float] = None) -> Peak:
    """threads x clock x FLOP/cycle (bf16 dot products double it on AVX-512 BF16); when a
    ``measured`` matmul rate beats that estimate (a VM reports the nominal clock, the cores
    boost above it), the measured rate is the peak."""
    info = _cpuinfo() if info is None else info
    try:
        ghz = float(info['cpu MHz']) / 1000
    except (KeyError, ValueError):
        return Peak(measured, f'clock unknown; a {measured:.0f} GFLOP/s matmul'
                    if measured else 'clock unknown (no "cpu MHz" in /proc/cpuinfo)')
    per_cycle, unit = flops_per_cycle(info)
    if precision == 'bf16' and native_bf16(info):
        per_cycle, unit = 2 * per_cycle, unit + ', bf16 dot products at twice the rate'
    elif precision == 'bf16':
        unit += '; no bf16 instructions: bf16 at the fp32 rate at best'
    kind = 'bf16' if 'bf16 dot' in unit else 'fp32'
    estimate = threads * ghz * per_cycle
    how = (f'{threads} threads x {ghz:.2f} GHz x {per_cycle} {kind} FLOP/cycle ({unit}) = '
           f'{estimate:.0f} GFLOP/s')
    if measured and measured > estimate:
        return Peak(measured, f'a 2048x2048 {precision} matmul reached {measured:.0f} GFLOP/s, '
                    f'above the estimate {how} (the clock is the nominal one)')
    return Peak(estimate, how)


def native_bf16(info: dict) -> bool:
    """Whether the CPU has bf16 dot-product instructions (AVX-512 BF16; AMX CPUs have them
    too)."""
    return 'avx512_bf16' in info.get('flags', '').split()


def device_peak(dev: torch.device, precision: str, threads: Optional[int] = None) -> Peak:
    """The peak for a benchmark's device and precision. On a CPU without bf16 instructions
    the bf16 peak is the estimate alone: a bf16 matmul runs in reference code there (1.2
    GFLOP/s on a 2-core AVX2 EPYC), and measuring one would take minutes."""
    if dev.type == 'cuda':
        return gpu_peak(torch.cuda.get_device_name(dev), precision,
                        torch.backends.cudnn.allow_tf32)
    threads = threads or torch.get_num_threads()
    info = _cpuinfo()
    measure = precision != 'bf16' or native_bf16(info)
    return cpu_peak(threads, precision, info,
                    measured=matmul_gflops(threads, precision) if measure else None)
