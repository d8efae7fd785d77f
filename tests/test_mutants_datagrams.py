"""DatagramTransport behaviours that mutation testing found unpinned (python -m tests.mutation).

The send queue is driven through ``CongestedSocket`` (test_datagrams.py), a
fake UDP socket whose sends follow a script, or ``ScriptedUDP`` below, a real
UDP socket on loopback whose sends follow a script, so that "the kernel
pushed back" happens exactly when a test says while datagrams still arrive.
"""

from __future__ import annotations

import errno
import logging
import socket

import pytest

from reactor import DatagramProtocol, DatagramTransport, DatagramTruncated, Reactor
from reactor import datagrams
from reactor.instruments import Instrument

from .conftest import run_until
from .test_datagrams import CongestedSocket

PEER = ("127.0.0.1", 9)


class Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.events: list = []

    def connection_made(self, transport):
        self.events.append("made")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


@pytest.fixture
def congested():
    sockets = []

    def make(script):
        sockets.append(CongestedSocket(script))
        return sockets[-1]
    yield make
    for sock in sockets:
        sock.close()


def test_close_twice_with_only_an_empty_datagram_left_still_sends_it(reactor, congested):
    sock = congested(["eagain", "ok", "eagain"])  # b"y" waits; then b"y" goes, b"" waits again
    protocol = Recorder()
    transport = DatagramTransport(reactor, sock, protocol)
    reactor.run_once(0)
    transport.sendto(b"y", PEER)
    transport.sendto(b"", PEER)  # queued behind b"y"
    transport.close()  # 1 byte queued: closing
    reactor.run_once(0)
    assert sock.wire == [b"y"]
    assert transport.get_write_buffer_count() == 1 and transport.get_write_buffer_size() == 0
    transport.close()  # again, with only the empty datagram queued: nothing is dropped
    run_until(reactor, lambda: protocol.events[-1] == ("lost", None))
    assert sock.wire == [b"y", b""]


def test_close_with_only_an_empty_datagram_queued_sends_it_first(reactor, congested):
    sock = congested(["eagain"])
    protocol = Recorder()
    transport = DatagramTransport(reactor, sock, protocol)
    reactor.run_once(0)
    transport.sendto(b"", PEER)  # EAGAIN: queued, 0 bytes
    assert transport.get_write_buffer_count() == 1 and transport.get_write_buffer_size() == 0
    transport.close()
    run_until(reactor, lambda: protocol.events[-1] == ("lost", None))
    assert sock.wire == [b""]  # "close(): send what is queued, then close"


class ScriptedUDP(socket.socket):
    """A real UDP socket whose send()/sendto() follow ``script`` (then succeed):
    "eagain", "emsgsize" (this datagram is refused) or "refused" (an earlier
    datagram's ICMP error, reported by a connected socket's next send)."""

    script: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.script = list(type(self).script)
        self.wire: list[bytes] = []

    def _step(self, data):
        step = self.script.pop(0) if self.script else "ok"
        if step == "eagain":
            raise BlockingIOError(errno.EAGAIN, "busy")
        if step == "emsgsize":
            raise OSError(errno.EMSGSIZE, "Message too long")
        if step == "refused":
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        self.wire.append(bytes(data))

    def sendto(self, data, *args):
        self._step(data)
        return super().sendto(data, *args)

    def send(self, data, *args):
        self._step(data)
        return super().send(data, *args)


class Events(DatagramProtocol):
    """Records everything; *on_datagram* / *on_error* run from those callbacks."""

    def __init__(self, on_datagram=None, on_error=None, on_made=None):
        self.events: list = []
        self.on_datagram, self.on_error, self.on_made = on_datagram, on_error, on_made

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        if self.on_made:
            self.on_made(transport)

    def datagram_received(self, data, addr):
        self.events.append(("datagram", data))
        if self.on_datagram:
            self.on_datagram(self.transport, data)

    def error_received(self, exc):
        self.events.append(("error", exc))
        if self.on_error:
            self.on_error(self.transport, exc)

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))

    def datagrams(self):
        return [e[1] for e in self.events if isinstance(e, tuple) and e[0] == "datagram"]

    def errors(self):
        return [e[1] for e in self.events if isinstance(e, tuple) and e[0] == "error"]


