"""The complexity tool's counts: the paper's models, and agreement with mmengine.analysis."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import fcn_head
from mmengine.analysis import FlopAnalyzer

from hrnet_mm import HRNetV2
from hrnet_mm.complexity import count

ROOT = Path(__file__).resolve().parents[1]


class _Pose(nn.Module):
    """Top-down pose net: V1 + a 1x1 conv to 17 heatmaps."""

    def __init__(self, arch):
        super().__init__()
        self.backbone = HRNetV2(arch=arch, representation='v1')
        self.head = nn.Conv2d(self.backbone.out_channels[0], 17, 1)

    def forward(self, x):
        return self.head(self.backbone(x)[0])


class _Seg(nn.Module):
    """HRNetV2 + the paper's segmentation head (mmseg FCNHead, one 1x1 conv)."""

    def __init__(self, arch):
        super().__init__()
        self.backbone = HRNetV2(arch=arch, representation='v2', upsample_mode='bilinear')
        self.head = fcn_head(self.backbone.out_channels[0], self.backbone.out_channels[0])

    def forward(self, x):
        return self.head(self.backbone(x))


def _mmengine(model, x):
    analyzer = FlopAnalyzer(model.eval(), (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.by_operator(), analyzer.total()


@pytest.mark.parametrize('model, shape, expected', [
    (_Pose('w32'), (256, 192), 7.64),
    (_Pose('w48'), (256, 192), 15.7),
    (_Seg('w48'), (256, 512), 747.5 / 16),  # 1024x2048 / 16: every layer scales with area
])
def test_counts_agree_with_mmengine_analysis(model, shape, expected):
    x = torch.rand(1, 3, *shape)
    ours = count(model, x)
    by_op, total = _mmengine(model, x)
    assert ours.gflops == pytest.approx(expected, abs=0.01 * expected)
    # the same convolutions counted the same way ...
    assert ours.gflops * 1e9 == pytest.approx(by_op['conv'] + by_op.get('linear', 0), rel=1e-6)
    # ... and within 1% of mmengine's total, which also counts norms and resizes
    assert ours.gflops * 1e9 == pytest.approx(total, rel=0.01)


def test_linear_layers_are_counted():
    model = HRNetV2(arch='w18_small_v1', representation='cls')
    result = count(model, torch.rand(1, 3, 64, 64))
    assert result.by_layer_type['linear'] == pytest.approx(2048 * 1000 / 1e9)
    assert result.params_m == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6)


def test_tool_prints_count_and_paper_figure():
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'complexity.py'),
         str(ROOT / 'configs/pose/td-hm_hrnetv1-w48_8xb32-210e_coco-256x192.py'),
         '--shape', '256', '192'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '  params: 63.60 M' in proc.stdout
    assert '  GFLOPs: 15.69 (conv 15.69, linear 0.00; multiply-adds)' in proc.stdout
    assert '  GFLOPs, counted as the HRNet papers count: 14.61 (multiply-adds / 1024^3' \
        in proc.stdout
    assert "paper:  63.6 M params, 14.6 GFLOPs (counted the papers' way / paper = 1.001" \
        in proc.stdout


@pytest.mark.parametrize('arch, params, gflops', [('w18', 21.3, 3.99), ('w32', 41.2, 8.31)])
def test_papers_count_reproduces_the_classification_table(arch, params, gflops):
    """The official HRNet-W*-C figures: the papers divide by 1024**3 (1e9 gives 7.4% more)."""
    from hrnet_mm.complexity import PAPER
    assert PAPER[('cls', arch, 224, 224)] == (params, gflops)
    model = HRNetV2(arch=arch, representation=dict(type='cls', num_classes=1000))
    result = count(model, torch.rand(1, 3, 224, 224))
    assert result.params_m == pytest.approx(params, abs=0.05)
    assert result.paper_gflops == pytest.approx(gflops, abs=0.005)
    assert result.gflops == pytest.approx(result.paper_gflops * 1024**3 / 1e9)


def test_papers_count_takes_transposed_convs_per_output_pixel():
    """The summary code of the papers counts weights x output pixels for every conv: the true
    multiply-adds for a conv, 4x them for a stride-2 deconvolution."""
    deconv = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False)
    result = count(deconv, torch.rand(1, 8, 5, 6))
    assert result.gflops * 1e9 == pytest.approx(5 * 6 * 8 * 4 * 16)
    assert result.paper_gflops * 1024**3 == pytest.approx(10 * 12 * 8 * 4 * 16)
    conv = nn.Conv2d(8, 4, 3, padding=1, groups=2)
    result = count(conv, torch.rand(1, 8, 5, 6))
    assert result.paper_gflops * 1024**3 == pytest.approx(result.gflops * 1e9) == 5 * 6 * 4 * 4 * 9


def test_transposed_convolutions_are_counted_like_mmengine():
    """SimpleBaseline's three deconvolutions are 1.41 of its 5.43 GFLOPs at 256x192: leaving
    them out (as hrnet_mm once did) made the ResNet pose baselines look 26% cheaper."""
    from hrnet_mm.complexity import build_from_config
    model, forward, task, arch = build_from_config(
        str(ROOT / 'configs/pose/td-hm_res50_8xb64-210e_coco-256x192.py'))
    assert (task, arch) == ('pose', 'resnet50')
    x = torch.rand(1, 3, 256, 192)
    ours = count(model, x, forward)
    assert ours.gflops == pytest.approx(5.43, abs=0.01)
    # counted the papers' way (deconvolutions per output pixel, / 1024**3): the published 8.9
    from hrnet_mm.complexity import PAPER
    assert ours.paper_gflops == pytest.approx(8.99, abs=0.01)
    assert ours.paper_gflops == pytest.approx(PAPER[('pose', 'resnet50', 256, 192)][1], rel=0.015)
    deconv = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False)
    assert count(deconv, torch.rand(1, 8, 5, 6)).gflops * 1e9 == pytest.approx(5 * 6 * 8 * 4 * 16)

    class Whole(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = model.backbone, model.head

        def forward(self, images):
            return self.head(self.backbone(images))

    by_op, _ = _mmengine(Whole(), x)
    assert ours.gflops * 1e9 == pytest.approx(by_op['conv'], rel=1e-6)


def test_tool_counts_a_padded_model_with_and_without_its_extra_channels():
    """``pad_channels`` adds multiply-adds on zeros: the tool counts what is computed, then
    the network without them, which is what the papers' figures are compared with."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'tools' / 'complexity.py'), '--arch', 'w18',
         '--pad-channels', '8', '--shape', '64', '128'], capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr
    padded = count(HRNetV2(arch='w18', pad_channels=8), torch.rand(1, 3, 64, 128))
    plain = count(HRNetV2(arch='w18'), torch.rand(1, 3, 64, 128))
    assert padded.gflops > 1.2 * plain.gflops
    lines = proc.stdout.splitlines()
    assert lines[0] == "HRNetV2(arch='w18', representation='branches', pad_channels=8) at 64x128"
    assert lines[1] == f'  params: {padded.params_m:.2f} M'
    assert lines[3] == (f'  channels padded to multiples of 8: the counts above include the extra '
                        f'(zero) channels; without them {plain.params_m:.2f} M params, '
                        f'{plain.gflops:.2f} GFLOPs')
    assert lines[4].startswith(f'  GFLOPs, counted as the HRNet papers count: '
                               f'{plain.paper_gflops:.2f}')
