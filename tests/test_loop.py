"""Lifecycle (run / stop / close / re-entrancy) and the error boundary of the Reactor."""

from __future__ import annotations

import logging
import socket
import traceback

import pytest

from reactor import Reactor

from .conftest import before_each_wait, run_until


def _noop(*args):
    pass


def record_selects(reactor: Reactor) -> list:
    """Note the timeout of every wait for I/O *reactor* makes."""
    timeouts: list = []
    before_each_wait(reactor, timeouts.append)
    return timeouts


def reactor_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "reactor"]


# -- lifecycle -----------------------------------------------------------------


def test_run_returns_after_stop(reactor):
    seen = []

    def step(n):
        seen.append((n, reactor.is_running()))
        if n < 3:
            reactor.call_soon(step, n + 1)
        else:
            reactor.stop()

    reactor.call_soon(step, 0)
    reactor.run()
    assert seen == [(0, True), (1, True), (2, True), (3, True)]
    assert not reactor.is_running()
    assert not reactor.is_closed()


def test_stop_finishes_the_current_iteration(reactor):
    ran = []

    def stopper():
        reactor.stop()
        reactor.call_soon(ran.append, "next iteration")

    reactor.call_soon(stopper)
    reactor.call_soon(ran.append, "same iteration")
    reactor.run()
    assert ran == ["same iteration"]
    reactor.run_once(0)
    assert ran == ["same iteration", "next iteration"]


def test_stop_before_run_runs_exactly_one_iteration(reactor):
    timeouts = record_selects(reactor)
    ran = []

    def first():
        ran.append("first")
        reactor.call_soon(ran.append, "second")

    reactor.call_soon(first)
    reactor.stop()
    reactor.run()
    assert ran == ["first"]
    assert timeouts == [0]  # one iteration, and it did not block
    assert not reactor.is_running()

    # The stop request was consumed: the next run() needs its own stop().
    reactor.call_soon(reactor.call_soon, reactor.stop)
    reactor.run()
    assert ran == ["first", "second"]
    assert len(timeouts) == 3


def test_stop_before_run_with_nothing_to_do_does_not_block(reactor):
    timeouts = record_selects(reactor)
    reactor.stop()
    reactor.run()
    assert timeouts == [0]


@pytest.mark.parametrize("method", ["run", "run_once"])
def test_run_and_run_once_are_not_reentrant(reactor, method):
    errors = []
    running_after = []
    ran = []

    def nested():
        try:
            getattr(reactor, method)()
        except RuntimeError as exc:
            errors.append(exc)
        # The failed inner call must not have reset the outer run's state.
        running_after.append(reactor.is_running())
        reactor.call_soon(follow_up)

    def follow_up():
        ran.append("follow_up")
        reactor.call_later(0, finish)

    def finish():
        ran.append("finish")
        reactor.stop()

    watchdog_fired = []
    # If the nested call wrongly ran a loop, this ends it instead of hanging.
    reactor.call_later(5, lambda: (watchdog_fired.append(True), reactor.stop()))
    reactor.call_soon(nested)
    reactor.run()
    assert watchdog_fired == []
    assert len(errors) == 1
    assert "re-entrant" in str(errors[0]) or "already running" in str(errors[0])
    assert running_after == [True]
    assert ran == ["follow_up", "finish"]
    assert not reactor.is_running()


def test_uncaught_reentrant_run_is_reported_and_loop_continues(reactor):
    contexts = []
    reactor.set_exception_handler(lambda r, ctx: contexts.append(ctx))
    ran = []
    reactor.call_soon(reactor.run)
    reactor.call_soon(ran.append, "after")
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert ran == ["after"]
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], RuntimeError)


