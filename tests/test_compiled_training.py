"""mmengine's ``compile`` with CUDA graphs: the optimizer steps outside the compiled graphs.

mmengine compiles the whole ``train_step``, the optimizer step included; with CUDA graphs
(``compile=dict(mode='reduce-overhead')``) the optimizer's state was made inside a graph and
overwritten by its next replay (an H100 run: ``accessing tensor output of CUDAGraphs that has
been overwritten by a subsequent run``, from SGD's ``_foreach_add``). On the CPU a recording
backend shows what dynamo hands to the compiler: with those settings no graph holds the
optimizer's code, and training is what it is eagerly.
"""
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner import Runner
from torch.utils.data import Dataset

import hrnet_mm  # noqa: F401  (applies the fix, as a config's custom_imports does)
from hrnet_mm.compat import compiles_cuda_graphs, eager_optimizer_steps


class Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, inputs, target=None, mode='loss'):
        out = self.conv(inputs).mean((1, 2, 3))
        return dict(loss=((out - target) ** 2).mean()) if mode == 'loss' else out


class Data(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randn(3, 6, 6, generator=g), target=torch.rand(1, generator=g))


#: the graphs dynamo hands to the recording backend (each graph's source lines, joined)
GRAPHS = []


@torch._dynamo.register_backend(name='hrnet_mm_recorder')  # a name: a config holds no functions
def _recorder(gm, example_inputs, **kwargs):  # mode= and options= come as keywords
    GRAPHS.append(' '.join(str(n.meta.get('stack_trace', '')) for n in gm.graph.nodes))
    return gm.forward


def _train(work_dir, compile_cfg):
    """Three SGD steps (momentum and weight decay: optimizer state) through mmengine's Runner;
    returns the weights and the graphs dynamo compiled."""
    GRAPHS.clear()
    torch._dynamo.reset()
    torch.manual_seed(0)
    runner = Runner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=Data(), batch_size=2, collate_fn=dict(
            type='default_collate'), sampler=dict(type='DefaultSampler', shuffle=False)),
        train_cfg=dict(by_epoch=False, max_iters=3),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-2)),
        default_hooks=dict(checkpoint=None),
        # mmengine reads `compile` from the whole config, as from a config file
        cfg=dict(compile=None if compile_cfg is None
                 else dict(compile_cfg, backend='hrnet_mm_recorder')))
    runner.train()
    return runner.model.conv.weight.detach().clone(), list(GRAPHS)


def _optimizer_in(graphs):
    return any('optim/sgd.py' in g for g in graphs)


def test_compiled_with_cuda_graphs_the_optimizer_steps_outside_the_graphs(tmp_path, capsys):
    eager, _ = _train(tmp_path / 'eager', None)
    weights, graphs = _train(tmp_path / 'graphs', dict(mode='reduce-overhead'))
    assert graphs and not _optimizer_in(graphs)  # the model compiled, the optimizer not
    assert torch.allclose(weights, eager, rtol=1e-5, atol=1e-7)
    assert 'compile with CUDA graphs: the optimizer steps eagerly, outside the graphs ' \
        '(hrnet_mm.compat)' in capsys.readouterr().out


def test_compiled_without_cuda_graphs_the_optimizer_is_compiled_as_before(tmp_path, capsys):
    """The fix is narrow: the default compile still traces the optimizer step (this is also
    what the test above would see without the fix)."""
    weights, graphs = _train(tmp_path / 'default', dict())
    assert _optimizer_in(graphs)
    assert 'optimizer steps eagerly' not in capsys.readouterr().out


@pytest.mark.parametrize('cfg, expected', [
    (dict(mode='reduce-overhead'), True), (dict(mode='max-autotune'), True),
    (dict(options={'triton.cudagraphs': True}), True), (dict(backend='cudagraphs'), True),
    (dict(mode='max-autotune-no-cudagraphs'), False), (dict(mode='default'), False),
    (dict(options={'triton.cudagraphs': False}), False), (dict(), False), (True, False),
    (None, False), (False, False)])
def test_which_compile_settings_make_cuda_graphs(cfg, expected):
    assert compiles_cuda_graphs(cfg) is expected


def test_eager_optimizer_steps_each_wrapper_once():
    def wrapper():
        return OptimWrapper(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=1))

    one, many = wrapper(), OptimWrapperDict(a=wrapper(), b=wrapper())
    assert eager_optimizer_steps(one) and not eager_optimizer_steps(one)
    assert eager_optimizer_steps(many) and not eager_optimizer_steps(many)
    assert all(w.step.hrnet_mm_eager for w in (one, many['a'], many['b']))
    p = one.optimizer.param_groups[0]['params'][0]
    p.grad = torch.ones(1)
    torch.compile(lambda: one.step(), backend='eager')()  # still steps, from compiled code
    assert p.item() == 0.0
