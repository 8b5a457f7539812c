"""Winograd F(4x4, 3x3) convolutions for fp32 inference on the CPU.

HRNet spends most of its time in 3x3, stride-1 convolutions, and on the CPU oneDNN already
runs the wide ones at the machine's fp32 peak: there is no faster arithmetic left, only less
of it. Winograd's minimal filtering (Lavin & Gray, 2016) computes each 4x4 output tile from a
6x6 input tile with 36 products per channel pair instead of 144:

    Y = A^T [ (G w G^T) * (B^T d B) ] A

The products of all tiles are 36 matrix products (tiles x C_in) @ (C_in x C_out). A C++
kernel (``csrc/winograd_cpu.cpp``, AVX2 + FMA) computes a block of 16 tiles at a time: input
transform, products and output transform (with the bias, and optionally a residual and a ReLU)
while the block is in cache. Done in three passes over memory instead (transforms compiled by
inductor around ``torch.bmm``, this module's first version), the transforms cost more than the
products saved below 96 channels; fused, it is faster than oneDNN's direct convolution from 18
channels up (docs/benchmarks.md). The kernel is built once with
``torch.utils.cpp_extension`` (a C++ compiler, as ``torch.compile`` on the CPU needs; about
four seconds on 2 cores) into :func:`cache_dir`, and loaded from there by later processes.
Outputs differ from the direct convolution by float rounding (about 1e-5 of the output's
range per convolution; a whole HRNetV2-W48 within 1e-4). :func:`winograd_conv2d`
with ``reference=True`` computes the same in PyTorch operations (slow: for checking).

:func:`use_winograd` converts a folded model's convolutions and fuses what follows them:
each BasicBlock's two ReLUs and its residual add go into the kernel's output pass
(:class:`FusedBasicBlock`), and stage 1's bottlenecks accumulate their 1x1 expansions in place
into their shortcut maps (:class:`FusedBottlenecks`), whose 32 MiB would otherwise be mapped
and page-faulted anew on every call.

Where the transform does not apply, :class:`WinogradConv2d` computes the direct convolution
with the same weights: autocast or a dtype other than float32 (the transforms' coefficients,
up to 8, amplify rounding; not measured in reduced precision), gradients needed (training), a
device other than the CPU (cuDNN picks its own algorithms there), a CPU without AVX2, or
inside a ``torch.compile`` region (:func:`hrnet_mm.fast.optimize_for_inference` refuses the
combination).

Example:
    >>> model = optimize_for_inference(HRNetV2(arch='w48'), winograd=True)  # builds the kernel
    >>> with torch.no_grad():                                                 # once (above)
    ...     out = model(torch.rand(1, 3, 512, 1024))
"""
import ctypes
import functools
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import compiling
from .folders import publish, start_partial

__all__ = ['WinogradConv2d', 'use_winograd', 'winograd_weight', 'winograd_conv2d', 'pack_weight',
           'kernel_unsupported', 'cache_dir']

#: F(4x4, 3x3) with interpolation points 0, +-1, +-2 (Lavin & Gray): G maps a 3x3 kernel
#: onto the 6x6 product domain; B^T and A^T are written out as arithmetic below.
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
TILE = 4  # output tile edge; input tiles are TILE + 2 = 6


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """The transformed kernel ``G w G^T`` of a (C_out, C_in, 3, 3) weight, as (36, C_in, C_out)
    float32, computed in float64 so that the transform adds no rounding of its own."""
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum('ak,oikl,bl->abio', g, weight.detach().double(), g)
    return u.reshape(36, weight.shape[1], weight.shape[0]).float().contiguous()


def _bt(d: List[torch.Tensor]) -> List[torch.Tensor]:
    """B^T applied along one tile axis: six input rows to six transformed rows."""
    d0, d1, d2, d3, d4, d5 = d
    return [4 * d0 - 5 * d2 + d4, -4 * (d1 + d2) + d3 + d4, 4 * (d1 - d2) - d3 + d4,
            2 * (d3 - d1) - d2 + d4, 2 * (d1 - d3) - d2 + d4, 4 * d1 - 5 * d3 + d5]


def _at(m: List[torch.Tensor]) -> List[torch.Tensor]:
    """A^T applied along one tile axis: six products to four output rows."""
    m0, m1, m2, m3, m4, m5 = m
    s12, d12, s34, d34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return [m0 + s12 + s34, d12 + 2 * d34, s12 + 4 * s34, d12 + 8 * d34 + m5]


