"""Quiet runs: third-party output into a log file, progress on the console.

Evaluation prints dumps nobody reads at the console (pycocotools and xtcocotools print
"loading annotations into memory...", "creating index..." and twelve "Average Precision" lines
per evaluation), and the libraries warn about things a user cannot act on. Nothing is thrown
away: it all goes to a log file, whose path is printed.

- :func:`prints_into_log` (``tools/train.py``, ``tools/test.py``): while a Runner trains or
  tests, ``print`` output, third-party warnings and torch's logged notices (``torch.compile``)
  go to the Runner's own log file; mmengine's log lines stay on the console as they are.
- :func:`build_runner` (``tools/train.py``, ``tools/test.py``): ``Runner.from_cfg`` with its
  set-up dump (environment, the whole config, the hook order: ~480 lines) and the libraries'
  warnings while the model is built in the log file only, and one console line naming it.
- :func:`capture_into_file` (the main job): everything a run prints, mmengine's log included,
  goes to one file; a :class:`ProgressBarHook` draws a progress bar on the real console.

Example:
    >>> runner = build_runner(cfg)  # set-up and 2 third-party warnings: work_dirs/...log
    >>> with prints_into_log(runner.logger) as sink:
    ...     runner.test()
    >>> sink.report()   # evaluation output and 1 third-party warning: work_dirs/...log
"""
import contextlib
import io
import logging
import os.path as osp
import sys
import warnings
from typing import IO, Iterator, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from . import interrupts

_OWN = osp.dirname(osp.dirname(osp.abspath(__file__)))  # the hrnet_mm package


class LogSink(io.TextIOBase):
    """A text stream that writes into files (a log), counting the warnings it is given."""

    def __init__(self, streams: List[IO[str]], path: Optional[str]) -> None:
        super().__init__()
        self.streams, self.path, self.warnings = streams, path, 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def report(self) -> None:
        """One stderr line saying where the output went (nothing when it was not moved, and
        nothing from the other ranks of a distributed run: rank 0's line says it)."""
        if self.path and _rank() == 0:
            print(moved_line('evaluation output', self.warnings, self.path), file=sys.stderr)


def _rank() -> int:
    from mmengine.dist import get_rank
    return get_rank()


def moved_line(what: str, warnings_: int, path: str) -> str:
    """The console line naming the log file that ``what`` and ``warnings_`` third-party
    warnings went to.

    Example:
        >>> moved_line('evaluation output', 1, 'work_dirs/run.log')
        'evaluation output and 1 third-party warning: work_dirs/run.log (--verbose prints them)'
    """
    if warnings_:
        what += f' and {warnings_} third-party warning' + ('s' if warnings_ > 1 else '')
    return f'{what}: {path} (--verbose prints them)'


def _is_own(filename: str) -> bool:
    """Whether a warning comes from hrnet_mm's own code (it stays on the console)."""
    return osp.abspath(filename).startswith(_OWN + osp.sep)


def _file_sink(logger: logging.Logger) -> LogSink:
    """A sink into ``logger``'s log file(s) (``path`` None and no streams when it has none)."""
    files = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    return LogSink([h.stream for h in files], files[0].baseFilename if files else None)


@contextlib.contextmanager
def _warnings_into(sink: LogSink) -> Iterator[None]:
    """Warnings raised by code outside hrnet_mm go to ``sink`` (and are counted); hrnet_mm's own
    warnings are about the user's files and settings, so they stay on the console."""
    with warnings.catch_warnings():
        console = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if _is_own(filename):
                return console(message, category, filename, lineno, file, line)
            sink.warnings += 1
            sink.write(warnings.formatwarning(message, category, filename, lineno, line))

        warnings.showwarning = show
        yield


def verbose_option(parser) -> None:
    """``--verbose`` for a tool that runs :func:`prints_into_log`."""
    parser.add_argument('--verbose', action='store_true',
                        help='print the evaluation dumps and third-party warnings too (by '
                             'default they go to the run\'s log file)')


#: mmengine log lines about the libraries' own code, nothing a user can act on: deprecations
#: (mmpretrain's datasets read files through FileClient), and mmseg's ``IoUMetric``, which has
#: no default prefix for its metric names (mmseg's own ``mIoU`` ...). Like third-party warnings,
#: they go to the log file only.
LIBRARY_NOTICES = ('"FileClient" will be deprecated', '"HardDiskBackend" is the alias of',
                   'The prefix is not set in metric class IoUMetric')


