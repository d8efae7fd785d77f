"""StreamTransport behaviours that mutation testing found unpinned (python -m tests.mutation).

Each test pins what a caller can observe: the arguments a protocol gets, the
errors the exception handler and ``connection_lost`` receive and their
wording, the byte counts, the log lines. The transports run on a
``socketpair`` (``StreamTransport`` is public API), so that each test costs
milliseconds; the other end is a plain socket.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import struct

import pytest

from reactor import BufferedProtocol, Protocol, StreamTransport, WriteBufferOverflow
from reactor.instruments import Instrument

from .conftest import run_until


class Into(BufferedProtocol):
    """A BufferedProtocol that records its calls; get_buffer returns *buffer*."""

    def __init__(self, buffer=None, fail_updated: bool = False) -> None:
        self.buffer = bytearray(64) if buffer is None else buffer
        self.fail_updated = fail_updated
        self.hints: list = []
        self.got = bytearray()
        self.lost: list = []

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        self.hints.append(sizehint)
        return self.buffer

    def buffer_updated(self, n):
        self.got += self.buffer[:n]
        if self.fail_updated:
            raise KeyError("broken buffer_updated")

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        self.lost.append(exc)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def tcp_pair():
    """A connected TCP pair on loopback (a socketpair cannot be reset)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        b = socket.create_connection(server.getsockname())
        a, _ = server.accept()
    yield a, b
    a.close()
    b.close()


