"""tools/install.sh's GPU decisions (tools/mmcv_ops.py): CPU or CUDA ops, nvcc, architectures.

No GPU is needed: ``FORCE_CUDA=1`` takes the CUDA path, a fake ``nvcc`` stands in for the
toolkit, and the install runs offline (``PIP_NO_INDEX=1``) against this test environment, so
that nothing is downloaded and nothing installed is changed.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools/mmcv_ops.py'


def _run(args, env_extra, timeout=120):
    env = {k: v for k, v in os.environ.items()
           if k not in ('FORCE_CUDA', 'TORCH_CUDA_ARCH_LIST', 'CUDA_HOME', 'CUDA_PATH',
                        'MMCV_CUDA')}
    env.update(env_extra)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


def _plan(**env):
    return _run([sys.executable, str(TOOL), 'plan'], env)


def _fake_toolkit(tmp_path, release):
    """A CUDA_HOME whose bin/nvcc prints ``release``'s version banner."""
    nvcc = tmp_path / 'cuda/bin/nvcc'
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text('#!/bin/sh\necho "Cuda compilation tools, release '
                    f'{release}, V{release}.88"\n')
    nvcc.chmod(0o755)
    return str(tmp_path / 'cuda')


def _torch_cuda():
    import torch
    return torch.version.cuda


def test_plan_without_gpu_builds_cpu_ops():
    res = _plan()
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ['MMCV_CUDA=0']