class _NoticesOffConsole(logging.Filter):
    """Keeps :data:`LIBRARY_NOTICES` off a console handler, counting them as warnings of
    ``sink`` (the logger's file handler still writes them)."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(LIBRARY_NOTICES):
            self.sink.warnings += 1
            return False
        return True


class _TorchNoticesIntoLog(logging.Filter):
    """Moves the WARNING lines of torch's own loggers from the console into ``sink``, counted
    as warnings: ``torch.compile`` logs notices a user cannot act on ("Profiler record function
    ... will be ignored" while it traces the optimizer). Errors stay on the console."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__()
        self.sink, self.last = sink, None

    def filter(self, record: logging.LogRecord) -> bool:
        if not logging.WARNING <= record.levelno < logging.ERROR:
            return True
        if record is not self.last:  # a record passes each handler of its logger: once
            self.last = record
            self.sink.warnings += 1
            self.sink.write(_TORCH_FORMAT.format(record) + '\n')
        return False


_TORCH_FORMAT = logging.Formatter('%(levelname)s %(name)s: %(message)s')


def _torch_consoles() -> List[logging.Handler]:
    """The console handlers of torch's loggers (``torch``, ``torch._dynamo``, ...: torch gives
    each its own, and they do not propagate); not its trace handler (``TORCH_TRACE``)."""
    consoles = (sys.stderr, sys.__stderr__, sys.stdout, sys.__stdout__)
    return [h for name, lg in list(logging.Logger.manager.loggerDict.items())
            if (name == 'torch' or name.startswith('torch.')) and isinstance(lg, logging.Logger)
            for h in lg.handlers if getattr(h, 'stream', None) in consoles]


@contextlib.contextmanager
def prints_into_log(logger: logging.Logger, verbose: bool = False) -> Iterator[LogSink]:
    """Send ``print`` output, third-party warnings, the libraries' deprecation notices
    (:data:`LIBRARY_NOTICES`) and torch's own logged warnings (``torch.compile``'s notices)
    into ``logger``'s log file(s).

    mmengine's console handler keeps the stream it was created with, so its log lines still
    reach the console. Without a file handler (or with ``verbose``) nothing is redirected.
    """
    sink = _file_sink(logger)
    if verbose or not sink.path:
        yield LogSink([], None)
        return
    notices = _NoticesOffConsole(sink)
    filters = [(h, notices) for h in logger.handlers if not isinstance(h, logging.FileHandler)]
    torch_notices = _TorchNoticesIntoLog(sink)
    filters += [(h, torch_notices) for h in _torch_consoles()]
    for h, f in filters:
        h.addFilter(f)
    try:
        with contextlib.redirect_stdout(sink), _warnings_into(sink):
            yield sink
    finally:
        for h, f in filters:
            h.removeFilter(f)
        sink.flush()


class _SetupOffConsole(io.TextIOBase):
    """Stands for stdout while a Runner is built. What mmengine's console handler writes below
    WARNING is held back (its file handler writes the same records); its warnings and errors,
    and anything else printed, go to ``out``."""

    def __init__(self, out: IO[str]) -> None:
        super().__init__()
        self.out, self.held = out, []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        caller = sys._getframe(1)
        if caller.f_code is logging.StreamHandler.emit.__code__:
            record = caller.f_locals.get('record')
            if record is not None and record.levelno < logging.WARNING:
                self.held.append(text)
                return len(text)
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def build_runner(cfg, verbose: bool = False):
    """``Runner.from_cfg(cfg)`` without its set-up dump on the console.

    mmengine logs the system and runtime environment, the whole config and the hook order
    while it builds a Runner (~480 console lines), and the libraries warn while the model is
    built (mmseg: "build_loss would be deprecated soon"). These go to the run's log file only
    (warnings counted), and one stderr line names the file. WARNING and ERROR log lines, plain
    prints and hrnet_mm's own warnings stay on the console. Without a log file (or with
    ``verbose``) nothing is held back.

    Example:
        >>> runner = build_runner(cfg)
        set-up (environment, config, hook order) and 2 third-party warnings: work_dirs/...log
    """
    from mmengine.runner import Runner
    if verbose:
        return Runner.from_cfg(cfg)
    console = _SetupOffConsole(sys.stdout)
    caught: list = []
    try:
        with contextlib.redirect_stdout(console), \
                warnings.catch_warnings(record=True) as caught:
            runner = Runner.from_cfg(cfg)
    except BaseException:
        for w in caught:  # they may say why it failed
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, line=w.line)
        raise
    finally:
        for _, handler in _handlers_on(console):
            handler.setStream(console.out)  # mmengine's console handler: the real console again
    _log_file_of_this_rank(runner)
    sink = _file_sink(runner.logger)
    for w in caught:
        if sink.path and not _is_own(w.filename):
            sink.warnings += 1
            sink.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno,
                                              w.line))
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, line=w.line)
    sink.flush()
    if not sink.path:  # nowhere else to read them
        console.out.write(''.join(console.held))
    elif (console.held or sink.warnings) and runner.rank == 0:
        print(moved_line('set-up (environment, config, hook order)', sink.warnings, sink.path),
              file=sys.stderr)
    return runner


