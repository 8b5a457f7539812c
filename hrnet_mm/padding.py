"""Channel padding: HRNet's narrow branch widths rounded up to a multiple, outputs unchanged.

HRNet-W18's branches are 18, 36, 72 and 144 channels wide (W30: 30, 60, ...; W44: 44, ...).
GPU tensor cores (and cuDNN's NHWC kernels) work on channel counts that are multiples of 8;
other widths get slower kernels or extra padding kernels around every convolution.
:func:`pad_channels` rounds every width inside the network up to a multiple, once: the extra
channels carry zeros and stay zero, so the model computes what it did (float rounding aside).

Why the extra channels stay exactly zero, in inference and in training: an extra output
channel of a convolution has all-zero weights, and its BatchNorm has weight 0 and bias 0, so
its map is 0; the weights that read an extra input channel are 0 as well, so it adds nothing.
In backward, the gradient reaching an extra channel is 0 (every weight that reads it is 0, and
the representation reads only the real channels), so the gradient of every extra weight is 0,
and SGD (momentum, weight decay), Adam and AdamW leave zeros at zero.

Checkpoints keep the standard layout: ``state_dict()`` gives the unpadded tensors, and
``load_state_dict`` pads unpadded ones on the way in (mmengine's loaders included), so
published weights load and what a padded model saves loads into a plain one. The optimizer's
state (momentum) is per parameter and so padded: resume a padded run with padding on.

Padding costs multiply-adds (W18 at a multiple of 8, 18 -> 24 and 36 -> 40 channels: 1.21x;
at 16: 1.65x) and pays only where the device runs the padded widths faster than the plain ones.
On a CPU it does not: W18 inference ran 0.90x at 8 and 0.80-0.83x at 16 (docs/benchmarks.md;
less than the extra multiply-adds, as the CPU's 16-lane vectors leave narrow widths partly
idle anyway). Measure it with ``tools/benchmark.py --pad-channels 8`` on the device you use.

Example:
    >>> model = pad_channels(HRNetV2(arch='w18_small_v2').eval(), 8)
    >>> model.stage2[0].branches[0][0].conv1.weight.shape
    torch.Size([24, 24, 3, 3])
    >>> [tuple(y.shape) for y in model(torch.rand(1, 3, 64, 64))]
    [(1, 18, 16, 16), (1, 36, 8, 8), (1, 72, 4, 4), (1, 144, 2, 2)]
    >>> model.state_dict()['stage2.0.branches.0.0.conv1.weight'].shape
    torch.Size([18, 18, 3, 3])
"""
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from .models.arch import is_int
from .models.hrnet import HRNetV2


