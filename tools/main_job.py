"""The main job: HRNet against a size-matched ResNet on detection, segmentation, pose and
classification (the paper's four tasks).

    bash tools/main_job.sh                    # installs what is missing, then runs this
    .venv/bin/python tools/main_job.py --seeds 3          # each model 3 times: mean and spread
    .venv/bin/python tools/main_job.py --scale 5          # 5x longer schedules
    .venv/bin/python tools/main_job.py --data-root data/coco --tasks det pose   # real data
    .venv/bin/python tools/main_job.py --ablation         # which representation for which task

Generates the embedded dataset (data/hrnet_mm_demo) unless --data-root is given, then for each
task trains the demo HRNet and a ResNet of about its parameters and GFLOPs
(configs/{det,seg,pose,cls}/demo_*.py) with the libraries' real datasets, pipelines and
evaluators, evaluates each before and after training, and writes a comparison (params, GFLOPs at
the paper's input size, CPU latency, metric in percent untrained and trained) to
<work-dir>/results.md, results.json and results.png. The console shows one progress bar and one
result line per run; everything the libraries print goes to a log file per run (path shown).

--ablation runs the paper's head comparison instead: the same HRNet-W18-Small with each
representation that applies to the task (detection: V2+p against the four branches into an FPN;
segmentation and pose: V1 against V2), same heads, data and schedules. Classification has one
representation and is not in it. Classification needs mmpretrain (tools/install.sh installs it);
without it that task is left out with a note.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import statistics
import sys
import textwrap
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

import hrnet_mm  # noqa: F401  (first: its import hides setuptools' pkg_resources notice)
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from hrnet_mm.complexity import build_from_config, count
from hrnet_mm.data import prepare_demo_data, use_data_root
from hrnet_mm.engine import interrupts
from hrnet_mm.engine.checkpoints import atomic_write
from hrnet_mm.engine.cli import (CfgOptions, add_debug_flag, check_work_dir, int_at_least,
                                  run_tool)
from hrnet_mm.engine.quiet import ProgressBarHook, capture_into_file, make_bar

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: A ResNet is "matched" to its HRNet when both its params and its GFLOPs are within this
#: factor of the HRNet's (either way).
MATCH_FACTOR = 4 / 3


class Model(NamedTuple):
    name: str
    family: str   # 'HRNet' or 'ResNet' (the ablation: the representation): its chart colour
    config: str


class Task(NamedTuple):
    key: str                  # the evaluator's metric
    metric: str               # its name in the table
    percent: float            # factor to percent (COCO metrics are fractions, mIoU is not)
    paper_size: Tuple[int, int]
    demo_size: Tuple[int, int]
    iters: int
    models: List[Model]       # the HRNet first, then what it is compared with

    @property
    def short(self) -> str:
        """The metric's name without its details: 'box mAP'."""
        return self.metric.split(' (')[0]


TASKS: Dict[str, Task] = {
    'det': Task('coco/bbox_mAP', 'box mAP (COCO, IoU 0.50:0.95)', 100, (800, 1333), (160, 160),
                100, [
                    Model('Faster R-CNN HRNetV2p-W18-Small', 'HRNet',
                          'configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py'),
                    Model('Faster R-CNN R-18 FPN, width 32', 'ResNet',
                          'configs/det/demo_faster-rcnn_r18-w32_fpn.py')]),
    'seg': Task('mIoU', 'mIoU', 1, (1024, 2048), (160, 160), 200, [
        Model('HRNetV2-W18-Small + FCN 1x1', 'HRNet',
              'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'),
        Model('FCN R-18-D8, width 16', 'ResNet', 'configs/seg/demo_fcn_r18-w16-d8.py')]),
    'pose': Task('coco/AP', 'keypoint AP (COCO OKS)', 100, (256, 192), (128, 96), 200, [
        Model('HRNet-W18-Small (V1)', 'HRNet', 'configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py'),
        Model('SimpleBaseline R-18, width 12', 'ResNet', 'configs/pose/demo_td-hm_res18-w12.py')]),
    'cls': Task('accuracy/top1', 'top-1 accuracy', 1, (224, 224), (64, 64), 200, [
        Model('HRNet-W18-Small-C', 'HRNet', 'configs/cls/demo_hrnet-w18-small-v1-c.py'),
        Model('ResNet-18', 'ResNet', 'configs/cls/demo_resnet18.py')]),
}
#: The library each task needs, when it is an optional one.
OPTIONAL = {'cls': 'mmpretrain'}

