"""hrnet_mm.cuda_graphs on the CPU: what a call keys its graph by, the warm-up calls leaving the
BN statistics as they were, and the one-line refusals. Capturing and replaying run on a GPU:
tests/test_cuda.py (the graphed model follows the eager one step for step, in fp32 and bf16)."""
import copy
import pickle

import pytest
import torch
from helpers import ROOT, EagerStandIn, max_abs_diff, randomize, tool_module

from hrnet_mm import HRNetV2
import hrnet_mm.cuda_graphs as cuda_graphs
import hrnet_mm.engine.hooks as hooks
from hrnet_mm.cuda_graphs import CUDAGraphed, _buffers_kept, _signature, graph_features
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
    # the wrapped module moved on its own: dropped at the next call
    fake_graphs()
    graphed._drop_stale_graphs()
    assert graphed._graphs  # nothing moved
    graphed.module.double()
    graphed._drop_stale_graphs()
    assert graphed._graphs == {} and not graphed._warned


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


# ------------------------------------------------------------- a model's features, a config
SEG_DEMO = ROOT / 'configs/seg/demo_fcn_hrnetv2-w18-small-v1.py'


@pytest.fixture
def eager_graphs(monkeypatch):
    """CUDAGraphed replaced by eager runs that record each call's mode (as on the CPU)."""
    wrapped = []
    monkeypatch.setattr(cuda_graphs, 'CUDAGraphed',
                        lambda *a, **k: wrapped.append(EagerStandIn(*a, **k)) or wrapped[-1])
    return wrapped


def _segmentor():
    from mmengine.config import Config

    from hrnet_mm.registry import build_in_library
    return build_in_library(Config.fromfile(str(SEG_DEMO)).model, 'mmseg')


def test_graph_features_runs_extract_feat_through_the_graphs_state_dict_unchanged(eager_graphs):
    model = _segmentor().train()
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    eager = type(model).extract_feat(model, x)[0]
    graphed = graph_features(model, warmup=2, max_graphs=3)
    assert graph_features(model) is graphed and len(eager_graphs) == 1  # once per model
    assert list(model.state_dict()) == keys  # checkpoints as without it
    assert graphed.module.parts[0] is model.backbone and len(graphed.module.parts) == 1
    train_out = model.extract_feat(x)
    model.eval()
    eval_out = model.extract_feat(x)
    assert graphed.calls == ['train', 'infer'] and not graphed.module.training
    assert max_abs_diff(train_out, [eager]) == 0
    assert max_abs_diff(eval_out, [type(model).extract_feat(model, x)[0]]) == 0
    # in evaluation the features are copies: a second call (mmpose's flip test) cannot
    # overwrite the first one's in the graph's memory; in training they are the graph's
    static = (torch.randn(1, 4), )
    graphed.forward = lambda x: static  # as a graph returns: the same memory every call
    out = model.extract_feat(x)
    assert out[0] is not static[0] and torch.equal(out[0], static[0])
    assert model.train().extract_feat(x)[0] is static[0]
    del graphed.forward
    # a deep copy (EMA hooks) runs its own parts
    copied = copy.deepcopy(model)
    features = copied.extract_feat.graphed.module
    assert features._model is copied and features.parts[0] is copied.backbone
    with pytest.raises(ValueError, match=r'^graph_features: HRNetV2 has no backbone and '
                                         r'extract_feat \(mmdet detectors'):
        graph_features(HRNetV2(arch='w18_small_v1'))


def _demo_runner(work_dir, hook=dict(type='CUDAGraphsHook'), **cfg_options):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(SEG_DEMO))
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = 2
    cfg.log_level = 'INFO'
    cfg.custom_hooks = [hook]
    cfg.merge_from_dict(cfg_options)
    return Runner.from_cfg(cfg)


