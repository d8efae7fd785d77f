"""TLS transport behaviours that mutation testing found unpinned (python -m tests.mutation).

A reactor TLS server against ``EnginePeer``: a plain socket driven by a
``TLSEngine`` that this test moves by hand, so that the peer can stay silent,
send a raw EOF without close_notify, or never answer our close_notify.
"""

from __future__ import annotations

import logging
import socket
import ssl

import pytest

pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")

from reactor import BufferedProtocol, Protocol, Reactor, WriteBufferOverflow  # noqa: E402
from reactor.tls import PEER_CLOSED, TLSEngine, TLSState  # noqa: E402
from reactor.tlsstreams import DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER  # noqa: E402

from .conftest import run_until  # noqa: E402
from .test_tls import client_context, server_context  # noqa: E402


class App(Protocol):
    """The server's application: records its callbacks."""

    def __init__(self, on_data=None, on_eof=None):
        self.events: list = []
        self.data = bytearray()
        self.on_data, self.on_eof = on_data, on_eof

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data
        if self.on_data:
            self.on_data(self.transport, data)

    def eof_received(self):
        self.events.append("eof")
        if self.on_eof:
            self.on_eof(self.transport)

    def connection_lost(self, exc):
        self.events.append(("lost", exc))

    @property
    def lost(self):
        return bool(self.events) and isinstance(self.events[-1], tuple)


class EnginePeer:
    """A TLS client on a plain socket; bytes move only in ``pump()``."""

    def __init__(self, address=None, sock=None):
        self.sock = sock or socket.create_connection(address, timeout=10)
        self.sock.setblocking(False)
        self.engine = TLSEngine(client_context(), server_side=False, server_hostname="localhost")
        self.events: list = []
        self.eof = False
        self.engine.start()

    def pump(self) -> None:
        out = self.engine.bytes_to_send()
        if out:
            self.sock.sendall(out)
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            if not data:
                self.eof = True
                return
            self.events += self.engine.receive(data)

    def close(self):
        self.sock.close()


@pytest.fixture
def serve(reactor):
    """serve(app, **listen_kw) -> (listener, peer): a TLS server and a hand-driven client."""
    made = []

    def start(app, **kw):
        listener = reactor.listen_tcp(lambda: app, "127.0.0.1", 0, ssl=server_context(), **kw)
        peer = EnginePeer(listener.address)
        made.append((listener, peer))
        return listener, peer
    yield start
    for listener, peer in made:
        peer.close()
        listener.close()
        listener.close_connections()
    run_until(reactor, lambda: not reactor.connections())


def handshake(reactor, app, peer):
    def done():
        peer.pump()
        return peer.engine.state is TLSState.OPEN and "made" in app.events and app.transport.get_extra_info("cipher")
    run_until(reactor, done)


def raw_of(listener):
    (raw,) = listener.connections
    return raw


# -- the application's transport: its API --------------------------------------------------

def test_the_transport_api_around_the_handshake(reactor, serve):
    seen = {}

    def setup(transport):  # before the handshake, before the stream transport is attached
        seen["setup"] = (repr(transport), transport.get_extra_info("peername", "none yet"),
                         transport.is_reading())

    app = App()
    listener, peer = serve(app, transport_setup=setup)
    run_until(reactor, lambda: "made" in app.events)
    assert seen["setup"] == ("<TLSTransport fd=- handshaking buffered=0>", "none yet", False)
    t = app.transport
    during = [t.get_extra_info(name, "later") for name in ("peercert", "cipher", "compression")]
    assert during == ["later"] * 3
    handshake(reactor, app, peer)
    raw = raw_of(listener)
    assert repr(t) == f"<TLSTransport fd={raw.get_extra_info('socket').fileno()} open buffered=0>"
    assert repr(raw.get_protocol()) == "<TLSProtocol open app=App>"
    assert t.get_extra_info("compression", "none") is None  # asked after: the real answer
    assert t.get_extra_info("server_hostname") is None  # (a server)
    assert t.get_extra_info("missing", "default") == "default"
    assert t.get_extra_info("peername") == raw.get_extra_info("peername")
    assert t.is_reading() and not t.is_closing() and t.can_write_eof() is False
    t.pause_reading()
    assert not t.is_reading()
    t.resume_reading()
    assert t.is_reading()
    with pytest.raises(NotImplementedError) as refused:
        t.write_eof()
    assert str(refused.value) == "TLS has no half-close (write_eof); close() sends close_notify"
    t.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
    run_until(reactor, lambda: (peer.pump(), b"abc" in b"".join(e for e in peer.events if isinstance(e, bytes)))[1])
    other = App()
    t.set_protocol(other)
    assert t.get_protocol() is other
    peer.engine.send(b"to the other")
    run_until(reactor, lambda: (peer.pump(), other.data == b"to the other")[1])
    t.close()
    assert t.is_closing()