#: The paper's head comparison (``--ablation``): per task, the same HRNet-W18-Small with each
#: representation that applies, the same head design, data and schedule.
ABLATION: Dict[str, Task] = {
    'det': TASKS['det']._replace(models=[
        Model('HRNetV2p-W18-Small: V2+p', 'V2+p',
              'configs/det/demo_faster-rcnn_hrnetv2p-w18-small-v1.py'),
        Model('HRNet-W18-Small: branches + FPN', 'branches + FPN',
              'configs/det/demo_faster-rcnn_hrnet-w18-small-v1_fpn.py')]),
    'seg': TASKS['seg']._replace(models=[
        Model('HRNetV2-W18-Small: V2 + FCN 1x1', 'V2',
              'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'),
        Model('HRNetV1-W18-Small: V1 + FCN 1x1', 'V1',
              'configs/seg/demo_fcn_hrnetv1-w18-small-v1.py')]),
    'pose': TASKS['pose']._replace(models=[
        Model('HRNet-W18-Small: V1 + 1x1 heatmaps', 'V1',
              'configs/pose/demo_td-hm_hrnetv1-w18-small-v1.py'),
        Model('HRNetV2-W18-Small: V2 + 1x1 heatmaps', 'V2',
              'configs/pose/demo_td-hm_hrnetv2-w18-small-v1.py')]),
}


def study(ablation: bool) -> Dict[str, Task]:
    """The tasks and models of the main job, or of its ``--ablation``."""
    return ABLATION if ablation else TASKS


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


def schedule(cfg: Config, iters: int, seed: int) -> None:
    """``iters`` iterations: linear warm-up over the first tenth, then cosine; one seed."""
    cfg.train_cfg.max_iters = iters
    warmup = max(1, iters // 10)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=warmup),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup, end=iters,
             eta_min_ratio=0.05)]
    cfg.randomness = dict(seed=seed)


def train_and_evaluate(cfg: Config, bar) -> Tuple[dict, dict, float]:
    runner = Runner.from_cfg(cfg)
    runner.register_hook(ProgressBarHook(bar=bar))
    bar.set_postfix_str('eval untrained', refresh=bar.is_tty)
    untrained = runner.test()
    start = time.time()
    runner.train()
    seconds = time.time() - start
    bar.set_postfix_str('eval trained', refresh=bar.is_tty)
    return untrained, runner.test(), seconds


def spread(values: List[float]) -> dict:
    return dict(mean=statistics.fmean(values),
                sd=statistics.stdev(values) if len(values) > 1 else None,
                min=min(values), max=max(values))


def matched(row: dict, hrnet: dict) -> dict:
    p, g = row['params_m'] / hrnet['params_m'], row['gflops'] / hrnet['gflops']
    ok = all(1 / MATCH_FACTOR <= r <= MATCH_FACTOR for r in (p, g))
    return dict(params_ratio=p, gflops_ratio=g, matched=ok)


def fmt(s: dict) -> str:
    if s['sd'] is None:
        return f"{s['mean']:.1f}"
    return f"{s['mean']:.1f} ± {s['sd']:.1f} ({s['min']:.1f}-{s['max']:.1f})"