def reset(sock: socket.socket, peer: socket.socket) -> None:
    """Close *sock* with an RST, and wait (with a deadline) until *peer* has it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert select.select([peer], [], [], 10)[0], "the RST did not arrive"


def errors_of(reactor) -> list:
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    return errors


def test_get_buffer_is_asked_with_asyncios_size_hint_and_reads_are_counted(reactor, pair):
    class Counter(Instrument):
        def __init__(self):
            self.received = []

        def bytes_received(self, transport, n):
            self.received.append((transport, n))

    counter = Counter()
    reactor.add_instrument(counter)
    a, b = pair
    protocol = Into()
    transport = StreamTransport(reactor, a, protocol)
    b.sendall(b"hello")
    run_until(reactor, lambda: protocol.got == b"hello")
    b.sendall(b" world")
    run_until(reactor, lambda: protocol.got == b"hello world")
    assert protocol.hints and set(protocol.hints) == {-1}  # -1: "any size" (asyncio's value)
    assert transport.bytes_received == 11
    assert counter.received == [(transport, 5), (transport, 6)]
    transport.close()
    run_until(reactor, lambda: protocol.lost == [None])
    assert reactor.stats().bytes_received == 11


@pytest.mark.parametrize("buffer, wording", [
    (bytearray(), "get_buffer() returned an empty buffer (bytearray); it must be writable and non-empty"),
    (b"read-only", "get_buffer() returned an unwritable buffer (bytes); it must be writable and non-empty"),
])
def test_a_buffer_recv_into_cannot_use_is_refused_once_with_a_clear_error(reactor, pair, buffer, wording):
    errors = errors_of(reactor)
    a, b = pair
    protocol = Into(buffer)
    StreamTransport(reactor, a, protocol)
    b.sendall(b"data")
    run_until(reactor, lambda: protocol.lost)
    assert len(errors) == 1
    assert errors[0]["message"] == "protocol.get_buffer() raised; aborting the connection"
    exc = errors[0]["exception"]
    assert isinstance(exc, ValueError) and str(exc) == wording
    assert protocol.lost == [exc]


def test_an_exception_in_buffer_updated_aborts_with_that_exception(reactor, pair):
    errors = errors_of(reactor)
    a, b = pair
    protocol = Into(fail_updated=True)
    StreamTransport(reactor, a, protocol)
    b.sendall(b"boom")
    run_until(reactor, lambda: protocol.lost)
    assert protocol.got == b"boom"
    assert [ctx["message"] for ctx in errors] == ["protocol.buffer_updated() raised; aborting the connection"]
    exc = errors[0]["exception"]
    assert isinstance(exc, KeyError) and protocol.lost == [exc]


def test_a_reset_during_recv_into_reaches_connection_lost_and_the_debug_log(reactor, caplog):
    listener = reactor.listen_tcp(Into, "127.0.0.1", 0)
    try:
        raw = socket.create_connection(listener.address[:2])
        run_until(reactor, lambda: listener.connections)
        (server,) = listener.connections
        protocol = server.get_protocol()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # RST
        with caplog.at_level(logging.DEBUG, logger="reactor"):
            run_until(reactor, lambda: protocol.lost)
        (exc,) = protocol.lost
        assert isinstance(exc, ConnectionResetError) and exc.errno == errno.ECONNRESET
        logged = [r.getMessage() for r in caplog.records if "recv_into() failed" in r.getMessage()]
        assert len(logged) == 1 and logged[0].startswith("<StreamTransport fd=")
        assert logged[0].endswith(f"recv_into() failed: {exc}")
    finally:
        listener.close()


def test_write_after_write_eof_and_after_close_say_so(reactor, pair, caplog):
    a, b = pair
    protocol = Protocol()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    transport.write_eof()
    with pytest.raises(RuntimeError) as refused:
        transport.write(b"more")
    assert str(refused.value) == "cannot write() after write_eof()"
    transport.close()
    with caplog.at_level(logging.WARNING, logger="reactor"):
        transport.write(b"too late")
    (record,) = [r for r in caplog.records if "after close" in r.getMessage()]
    assert record.getMessage() == f"{transport!r}: write() after close() or abort(); data dropped"
    assert record.getMessage().startswith("<StreamTransport fd=")
    run_until(reactor, lambda: transport.get_extra_info("socket").fileno() == -1)


def test_repr_tells_the_state_and_both_directions(reactor, pair):
    class KeepOpen(Protocol):
        def eof_received(self):
            return True

    a, b = pair
    transport = StreamTransport(reactor, a, KeepOpen())
    fd = a.fileno()
    assert repr(transport) == f"<StreamTransport fd={fd} new read=polling write=<idle, bufsize=0>>"
    reactor.run_once(0)
    assert repr(transport) == f"<StreamTransport fd={fd} open read=polling write=<idle, bufsize=0>>"
    transport.pause_reading()
    assert repr(transport) == f"<StreamTransport fd={fd} open read=paused write=<idle, bufsize=0>>"
    transport.resume_reading()
    transport.write(b"x" * 4 * 1024 * 1024)  # more than a socketpair holds: the rest is buffered
    size = transport.get_write_buffer_size()
    assert 0 < size < 4 * 1024 * 1024
    assert repr(transport) == f"<StreamTransport fd={fd} open read=polling write=<polling, bufsize={size}>>"
    transport.close()
    assert repr(transport) == f"<StreamTransport fd={fd} closing read=idle write=<polling, bufsize={size}>>"
    transport.abort()
    assert repr(transport) == f"<StreamTransport fd={fd} lost read=idle write=<idle, bufsize=0>>"
    run_until(reactor, lambda: a.fileno() == -1)
    assert repr(transport) == f"<StreamTransport fd={fd} closed read=idle write=<idle, bufsize=0>>"


def test_repr_says_eof_once_the_peer_half_closed(reactor, pair):
    class KeepOpen(Protocol):
        def eof_received(self):
            self.eof = True
            return True

    a, b = pair
    protocol = KeepOpen()
    transport = StreamTransport(reactor, a, protocol)
    b.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: getattr(protocol, "eof", False))
    assert repr(transport) == f"<StreamTransport fd={a.fileno()} open read=eof write=<idle, bufsize=0>>"
    transport.close()
    run_until(reactor, lambda: a.fileno() == -1)


def test_memoryviews_and_other_types_are_refused_with_the_reason(reactor, pair):
    a, b = pair
    transport = StreamTransport(reactor, a, Protocol())
    with pytest.raises(TypeError) as refused:
        transport.write(memoryview(b"abcdef")[::2])
    assert str(refused.value) == "a memoryview to write must be contiguous"
    with pytest.raises(TypeError) as refused:
        transport.write("text")
    assert str(refused.value) == "data must be bytes, bytearray or memoryview, not str"
    with pytest.raises(TypeError) as refused:
        transport.writelines([b"ok", 42])
    assert str(refused.value) == "data must be bytes, bytearray or memoryview, not int"
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)


def test_an_exception_in_eof_received_aborts_with_that_exception(reactor, pair):
    class Fragile(Into):
        def eof_received(self):
            raise LookupError("broken eof_received")

    errors = errors_of(reactor)
    a, b = pair
    protocol = Fragile()
    StreamTransport(reactor, a, protocol)
    b.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: protocol.lost)
    assert [ctx["message"] for ctx in errors] == ["protocol.eof_received() raised; aborting the connection"]
    exc = errors[0]["exception"]
    assert isinstance(exc, LookupError) and protocol.lost == [exc]


def test_a_half_close_that_fails_reaches_connection_lost_and_the_debug_log(reactor, tcp_pair, caplog):
    a, b = tcp_pair
    protocol = Into()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    transport.pause_reading()  # (so that the reset is found by shutdown(), not by a read)
    reset(b, a)
    with caplog.at_level(logging.DEBUG, logger="reactor"):
        transport.write_eof()
        run_until(reactor, lambda: protocol.lost)
    (exc,) = protocol.lost
    assert isinstance(exc, OSError) and exc.errno == errno.ENOTCONN
    logged = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert logged == [f"{transport!r}: shutdown() failed: {exc}"]


def test_write_eof_after_the_end_does_nothing(reactor, pair, caplog):
    a, b = pair
    protocol = Into()
    transport = StreamTransport(reactor, a, protocol)
    transport.close()
    run_until(reactor, lambda: protocol.lost == [None])
    with caplog.at_level(logging.DEBUG, logger="reactor"):
        transport.write_eof()  # closed: no half-close to try, nothing to report
        reactor.run_once(0)
    assert caplog.records == [] and protocol.lost == [None]


def test_nothing_written_after_close_is_sent_even_from_resume_writing(reactor, pair, caplog):
    """close() with data buffered: the buffer drains, but what the protocol
    writes then (resume_writing, at an empty buffer) is dropped with a warning."""

    class LateWriter(Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.lost = []

        def resume_writing(self):
            self.transport.writelines([b"late", b"r"])
            self.transport.write(b"latest")

        def connection_lost(self, exc):
            self.lost.append(exc)

    a, b = pair
    protocol = LateWriter()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    transport.set_write_buffer_limits(high=1, low=0)  # resume_writing only at an empty buffer
    payload = b"x" * 1024 * 1024
    transport.write(payload)
    assert transport.get_write_buffer_size() > 0
    transport.close()
    received = bytearray()
    b.setblocking(False)

    def drained():
        try:
            received.extend(b.recv(1 << 20))
        except BlockingIOError:
            pass
        return bool(protocol.lost)
    with caplog.at_level(logging.WARNING, logger="reactor"):
        run_until(reactor, drained)
    b.setblocking(True)
    b.settimeout(10)
    while chunk := b.recv(1 << 20):
        received.extend(chunk)
    assert bytes(received) == payload and protocol.lost == [None]
    assert len([r for r in caplog.records if "after close" in r.getMessage()]) == 1


# -- found by the run after the refactor ----------------------------------------------------

def kernel_full(sock) -> None:
    """Fill *sock*'s kernel send buffer (the peer reads nothing): its next send() says EAGAIN."""
    sock.setblocking(False)
    chunk = b"k" * 65536
    while True:
        try:
            sock.send(chunk)
        except BlockingIOError:
            return


