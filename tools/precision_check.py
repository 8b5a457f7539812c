"""What evaluating a checkpoint in reduced precision costs, and whether it is more than noise.

    python tools/precision_check.py configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py CKPT
    python tools/precision_check.py CONFIG CKPT --precision fp16 --draws 10 --out check.json

Evaluates the checkpoint (the config's test set and evaluator) three ways: in fp32; with the
backbone and neck under autocast in ``--precision`` (``hrnet_mm.fast.autocast_backbone``, the
heads in fp32, as ``tools/test.py --backbone-precision`` does); and ``--draws`` times in fp32
with random errors of that precision's rounding step on every weight, convolution input and
layer output of the backbone and neck (``hrnet_mm.fast.rounding_noise``). A reduced-precision
change within the draws' range is the precision's general cost on this model and data; one
well beyond it points at a specific place to look (docs/benchmarks.md: the pose demo).
"""
import argparse
import json
import os.path as osp
import statistics
import sys

import hrnet_mm  # noqa: F401  registers HRNetV2 and allows mmengine's checkpoint types
from hrnet_mm.data import data_root_option
from hrnet_mm.engine.cli import (CfgOptions, add_debug_flag, check_out_file, check_work_dir,
                                  int_at_least, run_tool)
from hrnet_mm.engine.quiet import prints_into_log
from hrnet_mm.engine.run_config import build_test_runner
from hrnet_mm.fast import AUTOCAST_DTYPES, autocast_backbone, rounding_noise

#: The headline metric of each library's evaluator, in order of preference.
PRIMARY = ('coco/AP', 'coco/bbox_mAP', 'mIoU', 'accuracy/top1', 'PCK', 'AUC')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--precision', choices=list(AUTOCAST_DTYPES), default='bf16')
    p.add_argument('--draws', type=int_at_least(1), default=6,
                   help='fp32 evaluations with random rounding-sized errors (default 6)')
    p.add_argument('--metric', help=f'the metric to compare (default: the first of {PRIMARY} '
                                    'the evaluator reports)')
    p.add_argument('--work-dir', help='default: work_dirs/precision_check/<config name>')
    p.add_argument('--out', help='write the metrics as JSON here')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptions)
    data_root_option(p)
    add_debug_flag(p)
    args = p.parse_args(argv)
    check_work_dir(p, args.work_dir)
    check_out_file(p, args.out)
    return args


def pick_metric(metrics: dict, wanted=None) -> str:
    """``wanted`` if the evaluator reports it, else the first of :data:`PRIMARY` it reports."""
    if wanted is not None:
        if wanted not in metrics:
            raise ValueError(f'--metric {wanted!r}: the evaluator reports {sorted(metrics)}')
        return wanted
    for key in PRIMARY:
        if key in metrics:
            return key
    return next(iter(metrics))


def metric_scale(key: str):
    """(factor, unit) that shows ``key`` in percent like the other tools (COCO, PCK and AUC
    come as fractions; mmseg and mmpretrain already give percent); other metrics as they are."""
    if key.startswith(('coco/', 'PCK', 'AUC')):
        return 100, '%'
    if key.startswith(('mIoU', 'mAcc', 'aAcc', 'mDice', 'mFscore', 'accuracy/')):
        return 1, '%'
    return 1, ''


def summary(result: dict) -> str:
    """The report's lines (``result`` as written by ``--out``)."""
    key, prec, fp32 = result['metric'], result['precision'], result['fp32']
    noise, low = result['noise'], result[prec]
    lo, hi = min(noise) - fp32, max(noise) - fp32
    verdict = ('within' if lo <= low - fp32 <= hi else 'beyond') + " the noise draws' range"
    return '\n'.join([
        f'{key}: fp32 {fp32:.2f}',
        f'{key}: {prec} backbone {low:.2f} ({low - fp32:+.2f})',
        f'{key}: fp32 with {prec}-sized rounding noise, {len(noise)} draws: mean '
        f'{statistics.mean(noise):.2f} ({statistics.mean(noise) - fp32:+.2f}; '
        f'{lo:+.2f} to {hi:+.2f})',
        f'{prec} changes {key} by {low - fp32:+.2f}: {verdict}'])


def main(argv=None) -> int:
    args = parse_args(argv)
    work_dir = args.work_dir or osp.join('work_dirs/precision_check',
                                         osp.splitext(osp.basename(args.config))[0])
    runner = build_test_runner(args.config, args.checkpoint, args.cfg_options, 'none', work_dir,
                               args.data_root)
    runs = ['fp32'] + [f'noise {i + 1}/{args.draws}' for i in range(args.draws)] + [args.precision]
    values, key = {}, None
    with prints_into_log(runner.logger) as sink:
        for run in runs:
            print(f'[precision_check] evaluating: {run}', file=sys.stderr)
            if run.startswith('noise'):
                with rounding_noise(runner.model, args.precision, seed=len(values)):
                    values[run] = runner.test()
            else:
                if run != 'fp32':
                    autocast_backbone(runner.model, args.precision)
                values[run] = runner.test()
            key = key or pick_metric(values['fp32'], args.metric)  # a wrong --metric: now
    sink.report()
    scale, unit = metric_scale(key)
    result = dict(metric=key, unit=unit, precision=args.precision, config=args.config,
                  checkpoint=args.checkpoint, fp32=scale * float(values['fp32'][key]),
                  noise=[scale * float(v[key]) for r, v in values.items() if r.startswith('noise')])
    result[args.precision] = scale * float(values[args.precision][key])
    print(summary(result))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