def markdown(rows: List[dict], args, total_s: float, partial: Optional[str] = None) -> str:
    seeds = f"{args.seeds} seeds: mean ± sd (min-max)" if args.seeds > 1 else '1 seed'
    tasks = study(args.ablation)
    what = ('Per task, the same HRNet with each representation (the paper\'s head comparison); '
            'sizes are given against the first model\'s' if args.ablation else
            f'"Matched" means params and GFLOPs both within {MATCH_FACTOR:.2f}x of the HRNet\'s')
    lines = [f'# Main job results{": representations" if args.ablation else ""}', '',
             f'Scale {args.scale}, {seeds}, {total_s / 60:.1f} min in all, '
             f'{torch.get_num_threads()} CPU threads, torch {torch.__version__}. Metrics in '
             f'percent. GFLOPs are multiply-adds at the paper\'s input size; latency is one '
             f'image at the demo size. {what}.']
    if args.cfg_options or args.data_root:
        lines += ['', f'Data: {args.data_root or "the embedded dataset"}; config overrides: '
                      f'{dict(args.cfg_options or {})}.']
    if partial:
        lines += ['', f'**Cut short after {partial}**: the models below are the ones finished '
                      'by then; the others did not run.']
    for task in dict.fromkeys(r['task'] for r in rows):
        sub = [r for r in rows if r['task'] == task]
        t = tasks[task]
        lines += ['', f'## {task}: {t.metric} (%), {sub[0]["iters"]} iterations', '',
                  f'| model | params (M) | GFLOPs ({t.paper_size[0]}x{t.paper_size[1]}) | '
                  f'size and compute vs the {"first" if args.ablation else "HRNet"} | '
                  f'CPU ms ({t.demo_size[0]}x{t.demo_size[1]}) | '
                  f'{t.short} (%) untrained | trained | train s |',
                  '|---|---|---|---|---|---|---|---|']
        for r in sub:
            m = r.get('vs_hrnet')
            verdict = '' if args.ablation else (
                ': matched' if m and m['matched'] else ': NOT matched')
            vs = ('-' if m is None else f"params {m['params_ratio']:.2f}x, GFLOPs "
                  f"{m['gflops_ratio']:.2f}x{verdict}")
            lines.append(f"| {r['model']} | {r['params_m']:.2f} | {r['gflops']:.1f} | {vs} | "
                         f"{r['latency_ms']:.1f} | {fmt(r['untrained'])} | {fmt(r['trained'])} | "
                         f"{r['train_s']:.0f} |")
        if len(sub) == 2:
            diff = sub[0]['trained']['mean'] - sub[1]['trained']['mean']
            sds = [r['trained']['sd'] for r in sub]
            a, b = (r['family'] for r in sub)
            noise = ('one seed: see docs/main_job.md for how much a result moves between seeds'
                     if sds[0] is None else
                     f"sd between seeds {sds[0]:.1f} ({a}) and {sds[1]:.1f} ({b})")
            lines += ['', f'{a} - {b}, trained: {diff:+.1f} points ({noise}).']
    return '\n'.join(lines) + '\n'


#: A colour per model family (trained bars), and its light shade (untrained bars).
COLOURS = {'HRNet': '#1f5fa8', 'ResNet': '#d9711c', 'V1': '#2e8b57', 'V2': '#1f5fa8',
           'V2+p': '#7b3fa0', 'branches + FPN': '#8c8c8c'}
LIGHT = {'HRNet': '#a9c4e6', 'ResNet': '#f3c9a3', 'V1': '#a8d8bb', 'V2': '#a9c4e6',
         'V2+p': '#d2b6e3', 'branches + FPN': '#d4d4d4'}
LABELS = {'ResNet': 'ResNet (size-matched)'}
TITLES = {False: 'HRNet vs a ResNet of about its size and compute',
          True: 'Which representation for which task: HRNet-W18-Small with each'}


