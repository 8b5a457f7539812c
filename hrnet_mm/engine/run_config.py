"""The config a train or test run starts from: one place for the command-line tools."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from .dist import prepare_cpu_distributed


def load_run_config(config: str, cfg_options: Optional[dict] = None, launcher: str = 'none',
                    work_dir: Optional[str] = None) -> Config:
    """Read ``config``, apply ``--cfg-options``, and set the launcher and the work dir.

    The work dir is ``work_dir``, else the config's own, else ``work_dirs/<config name>``
    (as in the OpenMMLab libraries' tools). Without a GPU, a distributed launch gets gloo and
    CPU DDP (:func:`~hrnet_mm.engine.dist.prepare_cpu_distributed`).
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(config))[0])
    return prepare_cpu_distributed(cfg)
