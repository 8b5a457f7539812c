"""How tools/install.sh builds mmcv's compiled ops, and the check that they work.

    python tools/mmcv_ops.py plan            # shell assignments for install.sh, or one error line
    python tools/mmcv_ops.py check 2.1.0     # mmcv 2.1.0's ops import (and run on CUDA)

``plan`` decides between CPU ops and CUDA ops. CUDA ops are built when torch sees a GPU, or when
``FORCE_CUDA=1`` (building on a machine without one, for another that has one). They need
``nvcc`` of the CUDA major version torch was built with; the GPU architectures are those of the
visible GPUs unless ``TORCH_CUDA_ARCH_LIST`` names them. Anything that would make the
build fail minutes later is said here, in one line on stderr, with exit status 1.

``check`` imports mmcv's ops; for a CUDA build it also checks that they were compiled with CUDA
and, where a GPU is visible, that ``nms`` and ``RoIAlign`` on CUDA tensors agree with the CPU.
"""
import logging
import os
import re
import shlex
import subprocess
import sys
from typing import Dict, List, Optional


class PlanError(Exception):
    """A CUDA build of mmcv's ops cannot work here; the message says what to do."""


def _cuda_home() -> Optional[str]:
    # torch's own search (CUDA_HOME / CUDA_PATH, nvcc on PATH, /usr/local/cuda) is the one
    # the build will use; its warning about a missing CUDA runtime is not news here.
    logging.getLogger('torch.utils.cpp_extension').setLevel(logging.ERROR)
    from torch.utils.cpp_extension import CUDA_HOME
    return CUDA_HOME


def nvcc_release(nvcc: str) -> str:
    """``'13.0'`` from ``nvcc --version`` (``... release 13.0, V13.0.88``)."""
    out = subprocess.run([nvcc, '--version'], capture_output=True, text=True, check=True).stdout
    match = re.search(r'release (\d+\.\d+)', out)
    if not match:
        raise PlanError(f'cannot read the CUDA release from `{nvcc} --version`: {out.strip()!r}')
    return match.group(1)


def visible_archs() -> List[str]:
    """Compute capabilities of the visible GPUs, e.g. ``['9.0']``."""
    import torch
    return sorted({'{}.{}'.format(*torch.cuda.get_device_capability(i))
                   for i in range(torch.cuda.device_count())})


def plan(env: Dict[str, str]) -> Dict[str, str]:
    """What install.sh exports for the mmcv build: ``MMCV_CUDA`` (0/1) and, for CUDA,
    ``FORCE_CUDA``, ``CUDA_HOME`` and ``TORCH_CUDA_ARCH_LIST``. Raises :class:`PlanError`."""
    import torch
    gpu = torch.cuda.is_available()
    forced = env.get('FORCE_CUDA') == '1'
    if not gpu and not forced:
        return {'MMCV_CUDA': '0'}
    why = 'torch sees a GPU' if gpu else 'FORCE_CUDA=1'
    if torch.version.cuda is None:
        raise PlanError(f'{why}, but torch {torch.__version__} is a CPU build: install a CUDA '
                        'build of torch, or unset FORCE_CUDA for CPU ops')
    cuda = torch.version.cuda
    home = _cuda_home()
    nvcc = os.path.join(home, 'bin', 'nvcc') if home else None
    if not nvcc or not os.access(nvcc, os.X_OK):
        where = (f'{nvcc} does not exist' if home else
                 'no CUDA_HOME, no nvcc on PATH, no /usr/local/cuda')
        raise PlanError(
            f'{why} (torch {torch.__version__}, CUDA {cuda}) but no CUDA compiler (nvcc) was '
            f'found ({where}): install the CUDA {cuda.split(".")[0]}.x toolkit (NVIDIA\'s cuda-toolkit-'
            f'{cuda.replace(".", "-")} package, or conda\'s cuda-nvcc={cuda}) and set CUDA_HOME '
            'to it, then run this again')
    release = nvcc_release(nvcc)
    if release.split('.')[0] != cuda.split('.')[0]:
        raise PlanError(f'{nvcc} is CUDA {release}, but torch {torch.__version__} was built with '
                        f'CUDA {cuda}: install the CUDA {cuda.split(".")[0]}.x toolkit and set '
                        'CUDA_HOME to it')
    archs = env.get('TORCH_CUDA_ARCH_LIST') or (';'.join(visible_archs()) if gpu else '')
    if not archs:
        raise PlanError('FORCE_CUDA=1 without a visible GPU: name the GPU architectures to build '
                        'for, e.g. TORCH_CUDA_ARCH_LIST=9.0 (H100/H200) or "8.0;8.6" (A100, A10)')
    return {'MMCV_CUDA': '1', 'FORCE_CUDA': '1', 'CUDA_HOME': home,
            'TORCH_CUDA_ARCH_LIST': archs, 'MMCV_CUDA_RELEASE': release}


def check(version: str, cuda: bool) -> str:
    """Import mmcv's ops (and run two on CUDA); returns a one-line summary, raises on failure."""
    import mmcv
    import torch
    if mmcv.__version__ != version:
        raise RuntimeError(f'mmcv {mmcv.__version__} is installed, not {version}')
    from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms
    compiled = get_compiling_cuda_version()
    if not cuda:
        return f'mmcv {version} with CPU ops'
    if compiled == 'not available':
        raise RuntimeError(f'mmcv {version} has CPU ops only; CUDA ops are needed')
    if not torch.cuda.is_available():
        return f'mmcv {version} with CUDA {compiled} ops (no GPU visible: not run)'
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(64, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 10 + torch.rand(64, 2, generator=g) * 30], 1)
    scores = torch.rand(64, generator=g)
    feats = torch.rand(2, 8, 32, 32, generator=g)
    rois = torch.cat([torch.randint(0, 2, (16, 1), generator=g).float(), boxes[:16] / 4], 1)
    align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    keep_cpu = nms(boxes, scores, 0.5)[1]
    keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)[1].cpu()
    pooled = (align(feats.cuda(), rois.cuda()).cpu() - align(feats, rois)).abs().max().item()
    if not torch.equal(keep_cpu, keep_gpu) or pooled > 1e-4:
        raise RuntimeError(f'mmcv CUDA ops disagree with the CPU: nms keeps {keep_gpu.tolist()} '
                           f'vs {keep_cpu.tolist()}, RoIAlign max abs diff {pooled:.2e}')
    device = torch.cuda.get_device_name(0)
    return (f'mmcv {version} with CUDA {compiled} ops: nms and RoIAlign on {device} agree with '
            f'the CPU (RoIAlign max abs diff {pooled:.1e})')


def main(argv: List[str]) -> int:
    if argv[:1] == ['plan']:
        try:
            values = plan(dict(os.environ))
        except PlanError as e:
            print(f'[install] error: {e}', file=sys.stderr)
            return 1
        print('\n'.join(f'{k}={shlex.quote(v)}' for k, v in values.items()))
        return 0
    if argv[:1] == ['check'] and len(argv) == 2:
        print(check(argv[1], cuda=os.environ.get('MMCV_CUDA') == '1'))
        return 0
    print(__doc__.split('\n\n')[1], file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
