"""HRNetV2: the stem, four multi-resolution stages, and the chosen representation."""
import copy
from logging import FileHandler
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer
from mmengine.logging import MMLogger, print_log
from mmengine.model import BaseModule, constant_init
from torch.nn.modules.batchnorm import _BatchNorm

from ..weights import load_pretrained
from ..weights.layouts import legacy_renames
from .arch import STAGE_NAMES, check_positive_int, get_arch, is_int
from .blocks import BLOCKS, NamedNorms, _ResidualBlock, make_res_layer
from .fusion import UPSAMPLE_MODES, HRModule, apply_transition, make_transition
from .outputs import FeatureInfo
from .representations import (Representation, build_representation, representation_class,
                              representation_name)

STEM_CHANNELS = 64


#: HRNetV2 arguments of hrnet_mm 0.1 that now belong to the representation module.
MOVED_TO_REPRESENTATION = {'out_channels': 'v2p', 'num_outs': 'v2p', 'pooling_type': 'v2p',
                           'pyramid_stride': 'v2p', 'num_classes': 'cls'}


def _check_moved(representation: Union[str, dict], moved: dict) -> None:
    """A one-line error for the hrnet_mm 0.1 spelling ``HRNetV2(out_channels=...)``, saying
    the new one; a TypeError, as Python gives, for any other unknown argument."""
    for key, value in moved.items():
        if key not in MOVED_TO_REPRESENTATION:
            raise TypeError(f'HRNetV2 got an unexpected keyword argument {key!r}')
        name = representation_name(representation)
        owner = MOVED_TO_REPRESENTATION[key]
        if name != owner:
            raise ValueError(f'{key}={value!r} only applies to representation={owner!r}, '
                             f'not {name!r}')
        raise ValueError(f'{key}= is an argument of the representation: write '
                         f"representation=dict(type={owner!r}, {key}={value!r})")


