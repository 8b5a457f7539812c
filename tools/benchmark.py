"""Benchmark HRNetV2 side by side with the stock HRNets of mmseg / mmdet / mmpose (and timm).

    python tools/benchmark.py --arch w18 --batch 1 --size 512 1024 --modes infer
    python tools/benchmark.py --arch w18 --batch 2 --size 512 512 --modes train --with-cp
    python tools/benchmark.py --arch w48 --device cuda --precision bf16 --fast channels_last compile
    python tools/benchmark.py --model faster_rcnn --arch w18 --batch 2 --size 800 1216 --device cuda

In one process: builds each reference, loads its weights into an HRNetV2 that computes the same
representation, checks that the outputs agree, then times inference (images/s) and a full
training step (forward, backward, SGD step) with the models taking turns, and measures peak
memory. With --fast, the first reference also runs with the same generic tools (mmcv's
fuse_conv_bn, channels_last, torch.compile, AMP with --fast-precision): the strongest
thing a user could do instead.
Prints a Markdown table (ratios against the first reference) and writes JSON, also after each
first call and round of repeats, so that a run cut short keeps what it measured (``partial``
says how far it got). Rows that compile also report their first call (compiling and CUDA graph
capture included): the wait before the speed shows.
"""
import argparse
import json
import sys
import time
from typing import Callable

import torch

from hrnet_mm.bench import (PRECISIONS, REFERENCE_REPRESENTATIONS, RUNNERS, conv_width_probe,
                            format_table, format_winograd_probe, run, winograd_conflicts,
                            winograd_probe)
from hrnet_mm.engine.checkpoints import atomic_write
from hrnet_mm.engine.cli import add_debug_flag, check_out_file, int_at_least, run_tool
from hrnet_mm.models import ARCH_ZOO, REPRESENTATIONS

