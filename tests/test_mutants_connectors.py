"""Connector behaviours that mutation testing found unpinned (python -m tests.mutation)."""

from __future__ import annotations

import errno
import os
import socket

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