def test_a_clients_transport_knows_its_server_hostname(reactor):
    listener = reactor.listen_tcp(App, "127.0.0.1", 0, ssl=server_context())
    client = App()
    connector = reactor.connect_tcp(lambda: client, *listener.address, ssl=client_context(),
                                    server_hostname="localhost")
    try:
        run_until(reactor, lambda: "made" in client.events)
        assert client.transport.get_extra_info("server_hostname") == "localhost"
        client.transport.close()
        run_until(reactor, lambda: client.lost)
        assert client.events[-1] == ("lost", None)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())
    assert connector.done()


def test_write_buffer_limits_follow_asyncios_rules(reactor, serve):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    t = app.transport
    assert t.get_write_buffer_limits() == (DEFAULT_LOW_WATER, DEFAULT_HIGH_WATER)
    t.set_write_buffer_limits(high=10)
    assert t.get_write_buffer_limits() == (2, 10)
    assert raw_of(listener).get_write_buffer_limits() == (2, 10)  # the ciphertext's marks too
    t.set_write_buffer_limits(low=100)
    assert t.get_write_buffer_limits() == (100, 400)
    t.set_write_buffer_limits(high=5, low=5)
    assert t.get_write_buffer_limits() == (5, 5)
    t.set_write_buffer_limits(high=100, low=0)
    assert t.get_write_buffer_limits() == (0, 100) and raw_of(listener).get_write_buffer_limits() == (0, 100)
    t.set_write_buffer_limits()
    assert t.get_write_buffer_limits() == (DEFAULT_LOW_WATER, DEFAULT_HIGH_WATER)
    assert all(type(n) is int for n in t.get_write_buffer_limits())
    with pytest.raises(ValueError) as refused:
        t.set_write_buffer_limits(high=1, low=2)
    assert str(refused.value) == "high (1) must be >= low (2) must be >= 0"
    with pytest.raises(ValueError):
        t.set_write_buffer_limits(high=4, low=-1)


def test_the_hard_cap_applies_to_the_ciphertext(reactor, serve):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    app.transport.set_max_write_buffer_size(1024)
    app.transport.write(b"x" * 8 * 1024 * 1024)  # the peer does not read
    run_until(reactor, lambda: app.lost)
    assert isinstance(app.events[-1][1], WriteBufferOverflow)


# -- errors, ends and deadlines -----------------------------------------------------------------

def test_an_application_error_aborts_with_a_report(reactor, serve):
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

    def fail(transport, data):
        transport.write(b"y" * 8 * 1024 * 1024)  # buffered: the peer does not read; abort drops it
        raise KeyError("broken data_received")

    app = App(on_data=fail)
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    peer.engine.send(b"boom")
    peer.pump()
    run_until(reactor, lambda: app.lost)  # at once, not after a drain that never comes
    (ctx,) = errors
    assert ctx["message"] == "protocol.data_received() raised; aborting the connection"
    assert isinstance(ctx["exception"], KeyError)
    assert ctx["transport"] is app.transport and ctx["protocol"] is app
    assert app.events[-1] == ("lost", ctx["exception"])


def test_an_eof_received_error_is_reported_by_name(reactor, serve):
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

    def fail(transport):
        raise LookupError("broken eof_received")

    app = App(on_eof=fail)
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    peer.engine.close()  # close_notify
    peer.pump()
    run_until(reactor, lambda: app.lost)
    assert [ctx["message"] for ctx in errors] == ["protocol.eof_received() raised; aborting the connection"]
    assert isinstance(errors[0]["exception"], LookupError)
    assert app.events[-1] == ("lost", errors[0]["exception"])