FAST = ('fold', 'channels_last', 'regions', *RUNNERS)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', default='backbone',
                   choices=['backbone', 'faster_rcnn', 'conv_widths', 'winograd_convs'],
                   help='backbone: HRNetV2 against the stock HRNets (--refs); faster_rcnn: the '
                        'whole detector\'s training step against mmdet\'s HRNetV2p and R-50-FPN '
                        'detectors (hrnet_mm/bench_det.py); conv_widths: one 3x3 conv + BN + '
                        'ReLU step per channel width (--batch, --size, --precision); '
                        'winograd_convs: each of HRNet\'s 3x3 stride-1 convolution shapes at '
                        '512x1024, direct against Winograd (fp32 CPU inference; --batch, '
                        '--repeats)')
    p.add_argument('--arch', default='w18', choices=list(ARCH_ZOO))
    p.add_argument('--representation', default='branches', choices=list(REPRESENTATIONS))
    p.add_argument('--batch', type=int_at_least(1), default=1)
    p.add_argument('--size', type=int_at_least(1), nargs=2, default=[512, 1024], metavar=('H', 'W'))
    p.add_argument('--precision', default='fp32', choices=list(PRECISIONS))
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--refs', nargs='+', default=['mmseg'], choices=list(REFERENCE_REPRESENTATIONS),
                   help='stock models to compare with; ratios are against the first')
    p.add_argument('--modes', nargs='+', default=['infer', 'train'], choices=['infer', 'train'])
    p.add_argument('--fast', nargs='*', default=['fold', 'channels_last'], choices=FAST,
                   help='fast paths of the extra hrnet_mm row and the stock row with the same '
                        'generic tools (fold: inference only; freeze: torch.compile with '
                        'inductor freezing, for CPU inference; cudagraphs: torch.compile with '
                        'CUDA graphs; graphs: CUDA graphs of the eager model, no compiling '
                        '(hrnet_mm.cuda_graphs); both GPU only; regions: hrnet_mm compiled '
                        'region by region, between its branches\' forks and joins, so that '
                        '--streams still applies (hrnet_mm.regions), the stock model compiled '
                        'whole; alone or with graphs); with --model faster_rcnn, '
                        'compile, cudagraphs or graphs adds the detectors with backbone and neck '
                        'compiled or graphed')
    p.add_argument('--fast-precision', choices=list(PRECISIONS),
                   help='precision of the fast rows (default: --precision)')
    p.add_argument('--no-stock-fast', action='store_true',
                   help='leave out the row of the stock model with the same generic fast paths '
                        '(mmcv fuse_conv_bn, channels_last, compile)')
    p.add_argument('--pad-channels', type=int, metavar='N',
                   help='add a row of the fast HRNetV2 with every channel width padded to a '
                        'multiple of N (hrnet_mm.padding; HRNet-specific, the stock model has no '
                        'counterpart); with --model faster_rcnn, a padded channels_last detector')
    p.add_argument('--winograd', action='store_true',
                   help='add a row of the fast HRNetV2 inferring with Winograd F(4x4, 3x3) '
                        'convolutions (hrnet_mm.winograd; fp32, CPU with AVX2; eager, a C++ '
                        'kernel built once per machine; set against the stock row with all of '
                        '--fast)')
    p.add_argument('--streams', action='store_true',
                   help='add a row of the fast HRNetV2 with each module\'s branches on parallel '
                        'CUDA streams (hrnet_mm.streams; HRNet-specific; GPU, eager or with '
                        '--fast graphs); with --model faster_rcnn, that channels_last detector')
    p.add_argument('--profile', action='store_true',
                   help='add kernel time, kernel launches and device idle share per row, and '
                        'kernel time by kind (conv / matmul, batch norm, elementwise, ...; the '
                        'JSON also holds the 10 longest kernels)')
    p.add_argument('--with-cp', action='store_true', help='add a with_cp training row')
    p.add_argument('--warmup', type=int_at_least(0), default=1)
    p.add_argument('--repeats', type=int_at_least(1), default=5)
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory pass')
    p.add_argument('--threads', type=int_at_least(1), help='torch CPU threads (default: torch\'s)')
    p.add_argument('--out', default='benchmark.json', help='JSON results file')
    add_debug_flag(p)
    args = p.parse_args(argv)
    if args.pad_channels is not None and args.pad_channels < 2:
        p.error(f'--pad-channels {args.pad_channels}: must be an int >= 2 (e.g. 8)')
    check_device(p, args.device)
    runners = [f for f in args.fast if f in RUNNERS]
    if len(runners) > 1:
        p.error(f'--fast {" ".join(runners)}: at most one of {", ".join(RUNNERS)}')
    if 'regions' in args.fast and set(runners) - {'graphs'}:
        p.error(f'--fast regions {runners[0]}: {runners[0]} compiles the whole model; regions '
                'goes alone or with graphs')
    if 'regions' in args.fast and args.model != 'backbone':
        p.error(f'--fast regions: for --model backbone; here --model {args.model}')
    if 'graphs' in args.fast and torch.device(args.device).type != 'cuda':
        p.error(f'--fast graphs: CUDA graphs need a GPU; here --device {args.device}')
    if args.streams and torch.device(args.device).type != 'cuda':
        p.error(f'--streams: CUDA streams need a GPU; here --device {args.device}')
    if args.streams and set(runners) - {'graphs'}:
        p.error(f'--streams with --fast {runners[0]}: torch.compile traces one stream (the '
                'parallel branches run eagerly, as CUDA graphs or compiled by regions: --fast '
                'graphs, regions)')
    wrong = winograd_conflicts(args.device, args.fast_precision or args.precision, args.modes,
                               args.model)
    if args.winograd and wrong:
        flags = dict(precision='--fast-precision' if args.fast_precision else '--precision')
        p.error('--winograd: fp32 inference of the backbone on the CPU only; here '
                + ', '.join(f'{flags.get(k, "--" + k)} {v}' for k, v in wrong.items()))
    if args.model == 'winograd_convs':
        wrong = winograd_conflicts(args.device, args.precision, ['infer'])
        if wrong:
            p.error('--model winograd_convs: fp32 on the CPU only; here '
                    + ', '.join(f'--{k} {v}' for k, v in wrong.items()))
    check_out_file(p, args.out)
    return args


