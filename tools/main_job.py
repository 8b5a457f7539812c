"""The main job: HRNet against its ResNet baseline on detection, segmentation and pose.

    bash tools/main_job.sh            # installs what is missing, then runs this (< 10 min, 2 CPUs)
    .venv/bin/python tools/main_job.py --scale 5     # 5x longer schedules

Generates the embedded dataset (data/hrnet_mm_demo), then for each task trains the demo HRNet
and its ResNet twin (configs/{det,seg,pose}/demo_*.py) with the libraries' real datasets,
pipelines and evaluators, evaluates each before and after training, and writes a comparison
(task, model, params, GFLOPs at the paper's input size, CPU latency, metric untrained and
trained) to <work-dir>/results.md, results.json and results.png.
"""
import argparse
import json
import os
import os.path as osp
import statistics
import sys
import time

import torch
from mmengine.config import Config
from mmengine.runner import Runner

import hrnet_mm  # noqa: F401
from hrnet_mm.complexity import build_from_config, count
from hrnet_mm.data import generate
from hrnet_mm.engine.cli import add_debug_flag, run_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# task -> (metric key, metric name, paper input size (H, W), demo input size, iterations, models)
TASKS = {
    'det': ('coco/bbox_mAP', 'box mAP', (800, 1333), (160, 160), 100, [
        ('Faster R-CNN R-18 FPN', 'configs/det/demo_faster-rcnn_r18_fpn.py'),
        ('Faster R-CNN HRNetV2p-W18-Small', 'configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py'),
    ]),
    'seg': ('mIoU', 'mIoU', (1024, 2048), (160, 160), 200, [
        ('FCN R-18-D8', 'configs/seg/demo_fcn_r18-d8.py'),
        ('HRNetV2-W18-Small + FCN 1x1', 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'),
    ]),
    'pose': ('coco/AP', 'keypoint AP', (256, 192), (128, 96), 200, [
        ('SimpleBaseline R-18', 'configs/pose/demo_td-hm_res18.py'),
        ('HRNet-W18-Small (V1)', 'configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py'),
    ]),
}


def log(msg: str) -> None:
    print(f'[main job {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def latency_ms(model, forward, size, repeats=5) -> float:
    """Median CPU time of one image's forward pass (after a warm-up)."""
    x = torch.rand(1, 3, *size)
    model.eval()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            start = time.perf_counter()
            forward(model, x)
            if i:
                times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def train_and_evaluate(config: str, work_dir: str, iters: int, label: str):
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.work_dir = work_dir
    cfg.train_cfg.max_iters = iters
    warmup = max(1, iters // 10)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup, end=iters,
             eta_min_ratio=0.05)]
    cfg.log_level = 'WARNING'
    cfg.custom_hooks = [dict(type='ProgressHook', interval=max(1, iters // 5),
                             prefix=f'  {label}: ')]
    runner = Runner.from_cfg(cfg)
    untrained = runner.test()
    start = time.time()
    runner.train()
    seconds = time.time() - start
    return untrained, runner.test(), seconds


def write_chart(rows, path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.6))
    for ax, task in zip(axes, TASKS):
        sub = [r for r in rows if r['task'] == task]
        xs = range(len(sub))
        ax.bar([x - 0.2 for x in xs], [r['untrained'] for r in sub], 0.4, label='untrained',
               color='#bbbbbb')
        ax.bar([x + 0.2 for x in xs], [r['trained'] for r in sub], 0.4, label='trained',
               color=['#4c72b0' if 'HRNet' in r['model'] else '#dd8452' for r in sub])
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r['model'].replace(' + ', '\n+ ').replace(' (', '\n(') for r in sub],
                           fontsize=7)
        ax.set_title(f'{task}: {sub[0]["metric"]}')
        ax.legend(fontsize=7, loc='lower right')
    fig.suptitle('HRNet vs ResNet on the embedded dataset (short CPU schedules)')
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(rows, args, total_s) -> str:
    lines = [f'# Main job results (scale {args.scale}, {total_s / 60:.1f} min, '
             f'{torch.get_num_threads()} CPU threads, torch {torch.__version__})', '',
             '| task | model | params (M) | GFLOPs (input) | CPU latency ms (input) | metric | '
             'untrained | trained | train s |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['model']} | {r['params_m']:.2f} | {r['gflops']:.1f} "
            f"({r['paper_size'][0]}x{r['paper_size'][1]}) | {r['latency_ms']:.1f} "
            f"({r['demo_size'][0]}x{r['demo_size'][1]}) | {r['metric']} | {r['untrained']:.3f} "
            f"| {r['trained']:.3f} | {r['train_s']:.0f} |")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', default='work_dirs/main_job')
    p.add_argument('--scale', type=float, default=1.0,
                   help='multiply every schedule (default 1: under 10 minutes on 2 CPU cores)')
    p.add_argument('--tasks', nargs='+', default=list(TASKS), choices=list(TASKS))
    add_debug_flag(p)
    args = p.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.time()
    data = 'data/hrnet_mm_demo'
    if not osp.exists(osp.join(data, 'annotations/instances_val.json')):
        log(f'generating the embedded dataset in {data}')
        log(f'  {generate(data)}')
    rows, step, steps = [], 0, sum(len(TASKS[t][5]) for t in args.tasks)
    for task in args.tasks:
        key, metric, paper_size, demo_size, iters, models = TASKS[task]
        iters = max(1, int(iters * args.scale))
        for label, config in models:
            step += 1
            log(f'{step}/{steps} {task}: {label}: complexity and latency')
            model, forward, _, _ = build_from_config(osp.join(ROOT, config))
            c = count(model, torch.rand(1, 3, *paper_size), forward)
            lat = latency_ms(model, forward, demo_size)
            log(f'{step}/{steps} {task}: {label}: evaluate, train {iters} iterations, evaluate')
            work = osp.join(args.work_dir, task, osp.splitext(osp.basename(config))[0])
            before, after, seconds = train_and_evaluate(config, work, iters, label)
            row = dict(task=task, model=label, config=config, params_m=c.params_m,
                       gflops=c.gflops, paper_size=list(paper_size), latency_ms=lat,
                       demo_size=list(demo_size), metric=metric,
                       untrained=float(before.get(key, 0.0)), trained=float(after.get(key, 0.0)),
                       train_s=seconds, iters=iters)
            rows.append(row)
            log(f'{step}/{steps} {task}: {label}: {metric} {row["untrained"]:.3f} -> '
                f'{row["trained"]:.3f}')
    total = time.time() - start
    md = markdown(rows, args, total)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(md)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(scale=args.scale, seconds=total, rows=rows), f, indent=2)
    write_chart(rows, osp.join(args.work_dir, 'results.png'))
    print('\n' + md)
    log(f'written: {args.work_dir}/results.md, results.json, results.png ({total / 60:.1f} min)')
    failed = [r['model'] for r in rows if not r['trained'] > r['untrained']]
    if failed:
        log(f'FAILED: trained not better than untrained for {failed}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
