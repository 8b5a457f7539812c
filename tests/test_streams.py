"""Branch-parallel CUDA streams (hrnet_mm.streams), on the CPU.

CUDA streams need a GPU (tests/test_cuda.py has the tests that run them: the same outputs and
gradients, and CUDA graphs of the parallel model training step for step like the eager one).
Here: the order of the stream operations, with logging stand-ins for the streams (each side
stream waits for the current one before its work, runs its own branch and exchange output,
and the current stream waits for every side stream before the module returns; maps used
across streams are recorded), and that the module computes exactly what it computes in turn.
"""
import contextlib

import pytest
import torch
from helpers import max_abs_diff, randomize

import hrnet_mm.models.fusion as fusion
import hrnet_mm.streams as streams
from hrnet_mm import HRNetV2
from hrnet_mm.models.fusion import HRModule
from hrnet_mm.registry import MODELS


class LoggedStream:
    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def wait_stream(self, other: 'LoggedStream') -> None:
        self.log.append(('wait', self.name, other.name))


@pytest.fixture
def stream_log(monkeypatch):
    """Streams replaced by logging stand-ins (the work itself runs on the CPU, in turn):
    ``log`` gets ('wait', stream, on), ('record', tensor id, stream) and the work done, with
    the stream it was launched on (``on[0]``)."""
    log, on = [], ['current']
    current = LoggedStream('current', log)
    side = [LoggedStream(f'side{k}', log) for k in range(1, 4)]

    @contextlib.contextmanager
    def launch_on(stream):
        before, on[0] = on[0], stream.name
        try:
            yield
        finally:
            on[0] = before

    monkeypatch.setattr(fusion, 'uses_streams', lambda x: True)
    monkeypatch.setattr(streams, '_current_stream', lambda device: current)
    monkeypatch.setattr(streams, '_side_streams', lambda device, n: side[:n])
    monkeypatch.setattr(streams, '_on', launch_on)
    monkeypatch.setattr(streams, '_record',
                        lambda t, stream: log.append(('record', id(t), stream.name)))
    return log, on


def _logged_module(log, on):
    m = randomize(HRModule('BASIC', [1, 1, 1], [8, 16, 32], [8, 16, 32]))
    for k, branch in enumerate(m.branches):
        branch.register_forward_pre_hook(lambda mod, args, k=k: log.append(('branch', k, on[0])))
    for i, paths in enumerate(m.fuse_layers):
        for j, path in enumerate(paths):
            path.register_forward_pre_hook(
                lambda mod, args, i=i, j=j: log.append(('fuse', i, j, on[0])))
    return m


def _inputs():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, c, h, w, generator=g, requires_grad=True)
            for c, h, w in ((8, 20, 26), (16, 10, 13), (32, 5, 7))]


def test_each_branch_and_output_on_its_stream_between_a_fork_and_a_join(stream_log):
    log, on = stream_log
    m = _logged_module(log, on).train()
    m.parallel_branches = True
    x = _inputs()
    outs = m(x)
    side = ['side1', 'side2']
    fork = [('wait', s, 'current') for s in side]
    join = [('wait', 'current', s) for s in side]
    branches = [e for e in log if e[0] == 'branch']
    fuses = [e for e in log if e[0] == 'fuse']
    # branch k (and output i) runs on stream k (i); branch 0 on the current stream
    assert sorted(branches) == [('branch', 0, 'current'), ('branch', 1, 'side1'),
                                ('branch', 2, 'side2')]
    assert sorted(fuses) == [('fuse', i, j, ['current', *side][i])
                             for i in range(3) for j in range(3)]
    # two regions, each: the side streams wait for the current one before any work, the
    # current one for each side stream after all of it
    waits = [i for i, e in enumerate(log) if e[0] == 'wait']
    assert [log[i] for i in waits] == fork + join + fork + join
    work = [i for i, e in enumerate(log) if e[0] in ('branch', 'fuse')]
    first_fuse = log.index(fuses[0])
    branch_work = [i for i in work if i < first_fuse]
    fuse_work = [i for i in work if i >= first_fuse]
    assert waits[1] < min(branch_work) and max(branch_work) < waits[2]
    assert waits[5] < min(fuse_work) and max(fuse_work) < waits[6]
    # inputs read on a side stream are recorded there; results on the current stream
    records = {(e[1], e[2]) for e in log if e[0] == 'record'}
    assert {(id(x[1]), 'side1'), (id(x[2]), 'side2')} <= records
    assert {(id(outs[1]), 'current'), (id(outs[2]), 'current')} <= records
    assert (id(x[0]), 'side1') not in records  # nothing more: each map where it is read
    # the same outputs and gradients as the module run in turn, to the bit
    m.parallel_branches = False
    reference = m(x)
    assert max_abs_diff(outs, reference) == 0
    grads = torch.autograd.grad(sum(o.square().sum() for o in outs), x)
    assert max_abs_diff(grads, torch.autograd.grad(sum(o.square().sum() for o in reference),
                                                   x)) == 0


