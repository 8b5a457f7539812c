"""Ctrl-C, remembered, so that no library can lose it.

Python raises ``KeyboardInterrupt`` wherever the program is when SIGINT arrives, and some
places drop it: an exception raised inside a finalizer (``__del__``, a weakref callback: a
progress bar, a data loader or a runner collected mid-run) is printed and ignored, and a bare
``except:`` turns it into another error (mmengine's config formatter raises ``SyntaxError``,
its message hub logs a warning and goes on). A user's Ctrl-C then goes unheard (a CI run
once saw the main job run on to its end after one). :func:`remembered` keeps a flag beside
the exception: :func:`check` raises it again at safe points (each training iteration of
:class:`~hrnet_mm.engine.quiet.ProgressBarHook`, each model of the main job), and a failure
after a Ctrl-C is reported as the interruption.

Example:
    >>> with remembered():
    ...     for step in range(3):
    ...         check()  # a Ctrl-C lost somewhere in the last step stops the loop here
"""
import contextlib
import signal
import threading
from typing import Iterator

_interrupted = False


def interrupted() -> bool:
    """Whether SIGINT arrived inside :func:`remembered` (lost or not)."""
    return _interrupted


def check() -> None:
    """Raise ``KeyboardInterrupt`` again if a Ctrl-C arrived (it may have been lost)."""
    if _interrupted:
        raise KeyboardInterrupt


def _on_sigint(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def remembered() -> Iterator[None]:
    """Inside, SIGINT sets the flag and raises ``KeyboardInterrupt`` as Python's own handler
    does, and an error that leaves the block after a Ctrl-C leaves it as ``KeyboardInterrupt``
    (from that error). Only where Python's default handler is in place, in the main thread (a
    handler of someone else's is left alone); on exit the handler is restored and the flag
    cleared (nothing after the block sees it).
    """
    global _interrupted
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    _interrupted = False
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        if _interrupted:  # a Ctrl-C that a library turned into another error
            raise KeyboardInterrupt from exc
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _interrupted = False
