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
        assert [(key.fd, mask) for key, mask in rec.log[1][1]] == [(b.fileno(), EVENT_READ)]
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
        def after_select(self, events, waited):
            pass

    reactor.add_instrument(SelectOnly())
    instruments = reactor._instruments
    assert list(instruments.hooks) == ["after_select"]
    # Every other hook site sees None and skips the call altogether.
    assert instruments.after_select is not None
    assert [name for name in HOOKS if getattr(instruments, name) is not None] == ["after_select"]
    with pytest.raises(TypeError):
        reactor.add_instrument(object())


def test_a_raising_hook_of_any_kind_is_removed_and_the_callback_still_runs(reactor):
    errors = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

    def broken(*args):
        raise RuntimeError("not a bound method")

    class Odd(Instrument):
        before_callback = staticmethod(broken)

    class Fine(Instrument):
        def __init__(self):
            self.seen = 0

        def before_callback(self, handle):
            self.seen += 1

    fine = Fine()
    reactor.add_instrument(Odd())
    reactor.add_instrument(fine)
    ran = []
    reactor.call_soon(ran.append, 1)
    reactor.call_soon(ran.append, 2)
    reactor.run_once(0)
    assert ran == [1, 2] and fine.seen == 2
    assert len(errors) == 1 and "removed" in errors[0]["message"]
    assert reactor._instruments.instruments == [fine]


def test_keyboard_interrupt_in_a_callback_keeps_the_books_straight(reactor):
    def interrupt():
        raise KeyboardInterrupt

    before = reactor.stats()
    reactor.call_soon(lambda: None)
    reactor.call_soon(interrupt)
    reactor.call_soon(lambda: None)
    with pytest.raises(KeyboardInterrupt):
        reactor.run_once(0)
    after = reactor.stats()
    assert after.iterations - before.iterations == 1
    assert after.callbacks_run - before.callbacks_run == 2  # the interrupted one counts
    reactor.run_once(0)  # the third is still queued, and runs
    assert reactor.stats().callbacks_run - before.callbacks_run == 3


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


def test_a_connection_hook_sequence_follows_the_documented_order(reactor):
    """For each transport: opened first, closed last; each read inside its
    own reader's callback; the peer's EOF as a 0-byte read."""

    class CallbackRecorder(Recorder):
        def before_callback(self, handle):  # the callback, before a cancel can drop it
            self.log.append(("before_callback", handle, handle._callback))

    rec = CallbackRecorder()
    reactor.add_instrument(rec)
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0)
    port = listener.address[1]

    class Client(Protocol):
        def connection_made(self, t):
            self.t = t
            t.write(b"ping")

        def data_received(self, data):
            self.t.close()

    reactor.connect_tcp(Client, *listener.address)
    run_until(reactor, lambda: sum(e[0] == "connection_closed" for e in rec.log) == 2)
    listener.close()
    transports = [e[1] for e in rec.log if e[0] == "connection_opened"]
    assert len(transports) == 2
    running = None  # the callback of the innermost callback span
    reads = {t: [] for t in transports}
    for entry in rec.log:
        if entry[0] == "before_callback":
            running = entry[2]
        elif entry[0] == "after_callback":
            running = None
        elif entry[0] == "bytes_received":
            t = entry[1]
            assert running.__self__ is t and running.__name__ == "_on_readable", entry
            reads[t].append(entry[2])
    for t in transports:
        kinds = [e[0] for e in rec.log if e[0].startswith(("bytes_", "connection_")) and e[1] is t]
        assert kinds[0] == "connection_opened" and kinds[-1] == "connection_closed"
        assert kinds.count("connection_opened") == kinds.count("connection_closed") == 1
    (client,) = [t for t in transports if t.get_extra_info("peername")[1] == port]
    (server,) = [t for t in transports if t is not client]
    assert reads[server] == [4, 0]  # "ping", then the client's close: end of file
    assert reads[client] == [4]  # the echo; then it closed itself


def test_stats_count_what_is_buffered_for_a_peer_that_does_not_read(reactor):
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0)
    try:
        raw = socket.create_connection(listener.address)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        run_until(reactor, lambda: reactor.stats().readers == 2)  # the listener and the connection
        (server,) = listener.connections
        server.write(b"x" * (16 << 20))  # far more than the kernel buffers take
        st = reactor.stats()
        assert st.bytes_buffered == server.get_write_buffer_size() > 0
        assert st.writers == 1 and st.readers == 2  # the listener and the connection
        assert st.bytes_sent == server.bytes_sent == (16 << 20) - st.bytes_buffered
        raw.close()
        server.abort()
        run_until(reactor, lambda: not reactor.connections())
        assert reactor.stats().bytes_buffered == 0 and reactor.stats().writers == 0
    finally:
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
