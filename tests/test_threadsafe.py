"""call_soon_threadsafe and the waker: work from other threads, coalesced wake-ups."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from .conftest import before_each_wait, run_until


def _noop(*args):
    pass


def pending_waker_bytes(reactor) -> bytes:
    """What is waiting on the waker's read socket, without consuming it."""
    try:
        return reactor._waker._rsock.recv(4096, socket.MSG_PEEK)
    except BlockingIOError:
        return b""


def signal_when_blocking(reactor) -> threading.Event:
    """An Event set each time the loop is about to block in select()."""
    blocking = threading.Event()

    def before(timeout):
        if timeout is None or timeout > 0:
            blocking.set()

    before_each_wait(reactor, before)
    return blocking


def test_many_threads_each_call_runs_once_in_order(reactor):
    n_threads, n_calls = 4, 5000
    results: list[tuple[int, int]] = []
    thread_errors: list[BaseException] = []
    go = threading.Event()

    def producer(tid):
        try:
            if not go.wait(10):
                raise AssertionError("the loop never started")
            for i in range(n_calls):
                reactor.call_soon_threadsafe(results.append, (tid, i))
        except BaseException as exc:  # reported by the main thread
            thread_errors.append(exc)

    threads = [threading.Thread(target=producer, args=(tid,)) for tid in range(n_threads)]
    for thread in threads:
        thread.start()
    try:
        reactor.call_soon(go.set)  # the producers start once the loop is running
        run_until(
            reactor,
            lambda: thread_errors
            or (not any(t.is_alive() for t in threads) and len(results) >= n_threads * n_calls),
            timeout=30,
        )
        reactor.run_once(0)  # nothing more may show up
    finally:
        go.set()
        for thread in threads:
            thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert thread_errors == []
    assert len(results) == n_threads * n_calls
    for tid in range(n_threads):
        assert [i for t, i in results if t == tid] == list(range(n_calls))


def test_waker_writes_are_coalesced(reactor):
    ran = []
    assert pending_waker_bytes(reactor) == b""
    for i in range(1000):
        reactor.call_soon_threadsafe(ran.append, i)
    assert pending_waker_bytes(reactor) == b"\0"  # one byte, not a thousand
    reactor.run_once(0)
    assert pending_waker_bytes(reactor) == b""
    assert ran == list(range(1000))

    # The drain re-armed the waker: the next call writes again.
    reactor.call_soon_threadsafe(ran.append, "again")
    assert pending_waker_bytes(reactor) == b"\0"
    reactor.run_once(0)
    assert pending_waker_bytes(reactor) == b""
    assert ran[-1] == "again"


def test_waker_coalesces_across_threads(reactor):
    ran = []
    thread_errors = []

    def producer():
        try:
            for i in range(500):
                reactor.call_soon_threadsafe(ran.append, i)
        except BaseException as exc:
            thread_errors.append(exc)

    threads = [threading.Thread(target=producer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert thread_errors == []
    # Two racing threads may both see "nothing pending"; never more than that.
    assert 1 <= len(pending_waker_bytes(reactor)) <= 2
    reactor.run_once(0)
    assert pending_waker_bytes(reactor) == b""
    assert len(ran) == 1000


def test_threadsafe_call_wakes_a_blocked_run(reactor):
    blocking = signal_when_blocking(reactor)
    loop_running = threading.Event()
    thread_errors = []
    ran = []
    watchdog_fired = []

    def wake_from_thread():
        try:
            # The loop is running (set from inside a callback), and then
            # blocked in select() with nothing but the 10 s watchdog pending.
            if not loop_running.wait(10) or not blocking.wait(10):
                raise AssertionError("the loop never blocked")
            reactor.call_soon_threadsafe(from_thread, threading.get_ident())
        except BaseException as exc:
            thread_errors.append(exc)

    def from_thread(ident):
        ran.append((ident, threading.get_ident()))
        reactor.stop()

    def watchdog():
        watchdog_fired.append(True)
        reactor.stop()

    reactor.call_later(10, watchdog)
    reactor.call_soon(loop_running.set)
    thread = threading.Thread(target=wake_from_thread)
    thread.start()
    try:
        started = time.monotonic()
        reactor.run()
        elapsed = time.monotonic() - started
    finally:
        loop_running.set()
        blocking.set()
        thread.join(10)
    assert thread_errors == []
    assert watchdog_fired == []
    assert len(ran) == 1
    caller, runner = ran[0]
    assert caller == thread.ident
    assert runner == threading.get_ident()  # it ran in the loop's thread
    assert elapsed < 10


def test_closed_reactor_rejects_threadsafe_calls(reactor):
    reactor.close()
    with pytest.raises(RuntimeError, match="closed"):
        reactor.call_soon_threadsafe(_noop)

    caught = []

    def from_thread():
        try:
            reactor.call_soon_threadsafe(_noop)
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join(10)
    assert len(caught) == 1
    assert isinstance(caught[0], RuntimeError) and "closed" in str(caught[0])


def test_threadsafe_callback_error_goes_to_exception_handler(reactor):
    contexts = []
    reactor.set_exception_handler(lambda r, ctx: contexts.append(ctx))
    ran = []

    def boom():
        raise ValueError("from a thread")

    thread = threading.Thread(
        target=lambda: (reactor.call_soon_threadsafe(boom), reactor.call_soon_threadsafe(ran.append, 1))
    )
    thread.start()
    thread.join(10)
    run_until(reactor, lambda: ran)
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ValueError)
