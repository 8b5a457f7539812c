"""Distributed training on CPUs with mmengine's launchers.

mmengine 0.10.7's pytorch launcher always calls ``torch.cuda.set_device`` and wraps models with
``device_ids=[local_rank]``, both of which fail without a GPU. On CPUs the process group is
therefore started here with gloo (mmengine then finds it started), and DDP gets
``device_ids=None``, as CPU modules require.
"""
import torch
import torch.distributed as dist
from mmengine.config import Config


def prepare_cpu_distributed(cfg: Config) -> Config:
    """For a distributed launch without CUDA: start gloo, and wrap models for CPU DDP."""
    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return cfg
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')  # rank/world size from torchrun's environment
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper.update(cfg.get('model_wrapper_cfg') or {})
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return cfg
