"""SocketTransport behaviours that mutation testing found unpinned (python -m tests.mutation).

The lifecycle, reading on and off, the water marks, error reports and extra
info that every transport shares (``reactor/transports.py``), seen through a
``StreamTransport`` on a ``socketpair`` or a ``DatagramTransport`` on a UDP
socket (both public), so that each test costs milliseconds.
"""

from __future__ import annotations

import errno
import socket

import pytest

from reactor import DatagramProtocol, DatagramTransport, Protocol, StreamTransport
from reactor.instruments import Instrument

from .conftest import run_until


class Recorder(Protocol):
    def __init__(self) -> None:
        self.events: list = []
        self.data = bytearray()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def opened(reactor, sock, protocol=None, **kw):
    """A StreamTransport on *sock* whose connection_made has run."""
    transport = StreamTransport(reactor, sock, protocol or Recorder(), **kw)
    reactor.run_once(0)
    return transport


def fill(transport) -> int:
    """Write until the kernel pushes back; return what the transport buffered."""
    transport.write(b"x" * 4 * 1024 * 1024)
    size = transport.get_write_buffer_size()
    assert size > 0
    return size


def readers(reactor) -> int:
    return reactor.stats().readers


class Registrations(Instrument):
    """Every change the loop makes to the selector."""

    def __init__(self):
        self.log = []

    def fd_registered(self, fd, events):
        self.log.append(("registered", fd, events))

    def fd_unregistered(self, fd):
        self.log.append(("unregistered", fd))


def test_close_stops_reading_at_once_while_the_buffer_drains(reactor, pair):
    a, b = pair
    transport = opened(reactor, a)
    assert readers(reactor) == 1
    fill(transport)
    transport.close()
    assert transport.is_closing() and not transport.is_reading()
    assert readers(reactor) == 0  # not watching for data any more, though the buffer still drains
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)


def test_abort_stops_reading_and_writing_at_once_and_drops_an_event_already_reported(reactor, pair):
    a, b = pair
    protocol = Recorder()
    transport = opened(reactor, a, protocol)
    fill(transport)
    assert reactor.stats().writers == 1
    b.sendall(b"already here")
    reactor.call_soon(transport.abort)  # runs before this iteration's read event
    reactor.run_once(0)
    assert readers(reactor) == 0 and reactor.stats().writers == 0
    assert protocol.data == b""  # the readable event of the same iteration is dead
    run_until(reactor, lambda: protocol.events[-1] == ("lost", None))


def test_resume_reading_while_reading_registers_nothing(reactor, pair):
    a, b = pair
    transport = opened(reactor, a)
    watch = Registrations()
    reactor.add_instrument(watch)
    transport.resume_reading()  # not paused: nothing to undo
    assert watch.log == []
    transport.pause_reading()
    transport.resume_reading()
    assert watch.log == [("unregistered", a.fileno()), ("registered", a.fileno(), 1)]
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)


def test_pausing_again_or_after_eof_leaves_the_selector_alone(reactor, pair):
    class KeepOpen(Recorder):
        def eof_received(self):
            self.events.append("eof")
            return True

    a, b = pair
    protocol = KeepOpen()
    transport = opened(reactor, a, protocol)
    fill(transport)  # a writer stays registered on the fd: removing the reader modifies the key
    watch = Registrations()
    reactor.add_instrument(watch)
    transport.pause_reading()
    assert watch.log == [("registered", a.fileno(), 2)]  # the writer alone
    transport.pause_reading()
    assert watch.log == [("registered", a.fileno(), 2)]
    transport.resume_reading()
    b.shutdown(socket.SHUT_WR)
    run_until(reactor, lambda: "eof" in protocol.events)
    del watch.log[:]
    transport.pause_reading()  # after EOF there is no reader to remove
    assert watch.log == []
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)


def test_reading_on_and_off_after_close_changes_nothing(reactor, pair):
    a, b = pair
    transport = opened(reactor, a)
    fill(transport)
    transport.pause_reading()
    transport.close()
    before = repr(transport)
    assert "closing read=paused" in before
    transport.resume_reading()
    assert repr(transport) == before and not transport.is_reading()
    transport.pause_reading()
    assert repr(transport) == before
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)


def test_pause_reading_after_close_changes_nothing(reactor, pair):
    a, b = pair
    transport = opened(reactor, a)
    fill(transport)
    transport.close()
    before = repr(transport)
    assert "closing read=idle" in before
    transport.pause_reading()
    assert repr(transport) == before
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)


def test_an_exception_in_resume_writing_aborts_with_that_exception(reactor, pair):
    class Fragile(Recorder):
        def resume_writing(self):
            raise ArithmeticError("broken resume_writing")

    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    a, b = pair
    protocol = Fragile()
    transport = opened(reactor, a, protocol)
    transport.set_write_buffer_limits(high=1, low=0)
    fill(transport)
    b.setblocking(False)

    def read_some():
        try:
            while b.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        return protocol.events[-1][0] == "lost"
    run_until(reactor, read_some)
    assert [ctx["message"] for ctx in errors] == ["protocol.resume_writing() raised; aborting the connection"]
    exc = errors[0]["exception"]
    assert isinstance(exc, ArithmeticError) and protocol.events == ["made", "pause", ("lost", exc)]
    assert reactor.stats().writers == 0


