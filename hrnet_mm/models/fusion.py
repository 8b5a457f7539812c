"""The multi-resolution module (parallel branches + exchange) and the stage transitions.

Parameter names are those of mmdet/mmseg/mmpose's ``HRModule`` and ``transition{i}``; only
parameter-free layers differ (``nn.Identity`` stands where those use ``None``, and
upsampling is a resize to the exact target size rather than an ``nn.Upsample`` by a fixed
factor, so that odd input sizes work).
"""
import functools
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer

from ..streams import in_parallel, uses_streams
from .arch import check_positive_ints, is_int
from .blocks import BLOCKS, make_res_layer
from .outputs import FeatureInfo, hrnet_strides

UPSAMPLE_MODES = ('nearest', 'bilinear')


def resize_to(x: torch.Tensor, size: Sequence[int], mode: str,
              align_corners: bool) -> torch.Tensor:
    """Resize ``x`` to exactly ``size`` (H, W); ``align_corners`` only applies to bilinear."""
    return F.interpolate(x, size=size, mode=mode,
                         align_corners=align_corners if mode != 'nearest' else None)


def _conv_norm(conv_cfg: Optional[dict], norm_cfg: dict, cin: int, cout: int, kernel: int,
               stride: int = 1, relu: bool = False) -> nn.Sequential:
    """conv (no bias) -> norm [-> ReLU], as ``Sequential`` indices 0, 1[, 2]."""
    layers = [build_conv_layer(conv_cfg, cin, cout, kernel, stride=stride,
                               padding=kernel // 2, bias=False),
              build_norm_layer(norm_cfg, cout)[1]]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _check_module_args(block, num_blocks, in_channels, num_channels, num_outputs,
                       upsample_mode, in_strides) -> type:
    """The block class; a one-line error for arguments a config could get wrong."""
    if isinstance(block, str):
        if block not in BLOCKS:
            raise ValueError(f'block={block!r} is not known; allowed: {list(BLOCKS)}')
        block = BLOCKS[block]
    elif block not in BLOCKS.values():
        raise ValueError(f'block={block!r}: must be one of {list(BLOCKS)}')
    lists = dict(num_blocks=num_blocks, in_channels=in_channels, num_channels=num_channels)
    if in_strides is not None:
        lists['in_strides'] = in_strides
    for name, values in lists.items():
        check_positive_ints(name, values)
    if len({len(v) for v in lists.values()}) != 1:
        raise ValueError('one entry per branch in each of ' + ', '.join(
            f'{k}={list(v)}' for k, v in lists.items()))
    if num_outputs is not None and (not is_int(num_outputs) or
                                    not 1 <= num_outputs <= len(num_channels)):
        raise ValueError(f'num_outputs={num_outputs!r}: must be an int from 1 to the number of '
                         f'branches ({len(num_channels)})')
    if upsample_mode not in UPSAMPLE_MODES:
        raise ValueError(f'upsample_mode={upsample_mode!r} is not known; allowed: '
                         f'{list(UPSAMPLE_MODES)}')
    return block


class HRModule(nn.Module):
    """Parallel residual branches, then every output sums every input brought to its size.

    From branch ``j`` to output ``i``: ``j == i`` passes through; ``j > i`` (lower resolution)
    is a 1x1 conv + norm, then a resize to output ``i``'s exact size; ``j < i`` is ``i - j``
    strided 3x3 conv + norm (ReLU between them). A ReLU follows each sum.

    Registered as ``HRModule`` (hrnet_mm scope, mmdet, mmseg, mmpose, mmpretrain), so a config can
    name it: ``dict(type='HRModule', block='BASIC', num_blocks=[4, 4], in_channels=[32, 64],
    num_channels=[32, 64])``.

    Args:
        block: ``'BASIC'`` / ``'BOTTLENECK'`` (or the class, ``BasicBlock`` / ``Bottleneck``).
        num_blocks: Blocks per branch.
        in_channels: Input width per branch (equal to ``num_channels * block.expansion``).
        num_channels: Block width per branch.
        num_outputs: How many of the highest-resolution outputs to compute (default all; 1
            for the V1 representation's last module, which fuses into the stride-4 branch).
        conv_cfg, norm_cfg: mmcv layer configs.
        with_cp: Checkpoint each block and the exchange (saves memory in training).
        upsample_mode: ``'nearest'`` (official code, mmdet, mmpose) or ``'bilinear'`` (mmseg).
        align_corners: For bilinear upsampling.
        in_strides: Stride of each branch, for :attr:`feature_info` (default 4, 8, 16, 32).
        parallel_branches: On a GPU, run the branches, and then the exchange's outputs, on
            parallel CUDA streams (:mod:`hrnet_mm.streams`); same outputs.

    Attributes:
        feature_info: Channels and stride of each output.
        parallel_branches: As the argument; :func:`hrnet_mm.streams.parallel_branches` sets
            it in a whole model.

    Example:
        >>> m = HRModule('BASIC', [1, 1], [32, 64], [32, 64])
        >>> [y.shape[1:] for y in m([torch.rand(1, 32, 63, 83), torch.rand(1, 64, 32, 42)])]
        [torch.Size([32, 63, 83]), torch.Size([64, 32, 42])]
    """

    def __init__(self, block: Union[str, type], num_blocks: Sequence[int],
                 in_channels: Sequence[int], num_channels: Sequence[int],
                 num_outputs: Optional[int] = None, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, with_cp: bool = False,
                 upsample_mode: str = 'nearest', align_corners: bool = False,
                 in_strides: Optional[Sequence[int]] = None,
                 parallel_branches: bool = False) -> None:
        super().__init__()
        block = _check_module_args(block, num_blocks, in_channels, num_channels, num_outputs,
                                   upsample_mode, in_strides)
        norm_cfg = norm_cfg or dict(type='BN')
        self.num_branches = len(num_channels)
        num_outputs = num_outputs or self.num_branches
        self.with_cp = with_cp
        self.upsample_mode = upsample_mode
        self.align_corners = align_corners
        self.parallel_branches = parallel_branches
        self.branches = nn.ModuleList(
            make_res_layer(block, in_channels[i], num_channels[i], num_blocks[i], conv_cfg,
                           norm_cfg, with_cp) for i in range(self.num_branches))
        self.out_channels = [c * block.expansion for c in num_channels]
        strides = in_strides or hrnet_strides(self.num_branches)
        self.feature_info = tuple(map(FeatureInfo, self.out_channels[:num_outputs],
                                      strides[:num_outputs]))
        # A single branch exchanges nothing (as in the reference code: no fuse layers).
        self.fuse_layers = None
        if self.num_branches > 1:
            self.fuse_layers = nn.ModuleList(
                FusionSum([self._fuse_path(j, i, conv_cfg, norm_cfg)
                           for j in range(self.num_branches)], i, upsample_mode, align_corners)
                for i in range(num_outputs))

    def _fuse_path(self, j: int, i: int, conv_cfg: Optional[dict], norm_cfg: dict) -> nn.Module:
        """The layers that bring branch ``j`` to output ``i`` (before any resize)."""
        cj, ci = self.out_channels[j], self.out_channels[i]
        if j == i:
            return nn.Identity()
        if j > i:
            return _conv_norm(conv_cfg, norm_cfg, cj, ci, 1)
        steps = i - j
        return nn.Sequential(*(
            _conv_norm(conv_cfg, norm_cfg, cj, ci if k == steps - 1 else cj, 3, stride=2,
                       relu=k < steps - 1) for k in range(steps)))

    def forward(self, x: List[torch.Tensor]) -> List[torch.Tensor]:
        if self.parallel_branches and self._streams_apply(x[0]):
            return self._forward_on_streams(x)
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        if self.fuse_layers is None:
            return x
        if self.with_cp and torch.is_grad_enabled():
            # The exchange's intermediate maps are recomputed in backward instead of stored.
            return list(cp.checkpoint(self._fuse, *x, use_reentrant=False))
        return self._fuse(*x)

    def _streams_apply(self, x: torch.Tensor) -> bool:
        # with_cp's recomputation in backward would run on whichever stream is current then
        return uses_streams(x) and not (self.with_cp and torch.is_grad_enabled())

    def _forward_on_streams(self, x: List[torch.Tensor]) -> List[torch.Tensor]:
        """:meth:`forward` with branch ``k`` and then output ``k`` on CUDA stream ``k``."""
        x = in_parallel([functools.partial(branch, xi) for branch, xi in zip(self.branches, x)],
                        [[xi] for xi in x], x[0].device)
        if self.fuse_layers is None:
            return x
        return in_parallel([functools.partial(output, x) for output in self.fuse_layers],
                           [x] * len(self.fuse_layers), x[0].device)

    def _fuse(self, *x: torch.Tensor) -> List[torch.Tensor]:
        return [output(x) for output in self.fuse_layers]


class FusionSum(nn.ModuleList):
    """One output of an HRNet exchange: every branch's map through its path to output
    ``index`` (resized where it comes from a lower resolution), summed, then a ReLU.

    A ``ModuleList`` of the paths, so that parameter names are the stock HRNets'
    (``fuse_layers.{index}.{j}...``), with the sum as its ``forward``: one output is one
    module, which a CUDA stream runs (:mod:`hrnet_mm.streams`) and which can be compiled on
    its own (:func:`hrnet_mm.regions.compile_regions`).

    Args:
        paths: One per branch ``j``: ``nn.Identity`` for ``j == index``, 1x1 conv + norm for
            a lower resolution, strided 3x3 conv + norm steps for a higher one.
        index: The output's branch.
        upsample_mode, align_corners: How lower-resolution terms are resized.

    Example:
        >>> m = HRModule('BASIC', [1, 1], [8, 16], [8, 16])
        >>> x = [torch.rand(1, 8, 9, 11), torch.rand(1, 16, 5, 6)]
        >>> m.fuse_layers[1](x).shape
        torch.Size([1, 16, 5, 6])
    """

    def __init__(self, paths: Sequence[nn.Module], index: int, upsample_mode: str = 'nearest',
                 align_corners: bool = False) -> None:
        super().__init__(paths)
        self.index = index
        self.upsample_mode = upsample_mode
        self.align_corners = align_corners

    def forward(self, x: Sequence[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        i = self.index
        size = x[i].shape[-2:]
        # Summed in branch order, like the reference implementations, so results match them
        # to the last bits that summation order can change. The first sum makes a new map
        # (the first term may be an input that other outputs still read); the rest add into
        # it in place, saving a map's allocation and a pass over memory.
        sizes = [None if j <= i else size for j in range(len(self))]
        y = _new_sum(self._bring(0, x[0], sizes[0]), self._bring(1, x[1], sizes[1]))
        for j in range(2, len(self)):
            y += self._bring(j, x[j], sizes[j])
        return F.relu(_to_half_saturating(y, x[i].dtype))

    def _bring(self, j: int, x: torch.Tensor, size: Optional[Sequence[int]]) -> torch.Tensor:
        """One term of the sum: branch ``j``'s map through its path, then resized to ``size``
        (``None``: it comes from the same or a higher resolution, already the right size)."""
        z = self[j](x)
        return z if size is None else resize_to(z, size, self.upsample_mode, self.align_corners)


FP16_MAX = torch.finfo(torch.float16).max


def _new_sum(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``y + z`` as a new map of ``y``'s dtype, as the reference implementations' in-place
    sums give it; float16 maps (fp16 AMP) are summed in float32, where they cannot overflow
    (later in-place additions then stay in float32 too)."""
    if torch.float16 in (y.dtype, z.dtype):
        return y.float() + z.float()
    if z.dtype != y.dtype:
        # Under CUDA autocast a resized map comes back float32 (seen on an H100 and an H200
        # with torch 2.11): ``y + z`` would make the whole sum, and the output map, float32.
        return y.clone().add_(z)
    return y + z


def _to_half_saturating(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Back to float16 after an fp32 sum: saturate at the largest float16, never inf."""
    if dtype == torch.float16 and y.dtype == torch.float32:
        return y.clamp(-FP16_MAX, FP16_MAX).to(torch.float16)
    return y


def make_transition(pre_channels: Sequence[int], cur_channels: Sequence[int],
                    conv_cfg: Optional[dict], norm_cfg: dict) -> nn.ModuleList:
    """Layers from one stage's outputs to the next stage's inputs.

    An existing branch keeps its map (``nn.Identity``) or, when its width changes, gets a
    3x3 conv + norm + ReLU. A new branch comes from the lowest-resolution output through
    strided 3x3 conv + norm + ReLU steps, one per halving.

    Example:
        >>> t = make_transition([32, 64], [32, 64, 128], None, dict(type='BN'))
        >>> [type(m).__name__ for m in t]
        ['Identity', 'Identity', 'Sequential']
    """
    layers = []
    for i, cur in enumerate(cur_channels):
        if i < len(pre_channels):
            layers.append(nn.Identity() if cur == pre_channels[i] else
                          _conv_norm(conv_cfg, norm_cfg, pre_channels[i], cur, 3, relu=True))
        else:
            steps = i + 1 - len(pre_channels)
            last = pre_channels[-1]
            layers.append(nn.Sequential(*(
                _conv_norm(conv_cfg, norm_cfg, last, cur if k == steps - 1 else last, 3,
                           stride=2, relu=True) for k in range(steps))))
    return nn.ModuleList(layers)


def apply_transition(transition: nn.ModuleList,
                     feats: List[torch.Tensor]) -> List[torch.Tensor]:
    """Each existing branch transforms its own map; new branches start from the last one."""
    last = len(feats) - 1
    return [layer(feats[min(i, last)]) for i, layer in enumerate(transition)]