def chart(rows: List[dict], seeds: int, ablation: bool = False, data: Optional[str] = None,
          scale: float = 1.0, partial: Optional[str] = None):
    """The figure: a panel per task; each model family one colour (HRNet blue, ResNet orange;
    in the ablation one per representation) in every panel and in the legend; untrained light
    and hatched, trained solid; values on the bars. The title names the data (``data``: a
    ``--data-root``; default the embedded dataset), the schedule and, for a run cut short,
    how far it got."""
    tasks_table = study(ablation)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    tasks = list(dict.fromkeys(r['task'] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = [r for r in rows if r['task'] == task]
        for x, r in enumerate(sub):
            for dx, stage in ((-0.2, 'untrained'), (0.2, 'trained')):
                s = r[stage]
                colour = COLOURS[r['family']] if stage == 'trained' else LIGHT[r['family']]
                ax.bar(x + dx, s['mean'], 0.4, color=colour, edgecolor=COLOURS[r['family']],
                       hatch='//' if stage == 'untrained' else None,
                       # the whisker stops at 0: a metric is never negative
                       yerr=[[min(s['sd'], s['mean'])], [s['sd']]] if s['sd'] else None,
                       capsize=3)
                # the value above the bar and its error bar, not on top of the whisker
                ax.annotate(f"{s['mean']:.1f}", (x + dx, s['mean'] + (s['sd'] or 0)),
                            xytext=(0, 3), textcoords='offset points', ha='center',
                            va='bottom', fontsize=8)
        ax.set_xticks(range(len(sub)))
        ax.set_xticklabels([r['model'].replace(', ', ',\n').replace(' + ', '\n+ ')
                            for r in sub], fontsize=8)
        ax.set_title(f'{task}: {tasks_table[task].short}', fontsize=10)
        ax.set_ylabel(f"{tasks_table[task].metric} (%)", fontsize=8)
        top = max(s['mean'] + (s['sd'] or 0) for r in sub for s in (r['trained'], r['untrained']))
        ax.set_ylim(0, top * 1.15 + 1)
    handles = []
    for family in dict.fromkeys(r['family'] for r in rows):
        label = LABELS.get(family, family)
        handles += [Patch(facecolor=COLOURS[family], label=f'{label}, trained'),
                    Patch(facecolor=LIGHT[family], edgecolor=COLOURS[family], hatch='//',
                          label=f'{label}, untrained')]
    fig.legend(handles=handles, loc='lower center', ncol=min(4, len(handles)), fontsize=8,
               frameon=False)
    runs = f'mean of {seeds} seeds, bars: sd' if seeds > 1 else 'one seed'
    schedules = 'short CPU schedules' if scale == 1 else f'schedules x{scale:g}'
    title = f'{TITLES[ablation]}, {data or "embedded dataset"}, {schedules} ({runs})'
    if partial:
        title += f'\ncut short after {partial}; the others did not run'
    # wrapped to the figure's width: a one-task figure (--tasks seg) cut it off at both sides
    fits = int(fig.get_figwidth() * 12)  # characters of 10-point text per inch, with margin
    fig.suptitle('\n'.join(textwrap.fill(line, fits) for line in title.splitlines()),
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06 * ((len(handles) + 3) // 4), 1, 1))
    return fig


def save_results(rows: List[dict], args, seconds: float, partial: Optional[str] = None) -> str:
    """Write results.md, results.json and results.png for ``rows`` (after each model, so
    that a run cut short keeps the models it finished; ``partial`` says how far it got).
    Each file is written whole, then renamed. Returns the Markdown."""
    import matplotlib.pyplot as plt
    md = markdown(rows, args, seconds, partial)
    results = dict(study='ablation' if args.ablation else 'main', scale=args.scale,
                   seeds=args.seeds, seconds=seconds, unit='%', data_root=args.data_root,
                   cfg_options=dict(args.cfg_options or {}), match_factor=MATCH_FACTOR,
                   rows=rows)
    if partial:
        results['partial'] = partial
    fig = chart(rows, args.seeds, args.ablation, args.data_root, args.scale, partial)
    # the JSON last: once it shows a row, the chart and the table of that row are there
    for name, write in (('results.png', lambda f: fig.savefig(f, dpi=120, format='png')),
                        ('results.md', lambda f: f.write(md.encode())),
                        ('results.json',
                         lambda f: f.write(json.dumps(results, indent=2).encode()))):
        atomic_write(osp.join(args.work_dir, name), write)
    plt.close(fig)
    return md


def run_model(task: str, t: Task, model: Model, args, step: str, console) -> dict:
    """Complexity, latency, then every seed's run; the libraries' output into log files."""
    work = osp.join(args.work_dir, task, osp.splitext(osp.basename(model.config))[0])
    os.makedirs(work, exist_ok=True)
    config = osp.join(ROOT, model.config)
    with capture_into_file(osp.join(work, 'complexity.log')):
        net, forward, _, _ = build_from_config(config)
        c = count(net, torch.rand(1, 3, *t.paper_size), forward)
        lat = latency_ms(net, forward, t.demo_size)
    iters = max(1, int(t.iters * args.scale))
    runs = []
    for seed in range(args.seeds):
        interrupts.check()
        cfg = Config.fromfile(config)
        cfg.work_dir = osp.join(work, f'seed{seed}')
        os.makedirs(cfg.work_dir, exist_ok=True)
        if args.data_root:
            use_data_root(cfg, args.data_root)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        schedule(cfg, iters, seed)
        log = osp.join(cfg.work_dir, 'main_job.log')
        seeded = f' seed {seed}' if args.seeds > 1 else ''
        bar = make_bar(f'{step} {task} {model.name}{seeded}', iters, console)
        try:
            with capture_into_file(log):
                before, after, seconds = train_and_evaluate(cfg, bar)
        finally:
            bar.close()
        b, a = (float(m.get(t.key, 0.0)) * t.percent for m in (before, after))
        print(f'{step} {task} {model.name}{seeded}: {t.short} {b:.1f} -> '
              f'{a:.1f} % in {seconds:.0f} s (log: {log})', flush=True)
        runs.append((b, a, seconds))
    return dict(task=task, model=model.name, family=model.family, config=model.config,
                params_m=c.params_m, gflops=c.gflops, paper_size=list(t.paper_size),
                latency_ms=lat, demo_size=list(t.demo_size), metric=t.metric, unit='%',
                iters=iters, seeds=list(range(args.seeds)),
                untrained=spread([r[0] for r in runs]), trained=spread([r[1] for r in runs]),
                untrained_runs=[r[0] for r in runs], trained_runs=[r[1] for r in runs],
                train_s=statistics.fmean(r[2] for r in runs))


def parse_args(argv: Optional[List[str]]):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--work-dir', help='default work_dirs/main_job (--ablation: '
                   'work_dirs/main_job_ablation)')
    p.add_argument('--ablation', action='store_true',
                   help="the paper's head comparison: each task with each representation")
    p.add_argument('--scale', type=float, default=1.0, help='multiply every schedule')
    p.add_argument('--seeds', type=int_at_least(1), default=1,
                   help='run each model this many times (seeds 0..N-1): mean and spread')
    p.add_argument('--tasks', nargs='+', default=list(TASKS), choices=list(TASKS))
    p.add_argument('--data-root', help='a folder of real data in COCO (det, pose) or mmseg '
                   '(seg) layout instead of the embedded dataset; see the README')
    p.add_argument('--cfg-options', nargs='+', action=CfgOptions,
                   help='override entries of every model\'s config, e.g. '
                        'optim_wrapper.optimizer.lr=0.005 (the schedule is --scale\'s)')
    add_debug_flag(p)
    args = p.parse_args(argv)
    if args.scale <= 0:
        p.error(f'--scale {args.scale}: must be positive')
    args.work_dir = args.work_dir or (
        'work_dirs/main_job_ablation' if args.ablation else 'work_dirs/main_job')
    check_work_dir(p, args.work_dir)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    console = sys.stderr  # the progress bars' terminal, before any run redirects the streams
    os.makedirs(args.work_dir, exist_ok=True)
    start = time.time()
    if not args.data_root:
        for line in prepare_demo_data():
            print(line, flush=True)
    tasks = study(args.ablation)
    for task in list(args.tasks):
        lib = OPTIONAL.get(task)
        if task not in tasks:
            print(f'{task}: left out: it has one representation, nothing to compare', flush=True)
        elif lib and importlib.util.find_spec(lib) is None:
            print(f'{task}: left out: {lib} is not installed (bash tools/install.sh installs it)',
                  flush=True)
        else:
            continue
        args.tasks.remove(task)
    if not args.tasks:
        raise SystemExit('error: no task left to run (see the notes above)')
    rows, steps, saved = [], sum(len(tasks[t].models) for t in args.tasks), 0
    try:
        for task in args.tasks:
            t = tasks[task]
            for i, model in enumerate(t.models):
                interrupts.check()  # a Ctrl-C that a library lost (hrnet_mm.engine.interrupts)
                row = run_model(task, t, model, args, f'[{len(rows) + 1}/{steps}]', console)
                if i:  # sizes against the task's first model (the HRNet, or the paper's head)
                    row['vs_hrnet'] = matched(row, rows[-1])
                rows.append(row)
                if len(rows) < steps:
                    save_results(rows, args, time.time() - start,
                                 f'{len(rows)} of {steps} models')
                    saved = len(rows)
    except BaseException as exc:  # a Ctrl-C, or an error a library made of one
        if saved and (isinstance(exc, KeyboardInterrupt) or interrupts.interrupted()):
            print(f'written so far: {args.work_dir}/results.md, results.json, results.png '
                  f'({saved} of {steps} models)', flush=True)
        raise
    total = time.time() - start
    md = save_results(rows, args, total)
    print('\n' + md)
    print(f'written: {args.work_dir}/results.md, results.json, results.png '
          f'({total / 60:.1f} min)')
    failed = [r['model'] for r in rows if not r['trained']['mean'] > r['untrained']['mean']]
    if failed and args.ablation:
        # a representation that does not learn the task is the comparison's finding
        print(f'note: trained not better than untrained for {failed}')
    elif failed:
        print(f'FAILED: trained not better than untrained for {failed}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
