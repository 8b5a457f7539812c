"""Parameters and GFLOPs (conv + linear multiply-adds) of a config, or of a bare HRNetV2.

    python tools/complexity.py configs/pose/td-hm_hrnetv1-w32_8xb64-210e_coco-256x192.py --shape 256 192
    python tools/complexity.py configs/seg/fcn_hrnetv2-w48_4xb2-80k_cityscapes-512x1024.py --shape 1024 2048
    python tools/complexity.py --arch w32 --representation v2p --shape 800 1333
    python tools/complexity.py --arch w18 --pad-channels 8 --shape 512 1024

Counts one forward pass of one image (the whole model of a config: backbone, neck, heads in
the library's 'tensor' mode), and again as the HRNet papers count (multiply-adds / 1024^3); the
paper's figure is shown beside it where one exists (see docs/complexity.md). A model with its
channels padded (``pad_channels``) is counted as it computes, and once more without the extra
channels; the papers' way and the paper's figure then go by the latter.
"""
import argparse
import sys

import torch

from hrnet_mm import HRNetV2
from hrnet_mm.complexity import PAPER, build_from_config, count
from hrnet_mm.engine.cli import add_debug_flag, int_at_least, run_tool
from hrnet_mm.padding import unpad_channels


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', nargs='?', help='a config under configs/ (det, seg or pose)')
    p.add_argument('--arch', help='without a config: HRNetV2(arch=...)')
    p.add_argument('--representation', default='branches')
    p.add_argument('--pad-channels', type=int, metavar='N',
                   help='without a config: HRNetV2(pad_channels=N) (a config sets its own)')
    p.add_argument('--shape', type=int_at_least(1), nargs=2, required=True, metavar=('H', 'W'))
    add_debug_flag(p)
    return p.parse_args(argv)


def model_and_forward(args):
    """The model, how to run it on one image, and (task, arch) for the paper lookup."""
    if args.config:
        model, forward, task, arch = build_from_config(args.config)
        return model, forward, (task, arch)
    if not args.arch:
        raise SystemExit('error: give a config or --arch')
    return HRNetV2(arch=args.arch, representation=args.representation,
                   pad_channels=args.pad_channels), None, ('backbone', args.arch)


def main(argv=None) -> int:
    args = parse_args(argv)
    model, forward, (task, arch) = model_and_forward(args)
    h, w = args.shape
    x = torch.rand(1, 3, h, w)
    result = count(model, x, forward)
    name = args.config or (f'HRNetV2(arch={args.arch!r}, representation={args.representation!r}'
                           + (f', pad_channels={args.pad_channels}' if args.pad_channels else '')
                           + ')')
    print(f'{name} at {h}x{w}')
    print(f'  params: {result.params_m:.2f} M')
    print(f'  GFLOPs: {result.gflops:.2f} (conv {result.by_layer_type["conv"]:.2f}, '
          f'linear {result.by_layer_type["linear"]:.2f}; multiply-adds)')
    multiples = {m.channel_multiple for m in model.modules()
                 if isinstance(m, HRNetV2) and m.channel_multiple}
    if multiples:
        # what is computed, extra channels included, above; the network itself below
        result = count(unpad_channels(model), x, forward)
        print(f'  channels padded to multiples of {", ".join(map(str, sorted(multiples)))}: '
              f'the counts above include the extra (zero) channels; without them '
              f'{result.params_m:.2f} M params, {result.gflops:.2f} GFLOPs')
    print(f"  GFLOPs, counted as the HRNet papers count: {result.paper_gflops:.2f} (multiply-adds "
          "/ 1024^3; transposed convs per output pixel)")
    paper = PAPER.get((task, arch, h, w))
    if paper:
        print(f'  paper:  {paper[0]:.1f} M params, {paper[1]:g} GFLOPs (counted the papers\' way '
              f'/ paper = {result.paper_gflops / paper[1]:.3f}; see docs/complexity.md)')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
