"""Shared helpers: deterministic random weights, including BN statistics."""
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter and BN buffer a non-trivial value, so eval outputs mean something.

    Convs get a fan-in-scaled normal init (activations stay O(1) through the depth), norms a
    weight near 1 and a small bias, BN running statistics away from (0, 1).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (1.0 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
                m.weight.copy_(0.25 + 0.5 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                if isinstance(m, _BatchNorm):
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model


def max_abs_diff(a, b) -> float:
    """Largest absolute difference over two equally long sequences of tensors."""
    assert len(a) == len(b), (len(a), len(b))
    diffs = []
    for x, y in zip(a, b):
        assert x.shape == y.shape, (x.shape, y.shape)
        diffs.append((x - y).abs().max().item())
    return max(diffs)



def fcn_head(in_channels, channels, num_classes=19, **kwargs):
    """mmseg's FCNHead as the paper's segmentation head: one 1x1 conv + BN + ReLU, classifier."""
    from mmengine.registry import DefaultScope
    from mmseg.models.decode_heads import FCNHead
    with DefaultScope.overwrite_default_scope('mmseg'):  # its loss is built by scope
        return FCNHead(in_channels=in_channels, channels=channels, kernel_size=1, num_convs=1,
                       concat_input=False, num_classes=num_classes, norm_cfg=dict(type='BN'),
                       **kwargs)
