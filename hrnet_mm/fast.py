"""Fast paths, one call each; outputs stay within a stated tolerance of the plain model.

Inference (``model.eval()``):

- :func:`fuse_conv_bn`: fold every BatchNorm into the conv before it (max abs difference to
  the plain model <= 1e-4 in the tests, float rounding only).
- :func:`optimize_for_inference`: folding + ``channels_last`` (+ ``torch.compile``, or Winograd
  convolutions for fp32 on the CPU, on request).
- :func:`export_onnx`: an ONNX file that onnxruntime runs within 1e-4 of PyTorch.
- :func:`autocast_backbone`: a detector / segmentor / pose model's backbone (and neck) in bf16
  or fp16, its heads in fp32; ``tools/test.py --backbone-precision bf16`` measures what it
  costs in accuracy, and :func:`rounding_noise` (``tools/precision_check.py``) what random
  noise of the same size costs, to tell the two apart.

Training: ``HRNetV2(channels_last=True)``, ``with_cp=True`` (memory), AMP through
``torch.autocast`` (bf16, or fp16 with the fusion sums accumulated in float32 so they cannot
overflow) and ``torch.compile(model)`` (the model traces as one graph, ``fullgraph=True``).

On a GPU, training and inference at a fixed input size:
:class:`hrnet_mm.cuda_graphs.CUDAGraphed` replays each step as CUDA graphs, without compiling.

Example:
    >>> model = optimize_for_inference(HRNetV2(arch='w18'))
    >>> model(torch.rand(1, 3, 512, 1024))[0].shape
    torch.Size([1, 18, 128, 256])
"""
import contextlib
import functools
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from . import compiling


def _fold(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    """Fold an eval-mode BN into the conv before it (weights and bias, in place)."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale + bn.bias
    conv.bias = nn.Parameter(new_bias.to(conv.weight.dtype), requires_grad=False)


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a conv into that conv, in place; eval only.

    A conv and its BN are found as consecutive children of one module: HRNet's stem and blocks
    (``conv1``, ``bn1``, ...), and every ``Sequential(conv, bn, ...)``. The BN becomes
    ``nn.Identity``. Returns ``model`` (in eval mode: folding freezes the BN statistics).
    """
    model.eval()
    for module in list(model.modules()):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, _BatchNorm) and \
                    bn.track_running_stats and bn.affine:
                _fold(conv, bn)
                module._modules[b] = nn.Identity()
    return model


def use_channels_last(model: nn.Module) -> nn.Module:
    """NHWC weights, and for an :class:`~hrnet_mm.HRNetV2` (or a module holding one) NHWC
    inputs too, as ``HRNetV2(channels_last=True)`` does; in place, returns ``model``."""
    model.to(memory_format=torch.channels_last)
    for m in model.modules():
        if hasattr(m, 'channels_last'):
            m.channels_last = True
    return model


def optimize_for_inference(model: nn.Module, fuse_bn: bool = True, channels_last: bool = True,
                           compile: bool = False, winograd: bool = False,
                           **compile_kwargs) -> nn.Module:
    """The inference fast path in one call: BN folding, NHWC memory, optionally compiled.

    ``channels_last`` converts the weights and, for an :class:`~hrnet_mm.HRNetV2`, makes its
    forward convert the input. ``winograd`` computes the 3x3 stride-1 convolutions with
    Winograd F(4x4, 3x3) in fp32 on a CPU with AVX2, their ReLUs and residual adds included
    (:mod:`hrnet_mm.winograd`; not with ``compile``). Returns the (possibly compiled) model in
    eval mode.
    """
    if winograd and compile:
        raise ValueError('winograd=True and compile=True do not combine: torch.compile does not '
                         'trace into the C++ Winograd kernel, so compiled convolutions run direct; '
                         'choose one')
    model.eval()
    if fuse_bn:
        fuse_conv_bn(model)
    if channels_last:
        use_channels_last(model)
    if winograd:
        from .winograd import use_winograd
        use_winograd(model)
    if compile:
        model = compiling.compile(model, **compile_kwargs)
    return model


def export_onnx(model: nn.Module, path: str, input_size: Sequence[int] = (1, 3, 512, 1024),
                opset: Optional[int] = None, dynamic_hw: bool = False) -> str:
    """Export ``model`` (eval) to ONNX with torch's exporter; returns ``path``.

    Args:
        model: An HRNetV2 (any representation), folded or not.
        path: Output ``.onnx`` file.
        input_size: The example input's (N, C, H, W).
        opset: ONNX opset (default: the exporter's).
        dynamic_hw: Let height and width vary at run time.
    """
    model.eval()
    x = torch.rand(*input_size)
    kwargs = {}
    if dynamic_hw:
        h, w = torch.export.Dim('height', min=32), torch.export.Dim('width', min=32)
        kwargs['dynamic_shapes'] = ({2: h, 3: w}, )
    if opset is not None:
        kwargs['opset_version'] = opset
    with torch.no_grad():
        program = torch.onnx.export(model, (x, ), dynamo=True, **kwargs)
    program.save(path)
    return path