@pytest.mark.parametrize(
    "operation",
    [
        "call_soon",
        "call_later",
        "call_at",
        "call_soon_threadsafe",
        "add_reader",
        "add_writer",
        "run",
        "run_once",
        "run_once_0",
    ],
)
def test_closed_reactor_refuses_work(reactor, operation):
    reactor.close()
    a, b = socket.socketpair()
    try:
        calls = {
            "call_soon": lambda: reactor.call_soon(_noop),
            "call_later": lambda: reactor.call_later(0, _noop),
            "call_at": lambda: reactor.call_at(reactor.time(), _noop),
            "call_soon_threadsafe": lambda: reactor.call_soon_threadsafe(_noop),
            "add_reader": lambda: reactor.add_reader(a, _noop),
            "add_writer": lambda: reactor.add_writer(a, _noop),
            "run": reactor.run,
            "run_once": reactor.run_once,
            "run_once_0": lambda: reactor.run_once(0),
        }
        with pytest.raises(RuntimeError, match="closed"):
            calls[operation]()
        assert not reactor.is_running()
        assert reactor.is_closed()
    finally:
        a.close()
        b.close()


def test_remove_on_closed_reactor_returns_false(reactor):
    a, b = socket.socketpair()
    try:
        reactor.add_reader(a, _noop)
        reactor.close()
        assert reactor.remove_reader(a) is False
        assert reactor.remove_writer(a) is False
    finally:
        a.close()
        b.close()


def test_close_is_idempotent_and_releases_resources(reactor):
    waker = reactor._waker
    reactor.call_soon(_noop)
    reactor.call_later(60, _noop)
    reactor.close()
    assert reactor.is_closed()
    assert waker._rsock.fileno() == -1 and waker._wsock.fileno() == -1
    assert len(reactor._ready) == 0 and len(reactor._timers) == 0
    reactor.close()  # a second close is a no-op, not an error
    assert reactor.is_closed()
    assert not reactor.is_running()


def test_close_while_running_raises_and_leaves_reactor_usable(reactor):
    errors = []

    def try_close():
        try:
            reactor.close()
        except RuntimeError as exc:
            errors.append(exc)
        reactor.stop()

    reactor.call_soon(try_close)
    reactor.run()
    assert len(errors) == 1 and "running" in str(errors[0])
    assert not reactor.is_closed()
    ran = []
    reactor.call_soon(ran.append, 1)
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert ran == [1]


def test_close_from_run_once_callback_raises(reactor):
    errors = []

    def try_close():
        try:
            reactor.close()
        except RuntimeError as exc:
            errors.append(exc)

    reactor.call_soon(try_close)
    reactor.run_once(0)
    assert len(errors) == 1
    assert not reactor.is_closed()


def test_context_manager_closes(selector_class):
    ran = []
    with Reactor(selector=selector_class()) as r:
        assert not r.is_closed()
        r.call_soon(ran.append, 1)
        r.call_soon(r.stop)
        r.run()
    assert ran == [1]
    assert r.is_closed()


def test_context_manager_closes_on_error(selector_class):
    with pytest.raises(ZeroDivisionError):
        with Reactor(selector=selector_class()) as r:
            r.call_soon(_noop)
            1 / 0
    assert r.is_closed()


def test_state_at_each_stage(reactor):
    assert (reactor.is_running(), reactor.is_closed()) == (False, False)
    assert "idle" in repr(reactor)
    seen = []

    def look():
        seen.append((reactor.is_running(), reactor.is_closed(), "running" in repr(reactor)))

    reactor.call_soon(look)
    reactor.call_soon(reactor.stop)
    reactor.run()
    reactor.call_soon(look)
    reactor.run_once(0)
    assert seen == [(True, False, True), (True, False, True)]
    assert (reactor.is_running(), reactor.is_closed()) == (False, False)
    reactor.close()
    assert (reactor.is_running(), reactor.is_closed()) == (False, True)
    assert "closed" in repr(reactor)


def test_reactor_runs_again_after_stop(reactor):
    ran = []
    for round_ in range(3):
        reactor.call_soon(ran.append, round_)
        reactor.call_later(0, reactor.stop)
        reactor.run()
        assert not reactor.is_running()
    assert ran == [0, 1, 2]
    # and run_once still works too
    reactor.call_soon(ran.append, "once")
    reactor.run_once(0)
    assert ran == [0, 1, 2, "once"]


