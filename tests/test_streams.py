"""TCP and Unix connections end to end, on loopback, on every selector."""

from __future__ import annotations

import hashlib
import logging
import random
import socket
import struct

import pytest

from reactor import (BufferedProtocol, ConnectTimeout, LineProtocol, Protocol, Reactor,
                     WriteBufferOverflow)

from .conftest import run_until


class Recorder(Protocol):
    """Records every callback; echoes if asked; stops reading nothing."""

    def __init__(self, echo: bool = False, keep_open: bool = False) -> None:
        self.echo = echo
        self.keep_open = keep_open
        self.events: list = []
        self.data = bytearray()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        if self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self):
        self.events.append("eof")
        return self.keep_open

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))

    @property
    def lost(self):
        return bool(self.events) and isinstance(self.events[-1], tuple)


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def connect(reactor, listener, factory, **kw):
    host, port = listener.address[:2]
    connector = reactor.connect_tcp(factory, host, port, **kw)
    run_until(reactor, connector.done)
    transport = connector.result()
    reactor.run_once(0)  # connection_made was queued when the connect completed
    return transport


# -- bulk transfer: random writes, random reads, both directions ---------------

class BulkClient(BufferedProtocol):
    """Writes *payload* in random-sized pieces, honouring pause_writing, and
    reads the echo into random-sized buffers (so recv_into sees every size)."""

    def __init__(self, payload: bytes, rng: random.Random) -> None:
        self.payload, self.rng = payload, rng
        self.offset = 0
        self.paused = False
        self.received = bytearray()
        self.buffer = bytearray(64 * 1024)
        self.pauses = 0
        self.lost = None

    def connection_made(self, transport):
        self.transport = transport
        self.produce()

    def produce(self):
        while not self.paused and self.offset < len(self.payload):
            n = self.rng.choice([1, 7, 100, 1500, 4096, 65536, 200_000])
            self.transport.write(self.payload[self.offset:self.offset + n])
            self.offset += n
        if self.offset >= len(self.payload):
            self.transport.write_eof()

    def pause_writing(self):
        self.paused = True
        self.pauses += 1

    def resume_writing(self):
        self.paused = False
        self.produce()

    def get_buffer(self, sizehint):
        return memoryview(self.buffer)[:self.rng.choice([1, 13, 512, 4096, 65536])]

    def buffer_updated(self, nbytes):
        self.received += self.buffer[:nbytes]

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        self.lost = ("lost", exc)