def _log_file_of_this_rank(runner) -> None:
    """A log file for each rank after the first of a distributed run.

    mmengine writes one for rank 0 only, and keeps the other ranks' consoles to errors; the
    set-up output and third-party warnings that their processes raise too (the same ones, as
    many times as there are ranks) then go to ``{timestamp}_rank{r}.log`` beside rank 0's
    rather than to the console, which stays as mmengine keeps it: errors only.
    """
    if runner.rank == 0 or any(isinstance(h, logging.FileHandler)
                               for h in runner.logger.handlers):
        return
    from mmengine.logging.logger import MMFormatter
    handler = logging.FileHandler(
        osp.join(runner.log_dir, f'{runner.timestamp}_rank{runner.rank}.log'), 'a')
    handler.setFormatter(MMFormatter(color=False, datefmt='%Y/%m/%d %H:%M:%S'))
    runner.logger.addHandler(handler)


def _handlers_on(stream: IO[str]) -> Iterator[tuple]:
    from mmengine.logging import MMLogger
    # the registered loggers (not the placeholders, which getLogger would turn into loggers),
    # mmengine's, which it keeps apart, and the root
    loggers = [v for v in list(logging.Logger.manager.loggerDict.values())
               if isinstance(v, logging.Logger)]
    loggers += list(MMLogger._instance_dict.values()) + [logging.getLogger()]
    for logger in loggers:
        for handler in list(getattr(logger, 'handlers', [])):
            if getattr(handler, 'stream', None) is stream:
                yield logger, handler


@contextlib.contextmanager
def capture_into_file(path: str) -> Iterator[LogSink]:
    """Everything printed inside (stdout, stderr, warnings, and the console handlers of loggers
    created inside, e.g. a Runner's) goes to the file ``path``; the sink counts the Python
    warnings. The real console stays reachable as
    ``sys.__stdout__`` or through streams saved before."""
    with open(path, 'a', encoding='utf-8') as f:
        sink = LogSink([f], path)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
                    _warnings_into(sink):
                yield sink
        finally:
            # loggers created inside hold the sink as their console: detach them, or their
            # next line would go to a closed file
            for logger, handler in _handlers_on(sink):
                logger.removeHandler(handler)
            sink.flush()


@HOOKS.register_module(force=True)
class ProgressBarHook(Hook):
    """One progress bar for training (iterations, loss, rate, ETA) with tqdm, on rank 0.

    Args:
        desc: Text before the bar (e.g. the model's name).
        stream: Where to draw it (default ``sys.stderr`` when training starts).
        bar: An open ``tqdm`` bar to drive instead of making one (the main job keeps one bar
            per model across evaluation and training).

    Example (config): ``custom_hooks = [dict(type='ProgressBarHook', desc='W18')]``.
    """

    priority = 'LOW'

    def __init__(self, desc: str = 'train', stream: Optional[IO[str]] = None, bar=None) -> None:
        self.desc, self.stream, self.bar, self._own = desc, stream, bar, bar is None

    def before_train(self, runner) -> None:
        from mmengine.dist import get_rank
        if get_rank() != 0:
            self.bar = None
            return
        if self.bar is None:
            self.bar = make_bar(self.desc, runner.max_iters, self.stream or sys.stderr)
        self.bar.reset(total=runner.max_iters)
        self.bar.update(runner.iter)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        interrupts.check()  # a Ctrl-C lost in this iteration (a finalizer, a bare except)
        if self.bar is None:
            return
        loss = (outputs or {}).get('loss')
        if loss is not None:
            loss = loss.detach().item() if torch.is_tensor(loss) else float(loss)
            self.bar.set_postfix_str(f'loss {loss:.4f}', refresh=False)
        self.bar.update(1)

    def after_train(self, runner) -> None:
        if self.bar is not None and self._own:
            self.bar.close()


def make_bar(desc: str, total: int, stream: IO[str]):
    """A tqdm bar: redrawn in place on a terminal; in a file or pipe, one line every 30 s."""
    from tqdm import tqdm
    tty = hasattr(stream, 'isatty') and stream.isatty()
    bar = tqdm(total=total, desc=desc, file=stream, unit='it', dynamic_ncols=tty,
               ncols=None if tty else 100, mininterval=0.2 if tty else 30, leave=True)
    bar.is_tty = tty  # redraw at once on a terminal only
    return bar
