"""The HRNet representations: modules that turn the branch outputs into what a task reads.

Each is a module of its own with ``forward(feats) -> tuple`` and declared outputs
(:attr:`Representation.feature_info`), its own defaults (its signature) and its own checks.
:class:`~hrnet_mm.HRNetV2` composes one by name (``representation='v2p'``, or
``representation=dict(type='v2p', out_channels=128)``); each also works as a neck on the
branches of ``HRNetV2(representation='branches')`` or on another backbone's multi-scale maps.

- ``'branches'`` :class:`BranchesRepresentation`: the four maps (C, 2C, 4C, 8C at strides
  4, 8, 16, 32).
- ``'v1'`` :class:`V1Representation`: the stride-4 map only (HRNetV1, pose).
- ``'v2'`` :class:`V2Representation`: every map resized to stride 4 and concatenated
  (segmentation).
- ``'v2p'`` :class:`V2pRepresentation`: V2, a 1x1 reduction, then pooling into a pyramid with
  a 3x3 conv per level (HRNetV2p, detection); the layers and names of mmdet's ``HRFPN``.
- ``'cls'`` :class:`ClsRepresentation`: the paper's ImageNet head: logits, or with
  ``num_classes=0`` the pooled 2048-d features (for mmpretrain's ``LinearClsHead``).

Example:
    >>> feats = [torch.rand(1, 18 * 2**i, 64 // 2**i, 64 // 2**i) for i in range(4)]
    >>> neck = V2pRepresentation([18, 36, 72, 144], out_channels=64, num_outs=3)
    >>> [tuple(o.shape) for o in neck(feats)]
    [(1, 64, 64, 64), (1, 64, 32, 32), (1, 64, 16, 16)]
    >>> neck.feature_info
    (FeatureInfo(channels=64, stride=4), FeatureInfo(channels=64, stride=8), \
FeatureInfo(channels=64, stride=16))
"""
import inspect
from types import MappingProxyType
from typing import ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_conv_layer, build_norm_layer
from mmengine.model import BaseModule

from ..weights.layouts import CLS_LAYERS
from .arch import check_positive_int, check_positive_ints, is_int
from .blocks import Bottleneck, make_res_layer
from .fusion import resize_to
from .outputs import FeatureInfo, hrnet_strides

Feats = Sequence[torch.Tensor]