def test_after_the_peers_close_notify_nothing_more_is_sent(reactor, serve):
    app = App(on_eof=lambda transport: transport.write(b"too late"))  # TLS has no half-close
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    peer.engine.close()
    run_until(reactor, lambda: (peer.pump(), app.lost)[1])
    run_until(reactor, lambda: (peer.pump(), peer.eof)[1])
    assert PEER_CLOSED in peer.events and b"too late" not in peer.events
    assert app.events == ["made", "eof", ("lost", None)]


def test_a_raw_eof_without_close_notify_is_a_truncation(reactor, serve):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    peer.sock.shutdown(socket.SHUT_WR)  # FIN, no close_notify
    run_until(reactor, lambda: app.lost)
    assert isinstance(app.events[-1][1], ssl.SSLEOFError)


def test_a_failure_is_logged_at_debug_level(reactor, serve, caplog):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    raw = raw_of(listener)
    with caplog.at_level(logging.DEBUG, logger="reactor"):
        peer.sock.shutdown(socket.SHUT_WR)
        run_until(reactor, lambda: app.lost)
    exc = app.events[-1][1]
    assert f"{raw!r}: TLS failed: {exc!r}" in [r.getMessage() for r in caplog.records]


def test_closing_waits_for_the_peers_close_notify_then_closes_at_once(reactor, serve):
    app = App()
    listener, peer = serve(app, ssl_shutdown_timeout=30)
    handshake(reactor, app, peer)
    raw = raw_of(listener)
    timers = reactor.stats().timers_pending
    app.transport.close()
    assert not raw.is_closing()  # waiting for the peer's close_notify...
    assert reactor.stats().timers_pending == timers + 1  # ...for ssl_shutdown_timeout at most
    run_until(reactor, lambda: (peer.pump(), PEER_CLOSED in peer.events)[1])
    peer.engine.close()  # the answer
    peer.pump()
    run_until(reactor, lambda: app.lost, timeout=5)  # well before the 30 s deadline
    assert app.events[-1] == ("lost", None) and reactor.stats().timers_pending == timers


def test_a_peer_that_never_answers_close_notify_is_cut_off_at_the_deadline(reactor, serve):
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    app = App()
    listener, peer = serve(app, ssl_shutdown_timeout=0.05)
    handshake(reactor, app, peer)
    app.transport.close()
    run_until(reactor, lambda: app.lost)
    assert errors == []


def test_a_server_that_closes_sends_close_notify_first(reactor, serve):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    app.transport.close()
    run_until(reactor, lambda: (peer.pump(), PEER_CLOSED in peer.events)[1])


def test_abort_closes_at_once(reactor, serve):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    app.transport.abort()
    assert app.transport.is_closing()
    run_until(reactor, lambda: app.lost)
    run_until(reactor, lambda: (peer.pump(), peer.eof)[1])


@pytest.mark.parametrize("how", ["close", "abort"])
def test_closing_from_transport_setup_closes_the_connection(how):
    # Found by mutation testing: the TLS transport's close()/abort() before
    # the stream transport was attached did nothing. As over plain TCP, the
    # application hears connection_made then connection_lost(None), and the
    # peer sees the TCP connection end. (One selector, a short deadline.)
    with Reactor() as reactor:
        app = App()
        listener = reactor.listen_tcp(lambda: app, "127.0.0.1", 0, ssl=server_context(),
                                      transport_setup=lambda t: getattr(t, how)())
        peer = EnginePeer(listener.address)

        def ended():  # (a reset counts: the server closed with the ClientHello unread)
            try:
                peer.pump()
            except ConnectionResetError:
                return True
            return peer.eof
        try:
            run_until(reactor, lambda: ended() and app.lost, timeout=5)
            assert app.events == ["made", ("lost", None)]
            assert reactor.stats().connections_open == 0
        finally:
            peer.close()
            listener.close()


def test_closing_during_the_handshake_closes_without_close_notify(reactor, serve):
    app = App()
    listener, peer = serve(app)
    run_until(reactor, lambda: "made" in app.events)
    app.transport.close()  # still handshaking
    assert raw_of(listener).is_closing()
    run_until(reactor, lambda: app.lost)


# -- buffered protocols ---------------------------------------------------------------

