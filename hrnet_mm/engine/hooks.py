"""Hooks for mmengine runners."""
import hashlib
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


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
