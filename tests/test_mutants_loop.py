"""BaseReactor behaviours that mutation testing found unpinned (python -m tests.mutation).

What a caller of the loop can observe: its repr, the events an
``after_select`` instrument sees on every selector, the errors and log lines
it produces and their wording, debug mode switched on and off at run time,
``watch_io``, ``stats()``, and what happens to a dead owner's handles when
its fd number is reused; a fresh reactor's counters, limits and defaults;
which selectors are polled directly (and in which unit) and which through
their ``select()``; an ``after_select`` instrument that removes a reader;
a closed fd reported by poll() in the same call as live ones.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import time

import pytest

from reactor import Reactor
from reactor.handles import describe_callback
from reactor.instruments import Instrument

from .conftest import run_until


def _noop(*args):
    pass


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def contexts(reactor) -> list:
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    return errors


def records(caplog, level=logging.DEBUG) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "reactor" and r.levelno >= level]


# -- repr and state ----------------------------------------------------------------

def test_repr_says_the_state_the_selector_and_what_waits(selector_class):
    reactor = Reactor(selector=selector_class())
    name = selector_class.__name__
    assert repr(reactor) == f"<Reactor idle selector={name} ready=0 timers=0>"
    seen = []
    reactor.call_soon(lambda: seen.append(repr(reactor)))
    reactor.call_later(60, _noop)
    reactor.run_once(0)
    assert seen == [f"<Reactor running selector={name} ready=0 timers=1>"]
    reactor.call_soon(_noop)
    assert repr(reactor) == f"<Reactor idle selector={name} ready=1 timers=1>"
    reactor.close()
    assert repr(reactor) == f"<Reactor closed selector={name} ready=0 timers=0>"


def test_is_running_is_a_bool_after_run(reactor):
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert reactor.is_running() is False
    reactor.run_once(0)
    assert reactor.is_running() is False


# -- after_select sees what select() would return ----------------------------------------

class Events(Instrument):
    def __init__(self):
        self.seen = []

    def after_select(self, events, waited):
        self.seen.append(sorted((key.fd, mask) for key, mask in events))


def fill(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"x" * 65536)
    except BlockingIOError:
        pass


def test_after_select_gets_each_fd_with_exactly_its_ready_directions(reactor):
    R, W = selectors.EVENT_READ, selectors.EVENT_WRITE
    events = Events()
    reactor.add_instrument(events)
    writable, w_peer = socket.socketpair()  # writable, nothing to read
    readable, r_peer = socket.socketpair()  # something to read, send buffer full
    both, b_peer = socket.socketpair()  # something to read, and writable
    try:
        fill(readable)
        r_peer.sendall(b"ping")
        b_peer.sendall(b"ping")
        for sock in (writable, readable, both):
            reactor.add_reader(sock, _noop)
            reactor.add_writer(sock, _noop)
        reactor.run_once(0)
        assert events.seen[-1] == sorted([(writable.fileno(), W), (readable.fileno(), R),
                                          (both.fileno(), R | W)])
        # A direction that is ready but not watched is not reported.
        reactor.remove_writer(both)
        reactor.remove_reader(writable)
        reactor.run_once(0)
        assert events.seen[-1] == sorted([(writable.fileno(), W), (readable.fileno(), R),
                                          (both.fileno(), R)])
        for sock in (writable, readable, both):
            reactor.remove_reader(sock)
            reactor.remove_writer(sock)
    finally:
        for sock in (writable, w_peer, readable, r_peer, both, b_peer):
            sock.close()


# -- errors: wording and context ---------------------------------------------------

@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at", "call_soon_threadsafe",
                                    "add_reader", "add_writer", "add_signal_handler"])
def test_a_callback_that_is_not_callable_is_refused_naming_the_method(reactor, pair, method):
    a, b = pair
    first = {"call_soon": (), "call_later": (1,), "call_at": (1.0,), "call_soon_threadsafe": (),
             "add_reader": (a,), "add_writer": (a,), "add_signal_handler": (10,)}[method]
    with pytest.raises(TypeError) as refused:
        getattr(reactor, method)(*first, "not callable")
    assert str(refused.value) == f"{method}() expects a callable, got 'not callable'"
    assert reactor.stats().readers == reactor.stats().writers == 0


def test_bad_handlers_and_instruments_are_refused_with_what_was_given(reactor):
    with pytest.raises(TypeError) as refused:
        reactor.set_exception_handler(42)
    assert str(refused.value) == "a callable object or None was expected, got 42"
    with pytest.raises(TypeError) as refused:
        reactor.add_instrument("an instrument")
    assert str(refused.value) == "an Instrument was expected, got 'an instrument'"


@pytest.mark.parametrize("selector_class", [selectors.SelectSelector, selectors.PollSelector])
def test_a_dead_fd_is_reported_with_its_handles(reactor, pair):
    # (epoll forgets a closed fd by itself: nothing to find, nothing to report)
    errors = contexts(reactor)
    a, b = pair
    fd = a.fileno()
    reactor.add_reader(a, _noop, "r")
    a.close()  # without remove_reader: the owner's bug
    run_until(reactor, lambda: errors)
    (ctx,) = errors
    assert ctx["message"] == (f"fd {fd} was closed while registered; its reader and writer were removed "
                              "(call remove_reader/remove_writer before closing)")
    assert ctx["fd"] == fd and ctx["writer"] is None
    assert repr(ctx["reader"]).startswith("<Handle cancelled _noop(") and ctx["reader"].cancelled()


def test_the_default_handler_logs_the_context_in_order(reactor, caplog):
    try:
        raise ValueError("boom")
    except ValueError as exc:
        error = exc
    with caplog.at_level(logging.ERROR, logger="reactor"):
        reactor.call_exception_handler({"message": "it broke", "exception": error, "zeta": 1, "alpha": "a"})
        reactor.call_exception_handler({"exception": error})
        reactor.call_exception_handler({"message": "no exception"})
    first, second, third = records(caplog)
    assert first.getMessage() == "it broke\nalpha: 'a'\nzeta: 1"
    assert first.exc_info[1] is error
    assert second.getMessage() == "Unhandled exception in reactor" and second.exc_info[1] is error
    assert third.getMessage() == "no exception" and not third.exc_info
    assert "NoneType: None" not in caplog.text


def test_a_failing_exception_handler_is_named_in_the_last_resort_log(reactor, caplog, monkeypatch):
    def handler(r, ctx):
        raise RuntimeError("handler broke")

    reactor.set_exception_handler(handler)
    with caplog.at_level(logging.ERROR, logger="reactor"):
        reactor.call_exception_handler({"message": "first"})
    (record,) = records(caplog)
    assert record.getMessage() == (f"Exception in the exception handler {describe_callback(handler)} "
                                   "while handling: first")
    assert isinstance(record.exc_info[1], RuntimeError)
    caplog.clear()
    reactor.set_exception_handler(None)

    class BadRepr:  # the default handler renders every context value: this one breaks it
        def __repr__(self):
            raise RuntimeError("default broke")

    # (Not by replacing default_exception_handler: a compiled Reactor's methods
    # cannot be replaced on the instance.)
    with caplog.at_level(logging.ERROR, logger="reactor"):
        reactor.call_exception_handler({"message": "second", "value": BadRepr()})
    (record,) = records(caplog)
    assert record.getMessage() == "Exception in the exception handler (default) while handling: second"


# -- debug mode at run time --------------------------------------------------------

def slow():
    time.sleep(0.002)


def slow_warnings(reactor, caplog, schedule) -> list[str]:
    """Run one slow callback scheduled by *schedule*; the slow-callback warnings logged."""
    reactor.slow_callback_duration = 0.001
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reactor"):
        schedule()
        reactor.run_once(0)
    return [r.getMessage() for r in records(caplog, logging.WARNING) if "slow callback" in r.getMessage()]


def test_debug_mode_switched_at_run_time(reactor, caplog):
    reactor.set_debug(False)  # off when it is off: nothing is installed
    assert slow_warnings(reactor, caplog, lambda: reactor.call_soon(slow)) == []
    assert reactor.watch_io is False
    reactor.set_debug(True)
    reactor.set_debug(True)  # twice: still on, once
    (warning,) = slow_warnings(reactor, caplog, lambda: reactor.call_soon(slow))
    assert warning.startswith("slow callback: <Handle slow()> took ")
    reactor.set_debug(False)
    assert slow_warnings(reactor, caplog, lambda: reactor.call_soon(slow)) == []
    reactor.call_later(0, _noop)  # debug off: scheduling works and remembers nothing
    reactor.call_soon_threadsafe(_noop)
    reactor.run_once(0)


@pytest.mark.parametrize("how", ["call_soon", "call_later", "call_at", "call_soon_threadsafe"])
def test_debug_mode_knows_where_each_kind_of_callback_was_scheduled(reactor, caplog, how):
    reactor.set_debug(True)
    schedule = {"call_soon": lambda: reactor.call_soon(slow),
                "call_later": lambda: reactor.call_later(0, slow),
                "call_at": lambda: reactor.call_at(reactor.time(), slow),
                "call_soon_threadsafe": lambda: reactor.call_soon_threadsafe(slow)}[how]
    (warning,) = slow_warnings(reactor, caplog, schedule)
    where = warning.split("scheduled at:\n", 1)[1]
    assert "(unknown)" not in where and where.lstrip().startswith("File ")


def test_debug_mode_with_an_instrument_that_watches_timers(reactor, caplog):
    class Timers(Instrument):
        def __init__(self):
            self.scheduled = []

        def timer_scheduled(self, handle):
            self.scheduled.append(handle)

    timers = Timers()
    reactor.add_instrument(timers)
    handle = reactor.call_later(0, slow)  # not in debug mode: the instrument alone
    assert timers.scheduled == [handle]
    handle.cancel()
    reactor.set_debug(True)
    handle = reactor.call_later(0, slow)
    assert timers.scheduled[-1] is handle
    reactor.slow_callback_duration = 0.001
    with caplog.at_level(logging.WARNING, logger="reactor"):
        reactor.run_once(0)
    assert "(unknown)" not in caplog.text


# -- watch_io and stats --------------------------------------------------------------

def test_watch_io_follows_the_instruments_that_count_bytes(reactor):
    class Loop(Instrument):
        def before_select(self, timeout):
            pass

    class Bytes(Instrument):
        def bytes_received(self, transport, n):
            pass

    loop, counting = Loop(), Bytes()
    assert reactor.watch_io is False
    reactor.add_instrument(loop)
    assert reactor.watch_io is False
    reactor.add_instrument(counting)
    assert reactor.watch_io is True
    reactor.remove_instrument(loop)  # only an instrument that does not watch the loop
    ran = []
    reactor.call_soon(ran.append, "ran")
    reactor.run_once(0)
    assert ran == ["ran"]
    reactor.remove_instrument(counting)
    assert reactor.watch_io is False


def test_stats_count_every_reader_and_writer(reactor):
    socks = [socket.socketpair() for _ in range(3)]
    try:
        for a, b in socks:
            reactor.add_writer(a, _noop)
        reactor.add_reader(socks[0][1], _noop)
        assert reactor.stats().writers == 3 and reactor.stats().readers == 1
        for a, b in socks:
            reactor.remove_writer(a)
        reactor.remove_reader(socks[0][1])
    finally:
        for a, b in socks:
            a.close()
            b.close()


# -- a dead owner's handles do not follow its fd number ------------------------------------

@pytest.mark.parametrize("kind", ["socket", "file object"])
def test_a_new_owner_of_a_reused_fd_inherits_none_of_the_old_owners_handles(reactor, kind):
    a, b = socket.socketpair()
    old = a if kind == "socket" else a.makefile("rwb", buffering=0)  # closed: fileno() -1 / raises
    called = []
    reactor.add_reader(old, called.append, "old reader")
    reactor.add_writer(old, called.append, "old writer")
    fd = a.fileno()
    c, d = socket.socketpair()  # (made first, so that neither gets fd's number)
    old.close()
    a.close()  # the owner forgot remove_reader/remove_writer
    os.dup2(c.fileno(), fd)  # the number comes back, for another socket
    new = socket.socket(fileno=fd)
    try:
        reactor.add_reader(new, called.append, "new reader")
        d.sendall(b"x")
        reactor.run_once(0)
        assert called == ["new reader"]  # the old writer would fire too: the socket is writable
        assert reactor.stats().writers == 0
        reactor.remove_reader(new)
    finally:
        for sock in (new, b, c, d):
            sock.close()


# -- the select() path and the accounts of where time goes --------------------------------

def test_each_direction_runs_only_when_ready(reactor):
    ran = []
    writable, w_peer = socket.socketpair()  # writable, nothing to read
    readable, r_peer = socket.socketpair()  # something to read, send buffer full
    try:
        fill(readable)
        r_peer.sendall(b"ping")
        for name, sock in (("writable", writable), ("readable", readable)):
            reactor.add_reader(sock, ran.append, f"{name}: reader")
            reactor.add_writer(sock, ran.append, f"{name}: writer")
        reactor.run_once(0)
        assert sorted(ran) == ["readable: reader", "writable: writer"]
        for sock in (writable, readable):
            reactor.remove_reader(sock)
            reactor.remove_writer(sock)
    finally:
        for sock in (writable, w_peer, readable, r_peer):
            sock.close()


def test_busy_and_select_seconds_add_up_every_interval(reactor):
    class Waits(Instrument):
        def __init__(self):
            self.waited = []

        def after_select(self, events, waited):
            self.waited.append(waited)

    waits = Waits()
    reactor.add_instrument(waits)
    started = time.perf_counter()
    for _ in range(2):
        reactor.run_once(0.01)  # nothing to do: each select() waits 10 ms
    assert all(0.01 <= w < 1 for w in waits.waited) and len(waits.waited) == 2
    assert 0.02 <= reactor.stats().select_seconds <= time.perf_counter() - started

    def busy(n):
        time.sleep(0.005)  # the work to account for
        if n:
            reactor.call_soon(busy, n - 1)
        else:
            reactor.stop()
    before = reactor.stats().busy_seconds
    started = time.perf_counter()
    reactor.call_soon(busy, 2)
    reactor.run()  # three iterations, each busy 5 ms between two select() calls
    busy_seconds = reactor.stats().busy_seconds - before
    assert 0.015 <= busy_seconds <= time.perf_counter() - started


def test_nan_times_are_refused_with_the_reason(reactor):
    with pytest.raises(ValueError) as refused:
        reactor.call_at(float("nan"), _noop)
    assert str(refused.value) == "when must be a number, not NaN"
    with pytest.raises(ValueError) as refused:
        reactor.call_later(float("nan"), _noop)
    assert str(refused.value) == "delay must be a number, not NaN"


def test_an_instrument_hears_of_every_timer(reactor):
    class Timers(Instrument):
        def __init__(self):
            self.scheduled = []

        def timer_scheduled(self, handle):
            self.scheduled.append(handle)

    timers = Timers()
    reactor.add_instrument(timers)
    handles = [reactor.call_later(1, _noop), reactor.call_at(reactor.time() + 1, _noop)]
    assert timers.scheduled == handles


def test_a_live_fd_0_registered_through_two_objects_keeps_both_directions(reactor):
    class Stdin:
        """A file object on fd 0, as sys.stdin is."""

        def fileno(self):
            return 0

    saved = os.dup(0)
    a, b = socket.socketpair()
    os.dup2(a.fileno(), 0)  # fd 0 is a socket for this test, then stdin again
    try:
        reactor.add_reader(Stdin(), _noop)
        reactor.add_writer(0, _noop)  # the same file through its number
        assert reactor.stats().readers == 1 and reactor.stats().writers == 1
        reactor.remove_reader(0)
        reactor.remove_writer(0)
        assert reactor.stats().readers == reactor.stats().writers == 0
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        a.close()
        b.close()


def test_the_wait_is_until_the_next_timer_and_zero_for_an_overdue_one(selector_class):
    from reactor.testing import VirtualClock

    class Waits(Instrument):
        def __init__(self):
            self.waits = []

        def before_select(self, timeout):
            self.waits.append(timeout)

    clock = VirtualClock()
    waits = Waits()
    with Reactor(selector=selector_class(), clock=clock) as reactor:
        reactor.add_instrument(waits)
        fired = []
        reactor.call_later(0.02, fired.append, "near")
        reactor.run_once(None)  # blocks 20 ms (of real time: nothing else to wake it)
        assert waits.waits == [0.02] and fired == []  # (the virtual clock has not moved)
        clock.advance(1)  # now overdue by 0.98 s
        reactor.run_once(5)
        assert waits.waits == [0.02, 0.0] and fired == ["near"]


# -- found by the resumed run: the lifecycle's messages, debug mode at close, the batch ---------

def test_the_lifecycles_refusals_say_why(reactor):
    errors = contexts(reactor)
    reactor.call_soon(reactor.close)
    reactor.call_soon(reactor.run_once, 0)
    reactor.run_once(0)
    assert [str(ctx["exception"]) for ctx in errors] == [
        "cannot close a running reactor; call stop() first",
        "the reactor is already running: run() and run_once() are not re-entrant"]
    reactor.close()
    for schedule in (lambda: reactor.call_soon(_noop), lambda: reactor.call_later(1, _noop)):
        with pytest.raises(RuntimeError) as refused:
            schedule()
        assert str(refused.value) == "the reactor is closed"


def test_debug_mode_names_each_transport_still_open_at_close(selector_class, caplog):
    import warnings

    from reactor import Protocol, StreamTransport

    a, b = socket.socketpair()
    try:
        reactor = Reactor(selector=selector_class(), debug=True)
        transport = StreamTransport(reactor, a, Protocol())
        expected = f"unclosed transport {transport!r} at reactor close"  # (as it was before the close)
        with caplog.at_level(logging.WARNING, logger="reactor"), warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            reactor.close()
        # (the log line formats its transport lazily: as it is now, closed)
        assert [r.getMessage() for r in records(caplog, logging.WARNING)] == [
            f"unclosed transport {transport!r} at reactor close"]
        (warning,) = [w for w in seen if w.category is ResourceWarning]
        assert str(warning.message) == expected and warning.source is transport
    finally:
        b.close()


def test_a_cancelled_handle_does_not_end_the_batch(reactor):
    ran = []
    reactor.call_soon(ran.append, "a")
    reactor.call_soon(ran.append, "b").cancel()
    reactor.call_soon(ran.append, "c")
    reactor.run_once(0)
    assert ran == ["a", "c"]


def test_a_reactor_that_failed_to_start_leaves_nothing_to_clean():
    # Out of descriptors but one: the selector gets it, the waker's socketpair
    # fails. (A descriptor limit rather than a fake Waker: the compiled build
    # does not look module names up at run time, so patching loop.Waker does nothing there.)
    import errno
    import gc
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    free = os.open(os.devnull, os.O_RDONLY)  # the lowest free descriptor: every one below is taken
    os.close(free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (free + 1, hard))
    try:
        Reactor()
    except OSError as exc:
        error = exc.errno  # (not the exception: its traceback would keep the half-built reactor alive)
    else:
        pytest.fail("Reactor() started with no descriptor for its waker")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert error == errno.EMFILE
    assert not _is_open(free)  # the selector made before the failure was closed
    gc.collect()  # no "unclosed reactor" warning, no close() of a half-built reactor (both would fail here)


# -- a fresh reactor, its limits and defaults -----------------------------------------------

def test_a_fresh_reactors_stats_are_all_zero(selector_class):
    with Reactor(selector=selector_class()) as reactor:
        stats = reactor.stats()
        assert (stats.iterations, stats.callbacks_run, stats.select_seconds, stats.busy_seconds) == (0, 0, 0.0, 0.0)
        assert stats.readers == stats.writers == stats.timers_pending == 0


def test_only_select_has_an_fd_limit(selector_class):
    with Reactor(selector=selector_class()) as reactor:
        expected = 1024 if selector_class is selectors.SelectSelector else None
        assert reactor.fd_limit == expected


def test_the_slow_callback_threshold_defaults_to_a_tenth_of_a_second(reactor):
    assert reactor.slow_callback_duration == 0.1  # (asyncio's default)


def test_an_fd_past_fd_setsize_is_refused_naming_the_selector():
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below 1100")
    if soft < 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1100, hard))
    a, b = socket.socketpair()
    free = next(fd for fd in range(1030, 1100) if not _is_open(fd))  # (no other descriptor clobbered)
    high = os.dup2(a.fileno(), free)
    try:
        with Reactor(selector=selectors.SelectSelector()) as reactor:
            with pytest.raises(ValueError) as refused:
                reactor.add_reader(high, _noop)
            assert str(refused.value) == (f"fd {high} is out of range for SelectSelector (FD_SETSIZE is 1024); "
                                          "use another selector")
    finally:
        os.close(high)
        a.close()
        b.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_fd_that_is_not_open_is_refused_with_ebadf_and_the_fd(reactor):
    import errno

    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    with pytest.raises(OSError) as refused:
        reactor.add_reader(fd, _noop)
    assert refused.value.errno == errno.EBADF
    assert refused.value.strerror == f"fd {fd} is not open"
    assert str(refused.value) == f"[Errno {errno.EBADF}] fd {fd} is not open"


# -- the count of callbacks run ------------------------------------------------------------

def test_callbacks_run_counts_what_ran_not_what_was_skipped(reactor):
    reactor.run_once(0)  # nothing ready: nothing counted
    assert reactor.stats().callbacks_run == 0
    reactor.call_soon(_noop).cancel()
    reactor.call_soon(_noop)
    reactor.call_soon(_noop).cancel()
    reactor.call_soon(_noop).cancel()
    reactor.run_once(0)
    assert reactor.stats().callbacks_run == 1
    reactor.run_once(0)
    assert reactor.stats().callbacks_run == 1 and reactor.stats().iterations == 3


def test_an_interrupted_batch_counts_what_ran_and_the_interrupted_one_not_the_skipped(reactor):
    def interrupt():
        raise KeyboardInterrupt

    reactor.call_soon(_noop)
    reactor.run_once(0)  # (one already counted: the interrupted batch adds to it)
    reactor.call_soon(_noop).cancel()
    reactor.call_soon(_noop).cancel()
    reactor.call_soon(_noop)
    reactor.call_soon(interrupt)
    reactor.call_soon(_noop)
    with pytest.raises(KeyboardInterrupt):
        reactor.run_once(0)
    assert reactor.stats().callbacks_run == 1 + 2  # _noop and interrupt; the cancelled two are not counted
    reactor.run_once(0)  # the last one is still queued, and runs
    assert reactor.stats().callbacks_run == 1 + 3


# -- the waker's own handle, as instruments see it -------------------------------------------

def test_an_instrument_sees_the_wakers_handle_like_any_other(reactor):
    class Names(Instrument):
        def __init__(self):
            self.names = []

        def before_callback(self, handle):
            self.names.append(repr(handle))

    errors = contexts(reactor)
    names = Names()
    reactor.add_instrument(names)
    reactor.call_soon_threadsafe(_noop)  # (from this thread: it wakes the loop all the same)
    run_until(reactor, lambda: len(names.names) >= 2)
    assert "<Handle BaseReactor._read_waker()>" in names.names
    assert errors == []


# -- an after_select instrument that removes a reader --------------------------------------------

def test_a_reader_removed_by_an_after_select_instrument_does_not_hide_the_other_events(reactor):
    class RemoveAllButLast(Instrument):
        """Removes the reader of every fd select() reported except the last one."""

        def __init__(self, socks):
            self.socks = socks
            self.kept = None

        def after_select(self, events, waited):
            fds = [key.fd for key, mask in events]
            if len(fds) < 2 or self.kept is not None:
                return
            self.kept = fds[-1]
            for sock in self.socks:
                if sock.fileno() in fds[:-1]:
                    reactor.remove_reader(sock)

    pairs = [socket.socketpair() for _ in range(3)]
    ran = []
    try:
        for a, b in pairs:
            reactor.add_reader(a, ran.append, a.fileno())
            b.sendall(b"x")
        instrument = RemoveAllButLast([a for a, b in pairs])
        reactor.add_instrument(instrument)
        reactor.run_once(0)
        assert instrument.kept is not None and ran == [instrument.kept]
    finally:
        for a, b in pairs:
            reactor.remove_reader(a)
            a.close()
            b.close()


# -- a dead owner's handles go quietly when a new owner takes the fd --------------------------------

def test_registering_a_reused_fd_does_not_report_the_old_owner(reactor):
    errors = contexts(reactor)
    a, b = socket.socketpair()
    reactor.add_reader(a, _noop)
    fd = a.fileno()
    c, d = socket.socketpair()
    a.close()  # without remove_reader
    os.dup2(c.fileno(), fd)
    new = socket.socket(fileno=fd)
    try:
        reactor.add_reader(new, _noop)  # the new owner's registration is not the old owner's error
        assert errors == []
        reactor.remove_reader(new)
    finally:
        for sock in (new, b, c, d):
            sock.close()


# -- which selectors get the fast path, and what they get -------------------------------------------

class DelegatingSelector(selectors.BaseSelector):
    """A selector of the user's own, built on the abstract base class only: it has no
    ``_selector`` or ``_fd_to_key`` of its own, and its select() is the only way in."""

    def __init__(self):
        self.inner = selectors.SelectSelector()
        self.selects = 0

    def register(self, fileobj, events, data=None):
        return self.inner.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self.inner.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self.inner.modify(fileobj, events, data)

    def select(self, timeout=None):
        self.selects += 1
        return self.inner.select(timeout)

    def close(self):
        self.inner.close()

    def get_map(self):
        return self.inner.get_map()


def test_a_selector_of_the_users_own_is_driven_through_its_select(pair):
    a, b = pair
    selector = DelegatingSelector()
    with Reactor(selector=selector) as reactor:
        ran = []
        reactor.add_reader(a, ran.append, "read")
        b.sendall(b"x")
        reactor.run_once(0)
        assert ran == ["read"] and selector.selects == 1
        reactor.remove_reader(a)


@pytest.mark.parametrize("name", ["EpollSelector", "PollSelector"])
def test_the_stdlib_poll_selectors_are_polled_directly_and_their_subclasses_through_select(pair, name):
    if not hasattr(selectors, name):
        pytest.skip(f"no {name} here")
    a, b = pair
    base = getattr(selectors, name)

    class Sub(base):
        selects = 0

        def select(self, timeout=None):
            type(self).selects += 1
            return super().select(timeout)

    for selector_class, selects in ((base, 0), (Sub, 1)):
        selector = selector_class()
        calls = []
        real = selector.select
        selector.select = lambda timeout=None: calls.append(timeout) or real(timeout)  # (a stdlib object)
        with Reactor(selector=selector) as reactor:
            ran = []
            reactor.add_reader(a, ran.append, "read")
            b.sendall(b"x")
            reactor.run_once(0)
            assert ran == ["read"]
            assert len(calls) == selects, selector_class  # the exact class: its poll object, not select()
            reactor.remove_reader(a)
            a.recv(10)


@pytest.mark.parametrize("name, unit", [("EpollSelector", 1.0), ("PollSelector", 1000.0)])
def test_the_poll_object_gets_the_wait_in_its_own_unit(name, unit):
    # epoll.poll() takes seconds, poll.poll() milliseconds (the select module's documentation).
    if not hasattr(selectors, name):
        pytest.skip(f"no {name} here")
    with Reactor(selector=getattr(selectors, name)()) as reactor:
        real, seen = reactor._poll, []

        def poll(timeout, maxevents):
            seen.append(timeout)
            return real(0, maxevents)  # (the test is about the argument: no need to wait)

        reactor._poll = poll
        reactor.run_once(0.25)
        assert seen == [0.25 * unit]


@pytest.mark.parametrize("missing", ["EpollSelector", "PollSelector"])
def test_a_platform_without_epoll_or_poll_selectors_still_starts(monkeypatch, pair, missing):
    # macOS has PollSelector but no EpollSelector; a platform could lack either.
    candidates = [getattr(selectors, name) for name in ("PollSelector", "EpollSelector") if hasattr(selectors, name)]
    if not candidates:
        pytest.skip("neither poll nor epoll here")
    monkeypatch.delattr(selectors, missing, raising=False)
    a, b = pair
    for selector_class in candidates:
        with Reactor(selector=selector_class()) as reactor:
            ran = []
            reactor.add_reader(a, ran.append, "read")
            b.sendall(b"x")
            reactor.run_once(0)
            assert ran == ["read"]
            reactor.remove_reader(a)
            a.recv(10)


@pytest.mark.parametrize("selector_class", [selectors.PollSelector])
def test_a_dead_fd_does_not_cost_the_live_ones_their_turn(reactor):
    # poll() reports the closed fd (POLLNVAL) and the readable one in the same call
    errors = contexts(reactor)
    dead, dead_peer = socket.socketpair()
    live, live_peer = socket.socketpair()
    ran = []
    try:
        reactor.add_reader(dead, ran.append, "dead")
        reactor.add_reader(live, ran.append, "live")
        live_peer.sendall(b"x")
        dead.close()  # without remove_reader
        reactor.run_once(0)
        assert ran == ["live"] and len(errors) == 1
        reactor.remove_reader(live)
    finally:
        for sock in (dead_peer, live, live_peer):
            sock.close()
