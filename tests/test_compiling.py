"""hrnet_mm.compiling: torch.compile without torch's CUDA-runtime notice on CPU machines."""
import logging
import os
import subprocess
import sys

import pytest
import torch

from hrnet_mm import compiling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTICE_ARGS = ("No CUDA runtime is found, using CUDA_HOME='%s'", '/usr/local')


@pytest.fixture
def notice_logger():
    logger = logging.getLogger(compiling.NOTICE_LOGGER)
    filters = list(logger.filters)
    yield logger
    logger.filters[:] = filters


def test_drops_the_notice_and_nothing_else(notice_logger, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    compiling.quiet_cuda_runtime_notice()
    compiling.quiet_cuda_runtime_notice()  # idempotent: one filter
    assert sum(isinstance(f, compiling._NoCudaRuntimeNotice) for f in notice_logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=compiling.NOTICE_LOGGER):
        notice_logger.warning(*NOTICE_ARGS)
        notice_logger.warning('Error checking compiler version for %s', 'c++')
    assert [r.getMessage() for r in caplog.records] == ['Error checking compiler version for c++']


def test_left_alone_where_cuda_runs(notice_logger, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    compiling.quiet_cuda_runtime_notice()
    with caplog.at_level(logging.WARNING, logger=compiling.NOTICE_LOGGER):
        notice_logger.warning(*NOTICE_ARGS)
    assert [r.getMessage() for r in caplog.records] == [NOTICE_ARGS[0] % NOTICE_ARGS[1]]


def _import_cpp_extension(quiet: bool) -> str:
    """stderr of a fresh process that imports torch.utils.cpp_extension (where torch logs the
    notice) with a CUDA toolkit directory named and no CUDA runtime."""
    code = ('import torch\n'
            + ('from hrnet_mm import compiling\ncompiling.quiet_cuda_runtime_notice()\n'
               if quiet else '')
            + 'import torch.utils.cpp_extension\n')
    env = dict(os.environ, CUDA_HOME=ROOT, CUDA_VISIBLE_DEVICES='')
    return subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True).stderr


def test_no_notice_in_a_fresh_process():
    assert 'No CUDA runtime is found' in _import_cpp_extension(quiet=False)  # the check can fail
    assert 'No CUDA runtime is found' not in _import_cpp_extension(quiet=True)


def test_compile_is_torch_compile():
    def f(x):
        return x * 2 + 1

    compiled = compiling.compile(f, backend='eager')
    x = torch.arange(4.0)
    assert torch.equal(compiled(x), f(x))