def _check_norm_cfg(norm_cfg: Optional[dict]) -> None:
    """A norm type mmcv knows, and GN with its ``num_groups``: said here, not as a registry or
    assertion error from deep inside the build."""
    if norm_cfg is None:
        return
    if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
        raise ValueError(f"norm_cfg={norm_cfg!r}: must be a dict with a 'type', e.g. "
                         "dict(type='BN')")
    from mmengine.registry import MODELS as MMENGINE_MODELS
    kind = norm_cfg['type']
    if isinstance(kind, str) and MMENGINE_MODELS.get(kind) is None:
        norms = (_BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
        known = sorted(k for k, v in MMENGINE_MODELS.module_dict.items()
                       if isinstance(v, type) and issubclass(v, norms))
        raise ValueError(f'norm_cfg type {kind!r} is not a known norm layer; known: {known}')
    if kind == 'GN' and not is_int(norm_cfg.get('num_groups')):
        raise ValueError(f'norm_cfg={norm_cfg!r}: GN needs num_groups (an int dividing every '
                         "branch width), e.g. dict(type='GN', num_groups=2)")


class HRNetV2(NamedNorms, BaseModule):
    """HRNet (Wang et al., TPAMI 2020) with the V1, V2 and V2+p representations.

    A stem takes the input to stride 4; four stages keep 1, 2, 3, 4 parallel branches at
    strides 4, 8, 16, 32 and repeatedly exchange information between them. ``representation``
    picks what :meth:`forward` returns (always a tuple); :attr:`feature_info` declares it.

    The representation is a module of its own (:mod:`hrnet_mm.models.representations`), kept
    as ``head``; the same modules work as separate necks (``representation='branches'`` plus
    ``neck=dict(type='V2pRepresentation', ...)`` computes what ``'v2p'`` does, with
    ``backbone.head.*`` as ``neck.*``).

    The parameter names are those of mmdet/mmseg/mmpose's ``HRNet`` (``head.*`` for
    ``'v2p'`` holds mmdet ``HRFPN``'s ``reduction_conv`` / ``fpn_convs``), so their
    checkpoints load with ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    Args:
        arch: A name from :data:`hrnet_mm.models.arch.ARCH_ZOO`: ``'w18_small_v1'``,
            ``'w18_small_v2'``, ``'w18'``, ``'w30'``, ``'w32'``, ``'w40'``, ``'w44'``,
            ``'w48'``, ``'w64'``.
        extra: A full stage table in the mmdet/mmseg/mmpose ``extra`` format; overrides
            ``arch``. Any branch width may change from stage to stage.
        representation: ``'branches'``, ``'v1'``, ``'v2'``, ``'v2p'`` or ``'cls'`` (ImageNet
            logits; the official / timm classification head), or a dict with that ``type``
            and the module's own arguments, e.g. ``dict(type='v2p', out_channels=256,
            num_outs=5, pooling_type='AVG', pyramid_stride=1)`` or
            ``dict(type='cls', num_classes=1000)``; see
            :class:`~hrnet_mm.models.representations.V2pRepresentation` and
            :class:`~hrnet_mm.models.representations.ClsRepresentation`.
        in_channels: Input image channels.
        conv_cfg: mmcv conv config (None: ``nn.Conv2d``).
        norm_cfg: mmcv norm config; BN (default), SyncBN and GN work.
        norm_eval: Keep BN layers in eval mode (frozen statistics) during training.
        frozen_stages: -1 freezes nothing; 0 the stem; k in 1..4 also stages 1..k and the
            transitions out of them (weights and BN statistics).
        with_cp: Gradient checkpointing (recompute in backward instead of storing) of the stem,
            every residual block, every exchange and the pyramid convs: less memory, more time.
        zero_init_residual: Zero the last norm of every residual block at initialisation, so
            each block starts as the identity. Not applied when loading pretrained weights.
        upsample_mode: How fusion brings low-resolution maps up: ``'nearest'`` (official code,
            mmdet, mmpose) or ``'bilinear'`` (mmseg). Always to the exact target size.
        align_corners: For bilinear resizing in fusion and in the V2 concatenation.
        channels_last: Keep weights and activations in ``torch.channels_last`` (NHWC) memory
            format, which oneDNN (CPU) and cuDNN (GPU) convolutions run faster; the input is
            converted in :meth:`forward`. Same outputs (within float rounding).
        pad_channels: Round every width inside the network up to a multiple of this (e.g. 8,
            for GPU tensor cores) with extra channels that hold zeros and stay zero in
            training: same outputs, same ``state_dict`` layout (checkpoints load either way),
            more multiply-adds (W18 at 8: 1.21x). Pays only where the device runs the
            padded widths faster; slower on CPUs. See :mod:`hrnet_mm.padding`.
        parallel_branches: On a GPU, run each module's branches (and its exchange's outputs)
            on parallel CUDA streams, so that the narrow low-resolution branches fill the GPU
            beside the stride-4 one; meant for CUDA graphs (:mod:`hrnet_mm.streams`). Same
            outputs; no effect on the CPU.
        init_cfg: mmengine init config; defaults to Kaiming for convs and 1 for norms.
        pretrained: Deprecated spelling of ``init_cfg=dict(type='Pretrained',
            checkpoint=pretrained)``, accepted because mmseg's segmentors pass it down.

    Example:
        >>> model = HRNetV2(arch='w18', representation='branches').eval()
        >>> outs = model(torch.rand(1, 3, 64, 64))
        >>> [tuple(o.shape) for o in outs]
        [(1, 18, 16, 16), (1, 36, 8, 8), (1, 72, 4, 4), (1, 144, 2, 2)]
        >>> model.feature_info
        (FeatureInfo(channels=18, stride=4), FeatureInfo(channels=36, stride=8), \
FeatureInfo(channels=72, stride=16), FeatureInfo(channels=144, stride=32))
        >>> HRNetV2(arch='w18', representation='v2')(torch.rand(1, 3, 64, 64))[0].shape
        torch.Size([1, 270, 16, 16])
        >>> HRNetV2(arch='w18', representation=dict(type='v2p', num_outs=3)).out_strides
        (4, 8, 16)
    """

    def __init__(self,
                 arch: str = 'w32',
                 extra: Optional[dict] = None,
                 representation: Union[str, dict] = 'branches',
                 in_channels: int = 3,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 norm_eval: bool = False,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 zero_init_residual: bool = False,
                 upsample_mode: str = 'nearest',
                 align_corners: bool = False,
                 channels_last: bool = False,
                 pad_channels: Optional[int] = None,
                 parallel_branches: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 pretrained: Optional[str] = None,
                 **moved) -> None:
        _check_moved(representation, moved)
        if pretrained is not None:
            # mmseg's EncoderDecoder passes a model-level ``pretrained=`` down to the backbone.
            if init_cfg is not None:
                raise ValueError(f'pretrained={pretrained!r} and init_cfg={init_cfg!r}: give '
                                 'one of them (init_cfg=dict(type=\'Pretrained\', ...) is '
                                 'preferred)')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is None:
            init_cfg = [dict(type='Kaiming', layer='Conv2d'),
                        dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])]
        super().__init__(copy.deepcopy(init_cfg))
        if extra is None and not isinstance(arch, str):
            raise ValueError(f'arch={arch!r}: must be a name (a str), one of the stage tables '
                             "such as 'w32', or give extra= with a custom table")
        self.arch = get_arch(arch, extra)
        self._check_args(in_channels, frozen_stages, upsample_mode)
        if not isinstance(parallel_branches, bool):
            raise ValueError(f'parallel_branches={parallel_branches!r}: must be True or False')
        _check_norm_cfg(norm_cfg)
        head_cls = representation_class(representation)
        if self.arch['stage4'].get('multiscale_output', True) is False and \
                head_cls.inputs_used != 1:
            raise ValueError('extra.stage4.multiscale_output=False computes only the stride-4 '
                             f"output: use representation='v1', not {head_cls.name!r}")
        #: The representation's name (``'v2p'``); the module is :attr:`head`.
        self.representation: str = head_cls.name
        self.in_channels = in_channels
        self.conv_cfg = copy.deepcopy(conv_cfg)
        self.norm_cfg = copy.deepcopy(norm_cfg) if norm_cfg else dict(type='BN')
        self.norm_eval = norm_eval
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp
        self.zero_init_residual = zero_init_residual
        self.upsample_mode = upsample_mode
        self.align_corners = align_corners
        self.parallel_branches = parallel_branches

        self._build_stem(in_channels)
        branch_channels = self._build_stages(head_cls.inputs_used)
        self.head: Representation = build_representation(
            representation, branch_channels, conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
            with_cp=self.with_cp, align_corners=self.align_corners)
        self.feature_info: Tuple[FeatureInfo, ...] = self.head.feature_info
        self._freeze_stages()
        # hrnet_mm 0.1 kept the head's parameters elsewhere (pyramid.*, or the official
        # classification names at the top level): its checkpoints load through any path.
        self._register_load_state_dict_pre_hook(self._upgrade_legacy_keys)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)
        #: The multiple every width is padded to (``pad_channels``), or None.
        self.channel_multiple: Optional[int] = None
        if pad_channels is not None:
            if not is_int(pad_channels) or pad_channels < 2:
                raise ValueError(f'pad_channels={pad_channels!r}: must be an int >= 2 (e.g. 8), '
                                 'or None (no padding)')
            from ..padding import pad_channels as pad
            pad(self, pad_channels)

    # ------------------------------------------------------------------ building
    def _check_args(self, in_channels: int, frozen_stages: int, upsample_mode: str) -> None:
        check_positive_int('in_channels', in_channels)
        if not is_int(frozen_stages) or frozen_stages not in range(-1, len(STAGE_NAMES) + 1):
            raise ValueError(f'frozen_stages={frozen_stages!r}: must be an int from -1 '
                             f'(nothing), 0 (stem) to {len(STAGE_NAMES)}')
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f'upsample_mode={upsample_mode!r} is not known; allowed: '
                             f'{list(UPSAMPLE_MODES)}')

    def _build_stem(self, in_channels: int) -> None:
        """Two strided 3x3 convs to stride 4 (``conv1``, ``bn1``, ``conv2``, ``bn2``)."""
        self.conv1 = build_conv_layer(self.conv_cfg, in_channels, STEM_CHANNELS, 3, stride=2,
                                      padding=1, bias=False)
        self._add_norm(1, STEM_CHANNELS, self.norm_cfg)
        self.conv2 = build_conv_layer(self.conv_cfg, STEM_CHANNELS, STEM_CHANNELS, 3, stride=2,
                                      padding=1, bias=False)
        self._add_norm(2, STEM_CHANNELS, self.norm_cfg)
        self.relu = nn.ReLU(inplace=True)

    def _build_stages(self, last_outputs: Optional[int]) -> List[int]:
        """``layer1``, then ``transition{k-1}`` and ``stage{k}`` for k = 2, 3, 4; the last
        exchange computes only ``last_outputs`` maps (None: all) when the head reads no more."""
        stage1 = self.arch['stage1']
        block = BLOCKS[stage1['block']]
        self.layer1 = make_res_layer(block, STEM_CHANNELS, stage1['num_channels'][0],
                                     stage1['num_blocks'][0], self.conv_cfg, self.norm_cfg,
                                     self.with_cp)
        channels = [stage1['num_channels'][0] * block.expansion]
        for k, name in enumerate(STAGE_NAMES[1:], start=2):
            cfg = self.arch[name]
            block = BLOCKS[cfg['block']]
            cur = [c * block.expansion for c in cfg['num_channels']]
            self.add_module(f'transition{k - 1}',
                            make_transition(channels, cur, self.conv_cfg, self.norm_cfg))
            modules = []
            for m in range(cfg['num_modules']):
                is_last = name == STAGE_NAMES[-1] and m == cfg['num_modules'] - 1
                num_outputs = last_outputs if is_last and last_outputs else len(cur)
                modules.append(
                    HRModule(block, cfg['num_blocks'], cur, cfg['num_channels'], num_outputs,
                             conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                             with_cp=self.with_cp, upsample_mode=self.upsample_mode,
                             align_corners=self.align_corners,
                             parallel_branches=self.parallel_branches))
            self.add_module(name, nn.Sequential(*modules))
            channels = cur
        return channels

    # ------------------------------------------------------------------ properties
    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each output map (from :attr:`feature_info`)."""
        return tuple(f.channels for f in self.feature_info)

    @property
    def out_strides(self) -> Tuple[Optional[int], ...]:
        """Stride of each output map (from :attr:`feature_info`; ``None`` for logits)."""
        return tuple(f.stride for f in self.feature_info)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Run the network; returns a tuple of maps as declared by :attr:`feature_info`."""
        if not torch.is_tensor(x):
            raise TypeError(f'input is a {type(x).__name__}: expected a float tensor (N, '
                            f'{self.in_channels}, H, W), e.g. torch.stack(images)')
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'input of shape {tuple(x.shape)}: expected (N, in_channels='
                             f'{self.in_channels}, H, W)')
        if x.dtype != self.conv1.weight.dtype and not (
                x.is_floating_point() and torch.is_autocast_enabled(x.device.type)):
            raise TypeError(
                f'input of dtype {x.dtype} into weights of {self.conv1.weight.dtype}: convert the '
                f'input (x.to({self.conv1.weight.dtype}), normalised as in training), or run '
                'under torch.autocast for mixed precision')
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.with_cp and torch.is_grad_enabled():
            # The stem's stride-2 maps are the largest in the network: recompute them.
            x = cp.checkpoint(self._stem, x, use_reentrant=False)
        else:
            x = self._stem(x)
        feats = [self.layer1(x)]
        del x  # free the stem map now (inference memory), as the reference code does
        for k in range(1, len(STAGE_NAMES)):
            feats = apply_transition(getattr(self, f'transition{k}'), feats)
            feats = getattr(self, STAGE_NAMES[k])(feats)
        return self.head(feats)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.norm1(self.conv1(x)))
        return self.relu(self.norm2(self.conv2(x)))

    def _upgrade_legacy_keys(self, state_dict: Dict[str, torch.Tensor], prefix: str,
                             *args) -> None:
        """(``load_state_dict`` pre-hook) Rename hrnet_mm 0.1 keys of :attr:`head`, in place."""
        for old, new in legacy_renames(state_dict, self.head.legacy_keys, prefix).items():
            state_dict[new] = state_dict.pop(old)

    # ------------------------------------------------------------------ training state
    def _frozen_modules(self) -> List[nn.Module]:
        """Stem for ``frozen_stages >= 0``; stage k and the transition out of it for k <= it."""
        if self.frozen_stages < 0:
            return []
        mods = [self.conv1, self.norm1, self.conv2, self.norm2]
        for k in range(1, self.frozen_stages + 1):
            mods.append(self.layer1 if k == 1 else getattr(self, STAGE_NAMES[k - 1]))
            if k < len(STAGE_NAMES):
                mods.append(getattr(self, f'transition{k}'))
        return mods

    def _freeze_stages(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> 'HRNetV2':
        """Set the training mode, keeping frozen stages (and, with ``norm_eval``, BN) in eval."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Initialise from ``init_cfg``; then ``zero_init_residual`` unless weights were loaded.

        ``dict(type='Pretrained', checkpoint=..., prefix='backbone.', strict=False)`` is handled
        by :func:`hrnet_mm.weights.load_pretrained`: any known checkpoint layout (official,
        timm, mmdet, mmseg, mmpose, mmpretrain) is converted, read with ``weights_only=True``,
        and missing / unexpected keys are reported by name (``strict=True`` fails on them).
        """
        if self.is_init:
            return super().init_weights()  # mmengine logs that it is already initialised
        if self.channel_multiple:
            # Initialised (and loaded) as the plain network, so the same seed gives the same
            # weights with and without padding; the extra channels are zeros again after.
            from ..padding import pad_channels, unpad_channels
            multiple = self.channel_multiple
            unpad_channels(self)
            try:
                return self.init_weights()
            finally:
                pad_channels(self, multiple)
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        pretrained = [c for c in cfgs if c and c.get('type') == 'Pretrained']
        own_cfg = self.init_cfg
        # mmengine runs the other initialisers; the Pretrained ones are ours.
        self.init_cfg = [c for c in cfgs if c and c.get('type') != 'Pretrained'] or None
        self._loading = bool(pretrained)  # for _dump_init_info, which mmengine calls in there
        try:
            super().init_weights()
        finally:
            self.init_cfg, self._loading = own_cfg, False
        for cfg in pretrained:
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix') or 'backbone.',
                            strict=cfg.get('strict', False))
        if self.zero_init_residual and not pretrained:
            for m in self.modules():
                if isinstance(m, _ResidualBlock):
                    constant_init(m.last_norm, 0)

    def _dump_init_info(self) -> None:
        """mmengine reports how each parameter was initialised: into a run's log file (a
        Runner's) as mmengine does; without one it would print ~3,500 console lines for W32,
        so one line instead. Loaded weights get the loader's one line (mmengine would call
        this before they are loaded and report them as unchanged)."""
        if getattr(self, '_loading', False):
            return
        if any(isinstance(h, FileHandler) for h in MMLogger.get_current_instance().handlers):
            return super()._dump_init_info()
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg]
        how = ', '.join(f"{c['type']} ({c.get('layer', 'all')})" for c in cfgs if c)
        print_log(f'HRNetV2 initialised: {len(list(self.parameters()))} parameter tensors, '
                  f'init_cfg {how}', logger='current')
