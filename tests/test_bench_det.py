"""The Faster R-CNN training-step benchmark: real configs, same weights, same features."""
import pytest
import torch
from helpers import EagerStandIn, tool_module

import hrnet_mm.cuda_graphs as cuda_graphs
from hrnet_mm.bench import format_table
from hrnet_mm.bench_det import OURS, RESNET, STOCK, build_detectors, run_faster_rcnn

gpu_report = tool_module('gpu_report')


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


def test_faster_rcnn_benchmark_runs_every_row(monkeypatch):
    """Every row, the graphed ones included (``--fast channels_last graphs`` on a GPU; here
    the graphs replaced by eager runs: the backbone and neck of each go through the wrapper,
    in training mode, and the rows are named as tools/gpu_report.py judges them)."""
    wrapped = []
    monkeypatch.setattr(cuda_graphs, 'CUDAGraphed',
                        lambda *a, **k: wrapped.append(EagerStandIn(*a, **k)) or wrapped[-1])
    saved = []
    results = run_faster_rcnn('w18', batch=1, size=(128, 160), warmup=0, repeats=1,
                              memory=False, pad_channels=8, compile='graphs', streams=True,
                              progress=lambda msg: None, save=saved.append)
    # what a run cut short keeps: the timed round, with everything but the last stage
    assert [s['partial'] for s in saved] == ['train: 1 of 1 repeats']
    assert saved[0]['rows'] == results['rows'] and 'partial' not in results
    rows = {r['name']: r for r in results['rows']}
    padded = f'{OURS} [channels_last, pad 8]'
    parallel = f'{OURS} [channels_last, streams]'
    both = f'{OURS} [channels_last, pad 8, streams]'
    graphed = [f'{STOCK} [channels_last, graphs]', f'{OURS} [channels_last, graphs]',
               f'{OURS} [channels_last, pad 8, graphs]', f'{OURS} [channels_last, streams, graphs]',
               f'{OURS} [channels_last, pad 8, streams, graphs]']
    assert list(rows) == [STOCK, OURS, RESNET, f'{STOCK} [channels_last]',
                          f'{OURS} [channels_last]', padded, parallel, both, *graphed]
    assert all(r['train_img_s'] > 0 for r in rows.values())
    assert [w.calls for w in wrapped] == [['train']] * 5  # the one timed step of each row
    assert [type(w.module.parts[0]).__name__ for w in wrapped] == ['HRNet'] + ['HRNetV2'] * 4
    assert [w.module.parts[0].stage4[0].parallel_branches for w in wrapped[1:]] == \
        [False, False, True, True]
    # padded and on streams: 18 -> 24 channels in the graphed backbone's first branch
    assert wrapped[4].module.parts[0].stage4[0].branches[0][0].conv1.out_channels == 24
    assert rows[parallel]['max_abs_diff'] <= 1e-4 and rows[both]['max_abs_diff'] <= 1e-4
    assert type(wrapped[0].module.parts[1]).__name__ == 'HRFPN'
    assert len(wrapped[1].module.parts) == 1
    assert rows[OURS]['max_abs_diff'] <= 1e-4
    # the padded backbone (18 -> 24, 36 -> 40 channels) gives the same features
    assert rows[padded]['max_abs_diff'] <= 1e-4 and results['pad_channels'] == 8
    assert results['stock_pairs'] == {f'{OURS} [channels_last]': f'{STOCK} [channels_last]',
                                      padded: f'{STOCK} [channels_last]',
                                      parallel: f'{STOCK} [channels_last]',
                                      both: f'{STOCK} [channels_last]',
                                      **{name: graphed[0] for name in graphed[1:]}}
    target = next(t for t in gpu_report.TARGETS if t['case'] == 'det_w18_graphs')
    assert set(graphed[1:]) <= set(target['ours']) and target['strongest'] == graphed[0]
    effect = rows[padded]['train_img_s'] / rows[f'{OURS} [channels_last]']['train_img_s']
    assert (f'\nChannel padding: {padded} against {OURS} [channels_last] (the same without '
            f'padding): train {effect:.2f}x') in format_table(results)
    effect = rows[graphed[3]]['train_img_s'] / rows[graphed[1]]['train_img_s']
    assert (f'\nParallel branches: {graphed[3]} against {graphed[1]} (the same without '
            f'streams): train {effect:.2f}x') in format_table(results)
    effect = rows[graphed[4]]['train_img_s'] / rows[graphed[2]]['train_img_s']
    assert (f'\nParallel branches: {graphed[4]} against {graphed[2]} (the same without '
            f'streams): train {effect:.2f}x') in format_table(results)
    assert f'ratios vs {STOCK}' in format_table(results)


@pytest.mark.slow
def test_faster_rcnn_benchmark_compiled_rows_pair_with_the_stock_ones():
    """Backbone and neck compiled (``--fast channels_last compile``; cudagraphs on a GPU):
    about 6 minutes on 2 cores, most of it compiling three detectors."""
    results = run_faster_rcnn('w18', batch=1, size=(128, 160), warmup=0, repeats=1,
                              memory=False, pad_channels=8, compile='compile',
                              progress=lambda msg: None)
    rows = {r['name']: r for r in results['rows']}
    compiled = [f'{STOCK} [channels_last, compile]', f'{OURS} [channels_last, compile]',
                f'{OURS} [channels_last, pad 8, compile]']
    assert list(rows)[-3:] == compiled and all(rows[n]['train_img_s'] > 0 for n in compiled)
    assert results['stock_pairs'] == {
        f'{OURS} [channels_last]': f'{STOCK} [channels_last]',
        f'{OURS} [channels_last, pad 8]': f'{STOCK} [channels_last]',
        compiled[1]: compiled[0], compiled[2]: compiled[0]}
    table = format_table(results)
    assert f'\n{compiled[2]} against {compiled[0]} (the stock model' in table
    assert 'First call, compiling or graph capture included: ' in table


def test_faster_rcnn_benchmark_refuses_an_unknown_compile_mode():
    with pytest.raises(ValueError, match=r"^compile='max-autotune': None, 'compile', "
                                         r"'cudagraphs' or 'graphs'$"):
        run_faster_rcnn('w18', compile='max-autotune')
