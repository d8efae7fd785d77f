"""Connectors: one outgoing TCP or Unix connection attempt, pending until done.

Theory of operation
-------------------
``connect_tcp`` resolves the host (a blocking
``getaddrinfo``: pass an address literal to avoid it, since the loop runs no
resolver thread), then tries each address in turn with a non-blocking
``connect``: the socket becomes writable when the handshake ends, and
``SO_ERROR`` says how. The caller gets a ``Connector`` at once: it says
whether the attempt is done, and gives the transport or the exception
(``ConnectionRefusedError``, an unreachable host's ``OSError``,
``ConnectTimeout``) to ``add_done_callback`` callbacks.

A connector is an endpoint in the reactor's registry while pending: closing
the reactor cancels it, and its socket is closed on every path (failure,
timeout, cancel, the reactor closing). A socket the selector cannot watch
(``loop.FD_SETSIZE`` under select()) fails the attempt with that error.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from .errors import ConnectTimeout
from .registry import TransportHost
from .streams import (DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, PathLike, ProtocolFactory,
                      StreamTransport, check_factory)

if TYPE_CHECKING:  # pragma: no cover  (imported when TLS is asked for: see tls_client_options)
    from .tlsstreams import SSLArgument, TLSProtocol, TLSTransport

__all__ = ["Connector", "connect_tcp", "connect_unix"]


class Connector:
    """A connection attempt: pending, then connected (``transport``) or failed (``exception``).

    ``add_done_callback(fn)`` calls ``fn(connector)`` from the loop once the
    attempt is over (at once, via ``call_soon``, if it already is).
    ``cancel()`` abandons a pending attempt.

    Over TLS (*tls* given) the attempt is done when the handshake is: the
    transport is then the plaintext ``TLSTransport``, and a failed handshake
    (``ssl.SSLCertVerificationError`` ...) is the exception. The protocol
    itself hears ``connection_made`` when the TCP connection is made and
    ``connection_lost`` with the same error (see ``tlsstreams.py``).
    """

    def __init__(self, reactor: TransportHost, factory: ProtocolFactory,
                 addresses: list[tuple[int, int, int, Any]], description: str,
                 timeout: Optional[float], nodelay: bool, local_addr: Any,
                 tls: Optional[dict[str, Any]] = None) -> None:
        self._reactor = reactor
        self._factory = factory
        self._addresses = addresses
        self._description = description
        self._nodelay = nodelay
        self._local_addr = local_addr
        self._sock: Optional[socket.socket] = None
        self._callbacks: list[Callable[["Connector"], Any]] = []
        self._timer: Any = None
        self._state = "pending"
        self._tls = tls  # TLSProtocol's keyword arguments, client side
        self._tls_protocol: Optional[TLSProtocol] = None  # while its handshake runs
        self.transport: Optional[Union[StreamTransport, TLSTransport]] = None
        self.protocol: Any = None
        self.exception: Optional[BaseException] = None
        if timeout is not None:
            self._timer = reactor.call_later(timeout, self._timed_out, timeout)
        reactor.registry.add_endpoint(self)

    def __repr__(self) -> str:
        return f"<Connector {self._description} {self._state}>"

    def done(self) -> bool:
        return self._state != "pending"

    def cancelled(self) -> bool:
        return self._state == "cancelled"

    def result(self) -> Union[StreamTransport, TLSTransport]:
        """The transport; raises the failure; RuntimeError while pending."""
        if self._state == "pending":
            raise RuntimeError("the connection attempt is still pending")
        if self._state == "cancelled":
            raise ConnectionAbortedError(f"connection to {self._description} was cancelled")
        if self.exception is not None:
            raise self.exception
        assert self.transport is not None
        return self.transport

    def add_done_callback(self, fn: Callable[["Connector"], Any]) -> None:
        if self.done():
            self._reactor.call_soon(fn, self)
        else:
            self._callbacks.append(fn)

    def _reactor_closing(self) -> None:
        self.cancel()

    def cancel(self) -> bool:
        if self.done():
            return False
        self._finish("cancelled", None)
        return True

    # -- the attempt -------------------------------------------------------

    def _try_next(self, last_error: Optional[BaseException] = None) -> None:
        while self._addresses:
            family, type_, proto, sockaddr = self._addresses.pop(0)
            try:
                sock = socket.socket(family, type_, proto)
            except OSError as exc:
                last_error = exc
                continue
            self._sock = sock
            try:
                sock.setblocking(False)
                if self._nodelay and family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._local_addr is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind(self._local_addr)
                err = sock.connect_ex(sockaddr)
            except OSError as exc:
                err, last_error = None, exc
            if err == 0:
                self._connected()
                return
            if err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN) and family != socket.AF_UNIX:
                try:
                    self._reactor.add_writer(sock, self._on_writable)
                    return
                except (OSError, ValueError) as exc:  # an fd the selector cannot watch
                    err, last_error = None, exc
            if err is not None:
                if family == socket.AF_UNIX and err == errno.EAGAIN:
                    last_error = BlockingIOError(err, f"the server's backlog is full: {sockaddr!r}")
                else:
                    last_error = OSError(err, f"{os.strerror(err)}: {_fmt(sockaddr)}")
                    last_error = _as_builtin_error(last_error)
            self._close_sock()
        self._finish("failed", last_error or OSError(f"no address to connect to for {self._description}"))

    def _on_writable(self) -> None:
        sock = self._sock
        assert sock is not None
        self._reactor.remove_writer(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            error = _as_builtin_error(OSError(err, f"{os.strerror(err)}: {self._description}"))
            self._close_sock()
            self._try_next(error)
            return
        self._connected()

    def _connected(self) -> None:
        sock, self._sock = self._sock, None
        assert sock is not None
        try:
            protocol = self._factory()
        except Exception as exc:
            sock.close()
            self._finish("failed", exc)
            return
        self.protocol = protocol
        if self._tls is None:
            self.transport = StreamTransport(self._reactor, sock, protocol)
            self._finish("connected", None)
            return
        from .tlsstreams import TLSProtocol
        tls = self._tls_protocol = TLSProtocol(self._reactor, protocol, server_side=False,
                                               on_handshake=self._handshake_done, **self._tls)
        StreamTransport(self._reactor, sock, tls)  # done when the handshake is (_handshake_done)

    def _handshake_done(self, exc: Optional[BaseException]) -> None:
        tls, self._tls_protocol = self._tls_protocol, None
        if self.done() or tls is None:
            return
        if exc is not None:
            self._finish("failed", exc)
        else:
            self.transport = tls.app_transport
            self._finish("connected", None)

    def _timed_out(self, timeout: float) -> None:
        self._timer = None
        if not self.done():
            self._finish("failed", ConnectTimeout(
                f"connecting to {self._description} timed out after {timeout:g}s"))

    def _close_sock(self) -> None:
        if self._sock is not None:
            self._reactor.remove_writer(self._sock)
            self._sock.close()
            self._sock = None

    def _finish(self, state: str, exc: Optional[BaseException]) -> None:
        self._close_sock()
        tls, self._tls_protocol = self._tls_protocol, None
        if tls is not None:  # cancelled or timed out during the TLS handshake
            tls._fail(exc or ConnectionAbortedError("the connection attempt was cancelled"), abort=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._state = state
        self.exception = exc
        self._reactor.registry.discard_endpoint(self)
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            self._reactor.call_soon(fn, self)


def _as_builtin_error(exc: OSError) -> OSError:
    """OSError(errno, msg) -> the matching subclass (ConnectionRefusedError, ...)."""
    return OSError(exc.errno, exc.strerror)  # OSError.__new__ picks the subclass


def _fmt(sockaddr: Any) -> str:
    if isinstance(sockaddr, tuple):
        host, port = sockaddr[:2]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return repr(sockaddr)


def tls_client_options(ssl: SSLArgument, server_hostname: Optional[str], ssl_handshake_timeout: float,
                       ssl_shutdown_timeout: float) -> Optional[dict[str, Any]]:
    """TLSProtocol's keyword arguments for ``ssl=``, checked now (not at connect time).

    ``ssl`` and ``tlsstreams`` are imported only when TLS is asked for.
    """
    if ssl is None or ssl is False:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        return None
    from .tlsstreams import check_timeouts, client_context
    context = client_context(ssl)
    assert context is not None
    check_timeouts(ssl_handshake_timeout, ssl_shutdown_timeout)
    if context.check_hostname and not server_hostname:
        raise ValueError("ssl with hostname checking needs server_hostname")
    return {"context": context, "server_hostname": server_hostname,
            "ssl_handshake_timeout": ssl_handshake_timeout, "ssl_shutdown_timeout": ssl_shutdown_timeout}


def connect_tcp(reactor: TransportHost, factory: ProtocolFactory, host: str, port: int, *,
                timeout: Optional[float] = None, local_addr: Any = None, family: int = 0,
                nodelay: bool = True, ssl: SSLArgument = None, server_hostname: Optional[str] = None,
                ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Connector:
    check_factory(factory)
    if ssl and server_hostname is None:
        server_hostname = host  # (asyncio's default: the host connected to)
    tls = tls_client_options(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    description = _fmt((host, port))
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        addresses: list[tuple[int, int, int, Any]] = [(f, t, p, sa) for f, t, p, _, sa in infos]
        error: Optional[BaseException] = None
    except socket.gaierror as exc:
        addresses, error = [], exc
    connector = Connector(reactor, factory, addresses, description, timeout, nodelay, local_addr, tls)
    connector._try_next(error)
    return connector


def connect_unix(reactor: TransportHost, factory: ProtocolFactory, path: PathLike, *,
                 timeout: Optional[float] = None, ssl: SSLArgument = None,
                 server_hostname: Optional[str] = None,
                 ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Connector:
    check_factory(factory)
    tls = tls_client_options(ssl, server_hostname, ssl_handshake_timeout, ssl_shutdown_timeout)
    addresses: list[tuple[int, int, int, Any]] = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, os.fspath(path))]
    connector = Connector(reactor, factory, addresses, repr(os.fspath(path)), timeout, False, None, tls)
    connector._try_next()
    return connector
