"""Folders written beside their place and renamed into it, so that nothing half-written is
ever where readers look: a process killed while writing leaves only a ``<root>.partial-<pid>``
folder, which the next writer removes once that process is gone.

Used for the embedded dataset (:mod:`hrnet_mm.data.synthetic`) and the Winograd kernel's
build (:mod:`hrnet_mm.winograd`).

Example:
    >>> partial = start_partial('data/hrnet_mm_demo')   # stale partials of dead runs removed
    >>> write_everything_into(partial)
    >>> publish(partial, 'data/hrnet_mm_demo')          # False: another process was first
    True
"""
import glob
import os
import shutil

__all__ = ['start_partial', 'publish', 'running']


def running(pid: str) -> bool:
    """Whether process ``pid`` (a string, as in a folder name) is alive."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def start_partial(root: str, leftovers: tuple = ('partial', )) -> str:
    """The folder this process writes ``root`` into (``<root>.partial-<pid>``, not created),
    after removing the ``<root>.<kind>-<pid>`` folders of processes that are gone (a kill -9
    while writing), for each kind in ``leftovers``."""
    root = os.path.normpath(root)
    for kind in leftovers:
        for stale in glob.glob(f'{root}.{kind}-*'):
            if not running(stale.rsplit('-', 1)[-1]):
                shutil.rmtree(stale, ignore_errors=True)
    return f'{root}.partial-{os.getpid()}'


def publish(partial: str, root: str) -> bool:
    """Rename ``partial`` to ``root``; False (and ``partial`` removed) where ``root`` is
    there already, as when another process published first."""
    try:
        os.rename(partial, root)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        return False
    return True
