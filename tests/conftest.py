"""pytest setup shared by all tests."""
import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', help='also run tests marked slow')


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """One pytest-xdist worker per core by default (``-n 0``: one process). Most of the
    suite's time is single-threaded (a process importing the whole stack, Python around small
    tensors): on 2 cores two workers of one thread each ran it 1.85x faster than one process
    with two threads (README, "Test"). Without pytest-xdist, with ``--pdb``, or for tests named
    one by one (``file.py::test``: starting workers would cost more than they save), it runs in
    one process; ``--collect-only`` starts no workers."""
    option = config.option
    named = config.args and all('::' in arg for arg in config.args)
    if (config.pluginmanager.hasplugin('xdist') and not hasattr(config, 'workerinput')
            and getattr(option, 'numprocesses', 0) is None and not option.collectonly
            and not option.usepdb and not named):
        option.numprocesses = 'auto'


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: a worker per usable core, at most 6 beside a GPU (the GPU check's count:
    each worker holds its own CUDA context and training steps)."""
    return min(_cores(), 6) if torch.cuda.is_available() else _cores()


def pytest_configure(config):
    workers = getattr(config, 'workerinput', {}).get('workercount')
    if workers and 'OMP_NUM_THREADS' not in os.environ:
        # the workers are the parallelism: their threads share the cores, and the processes
        # the tests start (tools, training runs) inherit the count
        threads = max(1, _cores() // workers)
        os.environ['OMP_NUM_THREADS'] = str(threads)
        torch.set_num_threads(threads)


def _long_ones_first(items):
    """The tests marked ``long`` (``seconds=`` on an H100) first, the longest first, each
    followed by another: pytest-xdist starts each worker on two consecutive tests. In
    collection order the long ones came last and one ran alone at the end (the GPU check's
    tests took 263 s where their work was about 150 s per worker)."""
    def seconds(item):
        return item.get_closest_marker('long').kwargs.get('seconds', 60)

    long = sorted((i for i in items if i.get_closest_marker('long')), key=seconds, reverse=True)
    rest = [i for i in items if not i.get_closest_marker('long')]
    ordered = []
    for item in long:
        ordered += [item] + rest[:1]
        rest = rest[1:]
    items[:] = ordered + rest


def pytest_collection_modifyitems(config, items):
    # pytest-xdist (by default; the GPU check's -n 6): its workers collect, the controller hands out
    if hasattr(config, 'workerinput') or getattr(config.option, 'numprocesses', None):
        _long_ones_first(items)  # in one process the order changes nothing but the output
    # tests/test_cuda.py: on a GPU; HRNET_MM_CUDA_TESTS_ON=cpu dry-runs them on the CPU.
    if not torch.cuda.is_available() and os.environ.get('HRNET_MM_CUDA_TESTS_ON') != 'cpu':
        skip_cuda = pytest.mark.skip(reason='cuda: needs a GPU')
        for item in items:
            if 'cuda' in item.keywords:
                item.add_marker(skip_cuda)
    if config.getoption('--runslow'):
        return
    skip = pytest.mark.skip(reason='slow: run with --runslow')
    for item in items:
        if 'slow' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope='session')
def demo_dir(tmp_path_factory):
    """A folder holding data/hrnet_mm_demo (24 train, 8 val images), as the demo configs expect
    it (relative to the working directory)."""
    from hrnet_mm.data import generate
    root = tmp_path_factory.mktemp('demo')
    generate(str(root / 'data/hrnet_mm_demo'), num_train=24, num_val=8)
    return root