def padded_width(channels: int, multiple: int) -> int:
    """``channels`` rounded up to a multiple of ``multiple``.

    Example:
        >>> [padded_width(c, 8) for c in (18, 36, 72, 144)]
        [24, 40, 72, 144]
    """
    return -(-channels // multiple) * multiple


def _networks(model: nn.Module, action: str) -> List[HRNetV2]:
    nets = [m for m in model.modules() if isinstance(m, HRNetV2)]
    if not nets:
        raise ValueError(f'{action}: no HRNetV2 in this {type(model).__name__}')
    return nets


def _trunk(net: HRNetV2) -> List[Tuple[str, nn.Module]]:
    """Stem, stages and transitions: every layer but the representation (``head``), which
    keeps its widths and reads the real channels only."""
    head = set(map(id, net.head.modules()))
    return [(name, m) for name, m in net.named_modules() if id(m) not in head]


def _check_layers(net: HRNetV2) -> None:
    """Only convolutions (ungrouped) and BatchNorms can be padded: one line naming the first
    other layer with weights (GN, for one, mixes the extra channels into its statistics)."""
    for name, m in _trunk(net):
        own = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
        if not own:
            continue
        if isinstance(m, nn.Conv2d) and m.groups == 1 or isinstance(m, _BatchNorm):
            continue
        what = f'groups={m.groups}' if isinstance(m, nn.Conv2d) else type(m).__name__
        raise ValueError(f'pad_channels: {name} ({what}) cannot be padded; only ungrouped '
                         'Conv2d and BatchNorm layers can (norm_cfg BN or SyncBN)')


def _grown(t: torch.Tensor, shape: Tuple[int, ...], fill: float) -> torch.Tensor:
    """``t`` in the top-left corner of a ``fill`` tensor of ``shape`` (same memory format)."""
    out = t.new_full(shape, fill)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    out[tuple(slice(0, n) for n in t.shape)] = t
    return out


def _cropped(t: torch.Tensor, shape: Tuple[int, ...]) -> torch.Tensor:
    """The top-left ``shape`` corner of ``t`` as a tensor of its own (a saved view would carry
    the whole padded storage)."""
    return t.detach()[tuple(slice(0, n) for n in shape)].clone(
        memory_format=torch.contiguous_format)


def _fill(name: str) -> float:
    # An extra BN channel normalises with variance 1: its (zero) map stays zero.
    return 1.0 if name == 'running_var' else 0.0


def _resize(module: nn.Module, shapes: Dict[str, Tuple[int, ...]], grow: bool) -> None:
    """Every named parameter / buffer of ``module`` to ``shapes`` (grown with zeros, or cropped)."""
    for name, shape in shapes.items():
        t = getattr(module, name)
        new = _grown(t.detach(), shape, _fill(name)) if grow else _cropped(t, shape)
        if isinstance(t, nn.Parameter):
            # The same Parameter object with new data: references to it (mmengine's record
            # of initialised parameters, tied weights) stay valid.
            t.data = new
        else:
            setattr(module, name, new)


def _tensor_names(module: nn.Module) -> List[str]:
    names = ['weight', 'bias'] + (['running_mean', 'running_var']
                                  if isinstance(module, _BatchNorm) else [])
    return [n for n in names if getattr(module, n, None) is not None]


def _padded_tensors(net: HRNetV2, prefix: str):
    """(key in a state dict, tensor name, unpadded shape, the layer) of each padded tensor."""
    for name, shapes in net._pad_shapes.items():
        layer = net.get_submodule(name)
        for t_name, shape in shapes.items():
            yield f'{prefix}{name}.{t_name}', t_name, shape, layer


def _save_unpadded(net, state_dict, prefix, local_metadata) -> None:
    """(state_dict hook) The standard layout: each padded tensor cropped to its real width."""
    for key, _, shape, _ in _padded_tensors(net, prefix):
        if key in state_dict and tuple(state_dict[key].shape) != shape:
            state_dict[key] = _cropped(state_dict[key], shape)


def _load_padded(net, state_dict, prefix, *args) -> None:
    """(load_state_dict pre-hook) Unpadded tensors of the standard layout, padded to fit."""
    for key, t_name, shape, layer in _padded_tensors(net, prefix):
        value = state_dict.get(key)
        if torch.is_tensor(value) and tuple(value.shape) == shape:
            state_dict[key] = _grown(value, tuple(getattr(layer, t_name).shape), _fill(t_name))


def _set_widths(layer: nn.Module) -> None:
    """A layer's width attributes from its (resized) weight / statistics."""
    if isinstance(layer, nn.Conv2d):
        layer.out_channels, layer.in_channels = layer.weight.shape[:2]
    else:
        layer.num_features = (layer.weight if layer.weight is not None
                              else layer.running_mean).shape[0]


def _slice_to_widths(widths: Tuple[int, ...]):
    def hook(head, args):
        feats = [f[:, :c] if f.shape[1] != c else f for f, c in zip(args[0], widths)]
        return (feats, ) + tuple(args[1:])
    return hook


def pad_channels(model: nn.Module, multiple: int = 8) -> nn.Module:
    """Round every channel width inside each :class:`~hrnet_mm.HRNetV2` of ``model`` up to a
    multiple of ``multiple``, in place; returns ``model``.

    Outputs, ``feature_info`` and the ``state_dict`` layout stay those of the plain model (see
    the module's description); the image input (``conv1``'s input) and the representation
    (``head``) keep their widths. Apply it after the weights are in place (initialised or
    loaded): an initialiser run afterwards would fill the extra channels; loading through
    ``load_state_dict`` works at any time. :func:`unpad_channels` undoes it.

    Args:
        model: An HRNetV2, or a model holding one (a detector, segmentor, pose estimator).
        multiple: Round widths up to a multiple of this (8: tensor cores in bf16/fp16).

    Raises:
        ValueError: ``model`` holds no HRNetV2, is padded already, has a layer other than
            ungrouped convolutions and BatchNorms in the trunk (GN, grouped or deformable
            convolutions), or ``multiple`` is not an int >= 2.
    """
    if not is_int(multiple) or multiple < 2:
        raise ValueError(f'multiple={multiple!r}: must be an int >= 2 (e.g. 8)')
    nets = _networks(model, 'pad_channels')
    for net in nets:
        if net.channel_multiple:
            raise ValueError(f'pad_channels: already padded to a multiple of '
                             f'{net.channel_multiple}; unpad_channels(model) first')
        _check_layers(net)
    for net in nets:
        padded = {}
        for name, m in _trunk(net):
            if isinstance(m, nn.Conv2d):
                cin = m.in_channels if m is net.conv1 else padded_width(m.in_channels, multiple)
                grown = (padded_width(m.out_channels, multiple), cin) + tuple(m.kernel_size)
                size = {'weight': grown, 'bias': grown[:1]}
            elif isinstance(m, _BatchNorm):
                size = dict.fromkeys(_tensor_names(m), (padded_width(m.num_features, multiple), ))
            else:
                continue
            shapes = {n: tuple(getattr(m, n).shape) for n in _tensor_names(m)}
            grown_to = {n: size[n] for n in shapes if size[n] != shapes[n]}
            if grown_to:
                _resize(m, grown_to, grow=True)
                _set_widths(m)
                padded[name] = {n: shapes[n] for n in grown_to}
        # {layer name: {tensor name: unpadded shape}}, on the network by name rather than on
        # the layers, so that layers replaced later (mmengine's SyncBN conversion) stay covered
        net._pad_shapes = padded
        net._pad_hooks = [net.register_state_dict_post_hook(_save_unpadded),
                          net.register_load_state_dict_pre_hook(_load_padded),
                          net.head.register_forward_pre_hook(
                              _slice_to_widths(tuple(net.head.in_channels)))]
        net.channel_multiple = multiple
    return model


def unpad_channels(model: nn.Module) -> nn.Module:
    """Undo :func:`pad_channels`, in place (the plain layers, with the trained weights);
    returns ``model``. Models that were not padded are left as they are."""
    for net in _networks(model, 'unpad_channels'):
        if not net.channel_multiple:
            continue
        for name, shapes in net._pad_shapes.items():
            layer = net.get_submodule(name)
            _resize(layer, shapes, grow=False)
            _set_widths(layer)
        for handle in net._pad_hooks:
            handle.remove()
        del net._pad_hooks
        net._pad_shapes = {}
        net.channel_multiple = None
    return model
