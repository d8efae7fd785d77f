"""Connector behaviours that mutation testing found unpinned (python -m tests.mutation)."""

from __future__ import annotations

import errno
import os
import socket
import ssl

import pytest

from reactor import ConnectTimeout, Protocol

from .conftest import run_until


class App(Protocol):
    def connection_made(self, transport):
        self.transport = transport


@pytest.fixture
def server(reactor):
    listener = reactor.listen_tcp(App, "127.0.0.1", 0)
    yield listener
    listener.close()
    listener.close_connections()
    run_until(reactor, lambda: not reactor.connections())


@pytest.fixture
def unanswered():
    """An address whose connections stay pending: a listener with a full backlog (Linux drops the SYNs)."""
    import select

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.socket()
    filler.setblocking(False)
    filler.connect_ex(listener.getsockname())
    assert select.select([], [filler], [], 10)[1], "the backlog did not fill"
    yield listener.getsockname()
    filler.close()
    listener.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_connector_tells_its_state_and_its_protocol(reactor, server):
    host, port = server.address
    connector = reactor.connect_tcp(App, host, port)
    assert repr(connector) == f"<Connector {host}:{port} pending>"
    with pytest.raises(RuntimeError) as refused:
        connector.result()
    assert str(refused.value) == "the connection attempt is still pending"
    run_until(reactor, connector.done)
    reactor.run_once(0)  # (connection_made is queued)
    assert repr(connector) == f"<Connector {host}:{port} connected>"
    assert isinstance(connector.protocol, App) and connector.protocol.transport is connector.result()
    assert connector.cancel() is False and not connector.cancelled()
    called = []
    connector.add_done_callback(called.append)  # already done: called from the loop, with the connector
    assert called == []
    reactor.run_once(0)
    assert called == [connector]
    connector.result().close()


def test_a_cancelled_attempt_says_what_was_cancelled(reactor, unanswered):
    host, port = unanswered
    connector = reactor.connect_tcp(App, host, port, timeout=10)
    reactor.run_once(0)
    assert connector.cancel() is True and connector.cancelled()
    with pytest.raises(ConnectionAbortedError) as refused:
        connector.result()
    assert str(refused.value) == f"connection to {host}:{port} was cancelled"
    assert repr(connector) == f"<Connector {host}:{port} cancelled>"


def test_a_refused_connection_is_the_builtin_error_with_the_address(reactor):
    port = free_port()
    connector = reactor.connect_tcp(App, "127.0.0.1", port)
    run_until(reactor, connector.done)
    exc = connector.exception
    assert type(exc) is ConnectionRefusedError and exc.errno == errno.ECONNREFUSED
    assert str(exc) == f"[Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)}: 127.0.0.1:{port}"
    assert repr(connector) == f"<Connector 127.0.0.1:{port} failed>"


def test_a_failing_factory_fails_the_attempt_with_its_exception(reactor, server):
    problem = LookupError("no protocol for you")

    def factory():
        raise problem

    connector = reactor.connect_tcp(factory, *server.address)
    run_until(reactor, connector.done)
    assert connector.exception is problem and repr(connector).endswith(" failed>")
    with pytest.raises(LookupError):
        connector.result()


def test_a_timeout_fails_the_attempt(reactor, unanswered):
    host, port = unanswered
    connector = reactor.connect_tcp(App, host, port, timeout=0.01)
    run_until(reactor, connector.done)
    assert isinstance(connector.exception, ConnectTimeout)
    assert str(connector.exception) == f"connecting to {host}:{port} timed out after 0.01s"
    assert repr(connector) == f"<Connector {host}:{port} failed>"


def test_connect_unix_names_its_path(reactor, tmp_path):
    path = str(tmp_path / "s.sock")
    listener = reactor.listen_unix(App, path)
    try:
        connector = reactor.connect_unix(App, path)
        run_until(reactor, connector.done)
        assert repr(connector) == f"<Connector {path!r} connected>"
        connector.result().close()
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_over_tls_the_attempt_ends_with_the_handshake(reactor, tmp_path):
    tls = pytest.importorskip("tests.test_tls", reason="trustme is in the test extra")
    good = reactor.listen_tcp(tls.Echo, "127.0.0.1", 0, ssl=tls.server_context())
    path = str(tmp_path / "plain.sock")
    silent = reactor.listen_unix(App, path)  # accepts, never answers the ClientHello
    try:
        ok = reactor.connect_tcp(App, *good.address, ssl=tls.client_context(), server_hostname="localhost")
        wrong = reactor.connect_tcp(App, *good.address, ssl=tls.client_context(),
                                    server_hostname="wrong.example")
        stalled = reactor.connect_unix(App, path, ssl=tls.client_context(), server_hostname="localhost",
                                       timeout=0.05)
        run_until(reactor, lambda: ok.done() and wrong.done() and stalled.done())
        assert repr(ok).endswith(" connected>") and type(ok.result()).__name__ == "TLSTransport"
        assert repr(wrong).endswith(" failed>") and wrong.exception is not None
        assert isinstance(stalled.exception, ConnectTimeout) and repr(stalled).endswith(" failed>")
        ok.result().close()
    finally:
        for listener in (good, silent):
            listener.close()
            listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