#: What :func:`autocast_backbone` accepts.
AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def _autocast_dtype(precision: str) -> torch.dtype:
    """The dtype of ``precision`` ('bf16' / 'fp16'); a one-line error for anything else."""
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f'precision={precision!r}: one of {list(AUTOCAST_DTYPES)}')
    return AUTOCAST_DTYPES[precision]


def _to_float32(out: Any) -> Any:
    if torch.is_tensor(out):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_to_float32(o) for o in out)
    return out


def autocast_backbone(model: nn.Module, precision: str = 'bf16') -> nn.Module:
    """Run ``model.backbone`` (and ``model.neck``, if any) under ``torch.autocast`` in
    ``precision``, and hand float32 maps on; in place, returns ``model``.

    The heads, box decoding, NMS and the evaluation stay in fp32: mmcv's CPU ``nms`` rejects
    bf16 boxes, so autocasting a whole mmdet detector (mmengine's ``TestLoop(fp16=True)``)
    fails. Parameter names and the checkpoint layout do not change.
    ``tools/test.py --backbone-precision`` uses it; ``tools/precision_check.py`` compares its
    metrics with fp32 and with :func:`rounding_noise` of the same size.

    Example:
        >>> detector = autocast_backbone(detector, 'bf16')  # then runner.test() as usual
    """
    dtype = _autocast_dtype(precision)
    for part in _backbone_parts(model):
        if not hasattr(part, '_full_precision_forward'):
            part._full_precision_forward = part.forward
            part.forward = _autocast_forward(part.forward, dtype)
    return model


def _autocast_forward(forward, dtype: torch.dtype):
    @functools.wraps(forward)
    def run(x, *args, **kwargs):
        device = x.device.type if torch.is_tensor(x) else 'cpu'
        with torch.autocast(device, dtype=dtype):
            out = forward(x, *args, **kwargs)
        return _to_float32(out)
    return run


def _backbone_parts(model: nn.Module):
    """``model.backbone`` and ``model.neck`` (where there is one); one-line error otherwise."""
    model = getattr(model, 'module', model)  # under DistributedDataParallel
    if not isinstance(getattr(model, 'backbone', None), nn.Module):
        raise ValueError(f'{type(model).__name__} has no backbone module: this is for mmdet / '
                         'mmseg / mmpose / mmpretrain models')
    return [p for p in (model.backbone, getattr(model, 'neck', None)) if isinstance(p, nn.Module)]


@contextlib.contextmanager
def rounding_noise(model: nn.Module, precision: str = 'bf16', seed: int = 0) -> Iterator[None]:
    """Inside, ``model.backbone`` (and ``model.neck``) computes in fp32 with random errors the
    size of the ones rounding to ``precision`` makes, where autocast rounds: every weight,
    every convolution's input, every layer's output, each multiplied by ``1 + u * U(-1, 1)``
    with ``u`` that precision's unit roundoff (bf16 2**-8, fp16 2**-11). On exit the model is
    as before, weights bit-equal.

    It tells whether a metric's change under :func:`autocast_backbone` is that precision's
    general cost on this model and data: evaluate a few ``seed``s inside, and compare
    (``tools/precision_check.py``).

    Example:
        >>> with rounding_noise(pose_model, 'bf16', seed=1):
        ...     metrics = runner.test()
    """
    u = torch.finfo(_autocast_dtype(precision)).eps / 2
    g = torch.Generator().manual_seed(seed)

    def noisy(t: Any) -> Any:
        if torch.is_tensor(t) and t.is_floating_point():
            return t * (1 + u * (torch.rand(t.shape, generator=g) * 2 - 1).to(t))
        if isinstance(t, (tuple, list)):
            return type(t)(noisy(x) for x in t)
        return t

    parts = _backbone_parts(model)
    layers = [m for part in parts for m in part.modules() if not list(m.children())]
    weights = [p for part in parts for p in part.parameters()]
    saved = [w.detach().clone() for w in weights]
    hooks = [m.register_forward_hook(lambda m, args, out: noisy(out)) for m in layers]
    hooks += [m.register_forward_pre_hook(lambda m, args: noisy(tuple(args)))
              for m in layers if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            for w in weights:
                w.copy_(noisy(w))
        yield
    finally:
        for hook in hooks:
            hook.remove()
        with torch.no_grad():
            for w, value in zip(weights, saved):
                w.copy_(value)
