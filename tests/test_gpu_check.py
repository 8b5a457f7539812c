"""tools/gpu_check.sh, the one command a rare GPU session runs: its CPU dry run, end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check(out: Path, env: dict) -> str:
    proc = subprocess.run(['bash', str(ROOT / 'tools/gpu_check.sh'), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    return console


@pytest.mark.skipif(not (Path(sys.prefix) / 'bin/python').exists(), reason='not in a venv')
def test_a_second_call_with_little_time_left_runs_its_case(tmp_path):
    """As a second call on a warm machine runs it (tests off, one case, a budget of a few
    minutes): the install is found done and the case runs. A budget under 200 s once gave
    ``timeout`` a negative limit, and the install 'failed' at once."""
    wheels = tmp_path / 'whl'
    wheels.mkdir()  # offline: everything is installed already
    env = {k: v for k, v in os.environ.items() if k not in ('FORCE_CUDA', 'CUDA_HOME')}
    env.update(GPU_CHECK_DRY='1', GPU_PYTHON=sys.executable, GPU_CHECK_BUDGET='150',
               GPU_CHECK_TESTS='0', GPU_CHECK_CASES='conv_widths', GPU_CHECK_WHL=str(wheels),
               GPU_CHECK_DONE=str(tmp_path / 'done'))
    (tmp_path / 'done').write_text('conv_widths\n')  # from an earlier run: started afresh
    out = tmp_path / 'out'
    console = _gpu_check(out, env)
    assert 'install failed' not in console and 'CUDA tests: skipped (GPU_CHECK_TESTS=0)' in console
    assert 'benchmark conv_widths' in console and 'benchmark det_w18_fp32' not in console
    report = json.loads((out / 'gpu_results.json').read_text())
    assert list(report['bench']) == ['conv_widths'] and report['tests'] == dict(ran=False)
    assert set(report['bench']['conv_widths']['ms']) == {'18', '24', '32', '36', '40', '48'}
    assert list(report['cases']) == ['conv_widths']
    assert report['cases']['conv_widths'].startswith('measured in ')
    assert (out / 'install.log').read_text().count('[install] done') == 1

    # A second call resumes: what the first measured is left out, named, and not measured
    # again; a case past its limit (here 0x its estimate: 10 s) is stopped, and said so
    env.update(GPU_CHECK_RESUME='1', GPU_CHECK_CASES='det_w18_fp32 conv_widths infer_w48_graphs',
               GPU_CHECK_CASE_FACTOR='0')
    console = _gpu_check(tmp_path / 'out2', env)
    # nor is the install checked again (52 s of an H100's time): the first call's is known
    assert (tmp_path / 'done.installed').read_text().strip() == sys.executable
    assert 'install: done by an earlier call on this machine (GPU_CHECK_RESUME=1)' in console
    assert not (tmp_path / 'out2' / 'install.log').exists()
    assert 'benchmark conv_widths: measured by an earlier call on this machine' in console
    assert '[gpu_check' in console and 'benchmark conv_widths\n' not in console
    report = json.loads((tmp_path / 'out2' / 'gpu_results.json').read_text())
    assert list(report['cases']) == ['det_w18_fp32', 'conv_widths']
    # the progress line is there where the tool got past its imports in the 10 s (not on a
    # loaded 2-core machine: mmdet's imports alone took longer there)
    said = report['cases']['det_w18_fp32']
    assert said.startswith('stopped at its limit, 10 s (0x its estimate); last progress: ')
    assert said.endswith('last progress: ') or '[benchmark' in said, said


def test_the_long_cuda_tests_are_handed_out_first_one_per_worker():
    """pytest-xdist starts each worker on two consecutive tests: the long ones (``long``
    marks, their seconds on an H100) come first, the longest first, each with a short one."""
    from types import SimpleNamespace

    import pytest
    from conftest import _long_ones_first

    def item(name, seconds=None):
        mark = pytest.mark.long(seconds=seconds).mark if seconds else None
        return SimpleNamespace(name=name, get_closest_marker=lambda n: mark if n == 'long'
                               else None)

    items = [item('a'), item('b'), item('demo', 100), item('c'), item('compiled', 180),
             item('mim', 70)]
    _long_ones_first(items)
    assert [i.name for i in items] == ['compiled', 'a', 'demo', 'b', 'mim', 'c']
