"""pytest setup shared by all tests."""
import os

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', help='also run tests marked slow')


def pytest_collection_modifyitems(config, items):
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