# -- found by the second mutation round ----------------------------------------------------

def test_connect_tcps_defaults(reactor, server):
    from reactor import connectors

    connector = connectors.connect_tcp(reactor, App, *server.address)  # any family, Nagle off
    assert (connector.transport, connector.protocol, connector.exception) == (None, None, None)  # pending
    run_until(reactor, connector.done)
    sock = connector.result().get_extra_info("socket")
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    connector.result().close()


def test_nodelay_false_leaves_nagle_on(reactor, server):
    connector = reactor.connect_tcp(App, *server.address, nodelay=False)
    run_until(reactor, connector.done)
    assert not connector.result().get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    connector.result().close()


def test_the_host_given_is_the_host_connected_to(reactor):
    listener = reactor.listen_tcp(App, "127.0.0.2", 0)  # (all of 127/8 is loopback)
    try:
        connector = reactor.connect_tcp(App, "127.0.0.2", listener.address[1])
        run_until(reactor, connector.done)
        assert connector.result().get_extra_info("peername") == ("127.0.0.2", listener.address[1])
        connector.result().close()
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


def test_local_addr_is_bound_and_can_be_reused_at_once(reactor, server):
    local = ("127.0.0.1", free_port())
    for _ in range(2):  # the first one we close ourselves: its address waits in TIME_WAIT
        connector = reactor.connect_tcp(App, *server.address, local_addr=local)
        run_until(reactor, connector.done)
        assert connector.result().get_extra_info("sockname") == local
        connector.result().close()
        run_until(reactor, lambda: not server.connections and len(reactor.connections()) == 0)


def test_a_local_addr_that_is_not_ours_fails_the_attempt(reactor, server):
    connector = reactor.connect_tcp(App, *server.address, local_addr=("192.0.2.1", 0))
    assert connector.done() and repr(connector).endswith(" failed>")
    assert isinstance(connector.exception, OSError) and connector.exception.errno == errno.EADDRNOTAVAIL
    assert reactor.stats().writers == 0


def test_an_immediate_failure_names_the_address_in_brackets_for_ipv6(reactor):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.socket(socket.AF_INET6).close()
    except OSError:
        pytest.skip("IPv6 sockets are disabled here")
    # A link-local address without its interface: connect() refuses it on the spot.
    connector = reactor.connect_tcp(App, "fe80::1", 9)
    assert connector.done()
    exc = connector.exception
    assert type(exc) is OSError and exc.errno == errno.EINVAL
    assert str(exc) == f"[Errno {errno.EINVAL}] {os.strerror(errno.EINVAL)}: [fe80::1]:9"
    assert repr(connector) == "<Connector [fe80::1]:9 failed>"


def test_a_unix_path_with_no_server_is_the_builtin_error_with_the_path(reactor, tmp_path):
    path = str(tmp_path / "nobody.sock")
    connector = reactor.connect_unix(App, path)
    assert connector.done()
    exc = connector.exception
    assert type(exc) is FileNotFoundError
    assert str(exc) == f"[Errno {errno.ENOENT}] {os.strerror(errno.ENOENT)}: {path!r}"


def test_a_unix_server_with_a_full_backlog_is_said_so(reactor, tmp_path):
    path = str(tmp_path / "busy.sock")
    listener = socket.socket(socket.AF_UNIX)
    fillers = []
    try:
        listener.bind(path)
        listener.listen(0)
        for _ in range(64):  # fill the backlog (never accepted)
            filler = socket.socket(socket.AF_UNIX)
            filler.setblocking(False)
            fillers.append(filler)
            try:
                filler.connect(path)
            except BlockingIOError:
                break
        else:
            pytest.skip("the backlog never filled")
        connector = reactor.connect_unix(App, path)
        assert connector.done()
        exc = connector.exception
        assert type(exc) is BlockingIOError and exc.errno == errno.EAGAIN
        assert str(exc) == f"[Errno {errno.EAGAIN}] the server's backlog is full: {path!r}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def fake_addresses(monkeypatch, *infos):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: list(infos))


def test_a_name_that_does_not_resolve_fails_with_the_resolvers_error(reactor, monkeypatch):
    problem = socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def getaddrinfo(*args, **kwargs):
        raise problem
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    connector = reactor.connect_tcp(App, "nowhere.example", 80)
    assert connector.done() and connector.exception is problem and reactor.stats().writers == 0


def test_no_address_at_all_is_a_clear_error(reactor, monkeypatch):
    fake_addresses(monkeypatch)
    connector = reactor.connect_tcp(App, "nowhere.example", 80)
    assert connector.done() and str(connector.exception) == "no address to connect to for nowhere.example:80"