def check_device(parser: argparse.ArgumentParser, device: str) -> None:
    """Refuse a device torch cannot run here, in one line, before any model is built."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        parser.error(f'--device {device}: not a torch device (cpu, cuda, cuda:1, ...)')
    if dev.type == 'cuda' and not torch.cuda.is_available():
        parser.error(f'--device {device}: torch sees no GPU here (torch {torch.__version__}; '
                     'use --device cpu)')
    if dev.type == 'cuda' and dev.index is not None and dev.index >= torch.cuda.device_count():
        parser.error(f'--device {device}: torch sees {torch.cuda.device_count()} GPU(s)')


def progress_printer(stream, start: float) -> Callable[[str], None]:
    """The benchmark's progress: each step as a line with the seconds since ``start`` (a log,
    or a run cut short by a time limit, shows where the time went); on a terminal, one line
    rewritten in place, ended by ``.done()``.

    Example:
        >>> progress = progress_printer(sys.stderr, time.perf_counter())
        >>> progress('warm-up 1/1: mmseg')   # [benchmark    0.0s] warm-up 1/1: mmseg
        >>> progress.done()
    """
    tty = stream.isatty()
    state = {'open': False}

    def progress(msg: str) -> None:
        line = f'[benchmark {time.perf_counter() - start:6.1f}s] {msg}'
        if tty:
            stream.write('\r\x1b[K' + line)  # back to the line's start, cleared
            state['open'] = True
        else:
            stream.write(line + '\n')
        stream.flush()

    def done() -> None:
        if state['open']:
            stream.write('\n')
            stream.flush()
            state['open'] = False

    progress.done = done
    return progress


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()

    progress = progress_printer(sys.stderr, start)

    saved = []

    def save(results: dict) -> None:
        # written whole, then renamed: a run killed at any moment (a time limit) leaves the
        # results of the rounds it finished, never a half-written file
        atomic_write(args.out, lambda f: f.write(json.dumps(results, indent=2).encode()))
        saved[:] = [results]

    try:
        results = measure(args, progress, save)
    except KeyboardInterrupt:  # Ctrl-C: show what was measured by then
        progress.done()
        if saved and 'rows' in saved[0]:
            print(format_table(saved[0]))
            print(f'\nwritten so far: {args.out}')
        raise
    progress.done()
    if args.model == 'winograd_convs':
        print(format_winograd_probe(results))
    elif args.model != 'conv_widths':
        print(format_table(results))
    save(results)
    print(f'\nwritten: {args.out}')
    return 0


def measure(args: argparse.Namespace, progress: Callable[[str], None],
            save: Callable[[dict], None]) -> dict:
    """The results of the benchmark that ``args`` asks for (``save``: each round's)."""
    if args.model == 'conv_widths':
        results = conv_width_probe(batch=args.batch, size=args.size, precision=args.precision,
                                   device=args.device, repeats=args.repeats, progress=progress)
        print(json.dumps(results['ms']))
        return results
    if args.model == 'winograd_convs':
        return winograd_probe(batch=args.batch, repeats=args.repeats, progress=progress)
    if args.model == 'faster_rcnn':
        from hrnet_mm.bench_det import run_faster_rcnn
        return run_faster_rcnn(arch=args.arch, batch=args.batch, size=args.size,
                               precision=args.precision, device=args.device,
                               warmup=args.warmup, repeats=args.repeats,
                               memory=not args.no_memory, profile=args.profile,
                               pad_channels=args.pad_channels,
                               compile=next((f for f in args.fast if f in RUNNERS), None),
                               streams=args.streams, progress=progress, save=save)
    return run(arch=args.arch, representation=args.representation, batch=args.batch,
               size=args.size, precision=args.precision, device=args.device,
               references=args.refs, modes=args.modes, fast=args.fast, with_cp=args.with_cp,
               warmup=args.warmup, repeats=args.repeats, memory=not args.no_memory,
               fast_precision=args.fast_precision, stock_fast=not args.no_stock_fast,
               pad_channels=args.pad_channels, winograd=args.winograd, streams=args.streams,
               profile=args.profile,
               progress=progress,
               save=save)


if __name__ == '__main__':
    sys.exit(run_tool(main))
