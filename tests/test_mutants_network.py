"""Reactor's front doors pass every option on to their layer (mutation testing found them unpinned).

``network.Reactor`` is one thin method per kind of endpoint: a keyword
dropped on the way (or a default changed) is a bug no other layer's test can
see, since those call ``listeners``, ``connectors`` and ``datagrams``
directly. Each test here goes through ``reactor.<front door>(...)`` and
observes one option at the far end: on the socket (getsockopt), in what the
peer sees, or in how soon a TLS timeout ends a connection. The TLS timeouts
are given as 0.05 s, far below their defaults (tens of seconds): a dropped
one turns a test that takes milliseconds into one that fails at its deadline.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys

import pytest

from reactor import Protocol
from reactor.connectors import ConnectTimeout
from reactor.tls import PEER_CLOSED, TLSEngine

from .conftest import run_until

pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")

from .test_mutants_datagrams import Events, ScriptedUDP  # noqa: E402
from .test_tls import Client, client_context, server_context  # noqa: E402

QUICK = 0.05  # a TLS timeout, in seconds
DEADLINE = 3.0  # what run_until waits for a QUICK timeout to act (the defaults are 30 s and more)


class ManualTLS(Protocol):
    """A TLS peer over a plain connection, run by hand with a TLSEngine.

    It completes the handshake and records what it receives, but never
    answers the other side's close_notify (the engine leaves that to its
    owner): the other side must give up after its ssl_shutdown_timeout.
    """

    def __init__(self, server_side: bool) -> None:
        context = server_context() if server_side else client_context()
        self.engine = TLSEngine(context, server_side=server_side,
                                server_hostname=None if server_side else "localhost")
        self.events: list = []
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport
        self.events += self.engine.start()
        if not self.engine.ssl_object.server_side:
            self.engine.send(b"hello")  # queued until the handshake is done
        self._flush()

    def data_received(self, data):
        self.events += self.engine.receive(data)
        self._flush()

    def _flush(self):
        out = self.engine.bytes_to_send()
        if out:
            self.transport.write(out)

    def connection_lost(self, exc):
        self.lost = True


class Silent(Protocol):
    """A plain peer that never says a word (a TLS handshake with it stalls)."""

    def __init__(self):
        self.lost = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost = True


class CloseOnData(Protocol):
    """A TLS application that closes when the peer's first data arrives (the handshake is done)."""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.close()


def nodelay_of(transport) -> int:
    return transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# -- listen_tcp -----------------------------------------------------------------------------

def test_listen_tcp_picks_a_free_port_and_shares_it_only_on_request(reactor):
    listener = reactor.listen_tcp(Protocol, "127.0.0.1")  # no port: any free one
    try:
        port = listener.address[1]
        assert port >= 1024  # an ephemeral port, chosen by the kernel
        assert listener.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        with pytest.raises(OSError) as taken:
            reactor.listen_tcp(Protocol, "127.0.0.1", port)
        assert taken.value.errno == errno.EADDRINUSE
    finally:
        listener.close()
    first = reactor.listen_tcp(Protocol, "127.0.0.1", 0, reuse_port=True)
    try:
        assert first.sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        second = reactor.listen_tcp(Protocol, "127.0.0.1", first.address[1], reuse_port=True)
        second.close()
    finally:
        first.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO of a listening socket: Linux")
def test_listen_tcp_passes_the_backlog_on(reactor):
    for backlog in (3, 77):
        listener = reactor.listen_tcp(Protocol, "127.0.0.1", 0, backlog=backlog)
        try:
            info = listener.sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            # For a listening socket, tcpi_sacked is the accept queue's limit (the backlog).
            assert struct.unpack_from("8B6I", info)[13] == backlog
        finally:
            listener.close()