def test_a_buffered_protocol_with_a_bad_buffer_is_told_why(reactor, serve):
    class Bad(BufferedProtocol):
        def __init__(self):
            self.hints = []
            self.lost = None

        def connection_made(self, transport):
            self.transport = transport

        def get_buffer(self, sizehint):
            self.hints.append(sizehint)
            return b"read-only"

        def buffer_updated(self, n):
            pass

        def connection_lost(self, exc):
            self.lost = exc

    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    app = Bad()
    listener = reactor.listen_tcp(lambda: app, "127.0.0.1", 0, ssl=server_context())
    peer = EnginePeer(listener.address)
    try:
        run_until(reactor, lambda: (peer.pump(), peer.engine.state is TLSState.OPEN)[1])
        peer.engine.send(b"12345")
        peer.pump()
        run_until(reactor, lambda: app.lost is not None)
        assert app.hints == [5]  # the plaintext's size
        (ctx,) = errors
        assert str(ctx["exception"]) == "get_buffer() must return a writable, non-empty buffer"
    finally:
        peer.close()
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_when_our_close_notify_is_answered_by_a_bare_eof_the_close_is_clean(reactor, serve):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    app.transport.close()
    run_until(reactor, lambda: (peer.pump(), PEER_CLOSED in peer.events)[1])
    peer.sock.shutdown(socket.SHUT_WR)  # no close_notify back: we were closing anyway
    run_until(reactor, lambda: app.lost)
    assert app.events[-1] == ("lost", None)


def test_a_reset_peer_makes_the_transport_closing(reactor, serve):
    import struct

    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.sock.close()  # RST: the stream transport ends, TLS never heard a word
    run_until(reactor, lambda: app.lost)
    assert app.transport.is_closing()


def test_a_tls_error_still_sends_what_was_queued_and_the_alert(reactor, serve):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    app.transport.write(b"z" * 4 * 1024 * 1024)  # queued: the peer is not reading yet
    raw = raw_of(listener)
    assert raw.get_write_buffer_size() > 0
    peer.sock.sendall(b"\x17\x03\x03\x00\x05hello")  # a record that does not decrypt
    run_until(reactor, lambda: raw.is_closing())
    for _ in range(3):
        reactor.run_once(0.01)
    assert raw.get_extra_info("socket").fileno() != -1  # closing gently: flushing, not aborted
    with pytest.raises(ssl.SSLError) as alert:  # the peer reads what was queued, then the alert
        run_until(reactor, lambda: (peer.pump(), peer.eof)[1])
    assert not isinstance(alert.value, ssl.SSLEOFError)  # an alert, not a connection cut short
    # (the plaintext that came in the same read as the alert is lost with the exception)
    assert sum(len(e) for e in peer.events if isinstance(e, bytes)) >= 4 * 1024 * 1024 - 65536


def test_the_handshake_deadline_says_how_long_it_was(reactor):
    app = App()
    listener = reactor.listen_tcp(lambda: app, "127.0.0.1", 0, ssl=server_context(), ssl_handshake_timeout=0.05)
    try:
        with socket.create_connection(listener.address):  # never says hello
            run_until(reactor, lambda: app.lost)
        exc = app.events[-1][1]
        assert isinstance(exc, TimeoutError) and str(exc) == "the TLS handshake did not complete within 0.05 s"
    finally:
        listener.close()


def test_client_context_reads_the_ssl_argument():
    from reactor.tlsstreams import client_context as context_for

    assert context_for(None) is None and context_for(False) is None
    assert context_for(True).verify_mode == ssl.CERT_REQUIRED
    ctx = client_context()
    assert context_for(ctx) is ctx


def test_connect_with_ssl_false_is_plain_and_a_bad_ssl_is_refused(reactor):
    listener = reactor.listen_tcp(App, "127.0.0.1", 0)
    try:
        connector = reactor.connect_tcp(App, *listener.address, ssl=False)
        run_until(reactor, connector.done)
        assert type(connector.result()).__name__ == "StreamTransport"
        connector.result().close()
        with pytest.raises(TypeError) as refused:
            reactor.connect_tcp(App, *listener.address, ssl="yes please")
        assert str(refused.value) == "ssl must be an ssl.SSLContext, True or None, not 'yes please'"
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


# -- STARTTLS ---------------------------------------------------------------------------

class Plain(Protocol):
    def connection_made(self, transport):
        self.transport = transport


@pytest.fixture
def plain_pair(reactor):
    """(the server's plain StreamTransport, the client's socket)."""
    server = Plain()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    client = socket.create_connection(listener.address, timeout=10)
    run_until(reactor, lambda: getattr(server, "transport", None) is not None)
    yield server.transport, client
    client.close()
    listener.close()
    listener.close_connections()
    run_until(reactor, lambda: not reactor.connections())


