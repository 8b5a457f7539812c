"""CUDA graphs of an eager model: a step's thousands of kernel launches replayed as one.

On a fast GPU an HRNet step is launch-bound: the first H100 runs (docs/benchmarks.md, "GPU")
measured the channels_last W48 segmentation step waiting on the CPU 35% of the time, launching
about 6000 kernels, so that the kernels alone would run at 1.9x the stock step where the whole
step ran at 1.24x. A CUDA graph records the kernels of one call at one input shape and replays
them with a single launch. :class:`CUDAGraphed` does that for any module, without compiling:
capturing costs about as much as a few calls (``torch.compile(mode='reduce-overhead')`` gets
CUDA graphs too, after minutes of compiling).

- Inference (no gradients): the forward is captured (:class:`torch.cuda.CUDAGraph`).
- Training (gradients enabled): forward and backward are captured
  (:func:`torch.cuda.make_graphed_callables`); autograd, the loss and the optimizer stay
  eager, so any optimizer, ``GradScaler`` and gradient clipping work as before.

One graph per input signature (shape, strides, dtype, train/eval, autocast dtype, gradients):
a new signature is captured on its first call, up to ``max_graphs``, past which calls run
eagerly (with one warning), since each graph keeps its own memory. The warm-up calls that
capturing needs do not change the module: its buffers (BN running statistics) are restored,
so a graphed module's statistics and weights follow an eager one's step for step.

What a graph cannot follow: outputs are the graph's own memory, overwritten by the next call
(clone what you keep across calls); parameters must be updated in place (every torch
optimizer does) and not replaced: ``.to()`` / ``.half()`` of the wrapper or of the wrapped
module drops its graphs (they are captured again on the next calls, as they are in a copy);
CPU work that depends on values (``.item()``, data-dependent shapes) cannot be captured; one
process, one GPU (DDP needs its own warm-up; not supported).
Under ``torch.autocast`` the capture turns autocast's weight cache off (CUDA graphs require it),
and the graph keeps the precision it was captured with.

From a config, :class:`hrnet_mm.engine.CUDAGraphsHook` runs a detector's, segmentor's or pose
estimator's features (backbone and neck) this way (:func:`graph_features`).

Example:
    >>> model = CUDAGraphed(HRNetV2(arch='w48', representation='v2').cuda().train())
    >>> x = torch.randn(8, 3, 512, 1024, device='cuda')
    >>> with torch.autocast('cuda', dtype=torch.bfloat16):
    ...     outs = model(x)                  # captured at this shape, then replayed
    >>> sum(o.float().mean() for o in outs).backward()   # the captured backward
"""
import contextlib
import warnings
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ['CUDAGraphed', 'graph_features']


class Signature(NamedTuple):
    """What a captured graph is valid for: a call with another signature needs its own."""
    shape: Tuple[int, ...]
    stride: Tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    training: bool
    autocast: Optional[torch.dtype]
    grads: bool  # a backward graph too
    inference_mode: bool


def _signature(module: nn.Module, x: torch.Tensor) -> Signature:
    autocast = (torch.get_autocast_dtype('cuda') if torch.is_autocast_enabled('cuda')
                else None)
    grads = torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())
    return Signature(tuple(x.shape), x.stride(), x.dtype, x.device, module.training, autocast,
                     grads, torch.is_inference_mode_enabled())


@contextlib.contextmanager
def _capturable_autocast() -> Iterator[None]:
    """Autocast as it is, with its weight cache off: a cached cast made during capture would
    be freed when autocast exits, under a graph that still reads it."""
    if not torch.is_autocast_enabled('cuda'):
        yield
        return
    with torch.autocast('cuda', dtype=torch.get_autocast_dtype('cuda'), cache_enabled=False):
        yield