def test_listen_tcp_passes_the_connection_options_on(reactor):
    setups: list = []
    listener = reactor.listen_tcp(Protocol, "127.0.0.1", 0, max_connections=1, nodelay=False,
                                  transport_setup=setups.append)
    peers = [socket.create_connection(listener.address[:2]) for _ in range(2)]  # both in the backlog
    try:
        run_until(reactor, lambda: setups)
        for _ in range(3):
            reactor.run_once(0)
        assert len(setups) == 1 and listener.connections == {setups[0]}  # the other one waits
        assert nodelay_of(setups[0]) == 0
    finally:
        for peer in peers:
            peer.close()
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_listen_tcp_passes_the_tls_options_on(reactor):
    listener = reactor.listen_tcp(CloseOnData, "127.0.0.1", 0, ssl=server_context(),
                                  ssl_handshake_timeout=QUICK, ssl_shutdown_timeout=QUICK)
    try:
        # A peer that says nothing is cut off at the handshake timeout.
        silent = Silent()
        reactor.connect_tcp(lambda: silent, *listener.address[:2])
        run_until(reactor, lambda: silent.lost, timeout=DEADLINE)
        # A peer that shakes hands but never answers close_notify, at the shutdown timeout.
        peer = ManualTLS(server_side=False)
        reactor.connect_tcp(lambda: peer, *listener.address[:2])
        run_until(reactor, lambda: peer.lost, timeout=DEADLINE)
        assert PEER_CLOSED in peer.events  # it was TLS, and the server closed it politely first
    finally:
        listener.close()


# -- listen_unix ----------------------------------------------------------------------------

def test_listen_unix_passes_the_backlog_and_connection_options_on(reactor, tmp_path):
    setups: list = []
    path = str(tmp_path / "s")
    listener = reactor.listen_unix(Protocol, path, backlog=1, max_connections=1, transport_setup=setups.append)
    peers = []
    try:
        refused = 0
        for _ in range(5):  # the loop does not run: every peer waits in the backlog, or is refused
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            peers.append(peer)
            peer.setblocking(False)
            try:
                peer.connect(path)
            except (BlockingIOError, ConnectionRefusedError):
                refused += 1
        if sys.platform.startswith("linux"):
            assert refused >= 3  # Linux queues backlog + 1; the default backlog would take all five
        run_until(reactor, lambda: setups)
        for _ in range(3):
            reactor.run_once(0)
        assert len(setups) == 1 and listener.connections == {setups[0]}
    finally:
        for peer in peers:
            peer.close()
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_listen_unix_passes_the_tls_options_on(reactor, tmp_path):
    path = str(tmp_path / "s")
    listener = reactor.listen_unix(CloseOnData, path, ssl=server_context(),
                                   ssl_handshake_timeout=QUICK, ssl_shutdown_timeout=QUICK)
    try:
        silent = Silent()
        reactor.connect_unix(lambda: silent, path)
        run_until(reactor, lambda: silent.lost, timeout=DEADLINE)
        peer = ManualTLS(server_side=False)
        reactor.connect_unix(lambda: peer, path)
        run_until(reactor, lambda: peer.lost, timeout=DEADLINE)
        assert PEER_CLOSED in peer.events
    finally:
        listener.close()


# -- connect_tcp ----------------------------------------------------------------------------

def test_connect_tcp_goes_to_the_host_given_from_the_address_given(reactor):
    # 127.0.0.2 and .3 are loopback too (Linux routes all of 127/8 there); the
    # listener is on .2 only, so a connection anywhere else is refused.
    try:
        listener = reactor.listen_tcp(Protocol, "127.0.0.2", 0)
    except OSError:  # pragma: no cover - a loopback with 127.0.0.1 only
        pytest.skip("127.0.0.2 is not a local address here")
    try:
        connector = reactor.connect_tcp(Protocol, "127.0.0.2", listener.address[1], local_addr=("127.0.0.3", 0),
                                        nodelay=False)
        run_until(reactor, connector.done)
        transport = connector.result()
        assert transport.get_extra_info("peername") == ("127.0.0.2", listener.address[1])
        assert transport.get_extra_info("sockname")[0] == "127.0.0.3"
        assert nodelay_of(transport) == 0
        transport.close()
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_connect_tcp_resolves_in_the_family_given(reactor):
    listener = reactor.listen_tcp(Protocol, "127.0.0.1", 0)
    try:
        connector = reactor.connect_tcp(Protocol, "127.0.0.1", listener.address[1], family=socket.AF_INET6)
        run_until(reactor, connector.done)
        assert isinstance(connector.exception, socket.gaierror)  # an IPv4 literal has no IPv6 address
    finally:
        listener.close()


