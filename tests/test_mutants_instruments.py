"""Instrument behaviours that mutation testing found unpinned (python -m tests.mutation):
an instrument that overrides a single hook gets that hook, the report of a raising one,
and remove_instrument() of one never installed."""

from __future__ import annotations

import socket
from selectors import EVENT_READ

from reactor import Protocol, Reactor
from reactor.instruments import Instrument
from reactor.testing import VirtualClock

from .conftest import run_until


class BeforeSelect(Instrument):
    def __init__(self):
        self.seen = []

    def before_select(self, timeout):
        self.seen.append(timeout)


class AfterSelect(Instrument):
    def __init__(self):
        self.seen = []

    def after_select(self, events, waited):
        self.seen.append([(key.fd, mask) for key, mask in events])


class TimerFired(Instrument):
    def __init__(self):
        self.seen = []

    def timer_fired(self, handle):
        self.seen.append(handle)


class BytesReceived(Instrument):
    def __init__(self):
        self.seen = []

    def bytes_received(self, transport, n):
        self.seen.append(n)


class BytesSent(Instrument):
    def __init__(self):
        self.seen = []

    def bytes_sent(self, transport, n):
        self.seen.append(n)


def test_an_instrument_of_one_loop_hook_gets_it(reactor):
    before, after = BeforeSelect(), AfterSelect()
    reactor.add_instrument(before)
    reactor.call_soon(lambda: None)
    reactor.run_once(5)
    assert before.seen == [0.0]  # something was ready: no wait
    reactor.remove_instrument(before)
    a, b = socket.socketpair()
    with a, b:
        reactor.add_instrument(after)
        reactor.add_reader(b, lambda: b.recv(10))
        a.send(b"x")
        reactor.run_once(5)
        assert after.seen == [[(b.fileno(), EVENT_READ)]]
        reactor.remove_reader(b)


def test_an_instrument_of_timer_fired_only_gets_it(selector_class):
    clock = VirtualClock()
    with Reactor(selector=selector_class(), clock=clock) as reactor:
        fired = TimerFired()
        reactor.add_instrument(fired)
        timer = reactor.call_later(1.0, lambda: None)
        clock.advance(1.0)
        reactor.run_once(0)
        assert fired.seen == [timer]


def test_io_is_watched_only_for_the_bytes_hooks(reactor):
    assert not reactor.watch_io  # the free path: transports report nothing
    after = AfterSelect()
    reactor.add_instrument(after)
    assert not reactor.watch_io  # watching the loop is not watching the bytes
    received, sent = BytesReceived(), BytesSent()
    reactor.add_instrument(received)
    assert reactor.watch_io
    got = bytearray()

    class Sink(Protocol):
        def data_received(self, data):
            got.extend(data)

    listener = reactor.listen_tcp(Sink, "127.0.0.1", 0)
    connector = reactor.connect_tcp(Protocol, *listener.address)
    run_until(reactor, connector.done)
    connector.result().write(b"12345")
    run_until(reactor, lambda: len(got) == 5)
    assert received.seen == [5]
    reactor.remove_instrument(received)
    assert not reactor.watch_io
    reactor.add_instrument(sent)
    assert reactor.watch_io
    connector.result().write(b"678")
    run_until(reactor, lambda: len(got) == 8)
    assert sent.seen == [3] and received.seen == [5]
    connector.result().close()
    run_until(reactor, lambda: not reactor.connections())
    listener.close()


def test_a_raising_instrument_is_reported_with_what_raised(reactor):
    errors = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    boom = RuntimeError("oops")

    class Broken(Instrument):
        def before_callback(self, handle):
            raise boom

        def __repr__(self):
            return "<Broken>"

    broken = Broken()
    reactor.add_instrument(broken)
    reactor.call_soon(lambda: None)
    reactor.run_once(0)
    assert errors == [{"message": "instrument <Broken> raised in before_callback(); removed",
                       "exception": boom, "instrument": broken}]


def test_removing_an_instrument_never_installed_says_so(reactor):
    installed, stranger = AfterSelect(), AfterSelect()
    assert reactor.remove_instrument(stranger) is False  # none installed at all
    reactor.add_instrument(installed)
    assert reactor.remove_instrument(stranger) is False  # others installed, not this one
    reactor.call_soon(lambda: None)
    reactor.run_once(0)
    assert installed.seen == [[]]  # still there
    assert reactor.remove_instrument(installed) is True