def test_start_tls_defaults_a_client_made_by_the_loop(reactor, plain_pair):
    from reactor import tlsstreams

    raw, client = plain_pair
    app = App()
    handshakes = []
    with pytest.raises(ValueError):  # a client: which server is it? (no server_hostname)
        tlsstreams.start_tls(reactor, raw, app, client_context())
    t = tlsstreams.start_tls(reactor, raw, app, client_context(), server_hostname="localhost",
                             on_handshake=handshakes.append)
    assert app.events == []  # connection_made comes from the loop, not from inside start_tls
    reactor.run_once(0)
    assert app.events == ["made"] and t is app.transport
    # The other end is a server (so this side was the client), and no stray bytes came first.
    server = TLSEngine(server_context(), server_side=True)
    client.setblocking(False)

    def handshaken():
        try:
            data = client.recv(65536)
        except BlockingIOError:
            return False
        server.receive(data)
        client.sendall(server.bytes_to_send())
        return server.state is TLSState.OPEN
    run_until(reactor, handshaken)
    run_until(reactor, lambda: handshakes == [None])


@pytest.mark.parametrize("when", ["handshake", "shutdown"])
def test_start_tls_passes_its_deadlines_on(reactor, plain_pair, when):
    raw, client = plain_pair
    app = App()
    reactor.start_tls(raw, app, server_context(), server_side=True,
                      **{f"ssl_{when}_timeout": 0.05})
    if when == "shutdown":
        peer = EnginePeer(sock=client)
        handshake(reactor, app, peer)
        app.transport.close()  # the peer never answers our close_notify
    run_until(reactor, lambda: app.lost, timeout=5)


def test_start_tls_refuses_what_it_cannot_upgrade(reactor, plain_pair):
    from reactor import tlsstreams

    raw, client = plain_pair
    with pytest.raises(TypeError) as refused:
        tlsstreams.start_tls(reactor, "a socket", App(), server_context(), server_side=True)
    assert str(refused.value) == "start_tls() needs a StreamTransport, not 'a socket'"
    raw.close()
    with pytest.raises(RuntimeError) as refused:
        tlsstreams.start_tls(reactor, raw, App(), server_context(), server_side=True)
    assert str(refused.value) == "start_tls() on a closing transport"


# -- found by the second mutation round ----------------------------------------------------

def test_after_an_application_error_the_rest_of_the_same_read_is_not_delivered(reactor, serve):
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

    def fail(transport, data):
        raise KeyError("broken data_received")

    app = App(on_data=fail)
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    peer.engine.send(b"boom")
    peer.engine.close()  # close_notify right behind the data: one read gets both records
    peer.pump()
    run_until(reactor, lambda: app.lost)
    (ctx,) = errors
    assert app.data == b"boom"
    assert app.events == ["made", ("lost", ctx["exception"])]  # aborted: no eof_received after the error


def test_a_stalled_starttls_handshake_is_cut_off_with_what_was_queued(reactor, plain_pair):
    """At the handshake deadline the connection is aborted: plaintext written
    before start_tls() that the peer never read is dropped, not waited for."""
    raw, client = plain_pair  # the client neither reads nor says hello
    raw.write(b"p" * 32 * 1024 * 1024)
    for _ in range(3):
        reactor.run_once(0)
    assert raw.get_write_buffer_size() > 0  # more than the kernel's buffers take
    app = App()
    reactor.start_tls(raw, app, server_context(), server_side=True, ssl_handshake_timeout=0.05)
    run_until(reactor, lambda: app.lost, timeout=5)
    exc = app.events[-1][1]
    assert isinstance(exc, TimeoutError) and str(exc) == "the TLS handshake did not complete within 0.05 s"



