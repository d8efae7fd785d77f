"""No test can hang: pytest-timeout's ``signal`` method, made to stick.

Why not pytest-timeout as it comes
----------------------------------
Its two methods were tried on a test that spins in Python, one that blocks
in ``select.poll().poll()``, one whose reactor blocks in ``select()``, and
one whose code under test spins inside a reactor callback (see
tests/test_timeouts.py, and docs/TESTING.md for the record):

* ``thread`` (a timer thread) dumps every stack and calls ``os._exit(1)``:
  it ends anything, but it ends the whole run with it, at the first hung
  test, with no report of that test or of any other.
* ``signal`` (SIGALRM, the default where it exists) raises ``Failed`` in the
  main thread: that interrupts pure-Python code and a blocking
  ``select()``/``poll()``/``epoll()`` alike (PEP 475 retries the call after
  EINTR only when the handler returns; ours raises). The test fails, the run
  goes on. But it fires once, and ``Failed`` is a ``BaseException``: when it
  lands inside a reactor callback, the loop's error boundary (like asyncio's)
  hands it to the exception handler and carries on, and the test runs on
  with no timeout left. That is how a planted bug hung a run for good.

What this plugin does instead
-----------------------------
The ``signal`` method, whose alarm keeps firing (every ``REPEAT`` seconds,
at most a tenth of the timeout) until the failure it raises gets out of the
phase (setup, call or teardown) it was raised in. The first is pytest's
``Failed``, as pytest-timeout raises; the repeats are ``TimeoutAgain``, a
``SystemExit``, which the reactor's error boundary (like asyncio's) re-raises
instead of reporting. Once a phase ends after a timeout, the repeats stop
(teardown must be able to run). And a backstop: if the test is still running
``GRACE`` seconds (at most 30, at most the timeout) after its timeout, a
watchdog thread dumps every thread's stack and ends the run as ``thread``
would, so nothing, not even ``except BaseException: pass`` in a loop, can
hang it.

It takes over only where pytest-timeout would use ``signal`` (the
``timeout_method`` in setup.cfg, on the main thread of a platform with
SIGALRM); elsewhere pytest-timeout's own methods apply unchanged. The
timeout itself (``--timeout``, ``timeout`` in setup.cfg, ``PYTEST_TIMEOUT``,
the ``timeout`` marker) is read by pytest-timeout as always.

tests/conftest.py registers this module; ``-p tests.timeouts`` loads it in
any other pytest run (tests/test_timeouts.py does that, to prove it).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import traceback
from typing import Any, Optional

import pytest

REPEAT = 1.0  # seconds between re-raises, at most (a tenth of the timeout if less)
GRACE = 30.0  # seconds after the timeout before the watchdog ends the run, at most
MESSAGE = "Timeout (>{timeout:g}s) from pytest-timeout (signal method, tests/timeouts.py)."

_ALARM = pytest.StashKey["_Alarm"]()


class TimeoutAgain(SystemExit):
    """The timeout, raised again after the first ``Failed`` was swallowed.

    A ``SystemExit``, because that is what an error boundary in the style of
    asyncio's (the reactor's included) lets through: it catches
    ``BaseException`` but re-raises ``SystemExit`` and ``KeyboardInterrupt``.
    pytest reports it as the test's failure, like any exception in a test.
    """


class _Alarm:
    """One test's timeout: a repeating SIGALRM, and a watchdog thread behind it."""

    def __init__(self, item: pytest.Item, timeout: float) -> None:
        self.item = item
        self.timeout = timeout
        self.repeat = max(0.05, min(REPEAT, timeout / 10))
        self.fired = 0
        self.watchdog = threading.Timer(timeout + min(GRACE, timeout), self._give_up)
        self.watchdog.name = f"tests.timeouts watchdog for {item.nodeid}"
        self.watchdog.daemon = True

    def start(self) -> None:
        signal.signal(signal.SIGALRM, self._on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout, self.repeat)
        self.watchdog.start()

    def _on_alarm(self, signum: int, frame: Any) -> None:
        __tracebackhide__ = True
        self.fired += 1
        if self.fired == 1:
            _dump_other_threads(self.item)
            pytest.fail(MESSAGE.format(timeout=self.timeout), pytrace=True)
        raise TimeoutAgain(MESSAGE.format(timeout=self.timeout)
                           + f" Raised again ({self.fired}), as SystemExit: the code under test"
                           " swallowed the first.")

    def phase_over(self) -> None:
        """A phase ended: if the timeout fired in it, its failure got out, so stop repeating."""
        if self.fired:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def cancel(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        self.watchdog.cancel()
        if self.watchdog.ident is not None:  # (started)
            self.watchdog.join()

    def _give_up(self) -> None:
        """The backstop, on the watchdog thread: every stack to stderr, then end the run."""
        try:
            # Give fd 2 back (pytest captures it): what is written now must be seen.
            capman = self.item.config.pluginmanager.getplugin("capturemanager")
            if capman is not None:
                capman.suspend_global_capture(in_=True)
            stream = sys.__stderr__
            stream.write(f"\n+++ Timeout: {self.item.nodeid} still running "
                         f"{self.timeout + min(GRACE, self.timeout):g}s after it started, "
                         "despite the timeout's failure being raised; ending the run +++\n")
            stream.flush()
            faulthandler.dump_traceback(file=stream, all_threads=True)
            stream.flush()
        finally:
            os._exit(1)


def _dump_other_threads(item: pytest.Item) -> None:
    """pytest-timeout's courtesy: where every other thread was when the time ran out."""
    current = threading.get_ident()
    frames = {ident: frame for ident, frame in sys._current_frames().items() if ident != current}
    if not frames:
        return
    terminal = item.config.get_terminal_writer()
    names = {t.ident: t.name for t in threading.enumerate()}
    terminal.sep("+", title="Timeout")
    for ident, frame in frames.items():
        terminal.sep("~", title=f"Stack of {names.get(ident, '<unknown>')} ({ident})")
        terminal.write("".join(traceback.format_stack(frame)))
    terminal.sep("+", title="Timeout")


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Optional[bool]:
    """Replace pytest-timeout's ``signal`` method with the sticky one; leave ``thread`` alone."""
    if (settings.method != "signal" or not hasattr(signal, "SIGALRM")
            or threading.current_thread() is not threading.main_thread()):
        return None  # pytest-timeout's own implementation runs instead
    alarm = _Alarm(item, float(settings.timeout))
    item.stash[_ALARM] = alarm
    item.cancel_timeout = alarm.cancel  # what pytest-timeout's cancel hook calls
    alarm.start()
    return True


def _phase_over(item: pytest.Item) -> None:
    alarm = item.stash.get(_ALARM, None)
    if alarm is not None:
        alarm.phase_over()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    yield
    _phase_over(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    yield
    _phase_over(item)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item):
    yield
    _phase_over(item)
