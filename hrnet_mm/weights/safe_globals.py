"""The few non-tensor types mmengine writes into checkpoints, allowed for ``weights_only`` loads.

torch >= 2.6 loads with ``weights_only=True`` by default; mmengine 0.10.7 saves its
``MessageHub`` (``HistoryBuffer`` objects holding numpy arrays and numpy scalars) in every
checkpoint, so resuming a run fails with "Unsupported global:
mmengine.logging.history_buffer.HistoryBuffer". Rather than ``weights_only=False`` (which runs
whatever a file says), hrnet_mm allows exactly what mmengine writes, each through a stand-in
that checks its arguments before anything is built:

- ``getattr(HistoryBuffer, name)``, which pickles the statistics methods, for the four default
  statistics only (``min``, ``max``, ``current``, ``mean``): not ``register_statistics``, ``mro``
  or any other callable;
- a ``HistoryBuffer`` whose pickled statistics are those four under their own names (mmengine
  adds a buffer's statistics to a dict shared by all buffers, for the rest of the process);
- numpy dtypes of plain numbers only (``f2/f4/f8``, ``i1..i8``, ``u1..u8``, ``b1``; no
  structured dtype, no fields, no offsets, whatever the pickled state says);
- numpy arrays and scalars of those dtypes, whose byte count must match their shape.

Example:
    >>> allow_mmengine_checkpoints()  # import hrnet_mm does this
    >>> torch.load('work_dirs/x/iter_10.pth')  # doctest: +SKIP  (weights_only=True)
"""
import functools
import pickle
from typing import Any, List, Tuple

import numpy as np
import torch

#: The statistics methods mmengine's HistoryBuffer registers itself (and pickles by name).
STATISTICS = ('min', 'max', 'current', 'mean')
#: numpy dtypes of plain numbers: the only ones a checkpoint may hold.
PLAIN_DTYPES = frozenset(f'{kind}{size}' for kind, sizes in
                         (('f', (2, 4, 8)), ('i', (1, 2, 4, 8)), ('u', (1, 2, 4, 8)), ('b', (1, )))
                         for size in sizes)
BYTE_ORDERS = ('<', '>', '|', '=')


def _refuse(what: str) -> None:
    raise pickle.UnpicklingError(f'refused {what}: only plain numeric numpy arrays and '
                                 'HistoryBuffer statistics are allowed in a checkpoint')


class _Dtype:
    """Stands for ``numpy.dtype(code)`` while unpickling: a plain numeric code, and a pickled
    state (``BUILD``) that only sets the byte order. :attr:`dtype` is the real one."""

    def __init__(self, code: str) -> None:
        self.dtype = np.dtype(code)

    def __setstate__(self, state: Tuple) -> None:
        # numpy writes (3, byte_order, None, None, None, -1, -1, 0) for a plain dtype
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and
                state[1] in BYTE_ORDERS and state[2:5] == (None, None, None) and
                state[5:7] == (-1, -1)):
            _refuse(f'a numpy dtype state {state!r:.120}')
        if state[1] in ('<', '>'):
            self.dtype = self.dtype.newbyteorder(state[1])


def _dtype(code: Any, align: Any = False, copy: Any = True) -> _Dtype:
    if not isinstance(code, str) or code not in PLAIN_DTYPES or align is not False:
        _refuse(f'numpy.dtype({code!r:.80}, align={align!r:.20})')
    return _Dtype(code)


class _NdarrayName:
    """What the name ``numpy.ndarray`` means while unpickling: only an argument of
    ``_reconstruct``, not a class that builds arrays when called."""

    def __call__(self, *args, **kwargs):
        _refuse('calling numpy.ndarray')


NDARRAY = _NdarrayName()


