"""How hrnet_mm's command-line tools end: a failure is one line and a non-zero exit status.

A known failure (a checkpoint that does not fit or is unsafe, a missing or unreadable file, a
bad value) prints ``error: <what, which file or value, what to do>`` on stderr and exits 1;
anything else prints its type and first line the same way. ``--debug`` re-raises, so the whole
traceback shows. Ctrl-C exits 130 quietly, also where a library lost or converted it
(:mod:`hrnet_mm.engine.interrupts`).

Example:
    >>> def main(argv=None) -> int:
    ...     args = parse_args(argv)        # with add_debug_flag(parser)
    ...     ...
    >>> if __name__ == '__main__':
    ...     sys.exit(run_tool(main))
"""
import argparse
import os
import os.path as osp
import sys
from typing import Callable, List, Optional

from mmengine.config import DictAction

from . import interrupts

#: Exceptions whose message says it all, besides hrnet_mm's own (CheckpointError,
#: DatasetError): the ValueErrors and RuntimeErrors hrnet_mm and the tools raise.
PLAIN = (ValueError, RuntimeError)


def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('--debug', action='store_true',
                        help='on a failure, show the whole traceback instead of one line')
    return parser


class CfgOptions(DictAction):
    """mmengine's ``DictAction`` for ``--cfg-options``; an entry without ``=`` is refused in
    one line naming it (mmengine's own failed with "not enough values to unpack").

    Example:
        >>> parser.add_argument('--cfg-options', nargs='+', action=CfgOptions)
    """

    def __call__(self, parser, namespace, values, option_string=None):
        for entry in values:
            if '=' not in entry:
                parser.error(f'{option_string} {entry}: expected KEY=VALUE, e.g. '
                             'train_cfg.max_iters=100')
        super().__call__(parser, namespace, values, option_string)


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an int of at least ``low``. Anything else is refused when the
    arguments are read (one line, exit 2), not by torch after the models are built.

    Example:
        >>> parser.add_argument('--repeats', type=int_at_least(1), default=5)
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r}: must be an int >= {low}') from None
        if value < low:
            raise argparse.ArgumentTypeError(f'{value}: must be an int >= {low}')
        return value
    return parse


def check_out_file(parser: argparse.ArgumentParser, path: Optional[str],
                   option: str = '--out') -> None:
    """Refuse (``parser.error``: one line, exit 2) a results file that could not be written,
    before a run spends minutes measuring or evaluating and then fails to save."""
    if path is None:
        return
    if osp.isdir(path):
        parser.error(f'{option} {path}: is a folder; name a file in it')
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder) or not os.access(folder, os.W_OK):
        parser.error(f'{option} {path}: {folder} is not a folder this run can write into')


def check_work_dir(parser: argparse.ArgumentParser, path: Optional[str],
                   option: str = '--work-dir') -> None:
    """Refuse (one line, exit 2) a work dir that cannot be made: it, or the nearest part of
    its path that exists, is a file, or that part is not writable."""
    if path is None:
        return
    probe = osp.abspath(path)
    while not osp.exists(probe):
        probe = osp.dirname(probe)
    if not osp.isdir(probe):
        parser.error(f'{option} {path}: {probe} is a file, not a folder')
    if not os.access(probe, os.W_OK):
        parser.error(f'{option} {path}: {probe} is not a folder this run can write into')


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line; other than hrnet_mm's own errors, with its type."""
    msg = ' '.join(str(exc).split())
    if type(exc) in PLAIN or type(exc).__module__.startswith('hrnet_mm'):
        return msg[:600]
    return (f'{type(exc).__name__}: {msg}' if msg else type(exc).__name__)[:600]


def run_tool(main: Callable[[Optional[List[str]]], int],
             argv: Optional[List[str]] = None) -> int:
    """Run ``main(argv)``; a failure becomes one line on stderr and exit status 1."""
    argv = sys.argv[1:] if argv is None else argv
    debug = '--debug' in argv
    try:
        with interrupts.remembered():  # also a Ctrl-C a library lost or made another error
            return main(argv)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - the point is to end every failure alike
        if debug:
            raise
        print(f'error: {one_line(exc)} (--debug shows the traceback)', file=sys.stderr)
        return 1
