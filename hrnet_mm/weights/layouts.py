"""Key layouts of published HRNet checkpoints, and their conversion to hrnet_mm's.

Pure functions on state dicts (no I/O). hrnet_mm's layout is the OpenMMLab full-model one:
the backbone under ``backbone.`` (HRNetV2's own names: the mmdet/mmseg/mmpose trunk, and its
representation module under ``head.``: mmdet ``HRFPN``'s ``reduction_conv`` / ``fpn_convs``
for V2+p, the official ``incre_modules`` / ``downsamp_modules`` / ``final_layer`` /
``classifier`` for ``'cls'``), and heads under the names of the library heads hrnet_mm's
configs use (mmseg ``decode_head.*``, mmpose ``head.*``, mmdet ``rpn_head.*`` /
``roi_head.*`` / ``bbox_head.*``).

hrnet_mm 0.1 kept the V2+p pyramid under ``pyramid.`` and the classification layers at the
backbone's top level; :func:`legacy_renames` maps them (HRNetV2 applies it on every load).

Example:
    >>> sd = {'conv1.weight': torch.zeros(64, 3, 3, 3), 'layer1.0.conv1.weight': ...,
    ...       'final_layer.weight': torch.zeros(17, 32, 1, 1), ...}
    >>> result = convert_state_dict(sd)
    >>> result.layout, sorted(result.state_dict)[:1], result.unmapped
    ('official_pose', ['backbone.conv1.weight'], [])
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import torch

#: Every layout :func:`detect_layout` knows, with what produces it.
LAYOUTS: Mapping[str, str] = {
    'hrnet_mm': 'hrnet_mm (and OpenMMLab) layout: backbone.*, HRNetV2 names',
    'backbone': 'a bare HRNet backbone state_dict (mmdet/mmseg/mmpose/mmpretrain HRNet, no '
                'prefix)',
    'official_cls': 'official HRNet-Image-Classification ImageNet weights, also timm hrnet_w*',
    'official_pose': 'official deep-high-resolution-net.pytorch pose net (final_layer heatmaps)',
    'official_seg': 'official HRNet-Semantic-Segmentation (model. prefix, last_layer head)',
    'mmdet': 'mmdet HRNet detector (backbone.*, HRFPN neck.reduction_conv / neck.fpn_convs)',
    'mmseg': 'mmseg FCN-HRNet segmentor (backbone.*, decode_head.*)',
    'mmpose': 'mmpose top-down HRNet (backbone.*, head.* or 0.x keypoint_head.*)',
    'mmpretrain': 'mmpretrain HRNet classifier (backbone.*, neck.0 HRFuseScales, head.fc)',
}

TRUNK_KEY = 'layer1.0.conv1.weight'  # present in every HRNet trunk, whatever its head
Tensor = torch.Tensor
StateDict = Dict[str, Tensor]


@dataclass
class Conversion:
    """A converted state dict, the layout it came from, and the source keys left behind."""
    state_dict: StateDict
    layout: str
    unmapped: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


def unwrap(checkpoint: Mapping) -> StateDict:
    """The state dict inside a checkpoint (``state_dict`` / ``model`` wrappers are common)."""
    for key in ('state_dict', 'model', 'module'):
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, Tensor) for v in inner.values()):
            return unwrap(inner)
    return {k: v for k, v in checkpoint.items() if isinstance(v, Tensor)}


def _strip(sd: Mapping[str, Tensor], prefix: str) -> StateDict:
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def _any(sd: Mapping[str, Tensor], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in sd)


def detect_layout(sd: Mapping[str, Tensor]) -> str:
    """Name the layout of a state dict (see :data:`LAYOUTS`).

    Raises:
        ValueError: No HRNet trunk is found in it.
    """
    if f'backbone.{TRUNK_KEY}' in sd:
        if _any(sd, 'neck.reduction_conv.') or _any(sd, 'neck.fpn_convs.'):
            return 'mmdet'
        if _any(sd, 'neck.0.increase_layers.'):
            return 'mmpretrain'
        if _any(sd, 'keypoint_head.') or _any(sd, 'head.final_layer.'):
            return 'mmpose'
        if _any(sd, 'decode_head.'):
            return 'mmseg'
        return 'hrnet_mm'
    if f'model.{TRUNK_KEY}' in sd:
        return 'official_seg'
    if TRUNK_KEY in sd:
        if _any(sd, 'last_layer.'):
            return 'official_seg'
        if _any(sd, 'incre_modules.') or _any(sd, 'classifier.'):
            return 'official_cls'
        final = sd.get('final_layer.weight')
        if final is not None and final.dim() == 4:
            return 'official_pose'
        return 'backbone'
    sample = ', '.join(list(sd)[:3]) or 'no tensors'
    raise ValueError(f'not an HRNet checkpoint: no {TRUNK_KEY!r} under any known prefix '
                     f'(first keys: {sample}); known layouts: {list(LAYOUTS)}')


# ------------------------------------------------------------------------ converters
def _from_backbone(sd: StateDict) -> Conversion:
    return Conversion({f'backbone.{k}': v for k, v in sd.items()}, 'backbone')


CLS_LAYERS = ('incre_modules', 'downsamp_modules', 'final_layer', 'classifier')


def _from_official_cls(sd: StateDict) -> Conversion:
    # hrnet_mm's 'cls' representation uses the official names, under its head.
    return Conversion({f'backbone.head.{k}' if k.split('.')[0] in CLS_LAYERS else
                       f'backbone.{k}': v for k, v in sd.items()}, 'official_cls',
                      notes=['incre_modules / downsamp_modules / final_layer / classifier -> '
                             "backbone.head.* (representation='cls')"])


def _from_official_pose(sd: StateDict) -> Conversion:
    out = {}
    for k, v in sd.items():
        out[f'head.{k}' if k.startswith('final_layer.') else f'backbone.{k}'] = v
    return Conversion(out, 'official_pose',
                      notes=['final_layer -> head.final_layer (mmpose HeatmapHead)'])


def fold_bias_into_bn(conv_bias: Tensor, bn: Mapping[str, Tensor]) -> StateDict:
    """conv(x) + b followed by BN equals conv(x) followed by BN with ``running_mean - b``.

    (In training too: the batch mean moves by ``b`` and cancels it.) Returns the new BN state.
    """
    bn = dict(bn)
    bn['running_mean'] = bn['running_mean'] - conv_bias
    return bn


def _from_official_seg(sd: StateDict) -> Conversion:
    if _any(sd, 'model.'):
        sd = {**_strip(sd, 'model.'), **{k: v for k, v in sd.items()
                                          if not k.startswith('model.')}}
    out, unmapped = {}, []
    head = _strip(sd, 'last_layer.')
    for k, v in sd.items():
        if k.startswith('last_layer.'):
            continue
        if k.split('.')[0] in ('conv1', 'bn1', 'conv2', 'bn2') or k.startswith(
                ('layer1.', 'transition', 'stage')):
            out[f'backbone.{k}'] = v
        else:
            unmapped.append(k)  # e.g. loss.criterion.weight (class weights of the loss)
    notes = []
    if head:
        # last_layer = [conv 1x1 (bias), BN, ReLU, conv 1x1 -> classes]: mmseg's FCNHead with
        # one 1x1 ConvModule (no bias: the bias moves into the BN) and conv_seg.
        bn = fold_bias_into_bn(head.pop('0.bias'), _strip(head, '1.')) if '0.bias' in head \
            else _strip(head, '1.')
        out['decode_head.convs.0.conv.weight'] = head['0.weight']
        out.update({f'decode_head.convs.0.bn.{k}': v for k, v in bn.items()})
        out['decode_head.conv_seg.weight'] = head['3.weight']
        if '3.bias' in head:
            out['decode_head.conv_seg.bias'] = head['3.bias']
        known = {'0.weight', '3.weight', '3.bias'} | {f'1.{k}' for k in bn}
        unmapped += [f'last_layer.{k}' for k in head if k not in known]
        notes.append('last_layer -> decode_head (mmseg FCNHead, kernel_size=1, num_convs=1, '
                     'concat_input=False); the first conv\'s bias is folded into its BN')
    return Conversion(out, 'official_seg', unmapped, notes)


def _from_mmdet(sd: StateDict) -> Conversion:
    out = {}
    for k, v in sd.items():
        out[f'backbone.head.{k[5:]}' if k.startswith('neck.') else k] = v
    return Conversion(out, 'mmdet', notes=['neck (HRFPN) -> backbone.head (representation '
                                           "'v2p', neck=None)"])


def _from_mmpose(sd: StateDict) -> Conversion:
    out = {}
    for k, v in sd.items():
        out['head.' + k[len('keypoint_head.'):] if k.startswith('keypoint_head.') else k] = v
    return Conversion(out, 'mmpose')


def _from_mmpretrain(sd: StateDict) -> Conversion:
    out, unmapped = {}, []
    neck = _strip(sd, 'neck.0.')
    for k, v in sd.items():
        if k.startswith('backbone.'):
            out[k] = v
        elif k == 'head.fc.weight' or k == 'head.fc.bias':
            out[f'backbone.head.classifier.{k.rsplit(".", 1)[1]}'] = v
        elif not k.startswith('neck.0.'):
            unmapped.append(k)
    for k, v in neck.items():
        if k.startswith('increase_layers.'):
            out[f'backbone.head.incre_modules.{k[len("increase_layers."):]}'] = v
    # ConvModule(conv without bias, BN) -> official Sequential(conv with bias, BN, ReLU):
    # the missing bias is zero.
    for src, dst in [(f'downsample_layers.{i}', f'downsamp_modules.{i}')
                     for i in range(3)] + [('final_layer', 'final_layer')]:
        if f'{src}.conv.weight' not in neck:
            continue
        weight = neck[f'{src}.conv.weight']
        out[f'backbone.head.{dst}.0.weight'] = weight
        out[f'backbone.head.{dst}.0.bias'] = weight.new_zeros(weight.shape[0])
        out.update({f'backbone.head.{dst}.1.{k}': v
                    for k, v in _strip(neck, f'{src}.bn.').items()})
    known = {k for k in neck if k.startswith(('increase_layers.', 'downsample_layers.',
                                              'final_layer.'))}
    unmapped += [f'neck.0.{k}' for k in neck if k not in known]
    return Conversion(out, 'mmpretrain', unmapped,
                      ['neck.0 (HRFuseScales) + head.fc -> backbone.head incre_modules / '
                       "downsamp_modules / final_layer / classifier (representation='cls')"])


_CONVERTERS: Dict[str, Callable[[StateDict], Conversion]] = {
    'hrnet_mm': lambda sd: Conversion(dict(sd), 'hrnet_mm'),
    'mmseg': lambda sd: Conversion(dict(sd), 'mmseg'),
    'backbone': _from_backbone,
    'official_cls': _from_official_cls,
    'official_pose': _from_official_pose,
    'official_seg': _from_official_seg,
    'mmdet': _from_mmdet,
    'mmpose': _from_mmpose,
    'mmpretrain': _from_mmpretrain,
}
assert set(_CONVERTERS) == set(LAYOUTS)


def convert_state_dict(checkpoint: Mapping, layout: Optional[str] = None) -> Conversion:
    """Convert a checkpoint (or state dict) of any known layout to hrnet_mm's.

    Args:
        checkpoint: A loaded checkpoint or a state dict.
        layout: Force a layout instead of detecting it.

    Returns:
        A :class:`Conversion`; its ``unmapped`` lists the source keys with no hrnet_mm
        counterpart (they are not in ``state_dict``).
    """
    sd = unwrap(checkpoint)
    if layout is None:
        layout = detect_layout(sd)
    elif layout not in LAYOUTS:
        raise ValueError(f'layout={layout!r} is not known; allowed: {list(LAYOUTS)}')
    return _CONVERTERS[layout](sd)


def branch_widths(sd: Mapping[str, Tensor], prefix: str = '') -> Tuple[int, ...]:
    """The stage-2 branch widths of an HRNet trunk in ``sd`` (e.g. ``(32, 64)`` for W32)."""
    widths = []
    for b in range(8):
        w = sd.get(f'{prefix}stage2.0.branches.{b}.0.conv1.weight')
        if w is None:
            break
        widths.append(int(w.shape[0]))
    return tuple(widths)


def head_kwargs(sd: Mapping[str, Tensor], representation: str,
                prefix: str = 'backbone.') -> Dict[str, int]:
    """The representation arguments a converted checkpoint implies (pyramid width and levels,
    number of classes), so a model can be built to fit it:
    ``HRNetV2(representation=dict(type=representation, **head_kwargs(sd, representation)))``."""
    head = f'{prefix}head.'
    if representation == 'v2p' and f'{head}reduction_conv.conv.weight' in sd:
        levels = {k.split('.')[len(head.split('.'))] for k in sd
                  if k.startswith(f'{head}fpn_convs.')}
        return dict(out_channels=int(sd[f'{head}reduction_conv.conv.weight'].shape[0]),
                    num_outs=len(levels))
    if representation == 'cls' and f'{head}classifier.weight' in sd:
        return dict(num_classes=int(sd[f'{head}classifier.weight'].shape[0]))
    return {}


def legacy_renames(keys, renames: Mapping[str, str], prefix: str = '') -> Dict[str, str]:
    """``{old key: new key}`` for the keys under ``prefix`` that start with an old prefix of
    ``renames`` (e.g. ``{'pyramid.': 'head.'}``), unless the new key is there already.

    Example:
        >>> legacy_renames(['backbone.pyramid.fpn_convs.0.conv.weight'], {'pyramid.': 'head.'},
        ...                'backbone.')
        {'backbone.pyramid.fpn_convs.0.conv.weight': 'backbone.head.fpn_convs.0.conv.weight'}
    """
    out = {}
    for key in keys:
        for old, new in renames.items():
            if key.startswith(prefix + old):
                renamed = prefix + new + key[len(prefix + old):]
                if renamed not in keys:
                    out[key] = renamed
    return out