def test_off_without_parallel_branches_and_with_checkpointing_in_training(stream_log):
    log, on = stream_log
    m = _logged_module(log, on)
    m(_inputs())
    assert [e for e in log if e[0] in ('wait', 'record')] == []
    log.clear()
    m.parallel_branches = m.with_cp = True  # recomputed in backward: streams left out
    m(_inputs())
    assert [e for e in log if e[0] in ('wait', 'record')] == []
    with torch.no_grad():
        m(_inputs())
    assert ('wait', 'side1', 'current') in log


def test_streams_are_left_to_cuda_tensors_outside_compiling_and_tracing():
    from types import SimpleNamespace
    on_gpu = SimpleNamespace(is_cuda=True)  # as a CUDA tensor answers
    assert streams.uses_streams(on_gpu) and not streams.uses_streams(torch.zeros(1))
    seen = []

    def traced(t):
        seen.append(streams.uses_streams(on_gpu))
        return t + 1

    torch.jit.trace(traced, torch.zeros(1), check_trace=False)
    torch.compile(traced, backend='eager', fullgraph=True)(torch.zeros(1))
    assert seen == [False, False]  # ONNX export traces, torch.compile compiles: one stream
    assert not HRModule('BASIC', [1, 1], [8, 16], [8, 16], parallel_branches=True)._streams_apply(
        torch.zeros(1))


def test_hrnetv2_argument_and_function_turn_every_module_on():
    model = MODELS.build(dict(type='HRNetV2', arch='w18_small_v1', representation='v2',
                              parallel_branches=True))
    modules = [m for m in model.modules() if isinstance(m, HRModule)]
    assert len(modules) == 3 and all(m.parallel_branches for m in modules)
    assert model.parallel_branches
    assert streams.parallel_branches(model, enabled=False) is model
    assert not any(m.parallel_branches for m in modules) and not model.parallel_branches
    with pytest.raises(ValueError, match=r'^parallel_branches: Conv2d holds no HRModule \(an '
                                         r'HRNetV2 backbone has one per exchange\)$'):
        streams.parallel_branches(torch.nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"^parallel_branches='yes': must be True or False$"):
        HRNetV2(arch='w18_small_v1', parallel_branches='yes')


def test_on_the_cpu_the_same_network_to_the_bit():
    plain = randomize(HRNetV2(arch='w18_small_v1', representation='v2')).train()
    parallel = randomize(HRNetV2(arch='w18_small_v1', representation='v2',
                                 parallel_branches=True)).train()
    x = torch.randn(2, 3, 64, 96)
    outs = [m(x) for m in (plain, parallel)]
    assert max_abs_diff(*outs) == 0
    for out in outs:
        out[0].square().mean().backward()
    assert max_abs_diff([p.grad for p in plain.parameters()],
                        [p.grad for p in parallel.parameters()]) == 0
