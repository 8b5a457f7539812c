"""Convert a published HRNet checkpoint (any known layout) to hrnet_mm's layout.

    python tools/convert_weights.py hrnetv2_w32_imagenet.pth w32_hrnet_mm.pth
    python tools/convert_weights.py pose_hrnet_w32_256x192.pth out.pth --arch w32 --representation v1

The layout is detected (or forced with --layout); the tool prints what it mapped and every
source key it could not map, and with --arch it checks that the backbone loads strictly into
HRNetV2(arch, representation).
"""
import argparse
import logging
import os.path as osp
import sys

import torch
from mmengine.logging import MMLogger

from hrnet_mm import HRNetV2
from hrnet_mm.engine.checkpoints import atomic_write
from hrnet_mm.engine.cli import add_debug_flag, check_out_file, run_tool
from hrnet_mm.models import ARCH_ZOO, REPRESENTATIONS
from hrnet_mm.weights import LAYOUTS, CheckpointError, convert_state_dict, load_checkpoint_file
from hrnet_mm.weights.layouts import head_kwargs
from hrnet_mm.weights.loading import load_converted


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='layouts: ' + '; '.join(f'{k}: {v}' for k, v in LAYOUTS.items()))
    parser.add_argument('src', help='checkpoint to convert (path or http(s) URL)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--layout', choices=list(LAYOUTS), help='source layout (default: detect)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='keep only backbone.* (drop detector / segmentor / pose heads)')
    parser.add_argument('--arch', choices=list(ARCH_ZOO),
                        help='check: the backbone loads strictly into HRNetV2(arch)')
    parser.add_argument('--representation', default='branches', choices=list(REPRESENTATIONS),
                        help='check: with this representation (default: branches)')
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    check_out_file(parser, args.dst, 'dst')  # before a download or a conversion, not after
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        conv = convert_state_dict(load_checkpoint_file(args.src), args.layout)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    state = conv.state_dict
    if args.backbone_only:
        state = {k: v for k, v in state.items() if k.startswith('backbone.')}
    print(f'{args.src}: layout {conv.layout} ({LAYOUTS[conv.layout]})')
    print(f'  {len(state)} keys, {sum(k.startswith("backbone.") for k in state)} of '
          'them under backbone.')
    for note in conv.notes:
        print(f'  mapped: {note}')
    if conv.unmapped:
        print(f'  could not map {len(conv.unmapped)} keys (left out): {", ".join(conv.unmapped)}')
    if args.arch:
        kwargs = dict(arch=args.arch, representation=dict(
            type=args.representation, **head_kwargs(state, args.representation)))
        # the load's own INFO line says what 'checked:' below says, in mmengine's log format
        MMLogger.get_current_instance().setLevel(logging.WARNING)
        try:
            load_converted(HRNetV2(**kwargs), conv, args.src, strict=True)
        except CheckpointError as e:
            print(f'error: not a strict fit for HRNetV2({kwargs}): {e}', file=sys.stderr)
            return 1
        print(f'  checked: loads strictly into HRNetV2({kwargs})')
    meta = dict(hrnet_mm=dict(converted_from=conv.layout, source=osp.basename(args.src),
                              unmapped=list(conv.unmapped)))
    # written whole, then renamed: a kill mid-write leaves no half file at dst (dst may be src)
    atomic_write(args.dst, lambda f: torch.save(dict(state_dict=state, meta=meta), f))
    print(f'  written: {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
