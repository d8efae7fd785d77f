"""Instruments as an oracle for the loop's documented order, and stats() as its ledger."""

from __future__ import annotations

import socket
from selectors import EVENT_READ, EVENT_WRITE

import pytest

from reactor import Protocol, Reactor
from reactor.instruments import HOOKS, Instrument
from reactor.testing import VirtualClock

from .conftest import run_until


class Recorder(Instrument):
    """Overrides every hook and records (hook, args)."""

    def __init__(self):
        self.log = []


for _name in HOOKS:
    def _hook(self, *args, _name=_name):
        self.log.append((_name, *args))
    setattr(Recorder, _name, _hook)


def test_one_iteration_in_the_documented_order(selector_class):
    clock = VirtualClock()
    a, b = socket.socketpair()
    with Reactor(selector=selector_class(), clock=clock) as reactor, a, b:
        rec = Recorder()
        reactor.add_instrument(rec)
        timer = reactor.call_later(1.0, lambda: None)
        reactor.add_reader(b, lambda: b.recv(10))
        reactor.add_writer(b, lambda: None)
        reactor.remove_writer(b)
        assert rec.log == [("timer_scheduled", timer), ("fd_registered", b.fileno(), EVENT_READ),
                           ("fd_registered", b.fileno(), EVENT_READ | EVENT_WRITE),
                           ("fd_registered", b.fileno(), EVENT_READ)]
        rec.log.clear()
        a.send(b"x")
        clock.advance(1.0)
        reactor.run_once(0)
        reader = reactor._selector.get_key(b).data[0]
        names = [entry[0] for entry in rec.log]
        assert names == ["before_select", "after_select", "timer_fired", "before_callback",
                         "after_callback", "before_callback", "after_callback"]
        assert rec.log[0] == ("before_select", 0.0)
        assert rec.log[1][1] == 1  # one fd ready
        assert rec.log[2] == ("timer_fired", timer)
        assert rec.log[3] == ("before_callback", reader) and rec.log[4][1] is reader
        assert rec.log[5] == ("before_callback", timer) and rec.log[6][2] >= 0.0
        rec.log.clear()
        reactor.remove_reader(b)
        assert rec.log == [("fd_unregistered", b.fileno())]
        assert reactor.remove_instrument(rec) and not reactor.remove_instrument(rec)
        reactor.call_soon(lambda: None)
        reactor.run_once(0)
        assert rec.log == [("fd_unregistered", b.fileno())]
        assert reactor._instruments is None  # back to the free path


def test_an_instrument_that_raises_is_removed_and_reported(reactor):
    errors = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

    class Broken(Instrument):
        calls = 0

        def before_callback(self, handle):
            Broken.calls += 1
            raise RuntimeError("oops")

    ran = []
    reactor.add_instrument(Broken())
    reactor.call_soon(ran.append, 1)
    reactor.call_soon(ran.append, 2)
    reactor.run_once(0)
    assert ran == [1, 2] and Broken.calls == 1
    assert len(errors) == 1 and "removed" in errors[0]["message"]
    assert reactor._instruments is None


def test_only_overridden_hooks_are_indexed(reactor):
    class SelectOnly(Instrument):
        def after_select(self, nevents, waited):
            pass

    reactor.add_instrument(SelectOnly())
    assert list(reactor._instruments.hooks) == ["after_select"]
    with pytest.raises(TypeError):
        reactor.add_instrument(object())


class Echo(Protocol):
    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        self.t.write(data)


def test_connection_hooks_and_stats_agree_with_the_scenario(reactor):
    rec = Recorder()
    reactor.add_instrument(rec)
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0)
    received = bytearray()

    class Client(Protocol):
        def connection_made(self, t):
            self.t = t
            t.write(b"a" * 1000)
            t.write(b"b" * 234)

        def data_received(self, data):
            received.extend(data)
            if len(received) == 1234:
                self.t.close()

    before = reactor.stats()
    reactor.connect_tcp(Client, *listener.address)
    run_until(reactor, lambda: reactor.stats().readers == 3)  # listener + two connections
    mid = reactor.stats()
    assert mid.connections_open == 2
    run_until(reactor, lambda: len(received) == 1234 and not reactor.connections())
    after = reactor.stats()
    assert after.bytes_sent == after.bytes_received == 2 * 1234  # client->server, and back
    assert after.connections_open == 0 and after.bytes_buffered == 0
    assert after.iterations > mid.iterations > before.iterations
    assert after.callbacks_run > before.callbacks_run
    assert 0.0 <= after.busy_ratio <= 1.0
    hooks = [e[0] for e in rec.log]
    assert hooks.count("connection_opened") == 2 and hooks.count("connection_closed") == 2
    assert all(e[2] is None for e in rec.log if e[0] == "connection_closed")
    assert sum(e[2] for e in rec.log if e[0] == "bytes_sent") == 2 * 1234
    assert sum(e[2] for e in rec.log if e[0] == "bytes_received") == 2 * 1234
    listener.close()


def test_stats_counts_callbacks_and_timers(selector_class):
    clock = VirtualClock()
    with Reactor(selector=selector_class(), clock=clock) as reactor:
        s0 = reactor.stats()
        for _ in range(5):
            reactor.call_soon(lambda: None)
        reactor.call_soon(lambda: None).cancel()
        timers = [reactor.call_later(10, lambda: None) for _ in range(4)]
        timers[0].cancel()
        reactor.run_once(0)
        s1 = reactor.stats()
        assert s1.callbacks_run - s0.callbacks_run == 5
        assert s1.iterations - s0.iterations == 1
        assert (s1.timers_pending, s1.timers_cancelled) == (3, 1)
        assert (s1.readers, s1.writers) == (0, 0)
        with pytest.raises(AttributeError):
            s1.iterations = 0  # frozen
