"""``torch.compile`` as hrnet_mm calls it: without torch's CUDA_HOME notice on CPU machines.

On a machine with a CUDA toolkit (``nvcc``) but no CUDA runtime for torch, the first inductor
compile in a process imports ``torch.utils.cpp_extension``, which logs a warning that it found
the toolkit without a runtime (``No CUDA runtime is found, using CUDA_HOME='/usr/local'``).
Inductor's CPU kernels do not use that toolkit, so for hrnet_mm's compiles the line is noise.
:func:`compile` drops that one message (and nothing else torch logs) before compiling.

Example:
    >>> fast = compile(model, options={'freezing': True})  # as torch.compile
"""
import logging
from typing import Any, Callable

import torch

__all__ = ['compile', 'quiet_cuda_runtime_notice']

#: The logger and the start of the message that :class:`_NoCudaRuntimeNotice` drops.
NOTICE_LOGGER = 'torch.utils.cpp_extension'
NOTICE = 'No CUDA runtime is found'


class _NoCudaRuntimeNotice(logging.Filter):
    """Drops torch's notice that it found a CUDA toolkit but no CUDA runtime."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOTICE)


def quiet_cuda_runtime_notice() -> None:
    """Silence the notice (idempotent; only where torch has no CUDA runtime, where the notice
    would be printed and says nothing about a CPU compile)."""
    if torch.cuda.is_available():
        return
    logger = logging.getLogger(NOTICE_LOGGER)
    if not any(isinstance(f, _NoCudaRuntimeNotice) for f in logger.filters):
        logger.addFilter(_NoCudaRuntimeNotice())


def compile(fn: Callable, **kwargs: Any) -> Callable:  # noqa: A001 (named as torch's)
    """``torch.compile(fn, **kwargs)``, after :func:`quiet_cuda_runtime_notice`."""
    quiet_cuda_runtime_notice()
    return torch.compile(fn, **kwargs)
