"""The few non-tensor types mmengine writes into checkpoints, allowed for ``weights_only`` loads.

torch >= 2.6 loads with ``weights_only=True`` by default; mmengine 0.10.7 saves its
``MessageHub`` (``HistoryBuffer`` objects holding numpy arrays) in every checkpoint, so
resuming a run fails with "Unsupported global: mmengine.logging.history_buffer.HistoryBuffer".
Rather than ``weights_only=False`` (which runs whatever a file says), hrnet_mm allow-lists
exactly these types. ``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``: instead of allowing ``getattr`` itself, a stand-in that only
resolves public methods of ``HistoryBuffer`` takes its place.
"""
import pickle
from typing import Any, List

import numpy as np
import torch


def _numpy_globals() -> List[Any]:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct, scalar
    return [_reconstruct, scalar, np.ndarray, np.dtype] + [
        type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32,
                                    np.int8, np.uint8, np.bool_)]


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to the public methods of mmengine's ``HistoryBuffer``."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and not name.startswith('_') and callable(
            getattr(HistoryBuffer, name, None)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refused getattr({obj!r}, {name!r}): only HistoryBuffer methods are allowed')


def mmengine_safe_globals() -> List[Any]:
    """What :func:`torch.serialization.add_safe_globals` needs for mmengine checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (torch's default) read mmengine checkpoints."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())