def read_all(reactor, transport, peer, done) -> bytes:
    """Everything *peer* receives until *transport* has closed (driving the loop), then until EOF."""
    received = bytearray()
    peer.setblocking(False)

    def step():
        try:
            received.extend(peer.recv(1 << 20))
        except BlockingIOError:
            pass
        return done()
    run_until(reactor, step)
    peer.setblocking(True)
    peer.settimeout(10)
    while chunk := peer.recv(1 << 20):
        received.extend(chunk)
    return bytes(received)


class Lost(Protocol):
    def __init__(self) -> None:
        self.lost: list = []

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost.append(exc)


@pytest.mark.parametrize("shape", ["ints", "rows of 4 bytes", "rows of 1 KiB"])
def test_a_view_of_another_format_or_shape_sent_in_part_arrives_whole(reactor, pair, shape):
    """write() of a memoryview the kernel takes only part of: the rest is
    buffered from the right byte, whatever the view's item size or shape."""
    import array

    a, b = pair
    protocol = Lost()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    size = 4 * 1024 * 1024  # more than a socketpair holds
    if shape == "ints":
        ints = array.array("I", range(size // 4))
        view, payload = memoryview(ints), ints.tobytes()
    else:
        payload = (bytes(range(251)) * (size // 251 + 1))[:size]
        width = 4 if shape == "rows of 4 bytes" else 1024
        view = memoryview(payload).cast("B", shape=[size // width, width])
    transport.write(view)
    assert 0 < transport.bytes_sent < size
    assert transport.bytes_sent + transport.get_write_buffer_size() == size
    transport.close()
    assert read_all(reactor, transport, b, lambda: protocol.lost) == payload


def test_the_hard_cap_is_a_strict_boundary(reactor, pair):
    a, b = pair
    protocol = Lost()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    kernel_full(a)
    transport.write(b"x" * 100)  # the kernel takes nothing: exactly 100 bytes buffered
    transport.set_max_write_buffer_size(100)  # exactly at the cap: allowed
    assert transport.get_write_buffer_size() == 100 and not transport.is_closing()
    transport.write(b"y")
    run_until(reactor, lambda: protocol.lost)
    (exc,) = protocol.lost
    assert isinstance(exc, WriteBufferOverflow)
    assert str(exc) == "write buffer of 101 bytes is over the cap of 100; the peer is not reading"


def test_the_hard_cap_may_be_zero_but_not_negative(reactor, pair):
    a, b = pair
    protocol = Lost()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    with pytest.raises(ValueError) as refused:
        transport.set_max_write_buffer_size(-1)
    assert str(refused.value) == "size must be >= 0 or None, got -1"
    transport.set_max_write_buffer_size(0)  # nothing may wait: what the kernel takes goes
    transport.write(b"fits in the kernel")
    assert b.recv(100) == b"fits in the kernel" and not transport.is_closing()
    kernel_full(a)
    transport.write(b"z")
    run_until(reactor, lambda: protocol.lost)
    assert str(protocol.lost[0]) == "write buffer of 1 bytes is over the cap of 0; the peer is not reading"


def test_a_factory_that_is_not_callable_is_refused_at_once(reactor):
    with pytest.raises(TypeError) as refused:
        reactor.listen_tcp(42, "127.0.0.1", 0)
    assert str(refused.value) == "a protocol factory must be callable, got 42"


def test_bytes_received_add_up_over_reads(reactor, pair):
    class Got(Lost):
        def __init__(self):
            super().__init__()
            self.data = bytearray()

        def data_received(self, data):
            self.data += data

    a, b = pair
    protocol = Got()
    transport = StreamTransport(reactor, a, protocol)
    b.sendall(b"hello")
    run_until(reactor, lambda: protocol.data == b"hello")
    b.sendall(b" world")
    run_until(reactor, lambda: protocol.data == b"hello world")
    assert transport.bytes_received == 11
    transport.close()
    run_until(reactor, lambda: protocol.lost == [None])


def test_a_reset_during_recv_reaches_connection_lost_and_the_debug_log(reactor, tcp_pair, caplog):
    a, b = tcp_pair
    protocol = Lost()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    reset(b, a)
    with caplog.at_level(logging.DEBUG, logger="reactor"):
        run_until(reactor, lambda: protocol.lost)
    (exc,) = protocol.lost
    assert isinstance(exc, ConnectionResetError)
    logged = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert logged == [f"{transport!r}: recv() failed: {exc}"]


def test_a_reset_found_by_write_reaches_connection_lost_and_the_debug_log(reactor, tcp_pair, caplog):
    a, b = tcp_pair
    protocol = Lost()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    transport.pause_reading()  # (so that the reset is found by send(), not by a read)
    reset(b, a)
    with caplog.at_level(logging.DEBUG, logger="reactor"):
        transport.write(b"to nobody")
        run_until(reactor, lambda: protocol.lost)
    (exc,) = protocol.lost
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
    logged = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert logged == [f"{transport!r}: send() failed: {exc}"]


def test_a_reset_found_while_draining_reaches_connection_lost_and_the_debug_log(reactor, tcp_pair, caplog):
    a, b = tcp_pair
    protocol = Lost()
    transport = StreamTransport(reactor, a, protocol)
    reactor.run_once(0)
    transport.pause_reading()
    transport.write(b"x" * 16 * 1024 * 1024)  # more than the kernel holds: the rest waits
    assert transport.get_write_buffer_size() > 0
    reset(b, a)
    with caplog.at_level(logging.DEBUG, logger="reactor"):
        run_until(reactor, lambda: protocol.lost)
    (exc,) = protocol.lost
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
    logged = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert logged == [f"{transport!r}: send() failed: {exc}"]
    assert transport.get_write_buffer_size() == 0


class NoSendmsg(socket.socket):
    """A socket without sendmsg(), as on platforms that lack it."""

    @property
    def sendmsg(self):
        raise AttributeError("sendmsg")


def test_without_sendmsg_several_buffered_chunks_go_out_one_by_one(reactor):
    a0, b = socket.socketpair()
    a = NoSendmsg(a0.family, a0.type, fileno=a0.detach())
    try:
        protocol = Lost()
        transport = StreamTransport(reactor, a, protocol)
        reactor.run_once(0)
        kernel_full(a)
        chunks = [bytes([65 + i]) * 300_000 for i in range(4)]  # large: one chunk each
        for chunk in chunks:
            transport.write(chunk)
        transport.close()
        received = read_all(reactor, transport, b, lambda: protocol.lost)
        assert received.endswith(b"".join(chunks)) and protocol.lost == [None]
    finally:
        a.close()
        b.close()


class Bytes(Instrument):
    def __init__(self):
        self.sent: list = []

    def bytes_sent(self, transport, n):
        self.sent.append((transport, n))


def test_buffered_sends_are_counted_and_observed(selector_class, caplog):
    from reactor import Reactor

    observed = Bytes()
    a, b = socket.socketpair()
    try:
        with Reactor(selector=selector_class(), debug="traffic") as reactor:
            reactor.add_instrument(observed)
            protocol = Lost()
            transport = StreamTransport(reactor, a, protocol)
            reactor.run_once(0)
            kernel_full(a)
            transport.write(b"A" * 200_000)
            transport.write(b"B" * 200_000)  # two chunks: one vectored send
            assert observed.sent == []  # the kernel took nothing: no 0-byte sends reported
            transport.close()
            with caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
                received = read_all(reactor, transport, b, lambda: protocol.lost)
            assert received.endswith(b"A" * 200_000 + b"B" * 200_000)
            assert transport.bytes_sent == 400_000
            assert all(t is transport and n > 0 for t, n in observed.sent)
            assert sum(n for t, n in observed.sent) == 400_000
            lines = [r.getMessage() for r in caplog.records if r.name == "reactor.traffic"]
            assert lines[0] == f"{transport!r} sent {observed.sent[0][1]} bytes {b'A' * 64!r}..."
            assert all(" sent " in line for line in lines) and len(lines) == len(observed.sent)
    finally:
        a.close()
        b.close()


def test_a_direct_send_is_observed_with_its_transport(selector_class, caplog):
    from reactor import Reactor

    observed = Bytes()
    a, b = socket.socketpair()
    try:
        with Reactor(selector=selector_class(), debug="traffic") as reactor:
            reactor.add_instrument(observed)
            transport = StreamTransport(reactor, a, Lost())
            reactor.run_once(0)
            with caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
                transport.write(b"hello")  # the kernel takes it all: nothing buffered
            assert b.recv(10) == b"hello" and transport.get_write_buffer_size() == 0
            assert observed.sent == [(transport, 5)]
            lines = [r.getMessage() for r in caplog.records if r.name == "reactor.traffic"]
            assert lines == [f"{transport!r} sent 5 bytes b'hello'"]
            transport.abort()
            reactor.run_once(0)
    finally:
        a.close()
        b.close()
