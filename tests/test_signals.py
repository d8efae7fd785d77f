"""Signal handlers: run in the loop, wake a blocked select(), borrow and return process state."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest

from .conftest import before_each_wait, run_until

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGUSR1") or os.name != "posix", reason="Unix signals only"
)

SIGUSR1 = getattr(signal, "SIGUSR1", None)
SIGUSR2 = getattr(signal, "SIGUSR2", None)


def _noop(*args):
    pass


def _python_handler(signum, frame):
    """A stand-in for a handler installed by someone else before the reactor."""


def current_wakeup_fd() -> int:
    """The process's signal wakeup fd, read without changing it."""
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


class SignalState:
    """What a test expects the watched dispositions to be once its reactor is closed."""

    def __init__(self, expected: dict) -> None:
        self.expected = expected

    def install(self, sig: int, handler) -> None:
        """Install *handler* as if someone else had, before the reactor."""
        signal.signal(sig, handler)
        self.expected[sig] = handler


@pytest.fixture(autouse=True)
def global_signal_state():
    """Leave SIGUSR1/SIGUSR2 and the wakeup fd as found, and check that we did.

    Set up before the ``reactor`` fixture and torn down after it, so the check
    also covers ``close()`` restoring what each test's reactor borrowed.
    """
    assert threading.current_thread() is threading.main_thread()
    watched = (SIGUSR1, SIGUSR2)
    before = {sig: signal.getsignal(sig) for sig in watched}
    wakeup_before = current_wakeup_fd()
    state = SignalState(dict(before))
    yield state
    after = {sig: signal.getsignal(sig) for sig in watched}
    wakeup_after = current_wakeup_fd()
    for sig, handler in before.items():
        signal.signal(sig, handler)
    signal.set_wakeup_fd(wakeup_before)
    assert after == state.expected, "signal dispositions were not restored"
    assert wakeup_after == wakeup_before, "the wakeup fd was not restored"


@pytest.fixture
def own_wakeup_fd():
    """Install a wakeup fd of our own (as another library might) for the test."""
    r, w = socket.socketpair()
    try:
        w.setblocking(False)
        previous = signal.set_wakeup_fd(w.fileno())
        try:
            yield w.fileno()
        finally:
            signal.set_wakeup_fd(previous)
    finally:
        r.close()
        w.close()


def test_signal_runs_handler_inside_the_loop_with_args(reactor):
    calls = []

    def handler(*args):
        calls.append((args, reactor.is_running()))

    reactor.add_signal_handler(SIGUSR1, handler, "x", 1)
    os.kill(os.getpid(), SIGUSR1)
    assert calls == []  # not run from the signal handler itself
    run_until(reactor, lambda: calls)
    for _ in range(3):
        reactor.run_once(0)
    assert calls == [(("x", 1), True)]  # once per signal, inside the loop


def test_signal_handlers_are_per_signal(reactor):
    calls = []
    reactor.add_signal_handler(SIGUSR1, calls.append, "usr1")
    reactor.add_signal_handler(SIGUSR2, calls.append, "usr2")
    os.kill(os.getpid(), SIGUSR2)
    run_until(reactor, lambda: calls)
    reactor.run_once(0)
    assert calls == ["usr2"]


def test_signal_from_another_thread_wakes_a_blocked_run(reactor):
    blocking = threading.Event()

    def before(timeout):
        if timeout is None or timeout > 0:
            blocking.set()

    before_each_wait(reactor, before)
    loop_running = threading.Event()
    thread_errors = []
    calls = []
    watchdog_fired = []

    def send_signal():
        try:
            if not loop_running.wait(10) or not blocking.wait(10):
                raise AssertionError("the loop never blocked")
            os.kill(os.getpid(), SIGUSR1)
        except BaseException as exc:
            thread_errors.append(exc)

    def handler(tag):
        calls.append((tag, threading.get_ident()))
        reactor.stop()

    def watchdog():
        watchdog_fired.append(True)
        reactor.stop()

    reactor.add_signal_handler(SIGUSR1, handler, "usr1")
    reactor.call_later(10, watchdog)
    reactor.call_soon(loop_running.set)
    thread = threading.Thread(target=send_signal)
    thread.start()
    try:
        reactor.run()
    finally:
        loop_running.set()
        blocking.set()
        thread.join(10)
    assert thread_errors == []
    assert watchdog_fired == []
    assert calls == [("usr1", threading.get_ident())]