def test_an_address_whose_socket_cannot_be_made_is_skipped(reactor, server, monkeypatch):
    host, port = server.address
    bad = (socket.AF_INET, socket.SOCK_STREAM, 253, "", (host, port))  # no such protocol
    good = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (host, port))
    fake_addresses(monkeypatch, bad)
    failed = reactor.connect_tcp(App, host, port)
    assert failed.done() and isinstance(failed.exception, OSError)
    assert failed.exception.errno == errno.EPROTONOSUPPORT  # that socket's error, not "no address"
    fake_addresses(monkeypatch, bad, good)
    connector = reactor.connect_tcp(App, host, port)
    run_until(reactor, connector.done)
    connector.result().close()


def test_a_socket_the_selector_cannot_watch_fails_the_attempt(reactor, server):
    reactor.fd_limit = 0  # (every descriptor is past it: as FD_SETSIZE under select())
    connector = reactor.connect_tcp(App, *server.address)
    reactor.fd_limit = None
    assert connector.done() and isinstance(connector.exception, ValueError)
    assert "out of range" in str(connector.exception)


def test_done_callbacks_added_while_pending_get_the_connector(reactor, server):
    connector = reactor.connect_tcp(App, *server.address)
    called: list = []
    connector.add_done_callback(called.append)
    connector.add_done_callback(lambda c: called.append(c.done()))
    run_until(reactor, lambda: len(called) == 2)
    assert called == [connector, True]
    connector.result().close()


def test_a_cancelled_attempt_stops_watching_its_socket(reactor, unanswered):
    connector = reactor.connect_tcp(App, *unanswered)
    assert reactor.stats().writers == 1
    connector.cancel()
    assert reactor.stats().writers == 0
    reactor.run_once(0)


def test_a_finished_connector_is_not_kept_alive_by_the_reactor(reactor, unanswered):
    import gc
    import weakref

    connector = reactor.connect_tcp(App, *unanswered)
    try:
        ref = weakref.ref(connector)
    except TypeError:  # the mypyc-compiled class has no weak references
        connector.cancel()
        pytest.skip("compiled build: Connector takes no weak references")
    connector.cancel()
    del connector
    reactor.run_once(0)
    gc.collect()
    assert ref() is None


def test_ssl_arguments_are_checked_when_connecting(reactor, server, tmp_path):
    tls = pytest.importorskip("tests.test_tls", reason="trustme is in the test extra")
    with pytest.raises(ValueError) as refused:
        reactor.connect_tcp(App, *server.address, server_hostname="localhost")
    assert str(refused.value) == "server_hostname is only meaningful with ssl"
    with pytest.raises(ValueError) as refused:
        reactor.connect_unix(App, str(tmp_path / "s.sock"), ssl=tls.client_context())
    assert str(refused.value) == "ssl with hostname checking needs server_hostname"


def test_over_tls_the_server_hostname_is_the_host_by_default(reactor):
    tls = pytest.importorskip("tests.test_tls", reason="trustme is in the test extra")
    listener = reactor.listen_tcp(tls.Echo, "127.0.0.1", 0, ssl=tls.server_context())
    try:
        connector = reactor.connect_tcp(App, *listener.address, ssl=tls.client_context())  # checked: 127.0.0.1
        run_until(reactor, connector.done)
        assert connector.result().get_extra_info("server_hostname") == "127.0.0.1"
        connector.result().close()
        default = reactor.connect_tcp(App, *listener.address, ssl=True)  # the system's CAs: ours is not one
        run_until(reactor, default.done)
        assert isinstance(default.exception, ssl.SSLCertVerificationError)
    finally:
        listener.close()
        listener.close_connections()
        run_until(reactor, lambda: not reactor.connections())


class Lost(Protocol):
    def __init__(self):
        self.made = False
        self.lost: list = []

    def connection_made(self, transport):
        self.made = True

    def connection_lost(self, exc):
        self.lost.append(exc)


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_a_tls_attempt_ended_during_the_handshake_tells_its_protocol_why(reactor, tmp_path, how):
    tls = pytest.importorskip("tests.test_tls", reason="trustme is in the test extra")
    path = str(tmp_path / "silent.sock")
    silent = reactor.listen_unix(App, path)  # accepts, never answers the ClientHello
    app = Lost()
    try:
        connector = reactor.connect_unix(lambda: app, path, ssl=tls.client_context(), server_hostname="localhost",
                                         timeout=0.05 if how == "timeout" else None)
        run_until(reactor, lambda: app.made)  # the TCP connection is made, the handshake under way
        if how == "cancel":
            connector.cancel()
        run_until(reactor, lambda: app.lost)
        (exc,) = app.lost
        if how == "cancel":
            assert type(exc) is ConnectionAbortedError and str(exc) == "the connection attempt was cancelled"
        else:
            assert exc is connector.exception and isinstance(exc, ConnectTimeout)
    finally:
        silent.close()
        silent.close_connections()
        run_until(reactor, lambda: not reactor.connections())