def test_stop_inside_run_once_does_not_leak_into_next_run(reactor):
    timeouts = record_selects(reactor)
    reactor.call_soon(reactor.stop)
    reactor.run_once(0)
    # If the stop request had survived, this run() would return after one
    # iteration, before the timer chain below stops it.
    ran = []
    reactor.call_soon(ran.append, 1)
    reactor.call_soon(lambda: reactor.call_soon(lambda: (ran.append(2), reactor.stop())))
    reactor.run()
    assert ran == [1, 2]
    assert len(timeouts) == 3


# -- errors --------------------------------------------------------------------


def test_callback_error_goes_to_exception_handler_and_loop_continues(reactor):
    contexts = []
    reactor.set_exception_handler(lambda r, ctx: contexts.append((r, ctx)))
    ran = []

    def boom():
        raise ValueError("boom")

    handle = reactor.call_soon(boom)
    reactor.call_soon(ran.append, "same iteration")
    reactor.call_later(0, ran.append, "timer")
    reactor.call_soon(lambda: reactor.call_soon(ran.append, "next iteration"))
    reactor.run_once(0)
    reactor.run_once(0)
    assert ran == ["same iteration", "timer", "next iteration"]
    assert len(contexts) == 1
    r, ctx = contexts[0]
    assert r is reactor
    assert {"message", "exception", "handle"} <= set(ctx)
    assert isinstance(ctx["exception"], ValueError) and str(ctx["exception"]) == "boom"
    assert ctx["handle"] is handle
    assert "boom" in ctx["message"]


def test_errors_in_run_do_not_stop_it(reactor):
    contexts = []
    reactor.set_exception_handler(lambda r, ctx: contexts.append(ctx))
    count = []

    def flaky(n):
        count.append(n)
        if n < 5:
            reactor.call_soon(flaky, n + 1)
            raise KeyError(n)
        reactor.stop()

    reactor.call_soon(flaky, 0)
    reactor.run()
    assert count == [0, 1, 2, 3, 4, 5]
    assert [ctx["exception"].args[0] for ctx in contexts] == [0, 1, 2, 3, 4]


def test_default_handler_logs_error_with_traceback(reactor, caplog):
    caplog.set_level(logging.DEBUG, logger="reactor")
    ran = []

    def failing():
        raise ValueError("kaput")

    reactor.call_soon(failing)
    reactor.call_soon(ran.append, "after")
    reactor.run_once(0)
    assert ran == ["after"]
    records = reactor_records(caplog)
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info is not True
    exc_type, exc, tb = record.exc_info
    assert exc_type is ValueError and str(exc) == "kaput"
    assert tb is not None
    assert traceback.extract_tb(tb)[-1].name == "failing"
    message = record.getMessage()
    assert "Exception in callback" in message and "failing" in message
    assert "handle" in message
    assert "kaput" in caplog.text  # the formatted traceback is part of the output


def test_setting_handler_to_none_restores_default(reactor, caplog):
    caplog.set_level(logging.ERROR, logger="reactor")
    contexts = []
    reactor.set_exception_handler(lambda r, ctx: contexts.append(ctx))
    reactor.set_exception_handler(None)
    assert reactor.get_exception_handler() is None

    def failing():
        raise ValueError("x")

    reactor.call_soon(failing)
    reactor.run_once(0)
    assert contexts == []
    assert len(reactor_records(caplog)) == 1