def test_plan_cuda_without_nvcc_is_one_line_naming_the_toolkit(tmp_path):
    res = _plan(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0', CUDA_HOME=str(tmp_path / 'none'))
    assert res.returncode == 1 and res.stdout == ''
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    cuda = _torch_cuda()
    assert lines[0].startswith('[install] error: FORCE_CUDA=1 (torch ')
    assert f'no CUDA compiler (nvcc) was found ({tmp_path}/none/bin/nvcc does not exist)' in lines[0]
    assert f'install the CUDA {cuda.split(".")[0]}.x toolkit' in lines[0]
    assert 'set CUDA_HOME' in lines[0]


def test_plan_cuda_with_nvcc_of_another_major_version(tmp_path):
    home = _fake_toolkit(tmp_path, '11.8')
    res = _plan(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0', CUDA_HOME=home)
    assert res.returncode == 1
    assert f'{home}/bin/nvcc is CUDA 11.8, but torch' in res.stderr
    assert f'was built with CUDA {_torch_cuda()}' in res.stderr


def test_plan_cuda_needs_architectures_without_a_gpu(tmp_path):
    home = _fake_toolkit(tmp_path, _torch_cuda())
    res = _plan(FORCE_CUDA='1', CUDA_HOME=home)
    assert res.returncode == 1
    assert 'FORCE_CUDA=1 without a visible GPU' in res.stderr
    assert 'TORCH_CUDA_ARCH_LIST=9.0' in res.stderr


def test_plan_cuda(tmp_path):
    home = _fake_toolkit(tmp_path, _torch_cuda())
    res = _plan(FORCE_CUDA='1', CUDA_HOME=home, TORCH_CUDA_ARCH_LIST='8.0;9.0')
    assert res.returncode == 0, res.stderr
    values = dict(line.split('=', 1) for line in res.stdout.split())
    assert values == {'MMCV_CUDA': '1', 'FORCE_CUDA': '1', 'CUDA_HOME': home,
                      'TORCH_CUDA_ARCH_LIST': "'8.0;9.0'", 'MMCV_CUDA_RELEASE': _torch_cuda()}


def test_check_tells_cpu_ops_from_cuda_ops():
    import mmcv
    res = _run([sys.executable, str(TOOL), 'check', mmcv.__version__], {})
    assert res.returncode == 0 and res.stdout.strip() == f'mmcv {mmcv.__version__} with CPU ops'
    res = _run([sys.executable, str(TOOL), 'check', mmcv.__version__], {'MMCV_CUDA': '1'})
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1] == \
        f'RuntimeError: mmcv {mmcv.__version__} has CPU ops only; CUDA ops are needed'
    res = _run([sys.executable, str(TOOL), 'check', '9.9.9'], {})
    assert 'mmcv ' + mmcv.__version__ + ' is installed, not 9.9.9' in res.stderr


def _install(tmp_path, **env):
    """tools/install.sh on this test environment, offline: nothing can be fetched."""
    empty = tmp_path / 'no-wheels'
    empty.mkdir(exist_ok=True)
    env = dict(PIP_NO_INDEX='1', PIP_FIND_LINKS=str(empty), **env)
    return _run(['bash', str(ROOT / 'tools/install.sh'), sys.prefix], env, timeout=300)


@pytest.mark.skipif(not (Path(sys.prefix) / 'bin/python').exists(), reason='not in a venv')
def test_install_stops_with_one_line_when_nvcc_is_missing(tmp_path):
    res = _install(tmp_path, FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0',
                   CUDA_HOME=str(tmp_path / 'none'))
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith('[install] error: FORCE_CUDA=1') and 'nvcc' in last
    assert 'building mmcv' not in res.stdout  # stopped before any build


@pytest.mark.skipif(not (Path(sys.prefix) / 'bin/python').exists(), reason='not in a venv')
def test_install_never_uses_the_cpu_wheel_for_a_gpu_build(tmp_path):
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    tag = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    (wheels / f'mmcv-2.1.0-{tag}-{tag}-linux_x86_64.whl').write_bytes(b'')  # a CPU-ops wheel
    res = _install(tmp_path, FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0',
                   CUDA_HOME=_fake_toolkit(tmp_path, _torch_cuda()), HRNET_MM_WHEELS=str(wheels))
    out = res.stdout
    # everything else is installed as pinned; the ops are not what a GPU build needs, and they
    # alone are installed (pip took 25 s to find the rest in place, in 170 lines)
    assert ("[install] installing: mmcv 2.1.0's ops do not work as needed here (every package "
            'is installed as pinned; only this is done)') in out
    assert '[install] torch, mmengine' not in out and 'Requirement already satisfied' not in out
    assert '[install] GPU build: mmcv\'s CUDA ops for TORCH_CUDA_ARCH_LIST=9.0' in out
    assert 'from prebuilt wheel' not in out
    assert '[install] building mmcv 2.1.0 with CUDA ops from source' in out
    # offline, the source download fails: nothing was replaced
    assert res.returncode != 0
    res = _run([sys.executable, str(TOOL), 'check', '2.1.0'], {})
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(not (Path(sys.prefix) / 'bin/python').exists(), reason='not in a venv')
def test_install_falls_back_to_the_source_build_when_the_cuda_wheel_does_not_install(tmp_path):
    # tools/gpu_check.sh installs a wheel built on another machine; if it cannot be installed
    # (or its ops fail on the GPU), the GPU run must still get mmcv rather than stop.
    broken = tmp_path / 'mmcv-2.1.0-cp312-cp312-linux_x86_64.whl'
    broken.write_bytes(b'not a zip')
    res = _install(tmp_path, FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0',
                   CUDA_HOME=_fake_toolkit(tmp_path, _torch_cuda()),
                   HRNET_MM_MMCV_WHEEL=str(broken))
    out = res.stdout
    assert f'[install] mmcv 2.1.0 with CUDA ops from {broken}' in out
    assert '[install] that wheel does not install here; building from source instead' in out
    assert '[install] building mmcv 2.1.0 with CUDA ops from source' in out
    assert res.returncode != 0  # offline, the source download fails: nothing was replaced
    res = _run([sys.executable, str(TOOL), 'check', '2.1.0'], {})
    assert res.returncode == 0, res.stderr


def test_install_into_the_environment_of_an_interpreter(tmp_path):
    """tools/gpu_check.sh names the image's interpreter (``sys.executable``): a system Python
    may have no ``bin/python`` beside it, and its prefix (/usr) must not become a new venv."""
    empty = tmp_path / 'no-wheels'
    empty.mkdir()
    res = _run(['bash', str(ROOT / 'tools/install.sh'), sys.executable],
               dict(PIP_NO_INDEX='1', PIP_FIND_LINKS=str(empty)), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert 'creating virtual environment' not in res.stdout
    assert f'[install] done: installed for {sys.executable}' in res.stdout
    assert '[install] checking the stack' in res.stdout
    # installed already: tools/pins.py says so, pip is not run (170 lines of 'Requirement
    # already satisfied' before)
    assert re.search(r'^\[install\] already installed: \d+ packages installed as pinned; '
                     r'mmcv 2\.1\.0 with CPU ops$', res.stdout, re.M), res.stdout
    assert 'Requirement already satisfied' not in res.stdout
    assert len(res.stdout.splitlines()) < 25, res.stdout
