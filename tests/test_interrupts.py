"""Ctrl-C is never lost: Python drops a KeyboardInterrupt raised inside a finalizer, and a
library's bare ``except:`` can turn it into another error (mmengine's config formatter:
``SyntaxError``). A main job once ran on to its end after a Ctrl-C (a CI run of
test_main_job's interrupt test). Here SIGINT is sent while such code runs."""
import os
import signal

import pytest

from hrnet_mm.engine import interrupts
from hrnet_mm.engine.cli import run_tool
from hrnet_mm.engine.quiet import ProgressBarHook


@pytest.fixture(autouse=True)
def _as_at_a_terminal():
    """Python's own SIGINT handler, as at a terminal: a test run started in the background of
    a script (CI's ``cmd &``) inherits SIGINT ignored, and Python leaves it so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class Collected:
    """An object whose finalizer runs while SIGINT arrives (a bar or a loader collected)."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):  # the handler runs between bytecodes: here, inside __del__
            pass


def _sigint_in_a_finalizer():
    Collected()  # dropped at once: __del__ runs, its KeyboardInterrupt is printed and ignored


#: the interrupt lost in the finalizer: what pytest reports as an unraisable exception
LOST = pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')


@LOST
def test_a_ctrl_c_lost_in_a_finalizer_stops_training_at_the_next_iteration(capsys):
    done = []

    def main(argv):
        hook = ProgressBarHook()  # no bar: as on a rank other than 0
        for it in range(10):
            if it == 2:
                _sigint_in_a_finalizer()
            done.append(it)  # the iteration went on: the interrupt was lost here
            hook.after_train_iter(None, it)
        return 0

    assert run_tool(main, []) == 130
    assert done == [0, 1, 2] and capsys.readouterr().err.splitlines()[-1] == 'interrupted'
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    interrupts.check()  # and forgotten: in-process code after the tool (a test) goes on


def test_a_ctrl_c_a_library_turned_into_another_error_is_reported_as_interrupted(capsys):
    def main(argv):
        try:  # as mmengine's Config.pretty_text around yapf
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        except:  # noqa: E722
            raise SyntaxError('Failed to format the config file')
        return 0

    assert run_tool(main, []) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == 'interrupted' and 'SyntaxError' not in err


def test_without_a_ctrl_c_errors_and_results_are_as_before(capsys):
    assert run_tool(lambda argv: 0, []) == 0

    def fails(argv):
        raise SyntaxError('bad config')

    assert run_tool(fails, []) == 1
    assert capsys.readouterr().err.startswith('error: SyntaxError: bad config')
    interrupts.check()  # no flag left behind


def test_an_ignored_sigint_stays_ignored():
    """A background job (SIGINT ignored) is not made to hear Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts.remembered():
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass
    assert not interrupts.interrupted()


def test_someone_elses_handler_is_left_alone():
    calls = []
    previous = signal.signal(signal.SIGINT, lambda *a: calls.append(a))
    try:
        with interrupts.remembered():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
        assert calls and not interrupts.interrupted()
    finally:
        signal.signal(signal.SIGINT, previous)


@LOST
def test_check_outside_a_tool_raises_only_after_a_ctrl_c():
    interrupts.check()
    with pytest.raises(KeyboardInterrupt):
        with interrupts.remembered():
            _sigint_in_a_finalizer()
            interrupts.check()
    assert not interrupts.interrupted()
    with pytest.raises(KeyboardInterrupt) as raised:  # another error after a Ctrl-C
        with interrupts.remembered():
            _sigint_in_a_finalizer()
            raise ValueError('made of the interrupt')
    assert isinstance(raised.value.__cause__, ValueError)
