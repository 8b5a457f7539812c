"""The Faster R-CNN training-step benchmark: real configs, same weights, same features."""
import torch

from hrnet_mm.bench import format_table
from hrnet_mm.bench_det import OURS, RESNET, STOCK, build_detectors, run_faster_rcnn


def test_detectors_share_weights_and_compute_the_same_features():
    models = build_detectors('w18')
    stock, ours = models[STOCK].eval(), models[OURS].eval()
    assert type(ours.backbone).__name__ == 'HRNetV2' and not ours.with_neck
    assert type(stock.neck).__name__ == 'HRFPN'
    # the heads are the same modules with the same weights
    for head in ('rpn_head', 'roi_head'):
        a, b = getattr(stock, head).state_dict(), getattr(ours, head).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        fa, fb = stock.extract_feat(x), ours.extract_feat(x)
    assert len(fa) == len(fb) == 5
    assert max((p - q).abs().max().item() for p, q in zip(fa, fb)) <= 1e-5
    assert fa[0].abs().mean() > 1e-3
    assert type(models[RESNET].backbone).__name__ == 'ResNet'


def test_faster_rcnn_benchmark_runs_every_row():
    results = run_faster_rcnn('w18', batch=1, size=(128, 160), warmup=0, repeats=1,
                              memory=False, progress=lambda msg: None)
    rows = {r['name']: r for r in results['rows']}
    assert list(rows) == [STOCK, OURS, RESNET, f'{STOCK} [channels_last]',
                          f'{OURS} [channels_last]']
    assert all(r['train_img_s'] > 0 for r in rows.values())
    assert rows[OURS]['max_abs_diff'] <= 1e-4
    assert f'ratios vs {STOCK}' in format_table(results)