def test_a_connection_refused_by_transport_setup_is_closed_with_that_exception(reactor):
    class Closings(Instrument):
        def __init__(self):
            self.log = []

        def connection_closed(self, transport, exc):
            self.log.append((transport, exc))

    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    closings = Closings()
    reactor.add_instrument(closings)
    problem = PermissionError("not this one")
    protocols = []

    def refuse(transport):
        raise problem

    listener = reactor.listen_tcp(lambda: protocols.append(Recorder()) or protocols[-1], "127.0.0.1", 0,
                                  transport_setup=refuse)
    try:
        with socket.create_connection(listener.address[:2]):
            run_until(reactor, lambda: closings.log)
        ((transport, exc),) = closings.log
        assert exc is problem and errors[0]["exception"] is problem
        assert transport.get_extra_info("socket").fileno() == -1
        reactor.run_once(0)
        assert protocols[0].events == []  # the protocol never heard of it
    finally:
        listener.close()


def test_write_buffer_limits_follow_asyncios_rules(reactor, pair):
    a, b = pair
    transport = opened(reactor, a)
    transport.set_write_buffer_limits(high=10)
    assert transport.get_write_buffer_limits() == (2, 10)  # high // 4
    assert all(type(n) is int for n in transport.get_write_buffer_limits())
    transport.set_write_buffer_limits(high=5, low=5)  # equal marks are allowed
    assert transport.get_write_buffer_limits() == (5, 5)
    transport.set_write_buffer_limits()  # no arguments: the defaults again
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    with pytest.raises(ValueError) as refused:
        transport.set_write_buffer_limits(high=1, low=2)
    assert str(refused.value) == "high (1) must be >= low (2) must be >= 0"
    with pytest.raises(ValueError) as refused:
        transport.set_write_buffer_limits(high=4, low=-1)
    assert str(refused.value) == "high (4) must be >= low (-1) must be >= 0"
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)


def test_new_limits_after_an_abort_call_the_protocol_no_more(reactor, pair):
    a, b = pair
    protocol = Recorder()
    transport = opened(reactor, a, protocol)
    transport.set_write_buffer_limits(high=1, low=0)
    fill(transport)
    assert protocol.events == ["made", "pause"]
    transport.abort()
    transport.set_write_buffer_limits(high=10 ** 9)  # the buffer is gone: would be "resume"
    run_until(reactor, lambda: a.fileno() == -1)
    assert protocol.events == ["made", "pause", ("lost", None)]


def test_errors_are_reported_with_the_transport_and_protocol(reactor, pair):
    class Fragile(Recorder):
        def data_received(self, data):
            raise ValueError("bad data")

        def connection_lost(self, exc):
            super().connection_lost(exc)
            raise KeyError("bad connection_lost")

    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    a, b = pair
    protocol = Fragile()
    transport = opened(reactor, a, protocol)
    b.sendall(b"x")
    run_until(reactor, lambda: len(errors) == 2)
    assert [ctx["message"] for ctx in errors] == [
        "protocol.data_received() raised; aborting the connection",
        "protocol.connection_lost() raised",  # nothing left to abort
    ]
    assert [type(ctx["exception"]) for ctx in errors] == [ValueError, KeyError]
    for ctx in errors:
        assert ctx["transport"] is transport and ctx["protocol"] is protocol
    assert a.fileno() == -1


def test_extra_info_keeps_what_the_creator_added_and_reads_sockname_once(reactor, pair):
    a, b = pair
    transport = opened(reactor, a, extra={"role": "test"})
    sockname = a.getsockname()  # ("" for an unnamed Unix socket)
    assert transport.get_extra_info("role") == "test"
    assert transport.get_extra_info("sockname") == sockname  # read although extras exist
    assert transport.get_extra_info("role") == "test"
    assert transport.get_extra_info("missing", "default") == "default"
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)
    assert transport.get_extra_info("sockname") == sockname is not None  # kept from before the close
    assert transport.get_extra_info("socket") is a


def test_extra_info_without_extras(reactor, pair):
    a, b = pair
    transport = opened(reactor, a)
    assert transport.get_extra_info("missing") is None
    assert transport.get_extra_info("missing", "default") == "default"  # reads no sockname
    transport.abort()
    run_until(reactor, lambda: a.fileno() == -1)
    # Asked for the first time after the close: None (the socket cannot say).
    assert transport.get_extra_info("sockname") is None


def test_a_datagram_transport_switches_protocols(reactor):
    class Sink(DatagramProtocol):
        def __init__(self):
            self.got = []

        def datagram_received(self, data, addr):
            self.got.append(data)

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    first, second = Sink(), Sink()
    transport = DatagramTransport(reactor, sock, first)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"one", sock.getsockname())
        run_until(reactor, lambda: first.got == [b"one"])
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        peer.sendto(b"two", sock.getsockname())
        run_until(reactor, lambda: second.got == [b"two"])
    assert first.got == [b"one"]
    transport.close()
    run_until(reactor, lambda: sock.fileno() == -1)


