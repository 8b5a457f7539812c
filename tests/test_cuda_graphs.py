"""hrnet_mm.cuda_graphs on the CPU: what a call keys its graph by, the warm-up calls leaving the
BN statistics as they were, and the one-line refusals. Capturing and replaying run on a GPU:
tests/test_cuda.py (the graphed model follows the eager one step for step, in fp32 and bf16)."""
import pytest
import torch
from helpers import randomize

from hrnet_mm import HRNetV2
from hrnet_mm.cuda_graphs import CUDAGraphed, _buffers_kept, _signature


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

