"""Behaviours that no test pinned down until issue 19, each one seen failing with its bug planted.

A planted one-line bug in each of these passed the whole suite before; the
mutation that proves each test can fail is in docs/TESTING.md ("Pinned
behaviours"). The tests speak to the public surface only (``Reactor``,
transports' methods, ``reactor.stats()``, protocols, framers, ``SendBuffer``,
``Waker``), so that the modules behind them can be rewritten freely.

The chat demo's flood bucket (the fifth behaviour) is in test_chat_flood.py.
"""

from __future__ import annotations

import socket
import time
from contextlib import contextmanager
from typing import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reactor import FrameTooLong, LineFramer, Protocol, Reactor
from reactor.buffers import COALESCE_LIMIT, SendBuffer
from reactor.listeners import ACCEPT_BATCH
from reactor.waker import Waker

from .conftest import before_each_wait, run_until

# Small kernel buffers on both ends: the kernel pushes back after a few KiB,
# so the transport's own buffer is exercised without writing megabytes.
SMALL_SOCKET_BUFFER = 4096


class Recorder(Protocol):
    """Records the callbacks that matter here, in order."""

    def __init__(self, keep_open: bool = False) -> None:
        self.keep_open = keep_open
        self.events: list = []
        self.data = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def eof_received(self):
        self.events.append("eof")
        return self.keep_open

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


@pytest.fixture
def errors(reactor) -> list:
    """The contexts of errors the loop reported (none is expected in these tests)."""
    contexts: list = []
    reactor.set_exception_handler(lambda _reactor, context: contexts.append(context))
    return contexts