# -- found by the resumed run ------------------------------------------------------------

def test_an_fd_the_selector_cannot_watch_ends_the_transport_with_the_reason(reactor, pair):
    a, b = pair
    fd = a.fileno()
    reactor.fd_limit = fd  # (as FD_SETSIZE is for select(): this fd is past it)
    protocol = Recorder()
    StreamTransport(reactor, a, protocol)
    run_until(reactor, lambda: protocol.events and isinstance(protocol.events[-1], tuple))
    assert protocol.events[0] == "made"
    exc = protocol.events[-1][1]
    assert isinstance(exc, ValueError) and str(exc).startswith(f"fd {fd} is out of range")


def test_an_exception_in_pause_writing_aborts_with_that_exception(reactor, pair):
    class Fragile(Recorder):
        def pause_writing(self):
            raise ArithmeticError("broken pause_writing")

    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    a, b = pair
    protocol = Fragile()
    transport = opened(reactor, a, protocol)
    transport.set_write_buffer_limits(high=1, low=0)
    transport.write(b"x" * 4 * 1024 * 1024)
    run_until(reactor, lambda: isinstance(protocol.events[-1], tuple))
    assert [ctx["message"] for ctx in errors] == ["protocol.pause_writing() raised; aborting the connection"]
    assert isinstance(errors[0]["exception"], ArithmeticError)
    assert protocol.events[-1] == ("lost", errors[0]["exception"])


def test_closing_the_reactor_takes_each_open_transport_out_of_the_selector_first(selector_class):
    from reactor import Reactor

    a, b = socket.socketpair()
    try:
        reactor = Reactor(selector=selector_class())
        opened(reactor, a)
        watch = Registrations()
        reactor.add_instrument(watch)
        fd = a.fileno()
        reactor.close()
        assert ("unregistered", fd) in watch.log and a.fileno() == -1
    finally:
        b.close()


# -- found by the run after the refactor (water_marks, _has_pending_writes) --------------

def kernel_full(sock) -> None:
    """Fill *sock*'s kernel send buffer (the peer reads nothing), so that its next send() says EAGAIN."""
    sock.setblocking(False)
    chunk = b"k" * 65536
    while True:
        try:
            sock.send(chunk)
        except BlockingIOError:
            return


def test_close_with_one_byte_buffered_sends_it_before_closing(reactor, pair):
    a, b = pair
    protocol = Recorder()
    transport = opened(reactor, a, protocol)
    kernel_full(a)
    transport.write(b"!")  # the kernel takes nothing: exactly one byte buffered
    assert transport.get_write_buffer_size() == 1
    transport.close()
    reactor.run_once(0)
    assert protocol.events == ["made"]  # the byte is still waiting: not lost yet
    b.setblocking(False)
    received = bytearray()

    def drained():
        try:
            received.extend(b.recv(1 << 20))
        except BlockingIOError:
            pass
        return protocol.events[-1] == ("lost", None)
    run_until(reactor, drained)
    b.setblocking(True)
    b.settimeout(10)
    while chunk := b.recv(1 << 20):
        received.extend(chunk)
    assert received.endswith(b"k!")  # everything, the buffered byte last, then EOF


def test_closing_the_reactor_unregisters_a_transport_still_sending(selector_class):
    from reactor import Reactor

    a, b = socket.socketpair()
    try:
        reactor = Reactor(selector=selector_class())
        transport = opened(reactor, a)
        fill(transport)
        assert reactor.stats().writers == 1
        watch = Registrations()
        reactor.add_instrument(watch)
        fd = a.fileno()
        reactor.close()  # buffered data is dropped; the fd leaves the selector before it closes
        assert watch.log[-1] == ("unregistered", fd) and a.fileno() == -1
    finally:
        b.close()


def test_close_again_from_a_callback_while_the_queue_drains_changes_nothing(reactor):
    from .test_mutants_datagrams import ScriptedUDP

    class CloseOnError(DatagramProtocol):
        def __init__(self):
            self.events = []

        def connection_made(self, transport):
            self.transport = transport

        def error_received(self, exc):
            self.events.append(("error", exc.errno))
            self.transport.close()  # closing already: nothing to do

        def connection_lost(self, exc):
            # By now the endpoint watches its fd for nothing: the flush
            # that emptied the queue removed the writer.
            self.events.append(("lost", exc, reactor.stats().writers))

    sock = ScriptedUDP(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.script = ["eagain", "emsgsize"]
    protocol = CloseOnError()
    transport = DatagramTransport(reactor, sock, protocol)
    reactor.run_once(0)
    transport.sendto(b"refused later", ("127.0.0.1", 9))  # EAGAIN: queued, writer registered
    transport.close()  # closing, once the queue drains
    assert reactor.stats().writers == 1
    run_until(reactor, lambda: protocol.events and protocol.events[-1][0] == "lost")
    assert protocol.events == [("error", errno.EMSGSIZE), ("lost", None, 0)]
    assert sock.fileno() == -1
