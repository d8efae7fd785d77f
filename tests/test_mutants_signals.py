"""Signal handler behaviours that mutation testing found unpinned (python -m tests.mutation)."""

from __future__ import annotations

import os
import signal
import threading
import warnings

import pytest

from reactor import COMPILED, Reactor

from .conftest import run_until


def in_a_thread(fn):
    errors: list = []

    def run():
        try:
            fn()
        except Exception as exc:  # the failure being looked at
            errors.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return errors


def test_signal_numbers_are_checked_with_the_reason(reactor):
    with pytest.raises(TypeError) as refused:
        reactor.add_signal_handler("SIGUSR1", print)
    # The compiled build checks the annotation (sig: int) at the call, before
    # our check runs, with mypyc's wording; both name what was expected.
    expected = "int object expected; got str" if COMPILED else "signal number expected, got 'SIGUSR1'"
    assert str(refused.value) == expected
    with pytest.raises(ValueError) as refused:
        reactor.add_signal_handler(1000, print)
    assert str(refused.value) == "invalid signal number 1000"


def test_only_the_main_thread_adds_and_removes(reactor):
    (exc,) = in_a_thread(lambda: reactor.add_signal_handler(signal.SIGUSR1, print))
    assert str(exc) == "signal handlers can only be added from the main thread"
    reactor.add_signal_handler(signal.SIGUSR1, print)
    try:
        (exc,) = in_a_thread(lambda: reactor.remove_signal_handler(signal.SIGUSR1))
        assert str(exc) == "signal handlers can only be removed from the main thread"
    finally:
        assert reactor.remove_signal_handler(signal.SIGUSR1)


def test_a_replaced_handler_does_not_run_for_a_signal_already_queued(reactor):
    ran = []
    reactor.add_signal_handler(signal.SIGUSR1, ran.append, "old")
    try:
        signal.raise_signal(signal.SIGUSR1)
        reactor.run_once(0)  # the wake-up is read: the old handler's call is queued
        reactor.add_signal_handler(signal.SIGUSR1, ran.append, "new")
        reactor.run_once(0)
        assert "old" not in ran
    finally:
        reactor.remove_signal_handler(signal.SIGUSR1)


def test_after_a_close_from_another_thread_the_previous_handler_gets_the_signal():
    got = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: got.append((signum, frame is not None)))
    try:
        reactor = Reactor()
        reactor.add_signal_handler(signal.SIGUSR2, got.append, "ours")
        assert in_a_thread(reactor.close) == []
        signal.raise_signal(signal.SIGUSR2)  # in the main thread: the state comes back, then the signal
        assert got == [(signal.SIGUSR2, True)]
        signal.raise_signal(signal.SIGUSR2)  # and stays back
        assert got == [(signal.SIGUSR2, True)] * 2
        assert signal.set_wakeup_fd(-1) == -1
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_after_a_close_from_another_thread_a_default_disposition_takes_its_default_action():
    # SIGWINCH's default action is to ignore it: the signal is raised again, harmlessly.
    before = signal.signal(signal.SIGWINCH, signal.SIG_DFL)
    try:
        reactor = Reactor()
        reactor.add_signal_handler(signal.SIGWINCH, print)
        assert in_a_thread(reactor.close) == []
        signal.raise_signal(signal.SIGWINCH)
        assert signal.getsignal(signal.SIGWINCH) is signal.SIG_DFL
        assert reactor.remove_signal_handler(signal.SIGWINCH) is False
    finally:
        signal.signal(signal.SIGWINCH, before)


def test_after_a_close_from_another_thread_an_ignored_signal_stays_ignored_and_a_default_one_acts():
    # Ignored before the reactor: the signal the orphaned handler catches is
    # dropped, as it would have been without the reactor.
    before = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        reactor = Reactor()
        reactor.add_signal_handler(signal.SIGUSR1, print)
        assert in_a_thread(reactor.close) == []
        signal.raise_signal(signal.SIGUSR1)
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
        assert signal.set_wakeup_fd(-1) == -1
    finally:
        signal.signal(signal.SIGUSR1, before)
    # Default before the reactor: SIGUSR1's default action ends the process,
    # so this part runs in a child, which must die of the signal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (3.12+: fork() with a watchdog thread)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        status = 1
        try:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
            reactor = Reactor()
            reactor.add_signal_handler(signal.SIGUSR1, print)
            if in_a_thread(reactor.close) == []:
                signal.raise_signal(signal.SIGUSR1)  # the handler restores SIG_DFL and raises it again
                status = 0  # still alive: the default action was not taken
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGUSR1, status


def test_a_disposition_python_cannot_name_is_put_back_as_the_default(monkeypatch, reactor):
    # signal.getsignal() says None for a handler installed by C code (an
    # application embedding Python): the best the reactor can restore is SIG_DFL.
    real_getsignal = signal.getsignal
    before = signal.signal(signal.SIGUSR1, print)  # (what a C handler would be; Python cannot name it)
    try:
        monkeypatch.setattr(signal, "getsignal",
                            lambda sig: None if sig == signal.SIGUSR1 else real_getsignal(sig))
        reactor.add_signal_handler(signal.SIGUSR1, print)
        assert reactor.remove_signal_handler(signal.SIGUSR1)
        assert real_getsignal(signal.SIGUSR1) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR1, before)
