"""HRNet compiled one region at a time, so that its branches still run in parallel.

``torch.compile`` of a whole model fuses its normalisations, ReLUs and additions into fewer
passes over memory, but it traces one CUDA stream: inside a compiled model an HRNet module runs
its branches one after another (:mod:`hrnet_mm.streams` is off there). :func:`compile_regions`
compiles the parts between the points where HRNet's branches fork and join instead, each on
its own: every branch of every :class:`~hrnet_mm.models.HRModule`, every exchange output
(:class:`~hrnet_mm.models.fusion.FusionSum`), every transition path, the stage-1 layer and the
representation. The modules that hand maps from region to region stay eager, so that with
:func:`~hrnet_mm.streams.parallel_branches` region ``k`` runs on CUDA stream ``k``, and
:class:`~hrnet_mm.cuda_graphs.CUDAGraphed` replays the whole step as graphs (no launch cost
between the regions). The stem's two convolutions stay eager.

Compiled with ``dynamic=False``: each region is compiled for the shapes it sees (a new input
size compiles again). Regions of the same structure and shapes share a compiled graph (the
branches of one stage's modules do): a W48 compiles 19 graphs for its 58 regions. As each
compiled module runs through one function of torch's, torch's limit on compiles per function
(``torch._dynamo.config.recompile_limit``, 8) is raised to cover them.

Parameter names, ``state_dict`` and checkpoints are unchanged; a copy of a compiled model
(``copy.deepcopy``, pickle) runs eagerly, as for any ``nn.Module.compile``.

Example:
    >>> model = compile_regions(parallel_branches(HRNetV2(arch='w32', representation='v1')))
    >>> graphed = CUDAGraphed(model.cuda().to(memory_format=torch.channels_last))
"""
from typing import Any, List

import torch
import torch.nn as nn

__all__ = ['compile_regions', 'regions']

#: Compiles each region may need: train / eval, with and without gradients, two autocast
#: dtypes (torch guards on each and compiles again when one changes).
VARIANTS_PER_REGION = 8


def regions(model: nn.Module) -> List[nn.Module]:
    """The modules :func:`compile_regions` compiles in ``model``, in the order they run: for
    each ``HRNetV2``, its stage-1 layer, transitions and representation; for each
    ``HRModule``, its branches and exchange outputs. Parameter-free paths (``nn.Identity``)
    are left out.

    Example:
        >>> len(regions(HRNetV2(arch='w18_small_v1')))  # layer1, 4 transitions, 18, head
        24
    """
    from .models import HRModule, HRNetV2
    found: List[nn.Module] = []
    for m in model.modules():
        if isinstance(m, HRNetV2):
            found.append(m.layer1)
            for k in range(1, 4):
                found.extend(t for t in getattr(m, f'transition{k}')
                             if not isinstance(t, nn.Identity))
            found.append(m.head)
        elif isinstance(m, HRModule):
            found.extend(m.branches)
            found.extend(m.fuse_layers or ())
    return found


def compile_regions(model: nn.Module, **compile_kwargs: Any) -> nn.Module:
    """Compile each region of the HRNets in ``model`` on its own (``nn.Module.compile``, in
    place); returns ``model``. ``compile_kwargs`` go to ``torch.compile`` (default
    ``dynamic=False``; e.g. ``mode='max-autotune-no-cudagraphs'``; inductor's own CUDA
    graphs, ``mode='reduce-overhead'``, would make one graph per region: use
    :class:`~hrnet_mm.cuda_graphs.CUDAGraphed` around the model instead).

    ``model`` may be anything holding HRNets: an ``HRNetV2``, a detector, a segmentor (its
    other parts stay as they are).

    Example:
        >>> model = compile_regions(HRNetV2(arch='w18'))
        >>> model.layer1._compiled_call_impl is not None
        True
    """
    from .compiling import quiet_cuda_runtime_notice
    from .streams import holds_hr_modules
    if not holds_hr_modules(model):
        raise ValueError(f'compile_regions: {type(model).__name__} holds no HRNet module (an '
                         'HRNetV2 backbone has one per exchange)')
    found = regions(model)
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, VARIANTS_PER_REGION * len(found))
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit,
                                             config.recompile_limit)
    quiet_cuda_runtime_notice()
    compile_kwargs.setdefault('dynamic', False)
    for region in found:
        region.compile(**compile_kwargs)
    return model
