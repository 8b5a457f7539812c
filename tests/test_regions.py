"""compile_regions: an HRNet compiled between the forks and joins of its branches.

The mechanism (which modules are regions, that every region is compiled and none falls back
to eager past torch's compile limit, parameter names, copies) is tested with dynamo's
``eager`` backend, which traces each region as inductor would be given it but runs its ops
as they are: outputs are then bit-equal, and a test takes seconds. Inductor itself (fused
kernels, within a tolerance) is tested with ``--runslow`` here and in ``tests/test_cuda.py``
on a GPU, with the parallel branches and CUDA graphs.
"""
import copy

import pytest
import torch
import torch.nn as nn
from helpers import max_abs_diff, randomize
from torch._dynamo.utils import counters

from hrnet_mm.models import HRModule, HRNetV2
from hrnet_mm.models.fusion import FusionSum
from hrnet_mm.regions import compile_regions, regions

STEM = ('conv1.', 'bn1.', 'conv2.', 'bn2.')


def _owner(model: nn.Module):
    """{parameter name: the region holding it}."""
    found = {id(r): r for r in regions(model)}
    owners = {}
    for rname, region in model.named_modules():
        if id(region) in found:
            for pname, _ in region.named_parameters(prefix=rname):
                assert pname not in owners, f'{pname} in two regions'
                owners[pname] = rname
    return owners


@pytest.mark.parametrize('representation', ['v1', 'v2', 'v2p', 'cls'])
def test_regions_cover_every_parameter_but_the_stem_once(representation):
    model = HRNetV2(arch='w18_small_v1', representation=representation)
    owners = _owner(model)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(owners) == sorted(n for n in names if not n.startswith(STEM))
    kinds = [type(r) for r in regions(model)]
    modules = [m for m in model.modules() if isinstance(m, HRModule)]
    assert kinds.count(FusionSum) == sum(len(m.fuse_layers) for m in modules)
    # every branch of every module is a region of its own (its own stream)
    assert all(any(b is r for r in regions(model)) for m in modules for b in m.branches)


def test_a_fusion_output_is_the_sum_of_its_terms():
    """FusionSum computes exactly what the exchange computes: the paths' maps, the lower
    resolutions resized, summed, ReLU."""
    m = randomize(HRModule('BASIC', [1, 1, 1], [8, 16, 32], [8, 16, 32])).eval()
    g = torch.Generator().manual_seed(0)
    x = [torch.randn(2, c, h, w, generator=g) for c, h, w in ((8, 20, 26), (16, 10, 13),
                                                               (32, 5, 7))]
    out = m.fuse_layers[1]
    with torch.no_grad():
        want = (out[0](x[0]) + out[1](x[1])
                + nn.functional.interpolate(out[2](x[2]), size=(10, 13), mode='nearest')).relu()
        assert torch.equal(out(x), want)
        assert out.index == 1 and len(out) == 3


def _one_training_step_each(**compile_kwargs):
    """w18_small_v1 (V2) and its copy compiled by regions, after one training step each on
    the same batch: (eager, compiled, the batch, [their outputs])."""
    torch._dynamo.reset()
    eager = randomize(HRNetV2(arch='w18_small_v1', representation='v2')).train()
    model = compile_regions(copy.deepcopy(eager), **compile_kwargs)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    outs = []
    for m in (eager, model):
        y = m(x)
        sum(o.square().mean() for o in y).backward()
        outs.append(y)
    return eager, model, x, outs


def test_compiled_regions_train_exactly_as_the_eager_model():
    """A training step of w18_small_v1 (24 regions, past torch's default of 8 compiles per
    function, which every ``nn.Module.compile`` shares): every region compiled, none left
    eager; outputs, gradients and BN statistics those of the eager model."""
    counters.clear()
    eager, model, x, outs = _one_training_step_each(backend='eager')
    assert list(model.state_dict()) == list(eager.state_dict())  # checkpoints load as before
    assert max_abs_diff(outs[0], outs[1]) == 0
    assert all(torch.equal(p.grad, q.grad) for p, q in zip(eager.parameters(),
                                                          model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(eager.buffers(), model.buffers()))
    frames = counters['frames']
    # one compile per region shape: 24 regions, those of the same shapes share one
    assert frames['ok'] == frames['total'] >= 15, dict(frames)
    assert all(r._compiled_call_impl is not None for r in regions(model))
    assert not model.conv1._compiled_call_impl  # the stem is left as it is

    # a copy (as EMA hooks make) runs eagerly, with the same weights and statistics
    twin = copy.deepcopy(model)
    assert all(r._compiled_call_impl is None for r in regions(twin))
    with torch.no_grad():
        assert max_abs_diff(twin.eval()(x), eager.eval()(x)) == 0


def test_compile_regions_refuses_a_model_without_hrnet():
    with pytest.raises(ValueError, match=r'^compile_regions: Conv2d holds no HRNet module'):
        compile_regions(nn.Conv2d(3, 8, 3))


@pytest.mark.slow
def test_inductor_regions_within_1e_4_of_eager():
    """With inductor (fused kernels, other summation orders): a training step and inference
    of w18_small_v1 within 1e-4 (relative gradients) of the eager model (2 minutes here)."""
    eager, model, x, outs = _one_training_step_each()
    assert max_abs_diff(outs[0], outs[1]) <= 1e-4
    for p, q in zip(eager.parameters(), model.parameters()):
        assert (p.grad - q.grad).norm() <= 1e-4 * p.grad.norm() + 1e-8
    with torch.no_grad():
        assert max_abs_diff(eager.eval()(x), model.eval()(x)) <= 1e-4
