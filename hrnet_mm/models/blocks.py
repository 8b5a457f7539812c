"""Residual blocks of HRNet, built from mmcv's conv/norm builders.

Parameter names (``conv1``, ``bn1`` / ``gn1``, ..., ``downsample.0``) are those of the
mmdet/mmseg/mmpose ResNet blocks, so their HRNet checkpoints load unchanged.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer


class NamedNorms:
    """Norm layers named as mmcv names them (``bn1``, ``gn1`` ...), reachable as ``norm1``,
    ``norm2``, as in the mmdet/mmseg/mmpose ResNet blocks and HRNet stems (code written for
    them reads ``block.norm3`` or ``model.norm1``). A mixin for ``nn.Module`` subclasses."""

    def _add_norm(self, index: int, channels: int, norm_cfg: dict) -> None:
        name, norm = build_norm_layer(norm_cfg, channels, postfix=index)
        setattr(self, f'norm{index}_name', name)
        self.add_module(name, norm)

    @property
    def norm1(self) -> nn.Module:
        return getattr(self, self.norm1_name)

    @property
    def norm2(self) -> nn.Module:
        return getattr(self, self.norm2_name)


class _ResidualBlock(NamedNorms, nn.Module):
    """Shared parts: norm naming, the shortcut, ReLU, and checkpointing."""

    expansion = 1

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def last_norm(self) -> nn.Module:
        """The norm layer on the residual path's output (zeroed by ``zero_init_residual``)."""
        return getattr(self, f'norm{self.num_norms}')

    def forward(self, x: torch.Tensor) -> torch.Tensor:

        def inner(x: torch.Tensor) -> torch.Tensor:
            identity = x if self.downsample is None else self.downsample(x)
            out = self._residual(x)
            out += identity  # in place: the norm's output is not needed by its backward
            return out

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(inner, x, use_reentrant=False)
        else:
            out = inner(x)
        return self.relu(out)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs with an identity (or projected) shortcut.

    Example:
        >>> block = BasicBlock(32, 32)
        >>> block(torch.rand(1, 32, 8, 8)).shape
        torch.Size([1, 32, 8, 8])
    """

    expansion = 1
    num_norms = 2

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, with_cp: bool = False,
                 conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')
        self.conv1 = build_conv_layer(conv_cfg, inplanes, planes, 3, stride=stride, padding=1,
                                      bias=False)
        self._add_norm(1, planes, norm_cfg)
        self.conv2 = build_conv_layer(conv_cfg, planes, planes, 3, padding=1, bias=False)
        self._add_norm(2, planes, norm_cfg)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.with_cp = with_cp

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        return self.norm2(self.conv2(out))


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3, 1x1 expand (x4), with an identity (or projected) shortcut.

    Example:
        >>> down = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
        >>> block = Bottleneck(64, 64, downsample=down)
        >>> block(torch.rand(1, 64, 8, 8)).shape
        torch.Size([1, 256, 8, 8])
    """

    expansion = 4
    num_norms = 3

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None, with_cp: bool = False,
                 conv_cfg: Optional[dict] = None, norm_cfg: Optional[dict] = None) -> None:
        super().__init__()
        norm_cfg = norm_cfg or dict(type='BN')
        self.conv1 = build_conv_layer(conv_cfg, inplanes, planes, 1, bias=False)
        self._add_norm(1, planes, norm_cfg)
        self.conv2 = build_conv_layer(conv_cfg, planes, planes, 3, stride=stride, padding=1,
                                      bias=False)
        self._add_norm(2, planes, norm_cfg)
        self.conv3 = build_conv_layer(conv_cfg, planes, planes * self.expansion, 1, bias=False)
        self._add_norm(3, planes * self.expansion, norm_cfg)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.with_cp = with_cp

    @property
    def norm3(self) -> nn.Module:
        return getattr(self, self.norm3_name)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        return self.norm3(self.conv3(out))


BLOCKS = {'BASIC': BasicBlock, 'BOTTLENECK': Bottleneck}


def make_res_layer(block: type, inplanes: int, planes: int, num_blocks: int,
                   conv_cfg: Optional[dict], norm_cfg: dict, with_cp: bool) -> nn.Sequential:
    """``num_blocks`` blocks; the first projects the shortcut when the width changes."""
    downsample = None
    if inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            build_conv_layer(conv_cfg, inplanes, planes * block.expansion, 1, bias=False),
            build_norm_layer(norm_cfg, planes * block.expansion)[1])
    layers = [block(inplanes, planes, downsample=downsample, with_cp=with_cp,
                    conv_cfg=conv_cfg, norm_cfg=norm_cfg)]
    layers += [block(planes * block.expansion, planes, with_cp=with_cp, conv_cfg=conv_cfg,
                     norm_cfg=norm_cfg) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)