class EchoWithBackpressure(Protocol):
    """Echo that stops reading while its own write buffer is over the high mark:
    the proxy pattern, so neither side's memory grows with the transfer."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        return None  # close after flushing the echo


@pytest.mark.parametrize("size", [10 * 1024 * 1024])
def test_bulk_echo_is_byte_exact(reactor, size):
    rng = random.Random(size)
    payload = rng.randbytes(size)
    listener = reactor.listen_tcp(EchoWithBackpressure, "127.0.0.1", 0)
    try:
        client = BulkClient(payload, rng)
        max_buffered = [0]

        def watch():
            if client.lost is None:
                t = client.transport
                max_buffered[0] = max(max_buffered[0], t.get_write_buffer_size())
                reactor.call_later(0.001, watch)

        connect(reactor, listener, lambda: client)
        watch()
        run_until(reactor, lambda: client.lost is not None, timeout=120)
        assert client.lost == ("lost", None)
        assert len(client.received) == size
        assert hashlib.sha256(client.received).digest() == hashlib.sha256(payload).digest()
        assert client.pauses > 0  # flow control engaged
        # bounded by the high-water mark plus one write
        assert max_buffered[0] <= 64 * 1024 + 200_000
    finally:
        listener.close()


# -- lifecycle and callback order ---------------------------------------------

def test_callback_order_and_half_close_client_first(reactor):
    server = Recorder(keep_open=True)
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        run_until(reactor, lambda: server.transport is not None)
        ct.write(b"question")
        ct.write_eof()
        run_until(reactor, lambda: "eof" in server.events)
        assert bytes(server.data) == b"question"
        assert not ct.is_closing() and ct.can_write_eof()
        server.transport.write(b"answer after your EOF")  # half-open: still writable
        server.transport.close()
        run_until(reactor, lambda: client.lost and server.lost)
        assert bytes(client.data) == b"answer after your EOF"
        assert server.events == ["made", "data", "eof", ("lost", None)]
        assert client.events == ["made", "data", "eof", ("lost", None)]
    finally:
        listener.close()


def test_half_close_server_first(reactor):
    server = Recorder()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        client = Recorder(keep_open=True)
        ct = connect(reactor, listener, lambda: client)
        run_until(reactor, lambda: server.transport is not None)
        server.transport.write(b"bye")
        server.transport.write_eof()
        run_until(reactor, lambda: "eof" in client.events)
        ct.write(b"still talking")
        ct.close()
        run_until(reactor, lambda: client.lost and server.lost)
        assert bytes(client.data) == b"bye" and bytes(server.data) == b"still talking"
    finally:
        listener.close()


def test_write_after_write_eof_is_an_error(reactor):
    listener = reactor.listen_tcp(Recorder, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        ct.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            ct.write(b"x")
        ct.abort()
        run_until(reactor, lambda: client.lost)
        listener.close_connections()
        run_until(reactor, lambda: not listener.connections)
    finally:
        listener.close()


def test_hundred_concurrent_clients(reactor):
    listener = reactor.listen_tcp(lambda: Recorder(echo=True), "127.0.0.1", 0)
    try:
        host, port = listener.address[:2]
        clients = [Recorder() for _ in range(100)]
        for i, c in enumerate(clients):
            def made(t, c=c, i=i):
                Recorder.connection_made(c, t)
                t.write(b"client %d\n" % i)
            c.connection_made = made
            reactor.connect_tcp(lambda c=c: c, host, port)
        run_until(reactor, lambda: all(c.data.endswith(b"\n") for c in clients), timeout=30)
        assert [bytes(c.data) for c in clients] == [b"client %d\n" % i for i in range(100)]
        assert len(listener.connections) == 100
        for c in clients:
            c.transport.close()
        run_until(reactor, lambda: not listener.connections and all(c.lost for c in clients))
    finally:
        listener.close()


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback here")
def test_ipv6(reactor):
    listener = reactor.listen_tcp(lambda: Recorder(echo=True), "::1", 0)
    try:
        assert listener.sockets[0].family == socket.AF_INET6
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        assert ct.get_extra_info("peername")[0] == "::1"
        ct.write(b"over v6")
        run_until(reactor, lambda: bytes(client.data) == b"over v6")
        ct.close()
        run_until(reactor, lambda: client.lost)
    finally:
        listener.close()


def test_host_none_listens_on_every_family_on_one_port(reactor):
    listener = reactor.listen_tcp(lambda: Recorder(echo=True), None, 0)
    try:
        families = {s.family for s in listener.sockets}
        ports = {s.getsockname()[1] for s in listener.sockets}
        assert socket.AF_INET in families and len(ports) == 1
        hosts = ["127.0.0.1"] + (["::1"] if socket.AF_INET6 in families else [])
        for host in hosts:
            client = Recorder()
            connector = reactor.connect_tcp(lambda: client, host, ports.pop() if False else listener.address[1])
            run_until(reactor, connector.done)
            connector.result().write(host.encode())
            run_until(reactor, lambda: bytes(client.data) == host.encode())
            client.transport.close()
            run_until(reactor, lambda: client.lost)
    finally:
        listener.close()


def test_unix_socket(reactor, tmp_path):
    path = tmp_path / "echo.sock"
    listener = reactor.listen_unix(lambda: Recorder(echo=True), path)
    try:
        assert path.exists()
        client = Recorder()
        connector = reactor.connect_unix(lambda: client, path)
        run_until(reactor, connector.done)
        ct = connector.result()
        ct.write(b"x" * 300_000)
        ct.write_eof()
        run_until(reactor, lambda: client.lost)
        assert bytes(client.data) == b"x" * 300_000 and client.events[-1] == ("lost", None)
    finally:
        listener.close()
    assert not path.exists()


def test_unix_listener_replaces_a_stale_socket_file(reactor, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays behind, as after a crash
    listener = reactor.listen_unix(Recorder, path)
    listener.close()


def test_extra_info_and_nodelay(reactor):
    server = Recorder()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        run_until(reactor, lambda: server.transport is not None)
        st = server.transport
        assert st.get_extra_info("sockname") == ct.get_extra_info("peername")
        assert st.get_extra_info("peername") == ct.get_extra_info("sockname")
        assert st.get_extra_info("nonsense", 42) == 42
        for t in (st, ct):
            sock = t.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert not sock.getblocking()
        assert "fd=" in repr(st) and "bufsize=0" in repr(st)
        ct.close()
        run_until(reactor, lambda: server.lost)
    finally:
        listener.close()


def test_pause_and_resume_reading(reactor):
    server = Recorder()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        run_until(reactor, lambda: server.transport is not None)
        server.transport.pause_reading()
        server.transport.pause_reading()  # idempotent
        assert not server.transport.is_reading()
        ct.write(b"held back")
        for _ in range(20):
            reactor.run_once(0.01)
        assert server.data == b""
        server.transport.resume_reading()
        assert server.transport.is_reading()
        run_until(reactor, lambda: server.data == b"held back")
        ct.close()
        run_until(reactor, lambda: server.lost)
    finally:
        listener.close()


# -- flow control ----------------------------------------------------------------

class Firehose(Protocol):
    """Writes 16 KiB chunks whenever it is allowed to (or always, if rude)."""

    def __init__(self, rude: bool = False) -> None:
        self.rude = rude
        self.paused = False
        self.events: list = []
        self.max_buffered = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=256 * 1024, low=64 * 1024)
        if self.rude:
            transport.set_max_write_buffer_size(1024 * 1024)
        self.tick()

    def tick(self):
        if self.transport.is_closing():
            return
        while not self.paused or self.rude:
            self.transport.write(b"z" * 16384)
            if self.transport.is_closing():
                return
            self.max_buffered = max(self.max_buffered, self.transport.get_write_buffer_size())
            if self.rude:
                break
        self.transport._reactor.call_later(0.001, self.tick)

    def pause_writing(self):
        self.paused = True
        self.events.append("pause")

    def resume_writing(self):
        self.paused = False
        self.events.append("resume")
        self.tick()

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


def test_a_peer_that_stops_reading_pauses_the_writer(reactor):
    server = Firehose()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        ct.pause_reading()
        run_until(reactor, lambda: "pause" in server.events)
        for _ in range(50):  # it stays paused, and the buffer stays near the mark
            reactor.run_once(0.002)
        assert server.events == ["pause"]
        assert 256 * 1024 < server.transport.get_write_buffer_size() <= 256 * 1024 + 16384
        assert server.max_buffered <= 256 * 1024 + 16384
        ct.resume_reading()
        run_until(reactor, lambda: "resume" in server.events)
        assert server.events[:2] == ["pause", "resume"]
        ct.abort()
        run_until(reactor, lambda: isinstance(server.events[-1], tuple))
    finally:
        listener.close()


def test_the_hard_cap_aborts_a_writer_whose_peer_never_reads(reactor, caplog):
    server = Firehose(rude=True)
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        ct.pause_reading()
        run_until(reactor, lambda: server.events and isinstance(server.events[-1], tuple), timeout=30)
        exc = server.events[-1][1]
        assert isinstance(exc, WriteBufferOverflow) and "not reading" in str(exc)
        assert server.events.count("pause") == 1
        assert server.max_buffered <= 1024 * 1024
        ct.abort()
        run_until(reactor, lambda: client.lost)
    finally:
        listener.close()


def test_write_buffer_limits_validation(reactor):
    listener = reactor.listen_tcp(Recorder, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        assert ct.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        ct.set_write_buffer_limits(low=1000)
        assert ct.get_write_buffer_limits() == (1000, 4000)
        ct.set_write_buffer_limits(high=100)
        assert ct.get_write_buffer_limits() == (25, 100)
        with pytest.raises(ValueError):
            ct.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(TypeError):
            ct.write("text is not bytes")
        ct.abort()
        run_until(reactor, lambda: client.lost)
    finally:
        listener.close()


# -- errors -----------------------------------------------------------------------

def test_reset_reaches_connection_lost_exactly_once(reactor):
    server = Recorder()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        raw = socket.create_connection(listener.address[:2])
        run_until(reactor, lambda: server.transport is not None)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # RST
        run_until(reactor, lambda: server.lost)
        for _ in range(5):
            reactor.run_once(0)
        lost = [e for e in server.events if isinstance(e, tuple)]
        assert len(lost) == 1 and isinstance(lost[0][1], ConnectionResetError)
        server.transport.close()
        server.transport.abort()  # idempotent after the fact
        reactor.run_once(0)
        assert [e for e in server.events if isinstance(e, tuple)] == lost
    finally:
        listener.close()


def test_close_and_abort_are_idempotent_and_write_after_close_warns_once(reactor, caplog):
    listener = reactor.listen_tcp(Recorder, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        ct.close()
        ct.close()
        ct.abort()
        with caplog.at_level(logging.WARNING, logger="reactor"):
            for _ in range(3):
                ct.write(b"too late")
        assert len([r for r in caplog.records if "after close" in r.getMessage()]) == 1
        run_until(reactor, lambda: client.lost)
        for _ in range(3):
            reactor.run_once(0)
        assert client.events == ["made", ("lost", None)]
        assert ct.get_extra_info("socket").fileno() == -1
        run_until(reactor, lambda: not listener.connections)
    finally:
        listener.close()


def test_exception_in_data_received_aborts_only_that_connection(reactor):
    errors = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

    class Fragile(Recorder):
        def data_received(self, data):
            if data.startswith(b"boom"):
                raise ValueError("bad input")
            super().data_received(data)

    servers = []
    listener = reactor.listen_tcp(lambda: servers.append(Fragile(echo=True)) or servers[-1],
                                  "127.0.0.1", 0)
    try:
        good, bad = Recorder(), Recorder()
        gt = connect(reactor, listener, lambda: good)
        bt = connect(reactor, listener, lambda: bad)
        run_until(reactor, lambda: len(servers) == 2 and all(s.transport for s in servers))
        bt.write(b"boom")
        run_until(reactor, lambda: bad.lost)
        assert len(errors) == 1 and isinstance(errors[0]["exception"], ValueError)
        assert "data_received" in errors[0]["message"]
        assert isinstance(servers[1].events[-1][1], ValueError)
        gt.write(b"still fine")
        run_until(reactor, lambda: bytes(good.data) == b"still fine")
        gt.close()
        run_until(reactor, lambda: good.lost)
    finally:
        listener.close()


def test_connect_refused_reaches_the_caller(reactor):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        done = []
        connector = reactor.connect_tcp(Recorder, "127.0.0.1", port)
        connector.add_done_callback(done.append)
        run_until(reactor, lambda: done)
    assert done == [connector] and isinstance(connector.exception, ConnectionRefusedError)
    with pytest.raises(ConnectionRefusedError):
        connector.result()


def test_connect_timeout_reaches_the_caller(reactor):
    # A listener that never accepts, with its queue full: the kernel drops
    # further SYNs, so a connect neither succeeds nor fails by itself.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        try:
            for _ in range(3):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(full.getsockname())
                fillers.append(s)
            connector = reactor.connect_tcp(Recorder, *full.getsockname(), timeout=0.3)
            run_until(reactor, connector.done)
            assert isinstance(connector.exception, ConnectTimeout)
            assert isinstance(connector.exception, TimeoutError)
            assert "timed out" in str(connector.exception)
        finally:
            for s in fillers:
                s.close()


def test_connect_unix_to_missing_path_fails(reactor, tmp_path):
    connector = reactor.connect_unix(Recorder, tmp_path / "nobody.sock")
    run_until(reactor, connector.done)
    assert isinstance(connector.exception, FileNotFoundError)


def test_connector_cancel(reactor):
    listener = reactor.listen_tcp(Recorder, "127.0.0.1", 0)
    try:
        protocol = Recorder()
        connector = reactor.connect_tcp(lambda: protocol, *listener.address[:2])
        if not connector.done():
            assert connector.cancel()
            assert connector.cancelled()
            with pytest.raises(ConnectionAbortedError):
                connector.result()
            for _ in range(5):
                reactor.run_once(0)
            assert protocol.events == []
        else:  # connected synchronously: nothing to cancel
            assert not connector.cancel()
            connector.result().close()
            run_until(reactor, lambda: protocol.lost)
    finally:
        listener.close()


def test_line_protocol_closes_on_an_overlong_line_by_default(reactor):
    lines = []

    class Lines(LineProtocol):
        max_line_length = 10

        def line_received(self, line):
            lines.append(line)

        def connection_lost(self, exc):
            lines.append(("lost", exc))

    listener = reactor.listen_tcp(Lines, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        ct.write(b"short\r\nshort too\n" + b"x" * 11 + b"\nnever seen\n")
        run_until(reactor, lambda: client.lost)
        assert lines == [b"short", b"short too", ("lost", None)]
    finally:
        listener.close()


def test_closing_the_reactor_finishes_every_connection(selector_class):
    reactor = Reactor(selector=selector_class())
    try:
        server = Recorder()
        listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        run_until(reactor, lambda: server.transport is not None)
        ct.write(b"x" * 10_000_000)  # still buffered when the reactor closes
        pending = reactor.connect_tcp(Recorder, *listener.address[:2])
        socks = [ct.get_extra_info("socket"), server.transport.get_extra_info("socket")]
        socks += list(listener.sockets)
    finally:
        reactor.close()
    assert client.events[-1] == ("lost", None) and server.events[-1] == ("lost", None)
    assert [s.fileno() for s in socks] == [-1] * len(socks)
    assert pending.done() and not listener.is_serving() and reactor.connections() == []


def test_set_protocol_switches_between_plain_and_buffered_reading(reactor):
    class Into(BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(64)
            self.got = bytearray()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, n):
            self.got += self.buf[:n]

    server = Recorder()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        client = Recorder()
        ct = connect(reactor, listener, lambda: client)
        run_until(reactor, lambda: server.transport is not None)
        ct.write(b"plain")
        run_until(reactor, lambda: server.data == b"plain")
        into = Into()
        server.transport.set_protocol(into)
        assert server.transport.get_protocol() is into
        ct.write(b"into a buffer")
        run_until(reactor, lambda: into.got == b"into a buffer")
        server.transport.pause_reading()
        server.transport.set_protocol(server)  # while paused: nothing to switch yet
        server.transport.resume_reading()
        ct.write(b" and back")
        run_until(reactor, lambda: server.data == b"plain and back")
        ct.close()
        run_until(reactor, lambda: server.lost)
    finally:
        listener.close()
