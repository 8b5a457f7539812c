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


def build_test_runner(config: str, checkpoint: str, cfg_options: Optional[dict] = None,
                      launcher: str = 'none', work_dir: Optional[str] = None,
                      data_root: Optional[str] = None, verbose: bool = False):
    """The Runner that evaluates ``checkpoint`` on ``config``'s test set.

    A broken or unsafe checkpoint file and a broken test set stop here in one line, not in
    the middle of the run; data the dataset will skip is warned about on stderr. The Runner is
    built by :func:`~hrnet_mm.engine.quiet.build_runner` (set-up dump in the log file).

    Example:
        >>> runner = build_test_runner('configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py', ckpt)
        >>> metrics = runner.test()
    """
    import sys

    from ..data import apply_data_root, check_data, prepare_demo_data
    from ..weights import load_checkpoint_file
    from .quiet import build_runner
    load_checkpoint_file(checkpoint)
    cfg = load_run_config(config, cfg_options, launcher, work_dir)
    apply_data_root(cfg, data_root)
    for line in prepare_demo_data(cfg):  # a demo config on a fresh clone
        print(line, flush=True)
    for warning in check_data(cfg, ('test', )):
        print(f'warning: {warning}', file=sys.stderr)
    cfg.load_from = checkpoint
    return build_runner(cfg, verbose)