@contextlib.contextmanager
def _buffers_kept(module: nn.Module) -> Iterator[None]:
    """Undo what capturing's warm-up calls do to the buffers (BN running statistics and
    ``num_batches_tracked``), so that the first graphed call is the module's next step."""
    saved = [(b, b.clone()) for b in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _weights_memory(module: nn.Module) -> Optional[Tuple[int, torch.dtype]]:
    """Where the first parameter lives (moving a module moves all of them)."""
    p = next(module.parameters(), None)
    return None if p is None else (p.data_ptr(), p.dtype)


class CUDAGraphed(nn.Module):
    """Runs ``module`` as CUDA graphs, one per input signature (see the module's notes).

    Args:
        module: the model, on a GPU; it takes one tensor and returns tensors (a tensor, or a
            tuple / list / dict of them), as a backbone does.
        warmup: eager calls before each capture (cuDNN and cuBLAS set themselves up there,
            outside the graph).
        max_graphs: at most this many signatures are captured; calls with more run eagerly.

    Example:
        >>> model = CUDAGraphed(HRNetV2(arch='w18').cuda().eval())
        >>> with torch.inference_mode():
        ...     outs = model(torch.randn(1, 3, 512, 1024, device='cuda'))
        >>> [o.shape[1] for o in outs]
        [18, 36, 72, 144]
    """

    def __init__(self, module: nn.Module, warmup: int = 3, max_graphs: int = 4) -> None:
        super().__init__()
        if warmup < 1 or max_graphs < 1:
            raise ValueError(f'CUDAGraphed: warmup={warmup}, max_graphs={max_graphs}; '
                             'both must be >= 1')
        self.module = module
        self.training = module.training  # the wrapped module's mode, set without recursing
        self.warmup = warmup
        self.max_graphs = max_graphs
        self._graphs: Dict[Signature, Callable[[torch.Tensor], Any]] = {}
        self._warned = False
        self._memory = _weights_memory(module)

    def forward(self, x: torch.Tensor) -> Any:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f'CUDAGraphed: the input is a {type(x).__name__}; a graph is '
                             'captured for one tensor argument')
        if x.device.type != 'cuda':
            raise ValueError(f'CUDAGraphed: CUDA graphs replay GPU work; the input is on '
                             f'{x.device} (move the model and its input to a GPU)')
        self._drop_stale_graphs()
        key = _signature(self.module, x)
        run = self._graphs.get(key)
        if run is None:
            if len(self._graphs) >= self.max_graphs:
                if not self._warned:
                    warnings.warn(f'CUDAGraphed: {len(self._graphs)} graphs captured '
                                  f'(max_graphs); input shape {tuple(x.shape)} and any further '
                                  'new ones run eagerly')
                    self._warned = True
                return self.module(x)
            with torch.cuda.device(x.device), _buffers_kept(self.module), \
                    _capturable_autocast():
                capture = self._capture_training if key.grads else self._capture_inference
                run = self._graphs[key] = capture(x)
        return run(x)

    def _drop_stale_graphs(self) -> None:
        """Graphs read the parameters' memory of their capture: where the wrapped module was
        moved on its own (``module.cuda()``, ``.half()``), they are dropped and captured
        again."""
        memory = _weights_memory(self.module)
        if memory != self._memory:
            self._graphs.clear()
            self._warned = False
            self._memory = memory

    def _apply(self, fn, *args, **kwargs):
        # .to() / .cuda() / .half() give the parameters new memory, which the graphs would go
        # on reading: they are dropped, and captured again on the next calls.
        self._graphs.clear()
        self._warned = False
        out = super()._apply(fn, *args, **kwargs)
        self._memory = _weights_memory(self.module)
        return out

    def __getstate__(self) -> dict:
        # A copy (copy.deepcopy, as EMA hooks make; pickle) has memory of its own: it captures
        # its own graphs (a CUDA graph cannot be copied or pickled).
        return dict(super().__getstate__(), _graphs={}, _warned=False, _memory=None)

    def _capture_inference(self, x: torch.Tensor) -> Callable[[torch.Tensor], Any]:
        static_x = x.clone()  # the caller's tensor stays the caller's
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.module(static_x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.module(static_x)

        def replay(inp: torch.Tensor) -> Any:
            static_x.copy_(inp)
            graph.replay()
            return static_out

        return replay

    def _capture_training(self, x: torch.Tensor) -> Callable[[torch.Tensor], Any]:
        module = self.module
        # make_graphed_callables puts the graphed forward on the module itself; it is taken
        # from there and the module's own forward put back, so that the module stays plain
        # and each signature keeps its own graph.
        own = module.__dict__.get('forward')
        torch.cuda.make_graphed_callables(module, (x.clone(), ), num_warmup_iters=self.warmup,
                                          allow_unused_input=True)
        graphed = module.__dict__.pop('forward')
        if own is not None:
            module.forward = own
        return graphed


class _Features(nn.Module):
    """A model's ``extract_feat`` (backbone, then neck) as a module for :class:`CUDAGraphed`:
    the parts are its children, so the graphs see their parameters, buffers and mode; it is
    not registered in the model, whose ``state_dict`` stays as it is."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        with_neck = getattr(model, 'with_neck', False)
        self.parts = nn.ModuleList([model.backbone] + ([model.neck] if with_neck else []))
        object.__setattr__(self, '_model', model)  # not a child: the model holds this

    @property
    def training(self) -> bool:
        # the backbone's mode, as model.train() / model.eval() set it (this module is not
        # among the model's children, which those reach)
        return self.parts[0].training

    @training.setter
    def training(self, mode: bool) -> None:
        pass

    def forward(self, x: torch.Tensor) -> Any:
        return type(self._model).extract_feat(self._model, x)


def graph_features(model: nn.Module, warmup: int = 3, max_graphs: int = 4) -> CUDAGraphed:
    """Replace ``model.extract_feat`` (mmdet detectors, mmseg segmentors, mmpose estimators:
    the backbone, then the neck) by CUDA graphs of it, in place; returns the wrapper (the
    one already there, where the model's features run as graphs).

    The heads, losses and optimizer stay eager; the model's ``state_dict`` is unchanged. In
    training the features are the graph's memory until the next step (each step reads them
    once); in evaluation they are copied out, since a model may call ``extract_feat`` twice
    before using either result (mmpose's flip test).

    Example:
        >>> graphed = graph_features(segmentor.cuda())
        >>> segmentor.extract_feat is not type(segmentor).extract_feat
        True
    """
    if not callable(getattr(model, 'extract_feat', None)) or not hasattr(model, 'backbone'):
        raise ValueError(f'graph_features: {type(model).__name__} has no backbone and '
                         'extract_feat (mmdet detectors, mmseg segmentors and mmpose '
                         'estimators have)')
    if isinstance(model.__dict__.get('extract_feat'), _GraphedFeatures):
        return model.extract_feat.graphed  # a second run of a runner (train, then test)
    graphed = CUDAGraphed(_Features(model), warmup=warmup, max_graphs=max_graphs)
    # an instance attribute shadows the class's method; _Features calls the class's
    model.extract_feat = _GraphedFeatures(graphed)
    return graphed


class _GraphedFeatures:
    """``extract_feat`` replayed (an object, not a closure: a deep copy of the model, as EMA
    hooks make, gets a copy of it that runs the copy's own parts)."""

    def __init__(self, graphed: CUDAGraphed) -> None:
        self.graphed = graphed

    def __call__(self, x: torch.Tensor) -> Any:
        out = self.graphed(x)
        return out if self.graphed.module.training else _copied(out)


def _copied(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, (list, tuple)):
        return type(out)(_copied(o) for o in out)
    if isinstance(out, dict):
        return {k: _copied(v) for k, v in out.items()}
    return out
