"""The HRNet representations built on the four branch outputs.

- ``'branches'``: the four maps (C, 2C, 4C, 8C at strides 4, 8, 16, 32).
- ``'v1'``: the stride-4 map only (HRNetV1, pose); the last module fuses into it alone.
- ``'v2'``: every branch resized to stride 4 and concatenated (15C channels, segmentation).
- ``'v2p'``: V2, a 1x1 reduction, then pooling into a pyramid with a 3x3 conv per level
  (HRNetV2p, detection); parameter names are those of mmdet's ``HRFPN``.
- ``'cls'``: the paper's ImageNet head on the four branches: logits (official / timm names).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_conv_layer, build_norm_layer
from mmengine.model import BaseModule

from .blocks import Bottleneck, make_res_layer
from .fusion import resize_to

REPRESENTATIONS = ('branches', 'v1', 'v2', 'v2p', 'cls')
POOLING_TYPES = ('AVG', 'MAX')


def concat_upsampled(feats: Sequence[torch.Tensor], align_corners: bool = False) -> torch.Tensor:
    """The V2 representation: all maps bilinearly resized to the first's size, concatenated.

    Example:
        >>> feats = [torch.rand(1, 18 * 2**i, 64 // 2**i, 48 // 2**i) for i in range(4)]
        >>> concat_upsampled(feats).shape
        torch.Size([1, 270, 64, 48])
    """
    size = feats[0].shape[-2:]
    return torch.cat(
        [feats[0]] + [resize_to(f, size, 'bilinear', align_corners) for f in feats[1:]], dim=1)


class V2pPyramid(BaseModule):
    """HRNetV2p: 1x1 reduction of the V2 map, ``num_outs`` pooled levels, a 3x3 conv each.

    Levels have strides 4, 8, 16, ... (pooling by 1, 2, 4, ...). Same layers and names as
    mmdet's ``HRFPN`` (``reduction_conv``, ``fpn_convs``), so its weights map one to one.

    Args:
        in_channels: Width of the V2 map (sum of the branch widths).
        out_channels: Width of every pyramid level.
        num_outs: Number of levels.
        pooling_type: ``'AVG'`` or ``'MAX'``.
        conv_stride: Stride of the 3x3 convs (HRFPN's ``stride``; 2 for FCOS: levels at
            strides 8 ... 128).
        conv_cfg: mmcv conv config.
        with_cp: Checkpoint the convs in training.
        init_cfg: Defaults to Caffe2Xavier on the convs, as ``HRFPN``.

    Example:
        >>> p = V2pPyramid(270, 64, num_outs=3)
        >>> [o.shape[-1] for o in p(torch.rand(1, 270, 32, 32))]
        [32, 16, 8]
    """

    def __init__(self, in_channels: int, out_channels: int = 256, num_outs: int = 5,
                 pooling_type: str = 'AVG', conv_stride: int = 1,
                 conv_cfg: Optional[dict] = None,
                 with_cp: bool = False, init_cfg: Optional[dict] = None) -> None:
        if init_cfg is None:
            init_cfg = dict(type='Caffe2Xavier', layer='Conv2d')
        super().__init__(init_cfg)
        self.with_cp = with_cp
        self.pool = F.avg_pool2d if pooling_type == 'AVG' else F.max_pool2d
        self.reduction_conv = ConvModule(in_channels, out_channels, 1, conv_cfg=conv_cfg,
                                         act_cfg=None)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, stride=conv_stride,
                       conv_cfg=conv_cfg, act_cfg=None) for _ in range(num_outs))

    def _run(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(layer, x, use_reentrant=False)
        return layer(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        coarsest = 2**(len(self.fpn_convs) - 1)
        if min(x.shape[-2:]) < coarsest:
            raise ValueError(
                f'the V2 map is {tuple(x.shape[-2:])}, too small for num_outs='
                f'{len(self.fpn_convs)} pyramid levels (pooling by {coarsest}): feed an input '
                f'of at least {4 * coarsest}x{4 * coarsest} or lower num_outs')
        x = self._run(self.reduction_conv, x)
        levels: List[torch.Tensor] = [x]
        for i in range(1, len(self.fpn_convs)):
            levels.append(self.pool(x, kernel_size=2**i, stride=2**i))
        return tuple(self._run(conv, lvl) for conv, lvl in zip(self.fpn_convs, levels))


#: Widths (before the x4 Bottleneck expansion) the classification head raises the branches to.
CLS_HEAD_CHANNELS = (32, 64, 128, 256)
CLS_FEATURES = 2048


def make_classification_layers(in_channels: Sequence[int], num_classes: int,
                               conv_cfg: Optional[dict], norm_cfg: dict) -> Dict[str, nn.Module]:
    """The paper's ImageNet head, with the official (and timm) module names.

    ``incre_modules`` (one Bottleneck per branch: 128, 256, 512, 1024 channels),
    ``downsamp_modules`` (strided 3x3 conv with bias, norm, ReLU, from each branch to the next),
    ``final_layer`` (1x1 conv with bias to 2048, norm, ReLU) and ``classifier`` (linear).
    :func:`classify` runs them.
    """
    if len(in_channels) != len(CLS_HEAD_CHANNELS):
        raise ValueError(f"representation='cls' needs {len(CLS_HEAD_CHANNELS)} branches, the "
                         f'stage table has {len(in_channels)}')
    widths = [c * Bottleneck.expansion for c in CLS_HEAD_CHANNELS]
    incre = nn.ModuleList(
        make_res_layer(Bottleneck, cin, planes, 1, conv_cfg, norm_cfg, with_cp=False)
        for cin, planes in zip(in_channels, CLS_HEAD_CHANNELS))
    downsamp = nn.ModuleList(
        nn.Sequential(
            build_conv_layer(conv_cfg, cin, cout, 3, stride=2, padding=1, bias=True),
            build_norm_layer(norm_cfg, cout)[1], nn.ReLU(inplace=True))
        for cin, cout in zip(widths[:-1], widths[1:]))
    final = nn.Sequential(
        build_conv_layer(conv_cfg, widths[-1], CLS_FEATURES, 1, bias=True),
        build_norm_layer(norm_cfg, CLS_FEATURES)[1], nn.ReLU(inplace=True))
    return dict(incre_modules=incre, downsamp_modules=downsamp, final_layer=final,
                classifier=nn.Linear(CLS_FEATURES, num_classes))


def classify(feats: Sequence[torch.Tensor], incre_modules: nn.ModuleList,
             downsamp_modules: nn.ModuleList, final_layer: nn.Module,
             classifier: nn.Module) -> torch.Tensor:
    """Raise every branch's width, merge them from high to low resolution, pool, classify."""
    y = incre_modules[0](feats[0])
    for incre, down, f in zip(incre_modules[1:], downsamp_modules, feats[1:]):
        y = incre(f) + down(y)
    y = final_layer(y)
    return classifier(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))
