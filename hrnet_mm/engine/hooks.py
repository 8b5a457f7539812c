"""Hooks for mmengine runners."""
import hashlib
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..cuda_graphs import graph_features
from ..streams import holds_hr_modules, parallel_branches


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter, in order (fp32 bytes).

    Buffers are left out: with plain BN each process keeps the running statistics of its own
    batches (mmengine's DDP does not broadcast buffers), so only parameters must agree.
    """
    digest = hashlib.sha256()
    for key, value in model.named_parameters():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()


@HOOKS.register_module(force=True)
class WeightsDigestHook(Hook):
    """After training, each process writes the digest of its parameters to
    ``<work_dir>/weights_rank<r>.sha256``: in data-parallel training all must agree.

    Example (config): ``custom_hooks = [dict(type='WeightsDigestHook')]``.
    """

    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        path = osp.join(runner.work_dir, f'weights_rank{get_rank()}.sha256')
        with open(path, 'w') as f:
            f.write(weights_digest(model) + '\n')


@HOOKS.register_module(force=True)
class CUDAGraphsHook(Hook):
    """Train and evaluate with the model's features (backbone, then neck: ``extract_feat``)
    replayed as CUDA graphs (:func:`hrnet_mm.cuda_graphs.graph_features`), from a config.

    For fixed input sizes (mmseg and mmpose crops, a detector's fixed-size batches): each new
    input shape is captured once, in a few eager calls' time, up to ``max_graphs`` (each keeps
    its own memory); further shapes run eagerly, with one warning. Heads, losses, the optimizer
    wrapper (AMP included) and checkpoints are as without it. One process and one GPU: a
    distributed model stops the run with a one-line error, as ``compile`` does (it makes CUDA
    graphs of its own with ``compile=dict(mode='reduce-overhead')``); a model on the CPU runs
    as without it (one log line).

    An HRNet's branches also run on parallel CUDA streams inside the graphs
    (:func:`hrnet_mm.streams.parallel_branches`): the same kernels, the narrow low-resolution
    branches beside the stride-4 one (on an H100, 1.10x-1.23x the same graphs without them).

    Args:
        warmup: eager calls before each capture.
        max_graphs: input shapes captured at most.
        parallel_branches: run the HRNet modules' branches on parallel streams; False leaves
            them as the model was built (``HRNetV2(parallel_branches=...)``). A model without
            HRNet modules is graphed all the same.

    Example (config):
        custom_hooks = [dict(type='CUDAGraphsHook')]
    """

    def __init__(self, warmup: int = 3, max_graphs: int = 4,
                 parallel_branches: bool = True) -> None:
        if not all(isinstance(v, int) and v >= 1 for v in (warmup, max_graphs)):
            raise ValueError(f'CUDAGraphsHook: warmup={warmup!r}, max_graphs={max_graphs!r}; '
                             'both must be ints >= 1')
        if not isinstance(parallel_branches, bool):
            raise ValueError(f'CUDAGraphsHook: parallel_branches={parallel_branches!r}; '
                             'True or False')
        self.warmup, self.max_graphs = warmup, max_graphs
        self.parallel_branches = parallel_branches

    def before_run(self, runner) -> None:
        model = runner.model
        if is_model_wrapper(model):
            raise RuntimeError(f'CUDAGraphsHook: one process, one GPU; the model is wrapped in '
                               f'{type(model).__name__} (distributed): remove the hook from '
                               'custom_hooks, or train on one GPU')
        compile_cfg = runner.cfg.get('compile')
        if compile_cfg:
            raise RuntimeError(f'CUDAGraphsHook with compile={compile_cfg!r}: '
                               'choose one (compile=dict(mode=\'reduce-overhead\') makes CUDA '
                               'graphs of the compiled step)')
        device = _device(model)
        if device.type != 'cuda':
            print_log(f'CUDAGraphsHook: the model is on {device}; CUDA graphs need a GPU, the '
                      'model runs eagerly', logger='current')
            return
        streams = self.parallel_branches and holds_hr_modules(model)
        if streams:
            parallel_branches(model)
        graph_features(model, self.warmup, self.max_graphs)
        print_log(f'CUDAGraphsHook: {type(model).__name__}.extract_feat runs as CUDA graphs, '
                  f'one per input shape (at most {self.max_graphs})'
                  + (', the HRNet branches on parallel CUDA streams' if streams else ''),
                  logger='current')


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
