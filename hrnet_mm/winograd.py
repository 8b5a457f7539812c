"""Winograd F(4x4, 3x3) convolutions for fp32 inference on the CPU.

HRNet spends most of its time in 3x3, stride-1 convolutions, and on the CPU the wide ones
(96 channels and more) already run at the machine's fp32 peak in oneDNN: there is no faster
arithmetic left, only less of it. Winograd's minimal filtering (Lavin & Gray, 2016) computes
each 4x4 output tile from a 6x6 input tile with 36 products per channel pair instead of 144:

    Y = A^T [ (G w G^T) * (B^T d B) ] A

The elementwise products of all tiles become 36 matrix products (tiles x C_in) @ (C_in x
C_out), one ``torch.bmm``; the transforms of input and output are pointwise arithmetic over
tiles, compiled by inductor once per map size (one fused loop each; static shapes: dynamic
ones ran at half the speed). Compiling costs about 25 s per map size on 2 cores the first time
(HRNetV2-W48 has three sizes of wide maps); inductor caches the kernels on disk, and later
processes load them in 1-3 s. Outputs differ from the direct convolution by float rounding
(about 1e-5 of the output's range per convolution in fp32; the whole HRNetV2-W48 within 1e-4).

Where the transform does not pay or does not apply, :class:`WinogradConv2d` computes the
direct convolution with the same weights: autocast or a dtype other than float32 (the
transforms' coefficients, up to 8, amplify rounding; not measured in reduced precision),
gradients needed (training), a device other than the CPU (cuDNN picks its own algorithms
there), or inside an outer ``torch.compile`` region (compiling a whole HRNet around the
transforms took over 20 minutes without finishing for W48, so
:func:`hrnet_mm.fast.optimize_for_inference` refuses the combination).

Example:
    >>> model = optimize_for_inference(HRNetV2(arch='w48'), winograd=True)
    >>> with torch.no_grad():
    ...     out = model(torch.rand(1, 3, 512, 1024))  # the first call compiles (above)
"""
import functools
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import compiling

__all__ = ['WinogradConv2d', 'use_winograd', 'winograd_weight', 'winograd_conv2d']

#: F(4x4, 3x3) with interpolation points 0, +-1, +-2 (Lavin & Gray): G maps a 3x3 kernel
#: onto the 6x6 product domain; B^T and A^T are written out as arithmetic below.
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
TILE = 4  # output tile edge; input tiles are TILE + 2 = 6

#: Compiling one transform per input shape: dynamo's default limit (8 shapes per function)
#: would leave the third input size of a 4-branch HRNet to slow eager transforms.
_RECOMPILE_LIMIT = 64


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
    (36, N * tiles, C) for the batched matrix product."""
    n, h, w, c = x.shape
    th, tw = _tiles(h, w)
    xp = F.pad(x, (0, 0, 1, TILE * tw + 1 - w, 1, TILE * th + 1 - h))
    s = xp.stride()
    # the overlapping tiles as a view: (N, tile row, tile column, 6, 6, C); as strided slices
    # of the padded map instead, inductor took 2.5x as long to compile the same arithmetic
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


@functools.lru_cache(maxsize=None)
def _transforms():
    """The two transforms compiled by inductor (on first use; static shapes)."""
    return (compiling.compile(input_transform, dynamic=False),
            compiling.compile(output_transform, dynamic=False))


def winograd_conv2d(x: torch.Tensor, u: torch.Tensor, bias: Optional[torch.Tensor] = None,
                    compiled: bool = True) -> torch.Tensor:
    """A 3x3 convolution, stride 1, zero padding 1, of an (N, C_in, H, W) float32 map with the
    transformed kernel ``u`` (:func:`winograd_weight`); the output is (N, C_out, H, W) in
    ``channels_last`` memory. ``compiled=False`` runs the transforms eagerly (slower: a
    memory pass per arithmetic step; for checking).

    Example:
        >>> y = winograd_conv2d(x, winograd_weight(conv.weight), conv.bias)
        >>> torch.allclose(y, conv(x), atol=1e-4)
        True
    """
    n, _, h, w = x.shape
    nhwc = x.permute(0, 2, 3, 1)  # a view for channels_last input; copied otherwise
    to_tiles, from_tiles = _transforms() if compiled else (input_transform, output_transform)
    with torch._dynamo.config.patch(recompile_limit=_RECOMPILE_LIMIT):
        y = from_tiles(torch.bmm(to_tiles(nhwc), u), n, h, w, bias)
    return y.permute(0, 3, 1, 2)


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

    def _u(self) -> torch.Tensor:
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device)
        if getattr(self, '_u_key', None) != key:
            self._u_cache = winograd_weight(self.weight)
            self._u_key = key
        return self._u_cache

    def uses_winograd(self, x: torch.Tensor) -> bool:
        """Whether ``forward(x)`` takes the Winograd path (else the direct convolution)."""
        return (x.device.type == 'cpu' and x.dtype == torch.float32 and x.dim() == 4
                and self.weight.dtype == torch.float32
                and not torch.is_autocast_enabled('cpu')
                and not (torch.is_grad_enabled()
                         and (x.requires_grad or self.weight.requires_grad))
                and not torch.compiler.is_compiling())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_winograd(x):
            return super().forward(x)
        return winograd_conv2d(x, self._u(), self.bias)


def unsupported(conv: nn.Conv2d) -> str:
    """What keeps ``conv`` from Winograd F(4x4, 3x3) (empty if nothing)."""
    checks = [('kernel_size', (3, 3)), ('stride', (1, 1)), ('padding', (1, 1)),
              ('dilation', (1, 1)), ('groups', 1), ('padding_mode', 'zeros')]
    return ', '.join(f'{name}={getattr(conv, name)!r}' for name, want in checks
                     if getattr(conv, name) != want)


#: Below this width (the smaller of C_in and C_out) the direct convolution was faster on the
#: 2-core AMD EPYC with AVX2 only that docs/benchmarks.md measured: 48 channels at 128x256 ran
#: at 0.85x, 96 at 64x128 at 1.45x.
MIN_CHANNELS = 96


def use_winograd(model: nn.Module, min_channels: int = MIN_CHANNELS) -> nn.Module:
    """Replace every 3x3, stride-1 convolution of ``model`` whose in- and output widths are at
    least ``min_channels`` by a :class:`WinogradConv2d` sharing its weights; in place, returns
    ``model``. Call it after BN folding (folding changes the weights, which the module
    notices, but it finds convolutions by type).

    Example:
        >>> model = use_winograd(fuse_conv_bn(HRNetV2(arch='w48')))
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Conv2d and not unsupported(child) and \
                    min(child.in_channels, child.out_channels) >= min_channels:
                setattr(module, name, WinogradConv2d.from_conv(child))
    return model
