"""TLS: the sans-IO engine alone, then the transport on loopback, then real peers.

Certificates come from ``trustme`` (a throwaway CA, in the test extra). The
real peers are ones nobody here wrote: Python's blocking ``ssl`` module in a
thread, and Debian's ``openssl s_client``/``s_server`` (skipped with a
message where the CLI is missing; under CI=true that is a failure).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor import BufferedProtocol, LineProtocol, Protocol, Reactor
from reactor.instruments import Instrument
from reactor.tls import HANDSHAKE_DONE, PEER_CLOSED, TLSEngine, TLSState

from .conftest import examples, run_until

trustme = pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")

CA = trustme.CA()
CERT = CA.issue_cert("localhost", "127.0.0.1")


def server_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    CERT.configure_cert(ctx)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def client_context(version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    CA.configure_trust(ctx)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (Debian package: openssl)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must have it")
        pytest.skip(message)
    return path


# -- the engine alone: two of them back to back ----------------------------------------------

def engines(version=None):
    return (TLSEngine(client_context(version), server_side=False, server_hostname="localhost"),
            TLSEngine(server_context(version), server_side=True))


def pump(a, b, cut=None):
    """Move every byte a wants to send into b (in pieces of *cut* sizes), and collect events."""
    out = a.bytes_to_send()
    events = []
    pieces = cut(len(out)) if cut else [len(out)]
    i = 0
    for size in pieces:
        if i >= len(out):
            break
        events += b.receive(out[i:i + size])
        i += size
    if i < len(out):
        events += b.receive(out[i:])
    return events


def handshake(client, server, cut=None):
    client.start()
    got = {"client": [], "server": []}
    for _ in range(10):
        got["server"] += pump(client, server, cut)
        got["client"] += pump(server, client, cut)
        if client.state is TLSState.OPEN and server.state is TLSState.OPEN:
            # TLS 1.3: the server's session tickets are still on their way.
            got["client"] += pump(server, client, cut)
            return got
    raise AssertionError("no handshake")


def plaintext(events):
    return b"".join(e for e in events if isinstance(e, bytes))


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_engine_handshake_data_and_close_both_ways(version):
    client, server = engines(version)
    got = handshake(client, server)
    assert HANDSHAKE_DONE in got["client"] and HANDSHAKE_DONE in got["server"]
    assert client.ssl_object.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                           ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    client.send(b"ping")
    assert plaintext(pump(client, server)) == b"ping"
    server.send(b"pong")
    assert plaintext(pump(server, client)) == b"pong"
    client.close()
    assert PEER_CLOSED in pump(client, server)
    server.close()
    pump(server, client)
    assert client.state is TLSState.CLOSED and server.state is TLSState.CLOSED


def test_engine_queues_plaintext_until_the_handshake_is_done():
    client, server = engines()
    client.send(b"early")
    assert client.pending_plaintext == 5
    got = handshake(client, server)
    assert plaintext(got["server"]) == b"early" and client.pending_plaintext == 0


def test_engine_cut_at_every_point_of_the_first_flight():
    """The ClientHello split in two at every byte: the handshake completes each time."""
    probe, _ = engines()
    probe.start()
    hello = probe.bytes_to_send()
    for i in range(1, len(hello)):
        client, server = engines()
        client.start()
        flight = client.bytes_to_send()
        assert server.receive(flight[:i]) == []
        server.receive(flight[i:])
        client.receive(server.bytes_to_send())
        server.receive(client.bytes_to_send())
        assert client.state is TLSState.OPEN and server.state is TLSState.OPEN, i


@settings(max_examples=examples(40), deadline=None)
@given(cuts=st.lists(st.integers(1, 700), min_size=1, max_size=40),
       messages=st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=5000)), max_size=8),
       version=st.sampled_from([ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]))
def test_engine_any_chunking_any_direction(cuts, messages, version):
    def cut(n):
        sizes, i = [], 0
        while sum(sizes) < n:
            sizes.append(cuts[i % len(cuts)])
            i += 1
        return sizes

    client, server = engines(version)
    handshake(client, server, cut)
    sent = {True: bytearray(), False: bytearray()}
    received = {True: bytearray(), False: bytearray()}
    for from_client, data in messages:
        a, b = (client, server) if from_client else (server, client)
        a.send(data)
        sent[from_client] += data
        received[from_client] += plaintext(pump(a, b, cut))
    assert received == sent


def test_engine_refuses_garbage_and_a_wrong_hostname():
    server = TLSEngine(server_context(), server_side=True)
    with pytest.raises(ssl.SSLError):
        server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert server.state is TLSState.CLOSED
    client = TLSEngine(client_context(), server_side=False, server_hostname="wrong.example")
    server = TLSEngine(server_context(), server_side=True)
    client.start()
    server.receive(client.bytes_to_send())
    with pytest.raises(ssl.SSLCertVerificationError):
        client.receive(server.bytes_to_send())
    with pytest.raises(ValueError, match="server_hostname"):
        TLSEngine(client_context(), server_side=False)


def test_engine_raw_eof_without_close_notify_is_an_error():
    client, server = engines()
    handshake(client, server)
    with pytest.raises(ssl.SSLEOFError):
        server.receive(b"")


# -- the transport, on every selector ----------------------------------------------------------

class Echo(Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


class Client(Protocol):
    def __init__(self, send=b""):
        self.send = send
        self.events: list = []
        self.data = bytearray()
        self.exc = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")
        if self.send:
            transport.write(self.send)

    def data_received(self, data):
        if self.events[-1] != "data":
            self.events.append("data")
        self.data += data

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.exc = exc

    @property
    def lost(self):
        return "lost" in self.events


def tls_pair(reactor, client_protocol, server_factory=Echo, **server_kw):
    listener = reactor.listen_tcp(server_factory, "127.0.0.1", 0, ssl=server_context(), **server_kw)
    connector = reactor.connect_tcp(lambda: client_protocol, "127.0.0.1", listener.address[1],
                                    ssl=client_context(), server_hostname="localhost")
    return listener, connector


def test_echo_over_tls_with_extra_info_and_clean_close(reactor):
    client = Client(b"hello over tls")
    listener, connector = tls_pair(reactor, client)
    try:
        run_until(reactor, lambda: bytes(client.data) == b"hello over tls")
        t = connector.result()
        assert t is client.transport
        assert t.get_extra_info("peercert")["subjectAltName"]
        assert t.get_extra_info("cipher")[1] in ("TLSv1.2", "TLSv1.3")
        assert isinstance(t.get_extra_info("ssl_object"), ssl.SSLObject)
        assert t.get_extra_info("sslcontext") is not None and t.get_extra_info("compression") is None
        assert t.get_extra_info("peername")[1] == listener.address[1]
        assert not t.can_write_eof()
        with pytest.raises(NotImplementedError, match="half-close"):
            t.write_eof()
        t.close()
        run_until(reactor, lambda: client.lost)
        assert client.events == ["made", "data", "lost"] and client.exc is None
        run_until(reactor, lambda: reactor.connections() == [])  # the server side closed too
    finally:
        listener.close()


def test_a_wrong_hostname_is_refused_and_reaches_connection_lost(reactor):
    client = Client(b"never delivered")
    served = []
    listener = reactor.listen_tcp(lambda: served.append(Client()) or served[-1], "127.0.0.1", 0,
                                  ssl=server_context())
    connector = reactor.connect_tcp(lambda: client, "127.0.0.1", listener.address[1],
                                    ssl=client_context(), server_hostname="wrong.example")
    try:
        run_until(reactor, lambda: client.lost and connector.done())
        assert isinstance(client.exc, ssl.SSLCertVerificationError)
        assert isinstance(connector.exception, ssl.SSLCertVerificationError)
        run_until(reactor, lambda: served and served[0].lost)
        assert served[0].data == b""  # nothing reached the server's protocol
    finally:
        listener.close()


def test_default_client_context_verifies(reactor):
    client = Client()
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0, ssl=server_context())
    connector = reactor.connect_tcp(lambda: client, "127.0.0.1", listener.address[1], ssl=True,
                                    server_hostname="localhost")
    try:
        run_until(reactor, connector.done)
        assert isinstance(connector.exception, ssl.SSLCertVerificationError)
    finally:
        listener.close()


def test_garbage_instead_of_a_client_hello_fails_that_connection_only(reactor):
    good = Client(b"still fine")
    listener, connector = tls_pair(reactor, good)
    errors = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    raw = socket.create_connection(listener.address)
    try:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n" * 10)
        raw.settimeout(0)

        def closed():
            try:
                return raw.recv(4096) == b""
            except BlockingIOError:
                return False
            except ConnectionResetError:
                return True
        run_until(reactor, closed)
        run_until(reactor, lambda: bytes(good.data) == b"still fine")
        assert errors == []  # a peer's garbage is not our bug
    finally:
        raw.close()
        connector.result().close()
        run_until(reactor, lambda: good.lost)
        listener.close()


def test_a_stalled_handshake_times_out(reactor):
    server = []
    listener = reactor.listen_tcp(lambda: server.append(Client()) or server[-1], "127.0.0.1", 0,
                                  ssl=server_context(), ssl_handshake_timeout=0.3)
    raw = socket.create_connection(listener.address)
    try:
        probe = TLSEngine(client_context(), server_side=False, server_hostname="localhost")
        probe.start()
        hello = probe.bytes_to_send()
        raw.sendall(hello[: len(hello) // 2])  # half a ClientHello, then nothing
        run_until(reactor, lambda: server and server[0].lost, timeout=5)
        assert isinstance(server[0].exc, TimeoutError)
    finally:
        raw.close()
        listener.close()


def test_a_peer_that_sends_without_reading_is_held_back_and_memory_stays_bounded(reactor):
    """A flood of valid records to an echo server, never reading: backpressure, bounded buffers."""
    cap = 1 << 20
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0, ssl=server_context(),
                                  transport_setup=lambda t: t.set_max_write_buffer_size(cap))
    ctx = client_context()
    done = threading.Event()
    sent = [0]

    def flood():
        with socket.create_connection(listener.address) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                chunk = os.urandom(16384)
                try:
                    while not done.is_set() and sent[0] < (100 << 20):
                        tls.sendall(chunk)
                        sent[0] += len(chunk)
                except (OSError, ssl.SSLError):
                    pass  # blocked (we stopped reading) or closed: either is the point

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        worst = 0
        run_until(reactor, lambda: reactor.connections())
        server_side = reactor.connections()[0]
        run_until(reactor, lambda: not server_side.is_reading())  # held back: the peer reads nothing
        for _ in range(40):  # and it stays held back, within bounds
            reactor.run_once(0.02)
            worst = max(worst, server_side.get_write_buffer_size())
        assert not server_side.is_reading() and worst <= cap
        assert sent[0] < (100 << 20)  # the flood was stopped, not absorbed
    finally:
        done.set()
        listener.close()
        for t in reactor.connections():
            t.abort()
        thread.join(10)
        run_until(reactor, lambda: reactor.connections() == [])


def test_ten_megabytes_each_way_with_sha256(reactor):
    payload = random.Random(7).randbytes(10 << 20)

    class Sink(Client):
        def data_received(self, data):
            self.data += data
            if len(self.data) == len(payload):
                self.transport.close()

    client = Sink(payload)
    listener, connector = tls_pair(reactor, client)
    try:
        run_until(reactor, lambda: client.lost, timeout=60)
        assert hashlib.sha256(client.data).digest() == hashlib.sha256(payload).digest()
    finally:
        listener.close()


def test_unix_sockets_over_tls(reactor, tmp_path):
    path = str(tmp_path / "tls.sock")
    listener = reactor.listen_unix(Echo, path, ssl=server_context())
    client = Client(b"unix and tls")
    connector = reactor.connect_unix(lambda: client, path, ssl=client_context(),
                                     server_hostname="localhost")
    try:
        run_until(reactor, lambda: bytes(client.data) == b"unix and tls")
        connector.result().close()
        run_until(reactor, lambda: client.lost)
    finally:
        listener.close()
    with pytest.raises(ValueError, match="server_hostname"):
        reactor.connect_unix(Client, path, ssl=client_context())


def test_buffered_protocols_get_plaintext_through_their_buffers(reactor):
    class Buffered(BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(7)  # smaller than what arrives: several fills per record
            self.data = bytearray()
            self.lost = False

        def connection_made(self, transport):
            transport.write(b"x" * 1000)

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, n):
            self.data += self.buf[:n]

        def connection_lost(self, exc):
            self.lost = True

    client = Buffered()
    listener, connector = tls_pair(reactor, client)
    try:
        run_until(reactor, lambda: len(client.data) == 1000)
        connector.result().close()
        run_until(reactor, lambda: client.lost)
    finally:
        listener.close()


def test_start_tls_upgrades_with_bytes_already_read(reactor):
    """STARTTLS: the ClientHello arrives in the same read as the command."""
    upgraded = Client()

    class Plain(LineProtocol):
        def line_received(self, line):
            if line == b"STARTTLS":
                leftover = bytes(self._framer._buf)  # what the framer read past the command
                self._framer._buf.clear()
                reactor.start_tls(self.transport, upgraded, server_context(), server_side=True,
                                  initial_data=leftover)

    listener = reactor.listen_tcp(Plain, "127.0.0.1", 0)
    ctx = client_context()
    result = {}

    def client_side():
        with socket.create_connection(listener.address) as sock:
            engine = TLSEngine(ctx, server_side=False, server_hostname="localhost")
            engine.start()
            sock.sendall(b"STARTTLS\n" + engine.bytes_to_send())  # pipelined
            engine.send(b"secret")
            while engine.state is not TLSState.OPEN:
                engine.receive(sock.recv(65536))
                sock.sendall(engine.bytes_to_send())
            result["ok"] = True

    thread = threading.Thread(target=client_side, daemon=True)
    thread.start()
    try:
        run_until(reactor, lambda: bytes(upgraded.data) == b"secret")
        assert upgraded.events[0] == "made"
    finally:
        thread.join(10)
        listener.close()
        upgraded.transport.abort()
        run_until(reactor, lambda: upgraded.lost)
    assert result == {"ok": True}


class Counting(Instrument):
    def __init__(self):
        self.received = {}

    def bytes_received(self, transport, n):
        layer = getattr(transport, "layer", None) or getattr(transport.get_protocol(), "carries", "tcp")
        self.received[layer] = self.received.get(layer, 0) + n


def test_instruments_tell_tls_bytes_from_plaintext(reactor):
    counter = Counting()
    reactor.add_instrument(counter)
    client = Client(b"z" * 5000)
    listener, connector = tls_pair(reactor, client)
    try:
        run_until(reactor, lambda: len(client.data) == 5000)
        # Both ends are on this reactor: 5000 plaintext bytes each way.
        assert counter.received["plaintext"] == 10000
        assert counter.received["tls"] > 10000  # records, handshakes, tickets
        connector.result().close()
        run_until(reactor, lambda: client.lost)
    finally:
        listener.close()


# -- real peers nobody here wrote -------------------------------------------------------------

@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_python_ssl_client_and_server_in_threads(reactor, version):
    payload = random.Random(3).randbytes(2 << 20)
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0, ssl=server_context(version))
    echoed = {}

    def blocking_client():
        # One thread per SSLSocket: OpenSSL's SSL object is not safe for a
        # read in one thread and a write in another (under load, TLS 1.3's
        # session tickets made that fail with SSLEOFError). So: a chunk out,
        # its echo back, and again.
        with socket.create_connection(listener.address) as sock:
            sock.settimeout(30)
            with client_context(version).wrap_socket(sock, server_hostname="localhost") as tls:
                echoed["version"] = tls.version()
                data = bytearray()
                for start in range(0, len(payload), 64 * 1024):
                    chunk = payload[start:start + 64 * 1024]
                    tls.sendall(chunk)
                    data += _read_n(tls, len(chunk))
                echoed["data"] = bytes(data)

    thread = threading.Thread(target=blocking_client, daemon=True)
    thread.start()
    run_until(reactor, lambda: not thread.is_alive(), timeout=60)
    assert hashlib.sha256(echoed["data"]).digest() == hashlib.sha256(payload).digest()
    assert echoed["version"] == {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    listener.close()

    # And the other way: our client, Python's blocking server.
    with socket.create_server(("127.0.0.1", 0)) as server_sock:
        def blocking_server():
            conn, _ = server_sock.accept()
            with server_context(version).wrap_socket(conn, server_side=True) as tls:
                data = _read_n(tls, len(payload))
                tls.sendall(hashlib.sha256(data).digest())

        thread = threading.Thread(target=blocking_server, daemon=True)
        thread.start()
        client = Client(payload)
        connector = reactor.connect_tcp(lambda: client, "127.0.0.1", server_sock.getsockname()[1],
                                        ssl=client_context(version), server_hostname="localhost")
        run_until(reactor, lambda: len(client.data) == 32, timeout=60)
        assert bytes(client.data) == hashlib.sha256(payload).digest()
        connector.result().abort()
        run_until(reactor, lambda: client.lost)
        thread.join(10)


def _read_n(tls, n):
    data = bytearray()
    while len(data) < n:
        chunk = tls.recv(min(65536, n - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


@pytest.fixture
def cert_files(tmp_path):
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    ca = tmp_path / "ca.pem"
    CERT.cert_chain_pems[0].write_to_path(str(cert))
    CERT.private_key_pem.write_to_path(str(key))
    CA.cert_pem.write_to_path(str(ca))
    return cert, key, ca


@pytest.mark.parametrize("flag", ["-tls1_2", "-tls1_3"])
def test_openssl_s_client_against_our_server(reactor, cert_files, flag):
    openssl = require("openssl")
    _, _, ca = cert_files
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0, ssl=server_context())
    proc = subprocess.Popen([openssl, "s_client", "-connect", f"127.0.0.1:{listener.address[1]}",
                             "-servername", "localhost", "-CAfile", str(ca), "-verify_return_error",
                             "-quiet", flag],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"hello from openssl\n")
        proc.stdin.flush()
        os.set_blocking(proc.stdout.fileno(), False)
        got = bytearray()

        def echoed():
            try:
                got.extend(os.read(proc.stdout.fileno(), 4096))
            except BlockingIOError:
                pass
            return b"hello from openssl\n" in got
        run_until(reactor, echoed, timeout=20)
    finally:
        proc.kill()
        proc.communicate(timeout=10)
        listener.close()
        for t in reactor.connections():
            t.abort()
        run_until(reactor, lambda: reactor.connections() == [])


def test_our_client_against_openssl_s_server(reactor, cert_files):
    openssl = require("openssl")
    cert, key, _ = cert_files
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert),
                             "-key", str(key), "-naccept", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        banner = bytearray()

        def listening():  # s_server prints ACCEPT once it listens
            try:
                banner.extend(os.read(proc.stdout.fileno(), 4096))
            except BlockingIOError:
                pass
            return b"ACCEPT" in banner
        run_until(reactor, listening, timeout=20)
        client = Client(b"hello from reactor\n")
        connector = reactor.connect_tcp(lambda: client, "127.0.0.1", port, ssl=client_context(),
                                        server_hostname="localhost")
        run_until(reactor, connector.done, timeout=20)
        assert connector.exception is None, connector.exception
        got = bytearray()

        def arrived():
            try:
                got.extend(os.read(proc.stdout.fileno(), 4096))
            except BlockingIOError:
                pass
            return b"hello from reactor" in got
        run_until(reactor, arrived, timeout=20)
        proc.stdin.write(b"hello back\n")
        proc.stdin.flush()
        run_until(reactor, lambda: b"hello back" in client.data, timeout=20)
        connector.result().close()
        run_until(reactor, lambda: client.lost, timeout=20)
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_tracer_and_traffic_log_label_tls_and_plaintext_bytes(reactor, caplog):
    import io
    import logging

    from reactor.tracing import StderrTracer

    out = io.StringIO()
    reactor.add_instrument(StderrTracer(out))
    reactor._log_traffic = reactor.watch_io = True  # what REACTOR_DEBUG=traffic sets
    client = Client(b"labelled")
    listener, connector = tls_pair(reactor, client)
    try:
        with caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
            run_until(reactor, lambda: bytes(client.data) == b"labelled")
        text = out.getvalue()
        assert "tls bytes" in text and "plaintext bytes" in text
        logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "reactor.traffic")
        assert "8 plaintext bytes b'labelled'" in logged and "tls bytes" in logged
        connector.result().close()
        run_until(reactor, lambda: client.lost)
    finally:
        listener.close()