class _Array(np.ndarray):
    """A numpy array built from a checked pickled state; pickles as a plain ``ndarray``."""

    def __setstate__(self, state: Tuple) -> None:
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            _refuse(f'a numpy array state of {type(state).__name__}')
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _Dtype):
            _refuse(f'a numpy array of dtype {dtype!r:.80}')
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)
                and isinstance(fortran, bool) and isinstance(raw, (bytes, bytearray))):
            _refuse('a numpy array with a malformed shape or data')
        if int(np.prod(shape, dtype=np.int64)) * dtype.dtype.itemsize != len(raw):
            _refuse(f'a numpy array of shape {shape} with {len(raw)} bytes of data')
        super().__setstate__((1, shape, dtype.dtype, fortran, raw))

    def __reduce__(self):
        return np.asarray(self).view(np.ndarray).__reduce__()

    def __reduce_ex__(self, protocol):
        return np.asarray(self).view(np.ndarray).__reduce_ex__(protocol)


def _reconstruct(cls: Any, shape: Any, dtype_char: Any) -> _Array:
    if cls is not NDARRAY or shape != (0, ) or dtype_char not in (b'b', 'b'):
        _refuse(f'numpy _reconstruct({cls!r:.60}, {shape!r:.40}, {dtype_char!r:.20})')
    return np.ndarray.__new__(_Array, (0, ), 'b')


def _scalar(dtype: Any, raw: Any = None) -> np.generic:
    if not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray)) or \
            len(raw) != dtype.dtype.itemsize:
        _refuse(f'a numpy scalar of {dtype!r:.60} from {type(raw).__name__}')
    return np.frombuffer(bytes(raw), dtype=dtype.dtype)[0]


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to HistoryBuffer's default statistics methods, by name."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is _checked_history_buffer():  # what the name HistoryBuffer means while loading
        obj = HistoryBuffer
    if obj is HistoryBuffer and name in STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refused getattr({obj!r}, {name!r}): only the HistoryBuffer statistics '
        f'{list(STATISTICS)} are allowed')


def _numpy_globals() -> List[Any]:
    numpy2 = int(np.__version__.split('.')[0]) >= 2
    module = 'numpy._core.multiarray' if numpy2 else 'numpy.core.multiarray'
    names = [(_reconstruct, f'{module}._reconstruct'), (_scalar, f'{module}.scalar'),
             (NDARRAY, 'numpy.ndarray'), (_dtype, 'numpy.dtype')]
    if numpy2:  # files written under numpy 1 name numpy.core
        names += [(_reconstruct, 'numpy.core.multiarray._reconstruct'),
                  (_scalar, 'numpy.core.multiarray.scalar')]
    # the classes whose pickled state is set (BUILD): only through the checks above
    return names + [_Dtype, _Array]


#: What mmengine's HistoryBuffer pickles (its ``__getstate__``).
HISTORY_BUFFER_STATE = frozenset({'_log_history', '_count_history', 'max_length',
                                  'statistics_methods'})


@functools.lru_cache(maxsize=None)
def _checked_history_buffer() -> type:
    """What the name ``HistoryBuffer`` means while unpickling: mmengine's class, whose pickled
    state is checked before it is set; the object then becomes a plain ``HistoryBuffer``."""
    from mmengine.logging.history_buffer import HistoryBuffer

    class CheckedHistoryBuffer(HistoryBuffer):

        def __setstate__(self, state):
            if not isinstance(state, dict) or not set(state) <= HISTORY_BUFFER_STATE:
                _refuse(f'a HistoryBuffer state with {sorted(state)!r:.120}'
                        if isinstance(state, dict) else
                        f'a HistoryBuffer state of {type(state).__name__}')
            methods = state.get('statistics_methods', {})
            if not isinstance(methods, dict) or any(
                    name not in STATISTICS or method is not getattr(HistoryBuffer, name)
                    for name, method in methods.items()):
                _refuse(f'HistoryBuffer statistics {list(methods)!r:.120}')
            super().__setstate__(state)
            self.__class__ = HistoryBuffer

    return CheckedHistoryBuffer


def mmengine_safe_globals() -> List[Any]:
    """What :func:`torch.serialization.add_safe_globals` needs for mmengine checkpoints."""
    buffer = _checked_history_buffer()
    return [(buffer, 'mmengine.logging.history_buffer.HistoryBuffer'), buffer,
            (_history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


def allow_mmengine_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (torch's default) read mmengine checkpoints."""
    torch.serialization.add_safe_globals(mmengine_safe_globals())
