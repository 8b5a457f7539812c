"""bf16 AMP through the libraries' own parts (hrnet_mm.compat): mmcv's RoIAlign (two-stage
detectors) and mmpose's training accuracy, which had no bfloat16, and mmengine's compiled AMP
step. Found on an H200, where the det and pose demos failed under
``AmpOptimWrapper(dtype='bfloat16')``; the first two fail the same way on the CPU, under CPU
autocast, which these tests use."""
import subprocess
import sys

import pytest
import torch

import hrnet_mm  # noqa: F401  (applies the fixes)


def test_roi_align_pools_bfloat16_maps_as_float32_rounded():
    from mmcv.ops import RoIAlign
    pool = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0, aligned=True)
    x = torch.randn(2, 8, 32, 40, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 4., 6., 100., 90.], [1, 0., 0., 159., 127.]])
    x16 = x.bfloat16().requires_grad_()
    out = pool(x16, rois)  # before the fix: "ROIAlign_forward" not implemented for 'BFloat16'
    x32 = x16.detach().float().requires_grad_()
    expected = pool(x32, rois)
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected.bfloat16())
    out.float().sum().backward()
    expected.sum().backward()
    assert x16.grad.dtype == torch.bfloat16 and torch.equal(x16.grad, x32.grad.bfloat16())
    # other dtypes go straight to mmcv's kernel
    assert torch.equal(pool(x, rois), RoIAlign.forward.__wrapped__(pool, x, rois))


@pytest.mark.parametrize('first', ['hrnet_mm', 'mmcv.ops'])
def test_roi_align_is_mended_whichever_is_imported_first(first):
    """Without importing mmcv.ops itself (1.3 s of every ``import hrnet_mm``): mended where it
    is already imported, else right after whoever needs it imports it."""
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent(f"""
        import sys, torch
        import {first}
        import hrnet_mm
        print('mmcv.ops' in sys.modules)
        from mmcv.ops import RoIAlign
        x, rois = torch.randn(1, 4, 16, 16), torch.tensor([[0, 2., 2., 30., 30.]])
        out = RoIAlign((7, 7), 0.25)(x.bfloat16(), rois)
        print(out.dtype, torch.equal(out, RoIAlign((7, 7), 0.25)(x.bfloat16().float(), rois)
                                          .bfloat16()))
        """)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [str(first == 'mmcv.ops'), 'torch.bfloat16', 'True']


def test_mmdet_roi_extractor_under_bfloat16_autocast():
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    extractor = SingleRoIExtractor(dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                                   out_channels=8, featmap_strides=[4, 8])
    feats = [torch.randn(1, 8, 32, 32), torch.randn(1, 8, 16, 16)]
    rois = torch.tensor([[0, 0., 0., 60., 60.], [0, 10., 10., 127., 127.]])
    conv = torch.nn.Conv2d(8, 8, 1)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = extractor([conv(f) for f in feats], rois)  # bfloat16 maps, as AMP makes them
    assert out.shape == (2, 8, 7, 7) and out.dtype == torch.bfloat16 and out.isfinite().all()


def test_mmpose_heatmap_head_trains_under_bfloat16_autocast():
    """The head's loss computes its accuracy with ``to_numpy(predictions)``: under bf16 AMP
    it ended every step in ``TypeError: Got unsupported ScalarType BFloat16``."""
    from mmengine.registry import DefaultScope
    from mmengine.structures import InstanceData, PixelData
    from mmpose.models.heads import HeatmapHead
    from mmpose.structures import PoseDataSample
    from mmpose.utils import tensor_utils
    with DefaultScope.overwrite_default_scope('mmpose'):  # another test may have set mmseg's
        head = HeatmapHead(in_channels=16, out_channels=17, deconv_out_channels=None,
                           loss=dict(type='KeypointMSELoss', use_target_weight=True))
    samples = []
    for _ in range(2):
        sample = PoseDataSample()
        sample.gt_fields = PixelData(heatmaps=torch.rand(17, 32, 24))
        sample.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(1, 17))
        samples.append(sample)
    feats = [torch.randn(2, 16, 32, 24, generator=torch.Generator().manual_seed(1))]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = head.loss(feats, samples, train_cfg={})
    assert losses['loss_kpt'].isfinite() and 0 <= float(losses['acc_pose']) <= 1
    # the values are the float32 tensor's, other inputs as before
    t = torch.randn(3, 4).bfloat16()
    assert (tensor_utils.to_numpy(t) == t.float().numpy()).all()
    arrays, device = tensor_utils.to_numpy([t, t.float()], return_device=True)
    assert [a.dtype.name for a in arrays] == ['float32', 'float32'] and device == t.device


def test_the_amp_fix_waits_for_the_first_compile():
    """``import hrnet_mm`` leaves torch._dynamo unimported (0.8-1.2 s of its import time; a
    detector or segmentor imports it anyway, through torchvision.ops); the first
    ``torch.compile`` imports it, and mmengine's version check is kept out of graphs from then
    on."""
    code = ('import sys, torch, hrnet_mm\n'
            'from mmengine.runner import amp\n'
            "print('torch._dynamo' in sys.modules, hasattr(amp.digit_version, 'hrnet_mm_eager'))\n"
            'torch.compile(lambda x: x + 1)\n'
            "print('torch._dynamo' in sys.modules, amp.digit_version.hrnet_mm_eager)\n")
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ['False', 'False', 'True', 'True']


@pytest.mark.filterwarnings('ignore:.*GradScaler')  # mmengine's scaler, made without a GPU
def test_mmengine_train_step_compiles_with_amp(monkeypatch):
    """mmengine's ``compile`` compiles ``train_step`` with AmpOptimWrapper's autocast inside.
    torch 2.11's dynamo failed on that context's version check (InternalTorchDynamoError, on
    an H200 and on the CPU with torch 2.11; this torch may get through without the fix):
    the check is kept out of the graph, and the compiled step trains like the eager one."""
    import torch.nn as nn
    from mmengine.model import BaseModel
    from mmengine.optim import AmpOptimWrapper
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    from mmengine.runner import amp
    import torch._dynamo  # noqa: F401  (torch.compile imports it first, which applies the fix)
    assert amp.digit_version.hrnet_mm_eager
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)  # CPU AMP

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, inputs, data_samples=None, mode='loss'):
            out = self.conv(inputs)
            return dict(loss=out.float().square().mean(), dtype=torch.tensor(
                out.dtype == torch.bfloat16, dtype=torch.float32))

    data = dict(inputs=torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    losses, weights = [], []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = Toy()
        wrapper = AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                                  dtype='bfloat16')
        step = torch.compile(model.train_step) if compiled else model.train_step
        logs = [step(data, wrapper) for _ in range(2)]
        assert all(log['dtype'] == 1 for log in logs)  # the conv ran in bfloat16 (autocast)
        losses.append([log['loss'].item() for log in logs])
        weights.append(model.conv.weight.detach().clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-2)
    assert torch.allclose(weights[0], weights[1], rtol=1e-2, atol=1e-4)
