"""HRNet's parallel branches run at the same time on a GPU, one CUDA stream each.

An HRNet module runs its branches one after another, then computes its exchange's outputs
one after another. Only the stride-4 branch's kernels fill a large GPU: the stride-32 branch
of the W18 detector step (2x800x1216) has 1,900 pixels of 144 channels, a few blocks of work
for an H200's 132 SMs, and yet its kernels run alone. With :func:`parallel_branches`, each
:class:`~hrnet_mm.models.fusion.HRModule` runs branch ``k`` on stream ``k`` (branch 0 on the
current stream), then output ``i`` of the exchange on stream ``i``; the current stream waits
for every stream before the module returns. Nothing else changes: the same kernels on the same
data, only their order in time.

- Under CUDA graphs (:class:`hrnet_mm.cuda_graphs.CUDAGraphed`) the streams become parallel
  paths of the graph, with no launch cost: this is where it is meant to pay.
- In training, autograd runs each backward op on its forward op's stream, so the backward pass
  is branch-parallel too.
- Eagerly, the CPU still launches one kernel at a time; branches overlap only where the GPU
  runs behind the CPU.
- On the CPU, under ``torch.compile`` and other tracers (they trace one stream) and with
  ``with_cp`` in training (recomputation in backward), a module runs its branches in turn, as
  without it.

Not yet tried with several GPUs (DDP, SyncBN's collectives issued from the side streams).

Memory: a map used on a stream other than the one that made it is recorded on that stream
(``Tensor.record_stream``), so the allocator does not hand its memory out again before that
stream is done with it (during a graph capture, such memory is reused only after the capture).

Example:
    >>> model = parallel_branches(HRNetV2(arch='w48', representation='v2').cuda())
    >>> graphed = CUDAGraphed(model.to(memory_format=torch.channels_last))
"""
from typing import Callable, Dict, List, Sequence, Tuple, TypeVar

import torch
import torch.nn as nn

__all__ = ['parallel_branches', 'in_parallel', 'uses_streams']

T = TypeVar('T')
_SIDE_STREAMS: Dict[Tuple[int, int], 'torch.cuda.Stream'] = {}


def parallel_branches(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn branch-parallel streams on (or off) in every HRNet module of ``model``, in place.

    ``model`` may be anything holding HRNet modules: an ``HRNetV2``, a detector, a segmentor.
    Returns ``model``. ``HRNetV2(parallel_branches=True)`` does the same from a config.

    Example:
        >>> model = parallel_branches(HRNetV2(arch='w18'))
        >>> sum(m.parallel_branches for m in model.modules() if isinstance(m, HRModule))
        8
    """
    from .models import HRModule, HRNetV2
    if not holds_hr_modules(model):
        raise ValueError(f'parallel_branches: {type(model).__name__} holds no HRModule (an '
                         'HRNetV2 backbone has one per exchange)')
    for m in model.modules():
        if isinstance(m, (HRModule, HRNetV2)):  # the backbone's attribute says it too
            m.parallel_branches = enabled
    return model


def holds_hr_modules(model: nn.Module) -> bool:
    """Whether ``model`` holds HRNet modules, whose branches :func:`parallel_branches` can
    spread over streams.

    Example:
        >>> holds_hr_modules(HRNetV2(arch='w18_small_v1')), holds_hr_modules(nn.Conv2d(3, 3, 1))
        (True, False)
    """
    from .models import HRModule
    return any(isinstance(m, HRModule) for m in model.modules())


def uses_streams(x: torch.Tensor) -> bool:
    """Whether work on ``x`` can be spread over CUDA streams here: a GPU tensor, run eagerly
    (not traced by ``torch.compile`` / ``torch.export``, nor by ``torch.jit.trace``, as the
    ONNX export does: a trace holds one stream)."""
    return x.is_cuda and not torch.compiler.is_compiling() and not torch.jit.is_tracing()


def _current_stream(device: torch.device) -> 'torch.cuda.Stream':
    return torch.cuda.current_stream(device)


def _side_streams(device: torch.device, n: int) -> List['torch.cuda.Stream']:
    """``n`` streams of ``device`` kept for branches (the same ones on every call: a new
    stream per call would cost a driver call, and CUDA graph capture needs none)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    for k in range(n):
        if (index, k) not in _SIDE_STREAMS:
            _SIDE_STREAMS[index, k] = torch.cuda.Stream(device=index)
    return [_SIDE_STREAMS[index, k] for k in range(n)]


def _on(stream):
    return torch.cuda.stream(stream)


def _record(tensor: torch.Tensor, stream) -> None:
    tensor.record_stream(stream)


def _tensors(value) -> List[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def in_parallel(calls: Sequence[Callable[[], T]], reads: Sequence[Sequence[torch.Tensor]],
                device: torch.device) -> List[T]:
    """``calls[k]()`` on stream ``k`` of ``device`` (``k = 0``: the current stream), all
    after the work the current stream has so far; returns their results, which the current
    stream may use at once (it waits for every stream).

    ``reads[k]`` are the tensors ``calls[k]`` reads that were made before (on the current
    stream or another): they are recorded on stream ``k``, as are the results on the
    current stream, so that no memory in use is handed out again too early.

    Example:
        >>> a, b = in_parallel([lambda: x @ x, lambda: y @ y], [[x], [y]], x.device)
    """
    current = _current_stream(device)
    streams = [current, *_side_streams(device, len(calls) - 1)]
    for stream in streams[1:]:
        stream.wait_stream(current)
    results: List[T] = []
    # Launched in order, as without streams: autograd then sums the gradients of a map read
    # by several calls in the same order, and the backward pass is the same to the bit.
    for k, stream in enumerate(streams):
        if k:
            for tensor in reads[k]:
                _record(tensor, stream)
        with _on(stream):
            results.append(calls[k]())
    for k, stream in enumerate(streams[1:], start=1):
        current.wait_stream(stream)
        for tensor in _tensors(results[k]):
            _record(tensor, current)
    return results