@contextmanager
def connected(reactor: Reactor, protocol: Protocol) -> Iterator[socket.socket]:
    """Connect *protocol* over loopback TCP to a plain socket the test drives by hand.

    Both ends get small kernel buffers. Yields the plain (non-blocking) peer
    socket once ``connection_made`` has run; aborts the transport and closes
    the peer afterwards.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_SOCKET_BUFFER)  # inherited
        connector = reactor.connect_tcp(lambda: protocol, *server.getsockname()[:2])
        server.settimeout(10)
        peer, _ = server.accept()
    try:
        peer.setblocking(False)
        run_until(reactor, lambda: protocol.transport is not None)
        transport = connector.result()
        transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SOCKET_BUFFER)
        yield peer
    finally:
        if protocol.transport is not None:
            protocol.transport.abort()
        peer.close()
        reactor.run_once(0)  # connection_lost, and the transport's socket closed


def read_available(peer: socket.socket, into: bytearray) -> bool:
    """Append what *peer* can read now to *into*; True once the peer saw EOF."""
    while True:
        try:
            data = peer.recv(65536)
        except BlockingIOError:
            return False
        if not data:
            return True
        into += data


def receive_exactly(reactor: Reactor, peer: socket.socket, size: int) -> bytes:
    """Drive the loop until *peer* has read *size* bytes; return them."""
    received = bytearray()
    run_until(reactor, lambda: read_available(peer, received) or len(received) >= size)
    assert len(received) == size
    return bytes(received)


def fill_until_buffered(transport) -> None:
    """Write until the kernel pushes back and the transport holds bytes of its own."""
    for _ in range(1000):
        if transport.get_write_buffer_size():
            return
        transport.write(b"f" * 4096)
    raise AssertionError("the kernel never pushed back")


# -- 1. a drained transport stops watching for writability --------------------------------

def test_a_drained_send_buffer_stops_watching_for_writability(reactor, errors):
    protocol = Recorder()
    with connected(reactor, protocol) as peer:
        transport = protocol.transport
        assert reactor.stats().writers == 0  # nothing buffered: no writer at all
        payload = bytes(range(256)) * 1024
        transport.write(payload)
        assert transport.get_write_buffer_size() > 0 and reactor.stats().writers == 1
        assert receive_exactly(reactor, peer, len(payload)) == payload
        run_until(reactor, lambda: transport.get_write_buffer_size() == 0)
        for _ in range(5):  # a writer left behind would run (and fail) every iteration
            reactor.run_once(0)
        assert reactor.stats().writers == 0
        assert errors == []
        # Idle again, and writing again works as on a fresh connection.
        transport.write(b"again")
        assert receive_exactly(reactor, peer, 5) == b"again"
        assert reactor.stats().writers == 0 and errors == []


def test_a_drained_writelines_stops_watching_for_writability(reactor, errors):
    protocol = Recorder()
    with connected(reactor, protocol) as peer:
        transport = protocol.transport
        lines = [bytes([65 + i % 26]) * 5000 for i in range(50)]
        transport.writelines(lines)
        assert reactor.stats().writers == 1
        assert receive_exactly(reactor, peer, 250_000) == b"".join(lines)
        run_until(reactor, lambda: transport.get_write_buffer_size() == 0)
        for _ in range(5):
            reactor.run_once(0)
        assert reactor.stats().writers == 0 and errors == []


# -- 2. the waker clears its pending flag only after draining -----------------------------

class _WakeDuringDrain:
    """A ``socket.socketpair`` whose read end, on its first recv(), lets *wake* run.

    That is another thread's ``wake()`` landing while the loop drains the
    waker: the one interleaving the waker's ordering exists for, made
    deterministic.
    """

    def __init__(self) -> None:
        self.wake = None  # set by the test once the waker exists
        self.fired = False
        self._real = socket.socketpair

    def __call__(self, *args, **kwargs):
        rsock, wsock = self._real(*args, **kwargs)
        hook = self

        class ReadEnd(socket.socket):
            def recv(self, *a, **kw):
                if hook.wake is not None and not hook.fired:
                    hook.fired = True
                    hook.wake()
                return super().recv(*a, **kw)

        read_end = ReadEnd(rsock.family, rsock.type, rsock.proto, fileno=rsock.detach())
        return read_end, wsock


def _readable(fileno: int) -> bool:
    import select

    return bool(select.select([fileno], [], [], 0)[0])


def test_a_wake_up_during_drain_is_not_eaten(monkeypatch):
    pair = _WakeDuringDrain()
    monkeypatch.setattr(socket, "socketpair", pair)
    waker = Waker()
    monkeypatch.undo()
    try:
        waker.wake()
        assert _readable(waker.fileno())
        pair.wake = waker.wake  # "another thread" wakes while drain() reads
        assert waker.drain() == b""
        assert pair.fired
        # Whatever happened inside drain(), the waker is armed again: the
        # next wake() makes the read end readable (a select() would return).
        waker.wake()
        assert _readable(waker.fileno())
        waker.drain()
        assert not _readable(waker.fileno())
        waker.wake()  # and again: nothing is stuck "pending"
        assert _readable(waker.fileno())
    finally:
        waker.close()


def test_a_blocked_loop_is_woken_after_a_wake_up_raced_its_drain(selector_class, monkeypatch):
    pair = _WakeDuringDrain()
    monkeypatch.setattr(socket, "socketpair", pair)
    reactor = Reactor(selector=selector_class())
    monkeypatch.undo()
    try:
        ran: list = []
        pair.wake = lambda: reactor.call_soon_threadsafe(ran.append, "raced")
        reactor.call_soon_threadsafe(ran.append, "first")  # the waker's byte: drained next
        run_until(reactor, lambda: ran == ["first", "raced"])
        assert pair.fired

        # Now the loop blocks with nothing to do, and "another thread" hands
        # it work just as select() starts (from the hook, on this thread, so
        # that the timing is exact). The wake-up must end the wait at once.
        waits: list = []

        def before(timeout):
            waits.append(timeout)
            if len(waits) == 1:
                reactor.call_soon_threadsafe(ran.append, "late")

        before_each_wait(reactor, before)
        started = time.monotonic()
        reactor.run_once(6)  # nothing to do: would sleep 6 s unless woken
        assert time.monotonic() - started < 3, "the wake-up was eaten: select() slept"
        assert ran == ["first", "raced", "late"] and waits[0] > 0
    finally:
        reactor.close()


# -- 3. resume_reading() after EOF does not read again ------------------------------------

def test_resume_reading_after_eof_does_not_register_the_reader_again(reactor, errors):
    protocol = Recorder(keep_open=True)  # half-closed: the transport stays open
    with connected(reactor, protocol) as peer:
        transport = protocol.transport
        peer.sendall(b"last words")
        peer.shutdown(socket.SHUT_WR)
        run_until(reactor, lambda: "eof" in protocol.events)
        assert bytes(protocol.data) == b"last words" and reactor.stats().readers == 0
        transport.pause_reading()
        transport.resume_reading()
        assert not transport.is_reading()
        for _ in range(5):  # a reader on a socket at EOF would fire every iteration
            reactor.run_once(0)
        assert protocol.events == ["made", "eof"]
        assert reactor.stats().readers == 0 and not transport.is_closing()
        # Half-closed, not closed: this side still writes.
        transport.write(b"reply")
        assert receive_exactly(reactor, peer, 5) == b"reply"
        assert errors == []


# -- 4. write() of a read-only view over a mutable buffer copies --------------------------

def test_write_of_a_readonly_view_over_a_bytearray_survives_the_callers_reuse(reactor, errors):
    protocol = Recorder()
    with connected(reactor, protocol) as peer:
        transport = protocol.transport
        original = bytes(range(256)) * 400  # ~100 KiB, far more than the kernel takes now
        scratch = bytearray(original)
        transport.write(memoryview(scratch).toreadonly())
        assert transport.get_write_buffer_size() > 0  # part of it waits in the transport
        scratch[:] = b"\xee" * len(scratch)  # the caller reuses its buffer at once
        # A second such write lands behind the first, in the buffer (the other path).
        transport.write(memoryview(scratch).toreadonly())
        scratch[:] = b"\xdd" * len(scratch)
        received = receive_exactly(reactor, peer, 2 * len(original))
        assert received[:len(original)] == original
        assert received[len(original):] == b"\xee" * len(original)
        assert errors == []


@pytest.mark.parametrize("size", [1, COALESCE_LIMIT - 1, COALESCE_LIMIT, 10 * COALESCE_LIMIT])
def test_send_buffer_copies_a_readonly_view_over_a_bytearray(size):
    scratch = bytearray(bytes(range(256)) * (size // 256 + 1))[:size]
    original = bytes(scratch)
    buf = SendBuffer()
    buf.append(memoryview(scratch).toreadonly())
    scratch[:] = b"\0" * size  # the caller reuses its buffer
    assert b"".join(bytes(v) for v in buf.views(16)) == original


# -- 6. one accept event accepts at most the batch limit ----------------------------------

def test_one_accept_event_accepts_at_most_the_batch_limit(reactor, tmp_path):
    # Unix sockets: connect() queues the peer in the listener's backlog before
    # it returns (no handshake in flight), so the count waiting is exact.
    accepted: list = []

    def factory():
        accepted.append(None)
        return Protocol()

    storm = ACCEPT_BATCH + 10
    listener = reactor.listen_unix(factory, tmp_path / "s", backlog=2 * storm)
    clients = []
    try:
        for _ in range(storm):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(client)
            client.settimeout(10)
            client.connect(str(tmp_path / "s"))
        reactor.run_once(10)  # one iteration: the listener's one readiness event
        assert len(accepted) == ACCEPT_BATCH  # the rest wait for the next turn
        reactor.run_once(10)
        assert len(accepted) == storm
    finally:
        for client in clients:
            client.close()
        listener.close()  # (closing the reactor aborts the accepted connections)


# -- 7. the high-water mark is strict -----------------------------------------------------

def test_exactly_high_bytes_buffered_does_not_pause_one_more_does(reactor, errors):
    protocol = Recorder()
    with connected(reactor, protocol):  # the peer never reads: nothing drains
        transport = protocol.transport
        transport.set_write_buffer_limits(high=10**9)  # no pausing while the kernel fills
        fill_until_buffered(transport)
        size = transport.get_write_buffer_size()
        transport.set_write_buffer_limits(high=size + 100, low=0)
        transport.write(b"y" * 100)
        assert transport.get_write_buffer_size() == size + 100  # exactly high
        assert "pause" not in protocol.events
        transport.write(b"z")  # high + 1
        assert protocol.events.count("pause") == 1
        assert errors == []


def test_lowering_the_high_mark_to_the_buffered_size_does_not_pause(reactor, errors):
    protocol = Recorder()
    with connected(reactor, protocol):
        transport = protocol.transport
        transport.set_write_buffer_limits(high=10**9)
        fill_until_buffered(transport)
        size = transport.get_write_buffer_size()
        transport.set_write_buffer_limits(high=size, low=0)  # exactly at the mark
        assert "pause" not in protocol.events
        transport.set_write_buffer_limits(high=size - 1, low=0)  # one byte over it
        assert protocol.events.count("pause") == 1
        assert errors == []


# -- 8. the line framer's grace byte is for a trailing \r only ----------------------------

@pytest.mark.parametrize("max_length", [0, 1, 3, 100])
def test_a_line_of_max_length_plus_one_without_cr_is_too_long_at_once(max_length):
    framer = LineFramer(max_length=max_length)
    framer.feed(b"a" * (max_length + 1))
    with pytest.raises(FrameTooLong):
        framer.next_frame()
    assert framer.buffered == 0  # discarded, not held until a \n that may never come
    framer.feed(b"rest of it\n" + b"b" * max_length + b"\n")  # the framer goes on after it
    assert framer.next_frame() == b"b" * max_length


@pytest.mark.parametrize("max_length", [0, 1, 3, 100])
def test_a_trailing_cr_at_max_length_plus_one_waits_for_its_newline(max_length):
    framer = LineFramer(max_length=max_length)
    framer.feed(b"a" * max_length + b"\r")
    assert framer.next_frame() is None and framer.buffered == max_length + 1
    framer.feed(b"\n")
    assert framer.next_frame() == b"a" * max_length


@given(max_length=st.integers(min_value=0, max_value=40), data=st.data())
def test_an_overlong_line_is_reported_by_the_feed_that_makes_it_too_long(max_length, data):
    """However the line is chopped, the error comes once max_length + 1 bytes (no \\r) are in."""
    line = data.draw(st.binary(min_size=max_length + 1, max_size=max_length + 20).map(
        lambda b: b.replace(b"\n", b"n").replace(b"\r", b"r")))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(line)), max_size=5)))
    pieces = [line[a:b] for a, b in zip([0, *cuts], [*cuts, len(line)])]
    framer, fed = LineFramer(max_length=max_length), 0
    for piece in pieces:
        framer.feed(piece)
        fed += len(piece)
        if fed > max_length:
            with pytest.raises(FrameTooLong):
                framer.next_frame()
            return
        assert framer.next_frame() is None
    raise AssertionError("unreachable: the line is longer than max_length")
