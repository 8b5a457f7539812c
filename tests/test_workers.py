"""The test run's own set-up (tests/conftest.py): one pytest-xdist worker per core by default,
one process with ``-n 0``, and the cores shared out as threads."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PROBE = '''
import os
import torch


def test_probe():
    with open('probe.txt', 'w') as f:  # a worker's output does not reach the console
        f.write(f"{os.environ.get('PYTEST_XDIST_WORKER')} {os.environ.get('OMP_NUM_THREADS')} "
                f"{torch.get_num_threads()}")
'''


def _run_probe(tmp_path, *args, env=None):
    """pytest on one test beside a copy of tests/conftest.py: (what the test saw: its worker,
    OMP_NUM_THREADS and torch's threads; the output)."""
    shutil.copy(HERE / 'conftest.py', tmp_path / 'conftest.py')
    (tmp_path / 'test_probe.py').write_text(PROBE)
    environ = {k: v for k, v in os.environ.items()
               if k not in ('OMP_NUM_THREADS', 'PYTEST_XDIST_WORKER', 'PYTEST_ADDOPTS')}
    (tmp_path / 'probe.txt').unlink(missing_ok=True)
    target = [] if any(a.startswith('test_probe.py') for a in args) else ['test_probe.py']
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider',
                           *target, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    probe = tmp_path / 'probe.txt'
    return probe.read_text().split() if probe.exists() else None, proc.stdout


def test_the_default_run_has_a_worker_per_core_each_with_its_share_of_threads(tmp_path):
    from conftest import _cores, pytest_xdist_auto_num_workers
    probe, out = _run_probe(tmp_path)
    workers = pytest_xdist_auto_num_workers(None)  # the cores, at most 6 beside a GPU
    assert workers == _cores() or workers == 6 < _cores()
    assert re.search(rf'^created: {workers}/{workers} workers?$', out, re.M), out
    # in a worker, its share of the cores as threads (1 on 2 cores), the count passed on to
    # the processes that tests start
    worker, omp, threads = probe
    share = str(max(1, _cores() // workers))
    assert worker.startswith('gw') and omp == threads == share, (probe, share)


def test_n_0_runs_in_one_process_and_a_set_thread_count_is_kept(tmp_path):
    probe, out = _run_probe(tmp_path, '-n', '0')
    assert 'created:' not in out and probe[:2] == ['None', 'None'], (probe, out)
    env = {'OMP_NUM_THREADS': '3'}
    probe, _ = _run_probe(tmp_path, '-n', '2', env=env)
    plain = subprocess.run([sys.executable, '-c', 'import torch; print(torch.get_num_threads())'],
                           capture_output=True, text=True, env={**os.environ, **env}).stdout
    assert probe[0].startswith('gw') and probe[1:] == ['3', plain.strip()], (probe, plain)


def test_auto_workers_are_capped_beside_a_gpu(monkeypatch):
    import conftest
    monkeypatch.setattr(conftest, '_cores', lambda: 16)
    monkeypatch.setattr(conftest.torch.cuda, 'is_available', lambda: True)
    assert conftest.pytest_xdist_auto_num_workers(None) == 6
    monkeypatch.setattr(conftest.torch.cuda, 'is_available', lambda: False)
    assert conftest.pytest_xdist_auto_num_workers(None) == 16


@pytest.mark.parametrize('option', [['--pdb'], ['--collect-only'],
                                    ['test_probe.py::test_probe']])
def test_debugging_collecting_and_named_tests_start_no_workers(tmp_path, option):
    probe, out = _run_probe(tmp_path, *option)
    assert 'created:' not in out and 'test_probe' in out, out
    assert probe is None if option == ['--collect-only'] else probe[0] == 'None', probe