class Representation(BaseModule):
    """What every representation takes and declares.

    Args:
        in_channels: Width of each input map, highest resolution first.
        in_strides: Stride of each input map (default HRNet's: 4, 8, 16, 32).
        init_cfg: mmengine init config.

    Attributes:
        feature_info: Channels and stride of each output (set by the subclass).
    """

    #: The name :class:`~hrnet_mm.HRNetV2` knows it by (``representation=``).
    name: ClassVar[str] = ''
    #: How many of the highest-resolution maps it reads (None: all); HRNetV2's last exchange
    #: then fuses into only those.
    inputs_used: ClassVar[Optional[int]] = None
    #: Where hrnet_mm 0.1 kept this representation's parameters inside HRNetV2 (old prefix ->
    #: new one), so its checkpoints keep loading.
    legacy_keys: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def __init__(self, in_channels: Sequence[int], in_strides: Optional[Sequence[int]] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        self.in_channels = check_positive_ints('in_channels', in_channels)
        if in_strides is None:
            in_strides = hrnet_strides(len(self.in_channels))
        self.in_strides = check_positive_ints('in_strides', in_strides)
        if len(self.in_strides) != len(self.in_channels):
            raise ValueError(f'in_strides={in_strides!r}: one per input map '
                             f'(in_channels={list(self.in_channels)})')
        self.feature_info: Tuple[FeatureInfo, ...] = ()

    def _check_feats(self, feats: Feats) -> None:
        """As many maps as declared (V1: at least one)."""
        n = len(self.in_channels)
        if not isinstance(feats, (list, tuple)) or not (
                len(feats) == n or self.inputs_used is not None and
                self.inputs_used <= len(feats) <= n):
            got = f'{len(feats)} maps' if isinstance(feats, (list, tuple)) else \
                f'a {type(feats).__name__}'
            raise ValueError(f'{type(self).__name__} got {got}: expected a list of {n} maps '
                             f'(in_channels={list(self.in_channels)})')

    def forward(self, feats: Feats) -> Tuple[torch.Tensor, ...]:
        raise NotImplementedError


class BranchesRepresentation(Representation):
    """The branch maps as they are (an HRNet backbone's own outputs; for a separate neck).

    Example:
        >>> BranchesRepresentation([18, 36]).feature_info
        (FeatureInfo(channels=18, stride=4), FeatureInfo(channels=36, stride=8))
    """

    name = 'branches'

    def __init__(self, in_channels: Sequence[int], in_strides: Optional[Sequence[int]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, in_strides, init_cfg)
        self.feature_info = tuple(map(FeatureInfo, self.in_channels, self.in_strides))

    def forward(self, feats: Feats) -> Tuple[torch.Tensor, ...]:
        self._check_feats(feats)
        return tuple(feats)


class V1Representation(Representation):
    """HRNetV1: the highest-resolution map only (pose estimation).

    Example:
        >>> V1Representation([32, 64, 128, 256]).feature_info
        (FeatureInfo(channels=32, stride=4),)
    """

    name = 'v1'
    inputs_used = 1

    def __init__(self, in_channels: Sequence[int], in_strides: Optional[Sequence[int]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, in_strides, init_cfg)
        self.feature_info = (FeatureInfo(self.in_channels[0], self.in_strides[0]), )

    def forward(self, feats: Feats) -> Tuple[torch.Tensor, ...]:
        self._check_feats(feats)
        return (feats[0], )


def concat_upsampled(feats: Feats, align_corners: bool = False) -> torch.Tensor:
    """All maps bilinearly resized to the first's exact size, concatenated.

    Example:
        >>> feats = [torch.rand(1, 18 * 2**i, 64 // 2**i, 48 // 2**i) for i in range(4)]
        >>> concat_upsampled(feats).shape
        torch.Size([1, 270, 64, 48])
    """
    size = feats[0].shape[-2:]
    return torch.cat(
        [feats[0]] + [resize_to(f, size, 'bilinear', align_corners) for f in feats[1:]], dim=1)


class V2Representation(Representation):
    """HRNetV2: every map resized to the first's size and concatenated (segmentation).

    Args:
        in_channels, in_strides, init_cfg: See :class:`Representation`.
        align_corners: For the bilinear resize.

    Example:
        >>> V2Representation([18, 36, 72, 144]).feature_info
        (FeatureInfo(channels=270, stride=4),)
    """

    name = 'v2'

    def __init__(self, in_channels: Sequence[int], in_strides: Optional[Sequence[int]] = None,
                 align_corners: bool = False, init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, in_strides, init_cfg)
        self.align_corners = align_corners
        self.feature_info = (FeatureInfo(sum(self.in_channels), self.in_strides[0]), )

    def forward(self, feats: Feats) -> Tuple[torch.Tensor, ...]:
        self._check_feats(feats)
        return (concat_upsampled(feats, self.align_corners), )


POOLING_TYPES = MappingProxyType({'AVG': F.avg_pool2d, 'MAX': F.max_pool2d})


class V2pRepresentation(Representation):
    """HRNetV2p: V2, a 1x1 reduction, ``num_outs`` pooled levels with a 3x3 conv each.

    The layers and parameter names of mmdet's ``HRFPN`` (``reduction_conv``, ``fpn_convs``;
    its ``stride`` is ``pyramid_stride`` here), so its weights load one to one, as a neck
    (``neck.*``) or inside ``HRNetV2(representation='v2p')`` (``backbone.head.*``).

    Args:
        in_channels, in_strides, init_cfg: See :class:`Representation`; ``init_cfg``
            defaults to Caffe2Xavier on the convs, as ``HRFPN``.
        out_channels: Width of every pyramid level.
        num_outs: Number of levels; level ``i`` is pooled by ``2**i``.
        pooling_type: ``'AVG'`` or ``'MAX'``.
        pyramid_stride: Stride of the 3x3 convs (2 for FCOS: levels at strides 8 ... 128).
        align_corners: For the bilinear resize of the V2 concatenation.
        conv_cfg: mmcv conv config.
        with_cp: Checkpoint the convs in training.

    Example:
        >>> V2pRepresentation([18, 36, 72, 144], num_outs=3, pyramid_stride=2).feature_info
        (FeatureInfo(channels=256, stride=8), FeatureInfo(channels=256, stride=16), \
FeatureInfo(channels=256, stride=32))
    """

    name = 'v2p'
    legacy_keys = MappingProxyType({'pyramid.': 'head.'})

    def __init__(self, in_channels: Sequence[int], in_strides: Optional[Sequence[int]] = None,
                 out_channels: int = 256, num_outs: int = 5, pooling_type: str = 'AVG',
                 pyramid_stride: int = 1, align_corners: bool = False,
                 conv_cfg: Optional[dict] = None, with_cp: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        if init_cfg is None:
            init_cfg = dict(type='Caffe2Xavier', layer='Conv2d')
        super().__init__(in_channels, in_strides, init_cfg)
        self.out_channels = check_positive_int('out_channels', out_channels)
        self.num_outs = check_positive_int('num_outs', num_outs)
        self.pyramid_stride = check_positive_int('pyramid_stride', pyramid_stride)
        if pooling_type not in POOLING_TYPES:
            raise ValueError(f'pooling_type={pooling_type!r} is not known; allowed: '
                             f'{list(POOLING_TYPES)}')
        self.pooling_type = pooling_type
        self.pool = POOLING_TYPES[pooling_type]
        self.align_corners = align_corners
        self.with_cp = with_cp
        self.reduction_conv = ConvModule(sum(self.in_channels), out_channels, 1,
                                         conv_cfg=conv_cfg, act_cfg=None)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, stride=pyramid_stride,
                       conv_cfg=conv_cfg, act_cfg=None) for _ in range(num_outs))
        base = self.in_strides[0] * pyramid_stride
        self.feature_info = tuple(FeatureInfo(out_channels, base * 2**i) for i in range(num_outs))

    def _run(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(layer, x, use_reentrant=False)
        return layer(x)

    def forward(self, feats: Feats) -> Tuple[torch.Tensor, ...]:
        self._check_feats(feats)
        coarsest = 2**(self.num_outs - 1)
        size = tuple(feats[0].shape[-2:])
        if min(size) < coarsest:
            raise ValueError(
                f'the V2 map is {size}, too small for num_outs={self.num_outs} pyramid levels '
                f'(pooling by {coarsest}): feed an input of at least '
                f'{self.in_strides[0] * coarsest}x{self.in_strides[0] * coarsest} or lower '
                'num_outs')
        x = self._run(self.reduction_conv, concat_upsampled(feats, self.align_corners))
        levels = [x] + [self.pool(x, kernel_size=2**i, stride=2**i)
                        for i in range(1, self.num_outs)]
        return tuple(self._run(conv, lvl) for conv, lvl in zip(self.fpn_convs, levels))


#: Widths (before the x4 Bottleneck expansion) the classification head raises the branches to.
CLS_HEAD_CHANNELS = (32, 64, 128, 256)
CLS_FEATURES = 2048


class ClsRepresentation(Representation):
    """The paper's ImageNet head, with the official (and timm) module names.

    ``incre_modules`` (one Bottleneck per branch: 128, 256, 512, 1024 channels),
    ``downsamp_modules`` (strided 3x3 conv with bias, norm, ReLU, from each branch to the next;
    the maps are merged from high to low resolution), ``final_layer`` (1x1 conv with bias to
    2048, norm, ReLU), global average pooling and ``classifier`` (linear).

    Args:
        in_channels, in_strides, init_cfg: See :class:`Representation` (four maps).
        num_classes: Classifier outputs; 0 for no classifier: the pooled 2048-d features
            (mmpretrain's ``LinearClsHead`` then classifies, as after its ``HRFuseScales``).
        conv_cfg, norm_cfg: mmcv layer configs.

    Example:
        >>> ClsRepresentation([18, 36, 72, 144], num_classes=0).feature_info
        (FeatureInfo(channels=2048, stride=None),)
    """

    name = 'cls'
    legacy_keys = MappingProxyType({f'{k}.': f'head.{k}.' for k in CLS_LAYERS})

    def __init__(self, in_channels: Sequence[int], in_strides: Optional[Sequence[int]] = None,
                 num_classes: int = 1000, conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None, init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, in_strides, init_cfg)
        if len(self.in_channels) != len(CLS_HEAD_CHANNELS):
            raise ValueError(f"representation='cls' needs {len(CLS_HEAD_CHANNELS)} maps, got "
                             f'in_channels={list(self.in_channels)}')
        if not is_int(num_classes) or num_classes < 0:
            raise ValueError(f'num_classes={num_classes!r}: must be a positive int, or 0 for '
                             'the pooled features')
        norm_cfg = norm_cfg or dict(type='BN')
        widths = [c * Bottleneck.expansion for c in CLS_HEAD_CHANNELS]
        self.incre_modules = nn.ModuleList(
            make_res_layer(Bottleneck, cin, planes, 1, conv_cfg, norm_cfg, with_cp=False)
            for cin, planes in zip(self.in_channels, CLS_HEAD_CHANNELS))
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(
                build_conv_layer(conv_cfg, cin, cout, 3, stride=2, padding=1, bias=True),
                build_norm_layer(norm_cfg, cout)[1], nn.ReLU(inplace=True))
            for cin, cout in zip(widths[:-1], widths[1:]))
        self.final_layer = nn.Sequential(
            build_conv_layer(conv_cfg, widths[-1], CLS_FEATURES, 1, bias=True),
            build_norm_layer(norm_cfg, CLS_FEATURES)[1], nn.ReLU(inplace=True))
        self.classifier = nn.Linear(CLS_FEATURES, num_classes) if num_classes else nn.Identity()
        self.num_classes = num_classes
        self.feature_info = (FeatureInfo(num_classes or CLS_FEATURES, None), )

    def forward(self, feats: Feats) -> Tuple[torch.Tensor, ...]:
        self._check_feats(feats)
        y = self.incre_modules[0](feats[0])
        for incre, down, f in zip(self.incre_modules[1:], self.downsamp_modules, feats[1:]):
            y = incre(f) + down(y)
        y = self.final_layer(y)
        return (self.classifier(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)), )


#: ``representation=`` name -> module, in the paper's order.
REPRESENTATIONS: Mapping[str, type] = MappingProxyType({
    cls.name: cls for cls in (BranchesRepresentation, V1Representation, V2Representation,
                              V2pRepresentation, ClsRepresentation)})


def representation_name(representation: Union[str, dict]):
    """The name in ``representation`` (a name, or a dict with the name as ``type``), known or
    not."""
    return representation.get('type') if isinstance(representation, dict) else representation


def representation_class(representation: Union[str, dict]) -> type:
    """The module ``representation`` (a name, or a dict with the name as ``type``) names.

    Raises:
        ValueError: Neither a known name nor a dict with one.
    """
    name = representation_name(representation)
    if not isinstance(name, str) or name not in REPRESENTATIONS:
        raise ValueError(f'representation={representation!r} is not known; allowed: '
                         f"{list(REPRESENTATIONS)} (or a dict with one as 'type', such as "
                         "dict(type='v2p', out_channels=128))")
    return REPRESENTATIONS[name]


def build_representation(representation: Union[str, dict], in_channels: Sequence[int],
                         **context) -> Representation:
    """The representation module ``representation`` names, for maps of ``in_channels``.

    Args:
        representation: A name (``'v2p'``) or a dict with ``type`` and that module's own
            arguments (``dict(type='v2p', out_channels=128)``).
        in_channels: Width of each input map.
        **context: Arguments the owner (HRNetV2) sets for every part (``conv_cfg``,
            ``norm_cfg``, ``with_cp``, ``align_corners``); each module takes those it has.

    Raises:
        ValueError: An unknown name, or an argument that module does not take.

    Example:
        >>> build_representation(dict(type='v2p', num_outs=2), [18, 36]).feature_info
        (FeatureInfo(channels=256, stride=4), FeatureInfo(channels=256, stride=8))
    """
    cls = representation_class(representation)
    spec: Dict = dict(representation) if isinstance(representation, dict) else {}
    spec.pop('type', None)
    name = cls.name
    params = inspect.signature(cls.__init__).parameters
    own = [p for p in params if p not in ('self', 'in_channels', 'in_strides', *context)]
    for key in spec:
        if key in context or key in ('in_channels', 'in_strides'):
            raise ValueError(f'representation={name!r}: {key}= is set by HRNetV2 for all its '
                             'parts; give it to HRNetV2, not in the representation dict')
        if key not in params:
            raise ValueError(f'representation={name!r} takes no {key}=; its arguments: '
                             f'{own or "none"}')
    shared = {k: v for k, v in context.items() if k in params}
    return cls(in_channels, **shared, **spec)