@pytest.mark.parametrize("when", ["over_high_water", "drained"])
def test_tls_answers_stop_reading_only_while_the_output_is_paused(reactor, tmp_path, when):
    """Reading can make TLS answer: a TLS 1.2 renegotiation request, which
    OpenSSL 3 refuses with an alert (``openssl s_client``'s "R" command). Such
    an answer while the stream transport is over its high-water mark stops our
    reading until it drains; once drained, answers no longer stop it."""
    import subprocess

    from .test_tls import CA, require

    openssl = require("openssl")
    ca = tmp_path / "ca.pem"
    CA.cert_pem.write_to_path(str(ca))
    app = App()
    listener = reactor.listen_tcp(lambda: app, "127.0.0.1", 0, ssl=server_context())
    proc = subprocess.Popen([openssl, "s_client", "-connect", f"127.0.0.1:{listener.address[1]}",
                             "-servername", "localhost", "-CAfile", str(ca), "-tls1_2"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def say(line):
        proc.stdin.write(line)
        proc.stdin.flush()
    try:
        say(b"one\n")
        run_until(reactor, lambda: b"one\n" in app.data, timeout=20)
        raw = raw_of(listener)
        tls = raw.get_protocol()
        sent = raw.bytes_sent
        tls.pause_writing()  # what the stream transport says over its high-water mark
        if when == "over_high_water":
            say(b"R\n")  # renegotiate: our TLS answers (a no_renegotiation alert)
            run_until(reactor, lambda: not raw.is_reading(), timeout=20)
            assert raw.bytes_sent > sent  # the answer went out
            tls.resume_writing()  # drained: reading again
        else:
            tls.resume_writing()
            say(b"R\n")
            run_until(reactor, lambda: raw.bytes_sent > sent, timeout=20)  # the answer went out
        assert raw.is_reading()
    finally:
        proc.kill()
        proc.communicate(timeout=10)
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_a_write_after_the_stream_transport_broke_is_dropped_and_logged(reactor, serve, caplog):
    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    t = app.transport
    t.set_max_write_buffer_size(1024)
    t.write(b"x" * 8 * 1024 * 1024)  # over the hard cap: the stream transport is aborted at once
    assert t.is_closing() and not app.lost  # connection_lost is yet to come
    with caplog.at_level(logging.DEBUG, logger="reactor"):
        t.write(b"more")
    assert [r.getMessage() for r in caplog.records] == [f"{t!r}: write() after close(); data dropped"]
    run_until(reactor, lambda: app.lost)
    assert isinstance(app.events[-1][1], WriteBufferOverflow)


def test_instruments_count_the_plaintext_written_in_bytes_whatever_its_type(reactor, serve):
    import array

    from reactor.instruments import Instrument

    class Sent(Instrument):
        def __init__(self):
            self.sent: list = []

        def bytes_sent(self, transport, n):
            self.sent.append((transport, n))

    app = App()
    listener, peer = serve(app)
    handshake(reactor, app, peer)
    counter = Sent()
    reactor.add_instrument(counter)
    t = app.transport
    words = array.array("I", [1, 2, 3])  # 3 items, 12 bytes
    t.write(memoryview(words))
    t.write(bytearray(b"abcde"))
    t.write(b"xy")
    assert [n for transport, n in counter.sent if transport is t] == [words.itemsize * 3, 5, 2]
    run_until(reactor, lambda: (peer.pump(), sum(len(e) for e in peer.events if isinstance(e, bytes)) >= 19)[1])
    assert b"".join(e for e in peer.events if isinstance(e, bytes))[-7:] == b"abcdexy"


def test_write_refuses_what_is_not_bytes_by_name(reactor, serve):
    app = App()
    listener, peer = serve(app)
    run_until(reactor, lambda: "made" in app.events)
    with pytest.raises(TypeError) as refused:
        app.transport.write("text")
    assert str(refused.value) == "data must be bytes, bytearray or memoryview, not str"


def test_the_high_water_mark_is_a_strict_boundary_and_pause_writing_comes_once(reactor, serve):
    class Flow(App):
        def __init__(self):
            super().__init__()
            self.flow: list = []

        def connection_made(self, transport):
            super().connection_made(transport)
            transport.set_write_buffer_limits(high=10, low=0)
            transport.write(b"x" * 10)  # held until the handshake is done: 10 bytes buffered

        def pause_writing(self):
            self.flow.append("pause")

        def resume_writing(self):
            self.flow.append("resume")

    app = Flow()
    listener, peer = serve(app)
    run_until(reactor, lambda: "made" in app.events)
    t = app.transport
    assert t.get_write_buffer_size() == 10 and app.flow == []  # exactly high: not over it
    t.write(b"y")
    assert app.flow == ["pause"]
    t.write(b"z")
    assert app.flow == ["pause"]  # once
    handshake(reactor, app, peer)
    run_until(reactor, lambda: app.flow == ["pause", "resume"])
