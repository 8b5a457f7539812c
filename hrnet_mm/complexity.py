"""Parameters and multiply-adds (conv and linear layers), and the HRNet papers' own count.

GFLOPs here are giga (1e9) multiply-adds of the convolutions (``nn.Conv2d``, and the transposed
``nn.ConvTranspose2d`` of SimpleBaseline's head) and ``nn.Linear`` layers run in one forward
pass of a single image, the convention of most model zoos. Norms, activations, sums and resizes
are not counted.

The published HRNet and SimpleBaseline tables count the same layers with the authors' summary
code (``lib/utils/modelsummary.py`` of their repositories), which differs in two ways:
it divides by ``1024 ** 3``, not 1e9 (so its figures are 7.4% lower), and it counts a
transposed convolution as its weights times its *output* pixels (4x the multiply-adds of a
stride-2 one). :attr:`Complexity.paper_gflops` applies that rule, and matches the published
figures (HRNet to 0.3%, SimpleBaseline to 1%).

Example:
    >>> c = count(HRNetV2(arch='w32', representation='v1'), torch.rand(1, 3, 256, 192))
    >>> round(c.gflops, 2), round(c.paper_gflops, 2)  # the paper: 7.1
    (7.64, 7.12)
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn

#: The papers' figures: (task, arch, input H, input W) -> (params M, GFLOPs in the papers' unit,
#: :attr:`Complexity.paper_gflops`). Classification: the official HRNet-Image-Classification table.
PAPER = {
    ('pose', 'w32', 256, 192): (28.5, 7.1),
    ('pose', 'w32', 384, 288): (28.5, 16.0),
    ('pose', 'w48', 256, 192): (63.6, 14.6),
    ('pose', 'w48', 384, 288): (63.6, 32.9),
    ('seg', 'w48', 1024, 2048): (65.9, 696.2),
    # SimpleBaseline (ResNet + 3 deconvolutions), the paper's pose baselines (Table 1)
    ('pose', 'resnet50', 256, 192): (34.0, 8.9),
    ('pose', 'resnet101', 256, 192): (53.0, 12.4),
    ('pose', 'resnet152', 256, 192): (68.6, 15.7),
    ('pose', 'resnet152', 384, 288): (68.6, 35.6),
    # HRNet-W*-C, the ImageNet classification head (224x224)
    ('cls', 'w18', 224, 224): (21.3, 3.99),
    ('cls', 'w30', 224, 224): (37.7, 7.55),
    ('cls', 'w32', 224, 224): (41.2, 8.31),
    ('cls', 'w40', 224, 224): (57.6, 11.8),
    ('cls', 'w44', 224, 224): (67.1, 13.9),
    ('cls', 'w48', 224, 224): (77.5, 16.1),
    ('cls', 'w64', 224, 224): (128.1, 26.9),
}

#: The papers' giga: their summary code divides multiply-adds by 1024 ** 3.
PAPER_GIGA = 1024 ** 3


@dataclass
class Complexity:
    """``gflops``: 1e9 multiply-adds; ``paper_gflops``: the papers' count (see the module)."""
    params_m: float
    gflops: float
    by_layer_type: Dict[str, float]
    paper_gflops: float


def count(model: nn.Module, inputs: Any,
          forward: Optional[Callable[[nn.Module, Any], Any]] = None) -> Complexity:
    """Count parameters and conv/linear multiply-adds of one forward of ``model`` on ``inputs``.

    ``inputs`` should hold one image (the count is per image); ``forward`` runs the model
    (default ``model(inputs)``).
    """
    macs = {'conv': 0, 'linear': 0}
    paper = [0]  # the papers' rule: every conv as its weights times its output pixels

    def conv_hook(m: nn.Conv2d, args: Tuple, out: torch.Tensor) -> None:
        kh, kw = m.kernel_size
        n = out.numel() * (m.in_channels // m.groups) * kh * kw
        macs['conv'] += n
        paper[0] += n

    def deconv_hook(m: nn.ConvTranspose2d, args: Tuple, out: torch.Tensor) -> None:
        # every input pixel is spread over a kernel window of every output channel
        kh, kw = m.kernel_size
        macs['conv'] += args[0].numel() * (m.out_channels // m.groups) * kh * kw
        paper[0] += m.weight.numel() * out.shape[-2] * out.shape[-1]

    def linear_hook(m: nn.Linear, args: Tuple, out: torch.Tensor) -> None:
        n = out.numel() * m.in_features
        macs['linear'] += n
        paper[0] += n

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.ConvTranspose2d):
            handles.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            forward(model, inputs) if forward else model(inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return Complexity(params, sum(macs.values()) / 1e9, {k: v / 1e9 for k, v in macs.items()},
                      paper[0] / PAPER_GIGA)


LIBRARIES = {'det': 'mmdet', 'seg': 'mmseg', 'pose': 'mmpose', 'cls': 'mmpretrain'}


def build_from_config(path: str):
    """Build a config's model through its library; returns ``(model, forward, task, arch)``,
    where ``forward(model, images)`` runs the whole model (the library's 'tensor' mode) and
    ``task`` is the folder the config sits in (``det``, ``seg``, ``pose`` or ``cls``) and
    ``arch`` the key of :data:`PAPER` (``'w32'``, ``'resnet50'``; None for other backbones)."""
    import os.path as osp

    from mmengine.config import Config

    from .registry import build_in_library
    cfg = Config.fromfile(path)
    task = osp.basename(osp.dirname(osp.abspath(path)))
    library = LIBRARIES.get(task)
    if library is None:
        raise ValueError(f'{path}: put under configs/det, configs/seg, configs/pose or '
                         'configs/cls, so the library is known')
    model = build_in_library(cfg.model, library)
    if library == 'mmdet':
        from mmdet.structures import DetDataSample

        def forward(m, x):
            h, w = x.shape[-2:]
            meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                        pad_shape=(h, w), batch_input_shape=(h, w))
            return m._forward(x, [DetDataSample(metainfo=meta)])
    else:
        def forward(m, x):
            return m(x, None, mode='tensor')
    backbone = cfg.model.backbone
    if backbone.type == 'HRNetV2':
        arch = backbone.get('arch')
    elif 'ResNet' in backbone.type and backbone.get('base_channels', 64) == 64:
        arch = f'resnet{backbone.depth}'  # the paper's baselines, at their standard width
    else:
        arch = None
    return model, forward, task, arch