@pytest.mark.parametrize(
    "previous", [_python_handler, signal.SIG_IGN, signal.SIG_DFL], ids=["python", "ign", "dfl"]
)
def test_previous_handler_restored_on_remove(reactor, global_signal_state, previous):
    global_signal_state.install(SIGUSR1, previous)
    reactor.add_signal_handler(SIGUSR1, _noop)
    assert signal.getsignal(SIGUSR1) not in (previous, signal.SIG_DFL, signal.SIG_IGN)
    # Replacing our handler must not make ours the "previous" one.
    reactor.add_signal_handler(SIGUSR1, _noop)
    assert reactor.remove_signal_handler(SIGUSR1) is True
    assert signal.getsignal(SIGUSR1) == previous
    assert reactor.remove_signal_handler(SIGUSR1) is False
    assert signal.getsignal(SIGUSR1) == previous


def test_previous_handlers_restored_on_close(reactor, global_signal_state):
    global_signal_state.install(SIGUSR1, _python_handler)
    global_signal_state.install(SIGUSR2, signal.SIG_IGN)
    wakeup_before = current_wakeup_fd()
    reactor.add_signal_handler(SIGUSR1, _noop)
    reactor.add_signal_handler(SIGUSR2, _noop)
    assert current_wakeup_fd() == reactor._waker.write_fileno()
    reactor.close()
    assert signal.getsignal(SIGUSR1) is _python_handler
    assert signal.getsignal(SIGUSR2) == signal.SIG_IGN
    assert current_wakeup_fd() == wakeup_before


def test_wakeup_fd_borrowed_and_restored_on_remove(reactor, own_wakeup_fd):
    reactor.add_signal_handler(SIGUSR1, _noop)
    assert current_wakeup_fd() == reactor._waker.write_fileno()
    reactor.add_signal_handler(SIGUSR2, _noop)
    assert reactor.remove_signal_handler(SIGUSR1) is True
    # Still one handler left: the wakeup fd is still needed.
    assert current_wakeup_fd() == reactor._waker.write_fileno()
    assert reactor.remove_signal_handler(SIGUSR2) is True
    assert current_wakeup_fd() == own_wakeup_fd

    # Borrowed again, and given back again.
    reactor.add_signal_handler(SIGUSR2, _noop)
    assert current_wakeup_fd() == reactor._waker.write_fileno()
    assert reactor.remove_signal_handler(SIGUSR2) is True
    assert current_wakeup_fd() == own_wakeup_fd


def test_wakeup_fd_restored_on_close(reactor, own_wakeup_fd):
    try:
        reactor.add_signal_handler(SIGUSR1, _noop)
        assert current_wakeup_fd() == reactor._waker.write_fileno()
    finally:
        reactor.close()  # before own_wakeup_fd closes the fd it restores to
    assert current_wakeup_fd() == own_wakeup_fd


def test_wakeup_fd_not_borrowed_without_handlers(reactor):
    before = current_wakeup_fd()
    reactor.call_soon(_noop)
    reactor.run_once(0)
    assert current_wakeup_fd() == before


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"])
def test_uncatchable_signal_raises_runtime_error_and_changes_nothing(reactor, sig):
    signum = getattr(signal, sig)
    before = current_wakeup_fd()
    with pytest.raises(RuntimeError, match="cannot be caught"):
        reactor.add_signal_handler(signum, _noop)
    assert current_wakeup_fd() == before  # given back: no handler needs it
    assert reactor.remove_signal_handler(signum) is False


def test_uncatchable_signal_keeps_wakeup_fd_for_existing_handlers(reactor):
    calls = []
    reactor.add_signal_handler(SIGUSR1, calls.append, "usr1")
    with pytest.raises(RuntimeError):
        reactor.add_signal_handler(signal.SIGKILL, _noop)
    assert current_wakeup_fd() == reactor._waker.write_fileno()
    os.kill(os.getpid(), SIGUSR1)
    run_until(reactor, lambda: calls)
    assert calls == ["usr1"]


@pytest.mark.parametrize("sig", [0, -1, 10_000])
def test_invalid_signal_number_raises_value_error(reactor, sig):
    before = current_wakeup_fd()
    with pytest.raises(ValueError):
        reactor.add_signal_handler(sig, _noop)
    with pytest.raises(ValueError):
        reactor.remove_signal_handler(sig)
    assert current_wakeup_fd() == before


