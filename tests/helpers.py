"""Shared helpers: deterministic random weights (BN statistics included), the tools as
modules, and a CPU stand-in for CUDA graphs."""
import importlib.util
from pathlib import Path
from types import ModuleType

import torch.nn as nn

from hrnet_mm.bench import randomize_weights


ROOT = Path(__file__).resolve().parents[1]


def tool_module(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module, to call its functions in-process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / f'tools/{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial deterministic weights (BN statistics included), so outputs mean something."""
    return randomize_weights(model, seed)


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


def heatmap_head(in_channels, out_channels=17, **kwargs):
    """mmpose's HeatmapHead, built in mmpose's scope (its loss is found by scope)."""
    from mmengine.registry import DefaultScope
    from mmpose.models.heads import HeatmapHead
    with DefaultScope.overwrite_default_scope('mmpose'):
        return HeatmapHead(in_channels=in_channels, out_channels=out_channels, **kwargs)


def padded_parts(model) -> dict:
    """Every padded tensor's extra part (beyond the real channels) of a channel-padded
    HRNetV2 (hrnet_mm.padding), by ``layer.tensor`` name; empty for an unpadded one."""
    import torch
    parts = {}
    for name, shapes in getattr(model, '_pad_shapes', {}).items():
        for t_name, shape in shapes.items():
            t = getattr(model.get_submodule(name), t_name).detach()
            mask = torch.ones_like(t, dtype=torch.bool)
            mask[tuple(slice(0, n) for n in shape)] = False
            parts[f'{name}.{t_name}'] = t[mask]
    return parts


class EagerStandIn(nn.Module):
    """:class:`~hrnet_mm.cuda_graphs.CUDAGraphed`'s place on the CPU: the module run eagerly,
    the mode of each call recorded. What the GPU run relies on besides the graphs themselves:
    the row names the GPU report judges, the stock pairs, and every call going through the
    wrapper."""

    def __init__(self, module: nn.Module, *args, **kwargs) -> None:
        super().__init__()
        self.module = module
        self.training = module.training
        self.calls = []

    def forward(self, x):
        self.calls.append('train' if self.module.training else 'infer')
        return self.module(x)

