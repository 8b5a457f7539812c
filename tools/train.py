"""Train a config with mmengine's Runner (any of configs/, or a library's own).

    python tools/train.py configs/seg/demo_fcn_hrnetv2-w18-small-v1.py --work-dir work_dirs/seg
    bash tools/dist_train.sh configs/seg/demo_fcn_hrnetv2-w18-small-v1.py 2   # 2 processes

Like mmdet/mmseg/mmpose's tools/train.py: --resume, --amp, --cfg-options, --launcher. Without
a GPU, distributed runs use the gloo backend.
"""
import argparse
import os
import sys

from mmengine.config import Config

import hrnet_mm  # noqa: F401  registers HRNetV2 and allows mmengine's checkpoint types
from hrnet_mm.data import apply_data_root, check_data, data_root_option, prepare_demo_data
from hrnet_mm.engine.cli import CfgOptions, add_debug_flag, check_work_dir, run_tool
from hrnet_mm.engine.quiet import build_runner, prints_into_log, verbose_option
from hrnet_mm.engine.run_config import load_run_config
from hrnet_mm.weights import load_checkpoint_file


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Train a model')
    p.add_argument('config')
    p.add_argument('--work-dir', help='default: work_dirs/<config name>')
    p.add_argument('--resume', nargs='?', const='auto',
                   help='resume from the latest checkpoint in the work dir, or from a file')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision (GPU)')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptions,
                   help='override config entries, e.g. train_cfg.max_iters=100')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    data_root_option(p)
    verbose_option(p)
    add_debug_flag(p)
    args = p.parse_args(argv)
    check_work_dir(p, args.work_dir)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_cfg(args) -> Config:
    cfg = load_run_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    apply_data_root(cfg, args.data_root)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = build_cfg(args)
    for line in prepare_demo_data(cfg):  # a demo config on a fresh clone
        print(line, flush=True)
    # one line now for a broken dataset or checkpoint, not a traceback minutes into the run
    for warning in check_data(cfg, ('train', 'val')):
        print(f'warning: {warning}', file=sys.stderr)
    if cfg.get('load_from') and '://' not in cfg.load_from:
        load_checkpoint_file(cfg.load_from)
    runner = build_runner(cfg, args.verbose)
    with prints_into_log(runner.logger, args.verbose) as sink:
        runner.train()
    sink.report()
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