@pytest.fixture
def udp():
    """make(script=(), protocol) -> (transport, scripted socket, peer socket)."""
    made = []

    def make(protocol, script=(), reactor=None, **kw):
        sock = ScriptedUDP(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.script = list(script)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        made.extend([sock, peer])
        transport = DatagramTransport(make.reactor, sock, protocol, **kw)
        make.reactor.run_once(0)
        return transport, sock, peer
    yield make
    for s in made:
        s.close()


@pytest.fixture
def errors_of():
    def install(reactor):
        errors: list = []
        reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
        return errors
    return install


# -- what a transport tells about itself ------------------------------------------------

def test_extra_info_and_counts_outlive_the_socket(reactor, udp):
    udp.reactor = reactor
    protocol = Events()
    transport, sock, peer = udp(protocol, ["eagain"])
    name = sock.getsockname()
    transport.sendto(b"queued", peer.getsockname())
    assert (transport.get_write_buffer_count(), transport.get_write_buffer_size()) == (1, 6)
    transport.abort()
    assert (transport.get_write_buffer_count(), transport.get_write_buffer_size()) == (0, 0)
    run_until(reactor, lambda: protocol.events[-1] == ("lost", None))
    assert transport.get_extra_info("sockname") == name  # captured when made
    assert transport.get_extra_info("peername") is None


def test_a_connected_endpoint_names_its_peer(reactor):
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        transport = reactor.open_udp(Events, remote_addr=peer.getsockname())
        assert transport.get_extra_info("peername") == peer.getsockname()
        with pytest.raises(ValueError) as refused:
            transport.sendto(b"x", "not an address")
        assert str(refused.value) == (f"this endpoint is connected to {peer.getsockname()!r}; "
                                      "cannot send to 'not an address'")
        with pytest.raises(ValueError):  # a list is not an address, even with the right items
            transport.sendto(b"x", list(peer.getsockname()))
        transport.close()
        run_until(reactor, lambda: transport.get_extra_info("socket").fileno() == -1)
    finally:
        peer.close()


def test_a_connected_unix_endpoint_compares_paths(reactor, tmp_path):
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        a.bind(str(tmp_path / "a"))
        b.bind(str(tmp_path / "b"))
        a.connect(str(tmp_path / "b"))
        transport = DatagramTransport(reactor, a, Events(), remote=str(tmp_path / "b"))
        transport.sendto(b"to b", str(tmp_path / "b"))  # the connected peer, named: allowed
        assert b.recv(10) == b"to b"
        with pytest.raises(ValueError):
            transport.sendto(b"x", str(tmp_path / "elsewhere"))
        transport.close()
        run_until(reactor, lambda: a.fileno() == -1)
    finally:
        a.close()
        b.close()


# -- sendto's refusals ---------------------------------------------------------------------

def test_sendto_refuses_what_it_cannot_send_with_the_reason(reactor, udp):
    udp.reactor = reactor
    transport, sock, peer = udp(Events())
    cases = [
        ((("text", peer.getsockname())), TypeError, "data must be bytes, bytearray or memoryview, not str"),
        ((b"x", None), ValueError, "sendto() needs an address on an unconnected endpoint"),
        ((b"x", ""), TypeError, "an address (host, port) was expected, got ''"),
        ((b"x", "127.0.0.1"), TypeError, "an address (host, port) was expected, got '127.0.0.1'"),
        ((b"x", ("127.0.0.1",)), TypeError, "an address (host, port) was expected, got ('127.0.0.1',)"),
        ((b"x", ("localhost", 9)), ValueError, "sendto() needs an IP address, not the name 'localhost': "
         "resolve it first (socket.getaddrinfo, once), since resolving here would block the loop"),
    ]
    for args, kind, wording in cases:
        with pytest.raises(kind) as refused:
            transport.sendto(*args)
        assert str(refused.value) == wording
    assert sock.wire == []
    # The wildcard and "<broadcast>" are not names.
    transport.sendto(b"any", ("", peer.getsockname()[1]))
    assert sock.wire == [b"any"]
    transport.close()


def test_broadcast_is_not_a_name_and_needs_allow_broadcast(reactor):
    plain = datagrams.open_udp(reactor, Events, ("127.0.0.1", 0))
    loud = datagrams.open_udp(reactor, Events, ("127.0.0.1", 0), allow_broadcast=True)
    try:
        assert plain.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 0
        assert loud.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 1
        plain.sendto(b"x", ("<broadcast>", 9))  # no ValueError; the kernel says no: error_received
        reactor.run_once(0)
        assert isinstance(plain.get_protocol().errors()[0], PermissionError)
    finally:
        plain.close()
        loud.close()
        reactor.run_once(0)


def test_a_scoped_ipv6_literal_is_not_a_name(reactor):
    try:
        transport = reactor.open_udp(Events, local_addr=("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        transport.sendto(b"x", ("fe80::1%lo", 9, 0, 0))  # not refused as a name; the kernel decides
    finally:
        transport.close()
        reactor.run_once(0)


def test_after_close_sendto_sends_nothing(reactor, congested):
    sock = congested(["eagain", "eagain"])
    protocol = Events()
    transport = DatagramTransport(reactor, sock, protocol)
    reactor.run_once(0)
    transport.sendto(b"queued", PEER)
    transport.close()  # closing: the queue still drains
    transport.sendto(b"late", PEER)  # dropped, like a datagram lost in the network
    assert transport.get_write_buffer_count() == 1
    run_until(reactor, lambda: protocol.events[-1] == ("lost", None))
    assert sock.wire == [b"queued"]


# -- sending: errors, counts, observers ----------------------------------------------------

def test_a_datagram_the_kernel_refuses_goes_to_error_received(reactor):
    protocol = Events()
    transport = reactor.open_udp(lambda: protocol, local_addr=("127.0.0.1", 0))
    try:
        transport.sendto(b"x" * 70_000, ("127.0.0.1", 9))  # larger than UDP carries
        (exc,) = protocol.errors()
        assert isinstance(exc, OSError) and exc.errno == errno.EMSGSIZE
        assert transport.datagrams_sent == 0 and transport.get_write_buffer_count() == 0
    finally:
        transport.close()
        reactor.run_once(0)


def test_bytes_and_datagrams_are_counted_and_observed_both_ways(selector_class, caplog):
    class Bytes(Instrument):
        def __init__(self):
            self.log = []

        def bytes_received(self, transport, n):
            self.log.append(("received", transport, n))

        def bytes_sent(self, transport, n):
            self.log.append(("sent", transport, n))

    observed = Bytes()
    with Reactor(selector=selector_class(), debug="traffic") as reactor:
        reactor.add_instrument(observed)
        a = reactor.open_udp(Events, local_addr=("127.0.0.1", 0))
        b = reactor.open_udp(Events, local_addr=("127.0.0.1", 0))
        with caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
            a.sendto(b"hello", b.get_extra_info("sockname"))
            a.sendto(b"world!", b.get_extra_info("sockname"))
            run_until(reactor, lambda: b.get_protocol().datagrams() == [b"hello", b"world!"])
        assert (a.bytes_sent, a.datagrams_sent, b.bytes_received, b.datagrams_received) == (11, 2, 11, 2)
        assert observed.log == [("sent", a, 5), ("sent", a, 6), ("received", b, 5), ("received", b, 6)]
        lines = [r.getMessage() for r in caplog.records if r.name == "reactor.traffic"]
        assert lines == [f"{a!r} sent 5 bytes b'hello'", f"{a!r} sent 6 bytes b'world!'",
                         f"{b!r} received 5 bytes b'hello'", f"{b!r} received 6 bytes b'world!'"]
        a.close()
        b.close()
        reactor.run_once(0)


def test_an_icmp_error_reported_on_send_does_not_resend_after_an_abort(reactor, udp):
    udp.reactor = reactor
    protocol = Events(on_error=lambda t, exc: t.abort())
    transport, sock, peer = udp(protocol, ["refused"], remote=None)
    sock.connect(peer.getsockname())
    transport._remote = peer.getsockname()  # (connected after the fact: as open_udp(remote_addr=...) does)
    transport.sendto(b"after the error")
    assert isinstance(protocol.errors()[0], ConnectionRefusedError)
    assert sock.wire == []  # aborted from error_received: nothing more is sent
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")


# -- the queue ---------------------------------------------------------------------------

def test_a_full_queue_warns_at_the_first_drop_and_every_thousandth(reactor, congested, caplog):
    sock = congested(["eagain"])
    protocol = Events()
    transport = DatagramTransport(reactor, sock, protocol, max_queue_size=4)
    reactor.run_once(0)
    transport.sendto(b"abcd", PEER)  # queued: the queue is full
    with caplog.at_level(logging.WARNING, logger="reactor"):
        for _ in range(2000):
            transport.sendto(b"x", PEER)
    assert transport.datagrams_dropped == 2000
    warnings = [r.getMessage() for r in caplog.records if "send queue full" in r.getMessage()]
    assert warnings == [f"{transport!r}: send queue full (4 bytes); {n} datagram(s) dropped so far"
                        for n in (1, 1000, 2000)]
    transport.abort()
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")


def test_a_datagram_dropped_with_nothing_queued_leaves_no_writer(reactor, congested):
    sock = congested(["eagain"])
    transport = DatagramTransport(reactor, sock, Events(), max_queue_size=0)
    reactor.run_once(0)
    transport.sendto(b"x", PEER)  # the kernel pushes back, and the queue holds nothing
    assert transport.datagrams_dropped == 1 and reactor.stats().writers == 0
    transport.close()
    reactor.run_once(0)


def test_a_flush_cut_short_by_the_kernel_still_resumes_the_protocol(reactor, congested):
    sock = congested(["eagain"])
    protocol = Events()
    transport = DatagramTransport(reactor, sock, protocol)
    reactor.run_once(0)
    transport.set_write_buffer_limits(high=15, low=10)
    for _ in range(4):
        transport.sendto(b"12345", PEER)  # 20 bytes queued: paused
    assert protocol.events == ["made", "pause"]
    sock.script = ["ok", "ok", "eagain"]  # two go out, then the kernel is full again
    reactor.run_once(0)
    assert transport.get_write_buffer_size() == 10 and protocol.events == ["made", "pause", "resume"]
    transport.abort()
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")


def test_one_refused_datagram_in_a_flush_does_not_hold_back_the_rest(reactor, udp):
    udp.reactor = reactor
    protocol = Events()
    transport, sock, peer = udp(protocol, ["eagain"])
    for data in (b"a", b"bad", b"c"):
        transport.sendto(data, peer.getsockname())
    sock.script = ["ok", "emsgsize", "ok"]
    reactor.run_once(0)  # one writable event
    assert sock.wire == [b"a", b"c"] and transport.get_write_buffer_count() == 0
    assert protocol.errors()[0].errno == errno.EMSGSIZE
    transport.close()
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")


def test_an_abort_from_error_received_during_a_flush_ends_it(reactor, udp):
    udp.reactor = reactor
    protocol = Events(on_error=lambda t, exc: t.abort())
    transport, sock, peer = udp(protocol, ["eagain"])
    transport.set_write_buffer_limits(high=1, low=0)
    for data in (b"bad", b"never"):
        transport.sendto(data, peer.getsockname())
    sock.script = ["emsgsize"]
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")
    assert sock.wire == [] and "resume" not in protocol.events  # nothing after the abort


# -- receiving ---------------------------------------------------------------------------

def test_a_truncated_datagram_is_reported_and_the_batch_goes_on(reactor, udp):
    udp.reactor = reactor
    protocol = Events()
    transport, sock, peer = udp(protocol, max_datagram_size=4)
    peer.sendto(b"too long", sock.getsockname())
    peer.sendto(b"fits", sock.getsockname())
    reactor.run_once(5)  # one readable event: both
    (exc,) = protocol.errors()
    assert isinstance(exc, DatagramTruncated)
    assert str(exc) == f"a datagram from {peer.getsockname()!r} was larger than 4 bytes and was discarded"
    assert protocol.datagrams() == [b"fits"]
    transport.close()
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")


@pytest.mark.parametrize("where", ["datagram_received", "error_received"])
def test_closing_from_a_callback_stops_the_batch_while_the_queue_drains(reactor, udp, where):
    def close(transport, *args):
        transport.close()

    protocol = Events(on_datagram=close) if where == "datagram_received" else Events(on_error=close)
    udp.reactor = reactor
    transport, sock, peer = udp(protocol, ["eagain", "eagain"], max_datagram_size=4)
    transport.sendto(b"queued", peer.getsockname())  # so that close() has something to drain
    first = b"first" if where == "error_received" else b"one"  # (too long for 4 bytes / fits)
    for data in (first, b"two", b"six"):
        peer.sendto(data, sock.getsockname())
    reactor.run_once(5)
    assert transport.is_closing() and transport.get_write_buffer_count() == 1
    assert protocol.datagrams() == ([b"one"] if where == "datagram_received" else [])
    transport.abort()
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")


def test_pausing_from_datagram_received_stops_the_batch(reactor, udp):
    protocol = Events(on_datagram=lambda t, data: data == b"1" and t.pause_reading())
    udp.reactor = reactor
    transport, sock, peer = udp(protocol)
    for data in (b"1", b"2", b"3"):
        peer.sendto(data, sock.getsockname())
    reactor.run_once(5)
    assert protocol.datagrams() == [b"1"]
    transport.resume_reading()
    run_until(reactor, lambda: len(protocol.datagrams()) == 3)
    transport.close()
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")


def test_callback_errors_are_reported_by_name_and_connection_made_closes(reactor, udp, errors_of):
    errors = errors_of(reactor)

    def raise_(*args):
        raise LookupError("broken callback")

    udp.reactor = reactor
    protocol = Events(on_datagram=raise_, on_error=raise_)
    transport, sock, peer = udp(protocol, max_datagram_size=4)
    peer.sendto(b"fine", sock.getsockname())
    peer.sendto(b"too long", sock.getsockname())
    run_until(reactor, lambda: len(errors) == 2)
    assert [ctx["message"] for ctx in errors] == ["protocol.datagram_received() raised",
                                                  "protocol.error_received() raised"]
    assert not transport.is_closing()  # one datagram's problem: the endpoint lives on
    transport.close()
    run_until(reactor, lambda: protocol.events[-1][0] == "lost")
    errors.clear()
    broken = Events(on_made=raise_)
    udp(broken)
    run_until(reactor, lambda: broken.events[-1][0] == "lost")
    assert [ctx["message"] for ctx in errors] == ["protocol.connection_made() raised; closing the endpoint"]
    assert isinstance(errors[0]["exception"], LookupError) and broken.events[-1][1] is errors[0]["exception"]


# -- open_udp ---------------------------------------------------------------------------

def test_open_udps_defaults_and_checks(reactor):
    transport = datagrams.open_udp(reactor, Events, ("127.0.0.1", 0))  # the family from the address
    sock = transport.get_extra_info("socket")
    try:
        assert sock.family == socket.AF_INET
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) == 0
    finally:
        transport.close()
        reactor.run_once(0)
    refusals = [
        (dict(factory=42, local_addr=("127.0.0.1", 0)), TypeError, "a protocol factory must be callable, got 42"),
        (dict(factory=Events), ValueError, "open_udp() needs local_addr, remote_addr or family"),
        (dict(factory=Events, local_addr=("127.0.0.1", 0), max_queue_size=-1), ValueError,
         "max_datagram_size must be >= 1 and max_queue_size >= 0"),
        (dict(factory=Events, local_addr=("127.0.0.1", 0), max_datagram_size=0), ValueError,
         "max_datagram_size must be >= 1 and max_queue_size >= 0"),
    ]
    for kwargs, kind, wording in refusals:
        with pytest.raises(kind) as refused:
            datagrams.open_udp(reactor, **kwargs)
        assert str(refused.value) == wording
    tiny = datagrams.open_udp(reactor, Events, ("127.0.0.1", 0), max_datagram_size=1, max_queue_size=0)
    tiny.close()
    reactor.run_once(0)


def test_open_udp_binds_the_wildcard_for_no_host_and_shares_ports_on_request(reactor):
    anywhere = reactor.open_udp(Events, local_addr=(None, 0), family=socket.AF_INET)
    first = reactor.open_udp(Events, local_addr=("127.0.0.1", 0), reuse_port=True)
    try:
        assert anywhere.get_extra_info("sockname")[0] == "0.0.0.0"
        second = reactor.open_udp(Events, local_addr=first.get_extra_info("sockname"), reuse_port=True)
        second.close()
    finally:
        anywhere.close()
        first.close()
        reactor.run_once(0)


def test_open_udp_passes_the_queue_bound_on(reactor, monkeypatch):
    class Congested(ScriptedUDP):
        script = ["eagain"] * 10

    monkeypatch.setattr(socket, "socket", Congested)  # (the reactor's own sockets exist already)
    transport = reactor.open_udp(Events, local_addr=("127.0.0.1", 0), max_queue_size=10)
    monkeypatch.undo()
    try:
        transport.sendto(b"12345678", ("127.0.0.1", 9))  # queued
        transport.sendto(b"12345678", ("127.0.0.1", 9))  # 16 > 10: dropped
        assert transport.datagrams_dropped == 1 and transport.get_write_buffer_count() == 1
    finally:
        transport.abort()
        reactor.run_once(0)


# -- found by the run after the refactor ---------------------------------------------------

def test_a_unix_endpoint_keeps_the_udp_default_size_and_reports_longer_datagrams(reactor):
    """Without max_datagram_size, only IPv6 gets the larger IPv6 limit: a
    Unix datagram endpoint takes 65,507 bytes, and a longer datagram is
    reported as truncated, never delivered cut."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        protocol = Events()
        transport = DatagramTransport(reactor, b, protocol)
        a.send(b"x" * (datagrams.MAX_UDP_PAYLOAD + 1))
        a.send(b"y" * datagrams.MAX_UDP_PAYLOAD)
        run_until(reactor, lambda: protocol.datagrams())
        (exc,) = protocol.errors()
        assert isinstance(exc, DatagramTruncated)
        assert str(exc).endswith(" was larger than 65507 bytes and was discarded")
        assert protocol.datagrams() == [b"y" * 65_507]
        transport.close()
        run_until(reactor, lambda: protocol.events[-1][0] == "lost")
    finally:
        a.close()
        b.close()
