"""Evaluate a checkpoint on a config's test set with the config's evaluator.

    python tools/test.py configs/seg/demo_fcn_hrnetv2-w18-small-v1.py work_dirs/seg/iter_200.pth
    python tools/test.py CONFIG CHECKPOINT --launcher pytorch    # under torchrun
    python tools/test.py CONFIG CHECKPOINT --backbone-precision bf16  # its cost in accuracy
"""
import argparse
import json
import sys

import hrnet_mm  # noqa: F401
from hrnet_mm.data import data_root_option
from hrnet_mm.engine.cli import (CfgOptions, add_debug_flag, check_out_file, check_work_dir,
                                  run_tool)
from hrnet_mm.engine.quiet import prints_into_log, verbose_option
from hrnet_mm.engine.run_config import build_test_runner
from hrnet_mm.fast import AUTOCAST_DTYPES, autocast_backbone


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Test a model')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--work-dir')
    p.add_argument('--out', help='write the metrics as JSON here')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptions)
    p.add_argument('--backbone-precision', choices=['fp32', *AUTOCAST_DTYPES], default='fp32',
                   help='run the backbone (and neck) under torch.autocast in this precision, '
                        'the heads in fp32; compare the metrics with an fp32 run')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    data_root_option(p)
    verbose_option(p)
    add_debug_flag(p)
    args = p.parse_args(argv)
    check_work_dir(p, args.work_dir)
    check_out_file(p, args.out)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    runner = build_test_runner(args.config, args.checkpoint, args.cfg_options, args.launcher,
                               args.work_dir, args.data_root, args.verbose)
    if args.backbone_precision != 'fp32':
        autocast_backbone(runner.model, args.backbone_precision)
    with prints_into_log(runner.logger, args.verbose) as sink:
        metrics = runner.test()
    sink.report()
    if args.out:
        with open(args.out, 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