@pytest.mark.parametrize("sig", ["SIGUSR1", 10.0, None])
def test_non_int_signal_raises_type_error(reactor, sig):
    before = current_wakeup_fd()
    with pytest.raises(TypeError):
        reactor.add_signal_handler(sig, _noop)
    with pytest.raises(TypeError):
        reactor.remove_signal_handler(sig)
    assert current_wakeup_fd() == before


def test_non_callable_handler_raises_type_error(reactor):
    before = signal.getsignal(SIGUSR1)
    with pytest.raises(TypeError):
        reactor.add_signal_handler(SIGUSR1, "not callable")
    assert signal.getsignal(SIGUSR1) == before
    assert reactor.remove_signal_handler(SIGUSR1) is False


def test_add_from_non_main_thread_raises_runtime_error(reactor):
    before_handler = signal.getsignal(SIGUSR1)
    before_wakeup = current_wakeup_fd()
    caught = []

    def add():
        try:
            reactor.add_signal_handler(SIGUSR1, _noop)
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=add)
    thread.start()
    thread.join(10)
    assert len(caught) == 1
    assert isinstance(caught[0], RuntimeError) and "main thread" in str(caught[0])
    assert signal.getsignal(SIGUSR1) == before_handler
    assert current_wakeup_fd() == before_wakeup
    assert reactor.remove_signal_handler(SIGUSR1) is False


def test_remove_unknown_signal_returns_false(reactor):
    assert reactor.remove_signal_handler(SIGUSR1) is False
    reactor.add_signal_handler(SIGUSR2, _noop)
    assert reactor.remove_signal_handler(SIGUSR1) is False
    assert reactor.remove_signal_handler(SIGUSR2) is True


def test_remove_on_closed_reactor_returns_false(reactor):
    reactor.close()
    assert reactor.remove_signal_handler(SIGUSR1) is False
    with pytest.raises(RuntimeError, match="closed"):
        reactor.add_signal_handler(SIGUSR1, _noop)


def test_replacing_a_handler_calls_only_the_new_one(reactor):
    calls = []
    reactor.add_signal_handler(SIGUSR1, calls.append, "old")
    reactor.add_signal_handler(SIGUSR1, calls.append, "new")
    os.kill(os.getpid(), SIGUSR1)
    run_until(reactor, lambda: calls)
    reactor.run_once(0)
    assert calls == ["new"]


def test_handler_removed_before_dispatch_is_not_called(reactor):
    calls = []
    reactor.add_signal_handler(SIGUSR1, calls.append, "usr1")
    reactor.add_signal_handler(SIGUSR2, calls.append, "usr2")
    os.kill(os.getpid(), SIGUSR1)  # its byte is waiting in the waker
    assert reactor.remove_signal_handler(SIGUSR1) is True
    os.kill(os.getpid(), SIGUSR2)
    run_until(reactor, lambda: calls)
    reactor.run_once(0)
    assert calls == ["usr2"]


def test_signal_handler_error_goes_to_exception_handler(reactor):
    contexts = []
    reactor.set_exception_handler(lambda r, ctx: contexts.append(ctx))

    def broken():
        raise ValueError("signal handler failed")

    reactor.add_signal_handler(SIGUSR1, broken)
    os.kill(os.getpid(), SIGUSR1)
    run_until(reactor, lambda: contexts)
    assert isinstance(contexts[0]["exception"], ValueError)
    # Still installed: a second signal is handled too.
    os.kill(os.getpid(), SIGUSR1)
    run_until(reactor, lambda: len(contexts) == 2)


def test_close_from_another_thread_still_releases_the_sockets(selector_class):
    import threading

    from reactor import Reactor

    reactor = Reactor(selector=selector_class())
    reactor.add_signal_handler(signal.SIGUSR2, lambda: None)
    waker_socks = [reactor._waker._rsock, reactor._waker._wsock]
    errors = []

    def close():
        try:
            reactor.close()
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=close)
    t.start()
    t.join()
    assert reactor.is_closed() and errors == []
    # The waker is the process's wakeup fd until the main thread restores
    # the signal state: closing it now would leave that fd dangling.
    assert all(s.fileno() != -1 for s in waker_socks)
    assert reactor.remove_signal_handler(signal.SIGUSR2) is True
    assert all(s.fileno() == -1 for s in waker_socks)