def test_cuda_graphs_hook_trains_and_tests_a_demo_config_through_the_graphs(
        demo_dir, tmp_path, monkeypatch, eager_graphs, capsys):
    """The seg demo config with ``custom_hooks = [dict(type='CUDAGraphsHook')]``, on the CPU
    as if on a GPU (graphs replaced by eager runs): training and testing go through the
    graphs, the checkpoint holds the model's own keys and loads into a model without it."""
    monkeypatch.chdir(demo_dir)
    monkeypatch.setattr(hooks, '_device', lambda model: torch.device('cuda'))
    runner = _demo_runner(tmp_path)
    runner.train()
    runner.test()
    assert len(eager_graphs) == 1
    assert eager_graphs[0].calls[:2] == ['train', 'train'] and eager_graphs[0].calls[-1] == 'infer'
    assert 'CUDAGraphsHook: EncoderDecoder.extract_feat runs as CUDA graphs, one per input ' \
        'shape (at most 4), the HRNet branches on parallel CUDA streams' in capsys.readouterr().out
    # the branches on streams: every HRNet module of the graphed model (on a GPU: streams)
    modules = [m for m in runner.model.modules() if isinstance(m, HRModule)]
    assert modules and all(m.parallel_branches for m in modules)
    state = torch.load(tmp_path / 'iter_2.pth', map_location='cpu', weights_only=False)
    assert list(state['state_dict']) == list(_segmentor().state_dict())


def test_cuda_graphs_hook_leaves_the_branches_as_built_where_asked_or_not_hrnet(
        monkeypatch, eager_graphs):
    """``parallel_branches=False`` keeps the model's own setting; a model without HRNet
    modules (any backbone) is graphed without streams and without an error."""
    from types import SimpleNamespace

    import torch.nn as nn
    monkeypatch.setattr(hooks, '_device', lambda model: torch.device('cuda'))
    said = []  # what the hook logs (mmengine's current logger may write where no test reads)
    monkeypatch.setattr(hooks, 'print_log', lambda msg, logger=None: said.append(msg))
    segmentor = _segmentor()
    hooks.CUDAGraphsHook(parallel_branches=False).before_run(
        SimpleNamespace(model=segmentor, cfg={}))
    assert not any(m.parallel_branches for m in segmentor.modules() if isinstance(m, HRModule))

    class Plain(nn.Module):  # a ResNet-like model: extract_feat, no HRNet modules
        def __init__(self):
            super().__init__()
            self.backbone = nn.Conv2d(3, 4, 3)

        def extract_feat(self, x):
            return self.backbone(x)

    plain = Plain()
    hooks.CUDAGraphsHook().before_run(SimpleNamespace(model=plain, cfg={}))
    assert len(eager_graphs) == 2 and 'extract_feat' in plain.__dict__
    assert said == [
        'CUDAGraphsHook: EncoderDecoder.extract_feat runs as CUDA graphs, one per input shape '
        '(at most 4)',
        'CUDAGraphsHook: Plain.extract_feat runs as CUDA graphs, one per input shape (at most 4)']


def test_cuda_graphs_hook_on_the_cpu_runs_the_model_eagerly(demo_dir, tmp_path, monkeypatch,
                                                             eager_graphs, capsys):
    monkeypatch.chdir(demo_dir)
    runner = _demo_runner(tmp_path)
    runner.train()
    assert eager_graphs == [] and 'extract_feat' not in runner.model.__dict__
    assert 'CUDAGraphsHook: the model is on cpu; CUDA graphs need a GPU, the model runs ' \
        'eagerly' in capsys.readouterr().out


def test_cuda_graphs_hook_refusals_in_one_line(demo_dir, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mmengine.model import MMDistributedDataParallel
    with pytest.raises(ValueError, match=r'^CUDAGraphsHook: warmup=0, max_graphs=4; both must '
                                         r'be ints >= 1$'):
        hooks.CUDAGraphsHook(warmup=0)
    with pytest.raises(ValueError, match=r"^CUDAGraphsHook: parallel_branches='yes'; True or "
                                         r"False$"):
        hooks.CUDAGraphsHook(parallel_branches='yes')
    hook = hooks.CUDAGraphsHook()
    wrapped = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    with pytest.raises(RuntimeError, match=r'^CUDAGraphsHook: one process, one GPU; the model '
                                           r'is wrapped in MMDistributedDataParallel '
                                           r'\(distributed\): remove the hook'):
        hook.before_run(SimpleNamespace(model=wrapped, cfg={}))
    with pytest.raises(RuntimeError, match=r"^CUDAGraphsHook with compile=True: choose one "):
        hook.before_run(SimpleNamespace(model=_segmentor(), cfg=dict(compile=True)))