def _tiles(h: int, w: int) -> Tuple[int, int]:
    return -(-h // TILE), -(-w // TILE)


def input_transform(x: torch.Tensor) -> torch.Tensor:
    """``B^T d B`` of every 6x6 tile (stride 4) of an NHWC map zero-padded by one pixel, as
    (36, N * tiles, C) for the batched matrix product (the reference in PyTorch operations)."""
    n, h, w, c = x.shape
    th, tw = _tiles(h, w)
    xp = F.pad(x, (0, 0, 1, TILE * tw + 1 - w, 1, TILE * th + 1 - h))
    s = xp.stride()
    # the overlapping tiles as a view: (N, tile row, tile column, 6, 6, C)
    d = xp.as_strided((n, th, tw, 6, 6, c), (s[0], TILE * s[1], TILE * s[2], s[1], s[2], s[3]))
    out = []
    for row in _bt([d[:, :, :, i] for i in range(6)]):
        out += _bt([row[:, :, :, j] for j in range(6)])
    return torch.stack(out).reshape(36, n * th * tw, c)


def output_transform(m: torch.Tensor, n: int, h: int, w: int,
                     bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``A^T m A`` of every tile's 36 products (36, N * tiles, C), plus the bias, as the
    (N, H, W, C) output."""
    th, tw = _tiles(h, w)
    m = m.view(6, 6, n, th, tw, m.shape[-1])
    # A^T along the tile's rows, then along its columns; stacked as (N, th, 4, tw, 4, C)
    rows = [torch.stack(_at([r[j] for j in range(6)]), dim=-2)
            for r in _at([m[i] for i in range(6)])]
    y = torch.stack(rows, dim=2).reshape(n, TILE * th, TILE * tw, -1)[:, :h, :w]
    if bias is not None:
        y = y + bias
    return y.contiguous()


#: The kernel's source, its vector width and the block width of its packed kernel.
KERNEL_SOURCE = Path(__file__).parent / 'csrc' / 'winograd_cpu.cpp'
_VL, _BLOCK = 8, 24
#: What the kernel is compiled with: the ISA it is written for, not the build machine's
#: (``-march=native`` would tie a cached build to one CPU).
_CFLAGS = ['-O3', '-mavx2', '-mfma', '-fopenmp']


def kernel_unsupported() -> str:
    """Why this machine cannot run the kernel (empty if it can): it needs AVX2 and FMA, which
    torch reports as a CPU capability of ``AVX2`` or ``AVX512``."""
    cap = torch.backends.cpu.get_cpu_capability()
    return '' if cap.startswith(('AVX2', 'AVX512')) else f'the CPU has no AVX2 (torch: {cap})'


def cache_dir() -> Path:
    """Where the kernel is built: ``$HRNET_MM_CACHE`` or ``~/.cache/hrnet_mm``, one folder per
    source, compiler flags, torch and Python version (a stale build is never loaded)."""
    key = hashlib.sha1(KERNEL_SOURCE.read_bytes() + ' '.join(
        [*_CFLAGS, torch.__version__, sys.version.split()[0]]).encode()).hexdigest()[:12]
    root = os.environ.get('HRNET_MM_CACHE') or Path.home() / '.cache' / 'hrnet_mm'
    return Path(root) / f'winograd_cpu_{key}'


@functools.lru_cache(maxsize=None)
def _kernel():
    """The compiled kernel: built on first use (announced on stderr), imported afterwards.

    It is built in a folder of this process's and renamed into :func:`cache_dir` when done
    (:mod:`hrnet_mm.folders`): a build killed half-way leaves nothing that later processes
    would load or wait on (torch's own build folder lock would make them wait forever)."""
    why = kernel_unsupported()
    if why:
        raise RuntimeError(f'hrnet_mm.winograd: the CPU kernel needs AVX2 and FMA; {why}')
    build = cache_dir()
    so = build / f'{build.name}.so'
    if so.exists():
        return _load(so)
    print(f'hrnet_mm.winograd: building the CPU kernel once (a few seconds) into '
          f'{build}', file=sys.stderr, flush=True)
    build.parent.mkdir(parents=True, exist_ok=True)
    partial = start_partial(str(build))
    os.makedirs(partial)
    compiling.quiet_cuda_runtime_notice()
    from torch.utils import cpp_extension
    # ninja from the environment's own package, where its bin folder is not on PATH
    path = os.environ.get('PATH', '')
    try:
        import ninja
        os.environ['PATH'] = os.pathsep.join([ninja.BIN_DIR, path])
    except ImportError:
        pass
    try:
        # a plain library (C entry, no Python module): built, then loaded with ctypes below
        cpp_extension.load(build.name, [str(KERNEL_SOURCE)], extra_cflags=_CFLAGS,
                           extra_ldflags=['-fopenmp'], build_directory=partial,
                           is_python_module=False, verbose=False)
    except Exception as err:  # compiler or ninja missing, or a failed compile
        shutil.rmtree(partial, ignore_errors=True)
        # the compiler's first error, or what is missing, rather than ninja's last words
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        said = next((ln for ln in lines if 'error:' in ln or 'not found' in ln),
                    lines[-1] if lines else type(err).__name__)
        raise RuntimeError(f'hrnet_mm.winograd: building the CPU kernel in {build} failed '
                           f'({said}); it needs a C++ compiler and ninja, as torch.compile on '
                           f'the CPU does') from err
    finally:
        os.environ['PATH'] = path
    publish(partial, str(build))  # or another process was first: its build is the same
    return _load(so)


def _load(so: Path) -> Callable[..., int]:
    """The kernel's C entry in the built library, with its argument types (ctypes releases the
    GIL while it runs)."""
    entry = ctypes.CDLL(str(so)).hrnet_mm_winograd_conv3x3
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    entry.argtypes = [pointer] * 5 + [size] * 5 + [ctypes.c_bool]
    entry.restype = ctypes.c_int
    return entry


def pack_weight(u: torch.Tensor) -> torch.Tensor:
    """The transformed kernel (36, C_in, C_out) as the C++ kernel reads it: C_out padded with
    zeros to a multiple of 8, in blocks of 24 output channels, each (C_in, 24) contiguous."""
    cop = -(-u.shape[2] // _VL) * _VL
    u = F.pad(u, (0, cop - u.shape[2]))
    blocks = [u[:, :, i:i + _BLOCK].reshape(36, -1) for i in range(0, cop, _BLOCK)]
    return torch.cat(blocks, dim=1).reshape(36, u.shape[1], cop).contiguous()


def winograd_conv2d(x: torch.Tensor, u: torch.Tensor, bias: Optional[torch.Tensor] = None,
                    residual: Optional[torch.Tensor] = None, relu: bool = False,
                    reference: bool = False) -> torch.Tensor:
    """A 3x3 convolution, stride 1, zero padding 1, of an (N, C_in, H, W) float32 map with the
    transformed kernel ``u`` (:func:`winograd_weight`), plus ``bias``, plus ``residual`` (the
    output's shape), then ReLU if ``relu``; the output is (N, C_out, H, W) in
    ``channels_last`` memory. ``reference=True`` computes it in PyTorch operations (slow: a
    memory pass per step; for checking the kernel). :class:`WinogradConv2d` keeps the packed
    kernel between calls; this function packs it on every call.

    Example:
        >>> y = winograd_conv2d(x, winograd_weight(conv.weight), conv.bias)
        >>> torch.allclose(y, conv(x), atol=1e-4)
        True
    """
    if not reference:
        return _conv(x, pack_weight(u), bias, residual, relu, u.shape[2])
    n, _, h, w = x.shape
    nhwc = x.permute(0, 2, 3, 1)  # a view for channels_last input; copied otherwise
    y = output_transform(torch.bmm(input_transform(nhwc), u), n, h, w, bias)
    return _add_relu(y.permute(0, 3, 1, 2), residual, relu)


def _add_relu(y: torch.Tensor, residual: Optional[torch.Tensor], relu: bool) -> torch.Tensor:
    """What the kernel's output pass adds, in PyTorch operations: ``y + residual``, ReLU."""
    if residual is not None:
        y = y + residual
    return y.relu() if relu else y


def _fp32_cpu_inference(*tensors: torch.Tensor) -> bool:
    """Whether ``tensors`` are float32 CPU tensors in an inference call, where this module's
    paths apply: no gradients needed, no CPU autocast, not inside ``torch.compile``."""
    return (all(t.device.type == 'cpu' and t.dtype == torch.float32 for t in tensors)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling())


def _conv(x, packed, bias, residual, relu, cout):
    x = x.contiguous(memory_format=torch.channels_last)
    if residual is not None:
        residual = residual.contiguous(memory_format=torch.channels_last)
    bias = None if bias is None else bias.detach().contiguous()
    return kernel_conv3x3(x, packed, bias, residual, relu, cout)


def _float_cpu(t: torch.Tensor, dim: int) -> bool:
    return t.is_cpu and t.dtype == torch.float32 and t.dim() == dim


def kernel_conv3x3(x: torch.Tensor, packed: torch.Tensor, bias: Optional[torch.Tensor],
                   residual: Optional[torch.Tensor], relu: bool, cout: int) -> torch.Tensor:
    """The compiled kernel on checked tensors: ``x`` float32 (N, C_in, H, W) in channels_last
    memory, ``packed`` from :func:`pack_weight`, ``bias`` and ``residual`` (the output's shape,
    channels_last) or None; returns the output in channels_last memory. The kernel reads and
    writes raw memory, so every dtype, device, layout and shape is checked here first: a wrong
    one is a one-line ``RuntimeError``, never a read past a tensor.

    Example:
        >>> x = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
        >>> y = kernel_conv3x3(x, pack_weight(winograd_weight(conv.weight)), None, None, False, 8)
    """
    if not (_float_cpu(x, 4) and x.is_contiguous(memory_format=torch.channels_last)):
        raise RuntimeError('winograd: the input must be a float32 CPU tensor (N, C, H, W) in '
                           'channels_last memory')
    n, cin, h, w = x.shape
    if max(cin, cout) > MAX_CHANNELS:
        raise RuntimeError(f'winograd: at most {MAX_CHANNELS} channels in and out (the kernel '
                           f'indexes its buffers with 32-bit ints), got {cin} to {cout}')
    cop = -(-cout // _VL) * _VL
    if not (_float_cpu(packed, 3) and packed.is_contiguous()
            and tuple(packed.shape) == (36, cin, cop)):
        raise RuntimeError(f'winograd: the packed kernel must be float32 (36, {cin}, {cop}), '
                           f'got {list(packed.shape)}')
    if bias is not None and not (_float_cpu(bias, 1) and bias.is_contiguous()
                                 and bias.numel() == cout):
        raise RuntimeError(f'winograd: the bias must be float32 of {cout} values')
    out = torch.empty((n, cout, h, w), memory_format=torch.channels_last)
    if residual is not None and not (
            _float_cpu(residual, 4) and residual.shape == out.shape
            and residual.is_contiguous(memory_format=torch.channels_last)):
        raise RuntimeError("winograd: the residual must be a float32 channels_last tensor of "
                           "the output's shape")
    failed = _kernel()(x.data_ptr(), packed.data_ptr(), None if bias is None else bias.data_ptr(),
                       None if residual is None else residual.data_ptr(), out.data_ptr(), n,
                       cin, h, w, cout, bool(relu))
    if failed:
        raise MemoryError(f'winograd: no memory for the buffers of a convolution of {cin} to '
                          f'{cout} channels')
    return out


class WinogradConv2d(nn.Conv2d):
    """A 3x3, stride-1, padding-1 :class:`~torch.nn.Conv2d` computed with Winograd F(4x4, 3x3)
    for fp32 inference on the CPU; the direct convolution everywhere else (module docstring).

    Parameters and the ``state_dict`` are the convolution's own (``weight``, ``bias``): every
    checkpoint layout loads as before. The transformed kernel is recomputed whenever the
    weight changes (loaded, folded, moved).

    Example:
        >>> fast = WinogradConv2d.from_conv(nn.Conv2d(96, 96, 3, padding=1)).eval()
        >>> with torch.no_grad():
        ...     y = fast(torch.rand(1, 96, 64, 128))
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> 'WinogradConv2d':
        """A WinogradConv2d sharing ``conv``'s weight and bias; one-line error for a
        convolution that is not 3x3, stride 1, padding 1, dilation 1, groups 1, zero-padded."""
        why = unsupported(conv)
        if why:
            raise ValueError(f'WinogradConv2d computes 3x3 convolutions with stride 1, padding 1, '
                             f'dilation 1, groups 1 and zero padding; this one has {why}')
        new = cls(conv.in_channels, conv.out_channels, 3, padding=1, bias=False, device='meta')
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def _packed(self) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device)
        if getattr(self, '_packed_key', None) != key:
            self._packed_cache = pack_weight(winograd_weight(self.weight))
            self._packed_key = key
        return self._packed_cache

    def uses_winograd(self, x: torch.Tensor) -> bool:
        """Whether ``forward(x)`` takes the Winograd path (else the direct convolution)."""
        return (x.dim() == 4 and _fp32_cpu_inference(x, self.weight)
                and not kernel_unsupported())

    #: Whether the output goes through a ReLU (:func:`use_winograd` sets it where a ReLU
    #: followed the convolution, and removes that ReLU).
    fused_relu = False

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None,
                relu: Optional[bool] = None) -> torch.Tensor:
        """The convolution, plus ``residual`` if given, then ReLU if ``relu`` (default:
        :attr:`fused_relu`): one pass with the Winograd kernel, three on the direct path."""
        relu = self.fused_relu if relu is None else relu
        if not self.uses_winograd(x):
            return _add_relu(super().forward(x), residual, relu)
        return _conv(x, self._packed(), self.bias, residual, relu, self.out_channels)


#: The widest convolution the kernel computes: its buffer offsets are 32-bit ints (16 tiles x
#: 36 x the width, and the packed kernel's width x width, stay far below 2^31).
MAX_CHANNELS = 1 << 15


def unsupported(conv: nn.Conv2d) -> str:
    """What keeps ``conv`` from Winograd F(4x4, 3x3) (empty if nothing)."""
    checks = [('kernel_size', (3, 3)), ('stride', (1, 1)), ('padding', (1, 1)),
              ('dilation', (1, 1)), ('groups', 1), ('padding_mode', 'zeros')]
    wrong = [f'{name}={getattr(conv, name)!r}' for name, want in checks
             if getattr(conv, name) != want]
    if max(conv.in_channels, conv.out_channels) > MAX_CHANNELS:
        wrong.append(f'{conv.in_channels} to {conv.out_channels} channels (at most '
                     f'{MAX_CHANNELS})')
    return ', '.join(wrong)


#: Below this width (the smaller of C_in and C_out) the direct convolution is kept. The fused
#: kernel was faster than oneDNN's direct convolution at every width of HRNet on the 2-core
#: AMD EPYC with AVX2 only that docs/benchmarks.md measured (18 channels at 128x256: 1.1-1.5x;
#: 48 and wider: 1.8-3x), so by default every eligible convolution is converted.
MIN_CHANNELS = 1


class FusedBasicBlock(nn.Module):
    """A folded :class:`~hrnet_mm.models.blocks.BasicBlock` whose convolutions are both
    :class:`WinogradConv2d`: the first applies its ReLU, the second adds the shortcut and
    applies the block's ReLU, each in its output transform (no passes of their own). The same
    children as the block minus its (folded) norms and its ReLU, so the same ``state_dict``.

    Example:
        >>> seq = use_winograd(fuse_conv_bn(nn.Sequential(BasicBlock(32, 32))))
        >>> type(seq[0]).__name__
        'FusedBasicBlock'
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1, self.conv2, self.downsample = block.conv1, block.conv2, block.downsample
        self.train(block.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x, relu=True), residual=identity, relu=True)


class FusedBottlenecks(nn.Sequential):
    """A folded chain of :class:`~hrnet_mm.models.blocks.Bottleneck` (HRNet's stage 1) whose
    3x3 convolutions are :class:`WinogradConv2d`: each block's 3x3 convolution applies its
    ReLU, and its last 1x1 convolution (64 -> 256 channels) is a matrix product accumulated in
    place into the shortcut, which this chain made itself (the first block's projection, then
    each block's output), then bias and ReLU in place.

    Why: those 256-channel maps are 32 MiB at 512x1024, above glibc's largest threshold for
    reusing freed memory, so every fresh one is mapped anew and page-faulted: on the 2-core AMD
    EPYC of docs/benchmarks.md the 1x1 convolution with its add and ReLU took 42 ms per block,
    in place 12 ms. The same children and ``state_dict`` as the ``Sequential`` of blocks.

    Example:
        >>> model.layer1 = FusedBottlenecks(model.layer1)   # as use_winograd(model) does
    """

    def __init__(self, layer: nn.Sequential) -> None:
        super().__init__()
        for name, block in layer.named_children():
            fused = nn.Module()
            for part in ('conv1', 'conv2', 'conv3', 'downsample'):
                setattr(fused, part, getattr(block, part))
            self.add_module(name, fused)
        self.train(layer.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self):
            identity = x if block.downsample is None else block.downsample(x)
            out = block.conv2(block.conv1(x).relu_(), relu=True)
            # the shortcut is this chain's own (a projection made here, or a block's output)
            x = _conv1x1_add_relu(block.conv3, out, identity,
                                  in_place=block.downsample is not None or i > 0)
        return x


def _conv1x1_add_relu(conv: nn.Conv2d, x: torch.Tensor, identity: torch.Tensor,
                      in_place: bool) -> torch.Tensor:
    """``relu(conv(x) + identity)``; with ``in_place`` and in fp32 CPU inference on NHWC
    maps, as a matrix product accumulated into ``identity`` (no new map)."""
    fast = (in_place and conv.bias is not None and _fp32_cpu_inference(x, identity, conv.weight)
            and x.is_contiguous(memory_format=torch.channels_last)
            and identity.is_contiguous(memory_format=torch.channels_last))
    if not fast:
        return (conv(x) + identity).relu_()
    acc = identity.permute(0, 2, 3, 1).view(-1, identity.shape[1])  # NHWC: views, no copies
    acc.addmm_(x.permute(0, 2, 3, 1).view(-1, x.shape[1]),
               conv.weight.view(conv.out_channels, conv.in_channels).t())
    acc.add_(conv.bias).relu_()
    return identity


def _fusable_bottlenecks(layer: nn.Module) -> bool:
    from .models.blocks import Bottleneck
    return (type(layer) is nn.Sequential and len(layer) > 0 and all(
        type(b) is Bottleneck and isinstance(b.conv2, WinogradConv2d)
        and all(isinstance(n, nn.Identity) for n in (b.norm1, b.norm2, b.norm3))
        and type(b.conv1) is type(b.conv3) is nn.Conv2d
        and b.conv1.kernel_size == b.conv3.kernel_size == (1, 1)
        and b.conv3.stride == (1, 1) for b in layer))


def _fusable_block(block: nn.Module) -> bool:
    from .models.blocks import BasicBlock
    return (type(block) is BasicBlock and isinstance(block.norm1, nn.Identity)
            and isinstance(block.norm2, nn.Identity)
            and isinstance(block.conv1, WinogradConv2d) and isinstance(block.conv2, WinogradConv2d))


def _fuse_relus(seq: nn.Sequential) -> None:
    """In a ``Sequential(WinogradConv2d, Identity (a folded norm), ..., ReLU)``, let the
    convolution apply the ReLU and make the ReLU an Identity."""
    mods = list(seq._modules.items())
    for i, (_, conv) in enumerate(mods):
        if not isinstance(conv, WinogradConv2d):
            continue
        j = i + 1
        while j < len(mods) and isinstance(mods[j][1], nn.Identity):
            j += 1
        if j < len(mods) and type(mods[j][1]) is nn.ReLU:
            conv.fused_relu = True
            seq._modules[mods[j][0]] = nn.Identity()


def use_winograd(model: nn.Module, min_channels: int = MIN_CHANNELS,
                 fuse: bool = True) -> nn.Module:
    """Replace every 3x3, stride-1 convolution of ``model`` whose in- and output widths are at
    least ``min_channels`` by a :class:`WinogradConv2d` sharing its weights; with ``fuse``, the
    ReLU and residual add that follow a converted convolution of a folded block or
    ``Sequential`` are computed in its output transform (:class:`FusedBasicBlock`), and a
    chain of folded bottlenecks adds its 1x1 expansions in place (:class:`FusedBottlenecks`).
    In place, returns ``model``. Call it after BN folding (:func:`hrnet_mm.fast.fuse_conv_bn`):
    folding later changes the weights, which the modules notice, but only folded norms are
    fused. The kernel is built (or imported) here, so that a machine that cannot build it
    says so when the model is converted rather than at its first inference; on a CPU
    without AVX2 the converted convolutions compute the direct convolution.

    Example:
        >>> model = use_winograd(fuse_conv_bn(HRNetV2(arch='w48')))
    """
    converted = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Conv2d and not unsupported(child) and \
                    min(child.in_channels, child.out_channels) >= min_channels:
                setattr(module, name, WinogradConv2d.from_conv(child))
                converted += 1
    if converted and not kernel_unsupported():
        _kernel()  # built or imported now: a missing compiler shows here, not in inference
    if fuse:
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if _fusable_block(child):
                    setattr(module, name, FusedBasicBlock(child))
                elif _fusable_bottlenecks(child):
                    setattr(module, name, FusedBottlenecks(child))
            if isinstance(module, nn.Sequential):
                _fuse_relus(module)
    return model
