"""hrnet_mm.cuda_graphs on the CPU: what a call keys its graph by, the warm-up calls leaving the
BN statistics as they were, and the one-line refusals. Capturing and replaying run on a GPU:
tests/test_cuda.py (the graphed model follows the eager one step for step, in fp32 and bf16)."""
import copy
import pickle

import pytest
import torch
from helpers import EagerStandIn, randomize, tool_module

from hrnet_mm import HRNetV2
from hrnet_mm.cuda_graphs import CUDAGraphed, _buffers_kept, _signature
from hrnet_mm.models.fusion import HRModule


def _model():
    return randomize(HRNetV2(arch='w18_small_v1', representation='v2'))


def test_signature_tells_apart_what_one_graph_cannot_serve():
    model = _model().train()
    x = torch.randn(2, 3, 64, 64)
    base = _signature(model, x)
    assert _signature(model, x.clone()) == base  # another tensor, the same graph
    others = [_signature(model, torch.randn(1, 3, 64, 64)),
              _signature(model, x.contiguous(memory_format=torch.channels_last)),
              _signature(model, x.double())]
    with torch.no_grad():
        others.append(_signature(model, x))  # no backward graph to capture
    with torch.inference_mode():
        others.append(_signature(model, x))
    others.append(_signature(model.eval(), x))
    assert len({base, *others}) == len(others) + 1
    # the wrapper takes the mode of what it wraps, without changing any part of it
    assert not CUDAGraphed(model.eval()).training
    model.train()
    model.conv1.eval()
    assert CUDAGraphed(model).training and not model.conv1.training


def test_the_warm_up_calls_of_a_capture_leave_the_bn_statistics_as_they_were():
    model = _model().train()
    before = {k: b.clone() for k, b in model.named_buffers()}
    with _buffers_kept(model):
        for _ in range(3):
            model(torch.randn(2, 3, 64, 64) * 5 + 1)
        changed = [k for k, b in model.named_buffers() if not torch.equal(b, before[k])]
    assert any(k.endswith('running_mean') for k in changed)
    assert any(k.endswith('num_batches_tracked') for k in changed)
    assert all(torch.equal(b, before[k]) for k, b in model.named_buffers())


def test_moving_or_copying_drops_the_graphs_and_keeps_the_model():
    """A graph reads the memory it was captured with: after .to() / .half() the parameters have
    new memory (stale graphs would give silently wrong outputs), and a copy (EMA hooks
    deep-copy the model; pickle) has memory of its own (a CUDA graph cannot be copied)."""
    def fake_graphs():  # captured graphs hold closures over CUDA graphs: neither copies
        graphed._graphs = {'signature': lambda x: x}
        graphed._warned = True

    graphed = CUDAGraphed(_model())
    fake_graphs()
    copied = copy.deepcopy(graphed)
    assert copied._graphs == {} and not copied._warned and graphed._graphs
    assert torch.equal(copied.module.conv1.weight, graphed.module.conv1.weight)
    restored = pickle.loads(pickle.dumps(graphed))
    assert restored._graphs == {} and list(restored.state_dict()) == list(graphed.state_dict())
    for move in (lambda m: m.double(), lambda m: m.float(), lambda m: m.to('cpu')):
        fake_graphs()
        assert move(graphed) is graphed and graphed._graphs == {} and not graphed._warned
    assert graphed.module.conv1.weight.dtype == torch.float32


def test_refusals_in_one_line():
    graphed = CUDAGraphed(_model())
    with pytest.raises(ValueError, match=r'^CUDAGraphed: CUDA graphs replay GPU work; the input '
                                         r'is on cpu \(move the model and its input to a GPU\)$'):
        graphed(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r'^CUDAGraphed: the input is a list'):
        graphed([torch.randn(1, 3, 64, 64)])
    with pytest.raises(ValueError, match=r'^CUDAGraphed: warmup=0, max_graphs=4; both must be '
                                         r'>= 1$'):
        CUDAGraphed(_model(), warmup=0)


@pytest.mark.parametrize('case, eager_case, kwargs', [
    ('seg_w48_graphs', 'seg_w48_bf16',
     dict(precision='bf16', modes=['train'], fast=['channels_last', 'graphs'])),
    ('infer_w48_graphs', 'infer_w48',
     dict(precision='fp32', fast_precision='bf16', modes=['infer'],
          fast=['fold', 'channels_last', 'graphs'])),
])
def test_benchmark_graphs_rows_are_the_ones_the_gpu_report_judges(monkeypatch, case,
                                                                   eager_case, kwargs):
    """The GPU check's graphs cases, tiny and on the CPU (graphs replaced by eager runs), with
    the row of the parallel branches (``--streams``) graphed too."""
    import hrnet_mm.bench as bench
    wrapped = []
    monkeypatch.setattr(bench, 'CUDAGraphed',
                        lambda m: wrapped.append(EagerStandIn(m)) or wrapped[-1])
    results = bench.run(arch='w18_small_v1', representation='v2', batch=1, size=(64, 64),
                        references=['mmseg'], warmup=0, repeats=1, memory=False, streams=True,
                        progress=lambda msg: None, **kwargs)
    mode = kwargs['modes'][0]
    assert len(wrapped) == 3 and all(w.calls and set(w.calls) == {mode} for w in wrapped)
    parallel = [any(m.parallel_branches for m in w.modules() if isinstance(m, HRModule))
                for w in wrapped]
    assert parallel == [False, False, True]  # stock, hrnet_mm, hrnet_mm with streams
    report = tool_module('gpu_report')
    target = next(t for t in report.TARGETS if t['case'] == case)
    assert target == report.run_as(eager_case, 'graphs')
    rows = {r['name']: r for r in results['rows']}
    ours = [n for n in target['ours'] if ', graphs]' in n and n in rows]
    assert len(ours) == 2 and all(rows[n][target['key']] > 0 for n in ours)
    assert ', streams, graphs]' in ours[1]
    assert rows[target['strongest']][target['key']] > 0
    assert results['stock_pairs'] == dict.fromkeys(ours, target['strongest'])
    got = report.check_target(target, results)
    assert got['ratio'] > 0 and got['vs_strongest_stock'] > 0