def test_exception_handler_that_raises_is_logged_and_loop_continues(reactor, caplog):
    caplog.set_level(logging.ERROR, logger="reactor")
    ran = []

    def bad_handler(r, ctx):
        raise RuntimeError("handler broke")

    def failing():
        raise ValueError("original")

    reactor.set_exception_handler(bad_handler)
    reactor.call_soon(failing)
    reactor.call_soon(ran.append, "after")
    reactor.run_once(0)
    assert ran == ["after"]
    records = reactor_records(caplog)
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.exc_info[0] is RuntimeError
    assert str(record.exc_info[1]) == "handler broke"
    message = record.getMessage()
    assert "bad_handler" in message and "Exception in callback" in message

    # And in run(): the loop survives the broken handler and can be stopped.
    reactor.call_soon(failing)
    reactor.call_soon(ran.append, "run")
    reactor.call_soon(reactor.stop)
    reactor.run()
    assert ran == ["after", "run"]
    assert len(reactor_records(caplog)) == 2


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_leave_run(reactor, exc_type):
    contexts = []
    reactor.set_exception_handler(lambda r, ctx: contexts.append(ctx))
    ran = []

    def interrupt():
        ran.append("interrupt")
        raise exc_type()

    reactor.call_soon(ran.append, "before")
    reactor.call_soon(interrupt)
    reactor.call_soon(ran.append, "after")
    reactor.call_soon(reactor.stop)  # had the exception been swallowed, run() would return
    reactor.call_later(0, ran.append, "timer")
    with pytest.raises(exc_type):
        reactor.run()
    assert ran == ["before", "interrupt"]
    assert contexts == []  # not swallowed by the error boundary
    assert not reactor.is_running()
    assert not reactor.is_closed()

    # What was queued after the interrupting callback (the stop included) is
    # still there: running again runs it, and returns.
    reactor.run()
    assert ran == ["before", "interrupt", "after", "timer"]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_leave_run_once(reactor, exc_type):
    ran = []

    def interrupt():
        raise exc_type()

    reactor.call_soon(interrupt)
    reactor.call_soon(ran.append, "after")
    with pytest.raises(exc_type):
        reactor.run_once(0)
    assert not reactor.is_running()
    reactor.run_once(0)
    assert ran == ["after"]


def test_set_exception_handler_rejects_non_callable(reactor):
    with pytest.raises(TypeError):
        reactor.set_exception_handler("not callable")
    assert reactor.get_exception_handler() is None

    def handler(r, ctx):
        pass

    reactor.set_exception_handler(handler)
    with pytest.raises(TypeError):
        reactor.set_exception_handler(42)
    assert reactor.get_exception_handler() is handler


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later", "add_reader"])
def test_scheduling_rejects_non_callable(reactor, method):
    a, b = socket.socketpair()
    try:
        calls = {
            "call_soon": lambda: reactor.call_soon(None),
            "call_soon_threadsafe": lambda: reactor.call_soon_threadsafe("x"),
            "call_later": lambda: reactor.call_later(0, 42),
            "add_reader": lambda: reactor.add_reader(a, object()),
        }
        keys_before = len(reactor._selector.get_map())
        with pytest.raises(TypeError):
            calls[method]()
        assert len(reactor._ready) == 0
        assert len(reactor._timers) == 0
        assert len(reactor._selector.get_map()) == keys_before
    finally:
        a.close()
        b.close()


# -- fairness ------------------------------------------------------------------


def test_self_rescheduling_callback_does_not_starve_io(reactor):
    a, b = socket.socketpair()
    try:
        spins = 0
        sent_at = []
        read_at = []
        watchdog_fired = []

        def spin():
            nonlocal spins
            spins += 1
            if spins == 5:
                b.send(b"x")
                sent_at.append(spins)
            if spins < 1000:  # "forever", but a starving loop fails instead of hanging
                reactor.call_soon(spin)

        def on_readable():
            read_at.append(spins)
            reactor.stop()

        def watchdog():
            watchdog_fired.append(True)
            reactor.stop()

        reactor.add_reader(a, on_readable)
        reactor.call_soon(spin)
        reactor.call_later(10, watchdog)
        reactor.run()
        assert watchdog_fired == []
        assert sent_at == [5]
        assert len(read_at) == 1
        # The reader fires in the iteration after the data arrived, alongside
        # the spinner: within a couple of iterations, not never.
        assert read_at[0] - sent_at[0] <= 2
    finally:
        reactor.remove_reader(a)
        a.close()
        b.close()


def test_run_until_helper_drives_the_loop(reactor):
    # A sanity check of the conftest driver used throughout the suite.
    ran = []
    reactor.call_later(0.01, ran.append, 1)
    run_until(reactor, lambda: ran)
    assert ran == [1]
    with pytest.raises(AssertionError):
        run_until(reactor, lambda: False, timeout=0.05)