def test_connect_tcp_passes_the_tls_timeouts_on(reactor):
    # The handshake timeout: a server that never answers the ClientHello.
    listener = reactor.listen_tcp(Silent, "127.0.0.1", 0)
    try:
        connector = reactor.connect_tcp(Protocol, *listener.address[:2], ssl=client_context(),
                                        server_hostname="localhost", ssl_handshake_timeout=QUICK)
        run_until(reactor, connector.done, timeout=DEADLINE)
        assert isinstance(connector.exception, TimeoutError)
    finally:
        listener.close()
        listener.close_connections()
    # The shutdown timeout: a server that never answers close_notify.
    server = ManualTLS(server_side=True)
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    try:
        client = Client()
        connector = reactor.connect_tcp(lambda: client, *listener.address[:2], ssl=client_context(),
                                        server_hostname="localhost", ssl_shutdown_timeout=QUICK)
        run_until(reactor, connector.done)
        connector.result().close()
        run_until(reactor, lambda: client.lost, timeout=DEADLINE)
        assert PEER_CLOSED in server.events
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


# -- connect_unix ---------------------------------------------------------------------------

def test_connect_unix_passes_its_timeout_and_the_tls_timeouts_on(reactor, tmp_path):
    path = str(tmp_path / "s")
    listener = reactor.listen_unix(Silent, path)
    try:
        # timeout: the whole attempt, TLS handshake included.
        connector = reactor.connect_unix(Protocol, path, timeout=QUICK, ssl=client_context(),
                                         server_hostname="localhost")
        run_until(reactor, connector.done, timeout=DEADLINE)
        assert isinstance(connector.exception, ConnectTimeout)
        # ssl_handshake_timeout: the handshake alone.
        connector = reactor.connect_unix(Protocol, path, ssl=client_context(), server_hostname="localhost",
                                         ssl_handshake_timeout=QUICK)
        run_until(reactor, connector.done, timeout=DEADLINE)
        assert isinstance(connector.exception, TimeoutError)
        assert not isinstance(connector.exception, ConnectTimeout)
    finally:
        listener.close()
        listener.close_connections()
    server = ManualTLS(server_side=True)
    path = str(tmp_path / "t")
    listener = reactor.listen_unix(lambda: server, path)
    try:
        client = Client()
        connector = reactor.connect_unix(lambda: client, path, ssl=client_context(), server_hostname="localhost",
                                         ssl_shutdown_timeout=QUICK)
        run_until(reactor, connector.done)
        connector.result().close()
        run_until(reactor, lambda: client.lost, timeout=DEADLINE)
        assert PEER_CLOSED in server.events
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


# -- open_udp -------------------------------------------------------------------------------

def test_open_udp_passes_its_socket_options_on(reactor):
    plain = reactor.open_udp(Events, local_addr=("127.0.0.1", 0))
    shared = reactor.open_udp(Events, local_addr=("127.0.0.1", 0), reuse_port=True, allow_broadcast=True)
    try:
        options = [(t.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0,
                    t.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST) != 0)
                   for t in (plain, shared)]
        assert options == [(False, False), (True, True)]
        with pytest.raises(socket.gaierror):  # an IPv4 literal has no IPv6 address
            reactor.open_udp(Events, local_addr=("127.0.0.1", 0), family=socket.AF_INET6)
    finally:
        plain.close()
        shared.close()
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


# -- start_tls ------------------------------------------------------------------------------

class Upgraded(Client):
    def connection_made(self, transport):
        super().connection_made(transport)
        transport.write(b"hello over TLS")


def plain_connection(reactor, server_factory):
    listener = reactor.listen_tcp(server_factory, "127.0.0.1", 0)
    connector = reactor.connect_tcp(Protocol, *listener.address[:2])
    run_until(reactor, connector.done)
    return listener, connector.result()


def test_start_tls_is_a_client_by_default_and_passes_its_options_on(reactor):
    server = ManualTLS(server_side=True)
    listener, raw = plain_connection(reactor, lambda: server)
    try:
        app = Upgraded()
        # No server_side, no initial_data: the client side of a fresh connection.
        reactor.start_tls(raw, app, client_context(), server_hostname="localhost", ssl_shutdown_timeout=QUICK)
        run_until(reactor, lambda: b"hello over TLS" in server.events)
        app.transport.close()
        run_until(reactor, lambda: app.lost, timeout=DEADLINE)  # close_notify never answered
        assert app.exc is None and PEER_CLOSED in server.events
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_start_tls_passes_the_handshake_timeout_on(reactor):
    listener, raw = plain_connection(reactor, Silent)
    try:
        app = Client()
        reactor.start_tls(raw, app, client_context(), server_hostname="localhost", ssl_handshake_timeout=QUICK)
        run_until(reactor, lambda: app.lost, timeout=DEADLINE)
        assert isinstance(app.exc, TimeoutError)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())
