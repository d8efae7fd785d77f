"""Listeners: listening sockets that accept TCP and Unix connections into transports.

Theory of operation
-------------------
**Listening.** ``listen_tcp`` binds one socket per address family the host
resolves to (``host=None``: every family, IPv6 sockets set ``IPV6_V6ONLY`` so
IPv4 and IPv6 can share the port) and registers ``Listener._on_acceptable``
as each socket's reader. A readable listening socket means "connections are
waiting"; we accept at most ``ACCEPT_BATCH`` of them per event, then return
to the loop so that established connections (and timers) get their turn.

**Running out of file descriptors.** When ``accept()`` fails with EMFILE or
ENFILE, the waiting connection stays in the kernel's queue, so the listener
stays readable, and a level-triggered selector calls us straight back: the
classic 100% CPU spin. Closing the listener would end the service for good.
Instead we use the reserved-fd trick (libuv's ``uv__emfile_trick``, Twisted's
``_reservedFD``): each listener keeps one spare descriptor open on
``/dev/null``. On EMFILE it closes the spare, accepts and immediately closes
the waiting connections (the peers see their connection closed, promptly,
instead of hanging), and re-opens the spare. If even that fails (ENFILE: the
whole system is out), the listener stops watching its socket for
``ACCEPT_RETRY_DELAY`` seconds. Either way the loop keeps serving existing
connections, the listener survives, and the event is logged once per burst
(a burst ends at the next successful accept). ``Listener.accepts_shed``
counts the peers turned away.

**Connection limit.** With ``max_connections=N``, the listener stops
accepting while N of its connections are open and starts again when one
closes. Peers that arrive meanwhile wait in the kernel's listen backlog (and
beyond it, the kernel refuses or drops them); none is accepted only to be
closed.

**Descriptors a selector cannot watch.** Under ``select()``, a descriptor
numbered ``FD_SETSIZE`` (1024) or more cannot be registered
(``loop.FD_SETSIZE``). Such a connection is closed as soon as it is
accepted and counted as shed, like an EMFILE one: the listener and every
older connection carry on. Use the poll or epoll selector for more.

**Setup.** ``transport_setup(transport)`` runs before the protocol's
``connection_made`` (to set buffer limits, say). If it raises, the error is
reported and the connection is closed before its protocol hears of it: a
connection is never served without the limits meant for it.

Connecting is ``connectors.py``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from .registry import TransportHost
from .streams import (DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, PathLike, ProtocolFactory,
                      StreamTransport, check_factory)

if TYPE_CHECKING:  # pragma: no cover
    import ssl as _ssl

__all__ = ["Listener", "listen_tcp", "listen_unix", "ACCEPT_BATCH", "ACCEPT_RETRY_DELAY",
           "DEFAULT_BACKLOG"]

logger = logging.getLogger("reactor")

DEFAULT_BACKLOG = 100  # asyncio's default
# Accepts per readiness event: enough to drain a burst quickly, few enough
# that a connection storm cannot starve established connections.
ACCEPT_BATCH = 64
# asyncio's constant: how long to stop accepting when even shedding fails.
ACCEPT_RETRY_DELAY = 1.0
_FD_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# Errors that concern one waiting peer, not the listener: the peer gave up
# while queued (ECONNABORTED, as ConnectionAbortedError), or a firewall
# refused it (EPERM, as PermissionError). Skip the peer and go on.
_SKIP_PEER = (ConnectionAbortedError, PermissionError)



def _reserve_fd() -> Optional[int]:
    try:
        return os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


class Listener:
    """Listening sockets that turn accepted connections into transports.

    ``address`` is the first socket's address (with the real port when 0 was
    asked for); ``sockets`` all of them. ``close()`` stops accepting and
    closes the listening sockets; connections already accepted live on
    (``close_connections()`` closes them too).
    """

    def __init__(
        self,
        reactor: TransportHost,
        sockets: Sequence[socket.socket],
        factory: ProtocolFactory,
        *,
        max_connections: Optional[int] = None,
        nodelay: bool = True,
        unix_path: Optional[Any] = None,
        transport_setup: Optional[Callable[[Any], None]] = None,
        tls: bool = False,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, got {max_connections!r}")
        self._reactor = reactor
        self._sockets = tuple(sockets)
        self._factory = factory
        self._max_connections = max_connections
        self._nodelay = nodelay
        self._unix_path: Any = unix_path
        self._unix_inode: Optional[tuple[int, int]] = None
        self._transport_setup = transport_setup
        self._tls = tls  # factory() makes TLSProtocols (see tls_server_factory)
        self._open = 0  # connections accepted here and not yet lost
        self.accepts_shed = 0
        if unix_path is not None and not _is_abstract(unix_path):
            st = os.stat(unix_path)  # before anything here needs closing
            self._unix_inode = (st.st_dev, st.st_ino)
        self._reserve = _reserve_fd()
        self._fd_burst = False  # in an EMFILE burst (logged already)
        self._accepting = False
        self._closed = False
        self._retry_timer: Any = None
        self._burst_reason = ""  # why peers are being shed (logged once per burst)
        reactor.registry.add_endpoint(self)
        self._start_accepting()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "accepting" if self._accepting else "paused"
        return f"<Listener {self.address!r} {state} connections={self._open}>"

    @property
    def address(self) -> Any:
        return self._sockets[0].getsockname() if not self._closed else None

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return self._sockets

    @property
    def connections(self) -> set[StreamTransport]:
        """The connections accepted here and still open: a new set at each call."""
        return self._reactor.registry.owned_by(self)

    def is_serving(self) -> bool:
        return not self._closed

    def close(self) -> None:
        """Stop accepting and close the listening sockets. Idempotent."""
        if self._closed:
            return
        self._stop_accepting()
        self._closed = True
        self._reactor.registry.discard_endpoint(self)
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        for sock in self._sockets:
            sock.close()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        if self._unix_inode is not None:
            # Remove the socket file only if it is still ours.
            try:
                st = os.stat(self._unix_path)  # (set whenever _unix_inode is)
                if (st.st_dev, st.st_ino) == self._unix_inode:
                    os.unlink(self._unix_path)
            except OSError:
                pass

    def _reactor_closing(self) -> None:
        self.close()

    def close_connections(self) -> None:
        """close() every connection this listener accepted (each flushes first)."""
        for transport in list(self.connections):
            transport.close()

    # -- accepting ---------------------------------------------------------

    def _start_accepting(self) -> None:
        if self._accepting or self._closed:
            return
        self._accepting = True
        for sock in self._sockets:
            self._reactor.add_reader(sock, self._on_acceptable, sock)

    def _stop_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        for sock in self._sockets:
            self._reactor.remove_reader(sock)

    def _on_acceptable(self, lsock: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._max_connections is not None and self._open >= self._max_connections:
                self._stop_accepting()  # _detach() starts again
                return
            try:
                conn, addr = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except _SKIP_PEER:
                continue
            except OSError as exc:
                if exc.errno in _FD_EXHAUSTED:
                    self._out_of_descriptors(lsock, exc)
                else:
                    self._reactor.call_exception_handler({
                        "message": f"accept() failed on {lsock.getsockname()!r}",
                        "exception": exc, "listener": self})
                return
            limit = self._reactor.fd_limit
            if limit is not None and conn.fileno() >= limit:
                conn.close()  # the selector could never watch it
                self._shed(1, f"descriptor {limit} or above cannot be watched by "
                              f"{type(self._reactor).__name__}'s select(); use poll or epoll")
                continue
            self._fd_burst = False
            if type(addr) is tuple and type(addr[0]) is str:
                # One string per peer host, not per connection (most come
                # from few hosts): ~60 bytes less for each idle connection.
                addr = (sys.intern(addr[0]), *addr[1:])
            self._new_connection(conn, addr)
            if self._closed:  # a protocol closed us from connection_made
                return

    def _new_connection(self, conn: socket.socket, addr: Any) -> None:
        try:
            conn.setblocking(False)
            if self._nodelay and conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            protocol = self._factory()
        except Exception as exc:
            conn.close()
            self._reactor.call_exception_handler({
                "message": "the protocol factory raised; connection closed",
                "exception": exc, "listener": self})
            return
        # accept() returned the peer's address: no getpeername() needed.
        transport = StreamTransport(self._reactor, conn, protocol, server=self, peername=addr)
        self._open += 1
        if self._transport_setup is not None:
            try:
                # Over TLS the application's transport is the plaintext one.
                self._transport_setup(protocol.app_transport if self._tls else transport)  # type: ignore[union-attr]
            except Exception as exc:
                self._reactor.call_exception_handler({
                    "message": "transport_setup() raised; connection closed before it was served",
                    "exception": exc, "listener": self, "transport": transport})
                transport._discard(exc)

    def _detach(self, transport: StreamTransport) -> None:
        self._open -= 1
        if (self._max_connections is not None and not self._accepting and self._retry_timer is None
                and self._open < self._max_connections):
            self._start_accepting()

    def _shed(self, n: int, reason: str) -> None:
        """Count *n* peers turned away; log once per burst (until the next good accept)."""
        if not self._fd_burst:
            self._fd_burst = True
            logger.warning("listener %r: %s; turning away peers (logged once per burst)",
                           self.address, reason)
        self.accepts_shed += n
        self._reactor.registry.accepts_shed += n

    def _out_of_descriptors(self, lsock: socket.socket, exc: OSError) -> None:
        self._shed(0, f"accept() failed: {exc}")
        shed = 0
        # Linux's accept() takes a descriptor before it looks at the queue, so
        # EMFILE also comes when nobody is waiting (the accept after the one
        # that took the last descriptor). Then there is nothing to shed and
        # the listener is not readable: no spin, and no backoff is due.
        drained = False
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
            try:
                while shed < ACCEPT_BATCH:
                    fd, _ = lsock._accept()  # type: ignore[attr-defined]  # a bare fd: no object to finalise
                    os.close(fd)
                    shed += 1
            except (BlockingIOError, InterruptedError):
                drained = True  # every waiting peer shed (maybe none was waiting)
            except OSError:
                pass  # the backoff below, if nobody could be shed
            finally:
                self._reserve = _reserve_fd()
        self._shed(shed, "")
        if shed == 0 and not drained:
            # The trick did not help (no spare fd, or the whole system is
            # out): stop watching the listener for a while instead of spinning.
            self._stop_accepting()
            self._retry_timer = self._reactor.call_later(ACCEPT_RETRY_DELAY, self._retry_accepting)

    def _retry_accepting(self) -> None:
        self._retry_timer = None
        self._start_accepting()


def _is_abstract(path: Any) -> bool:
    p = os.fspath(path)
    return p[:1] in ("\0", b"\0")


def _bind_tcp(host: Optional[str], port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    seen: set[tuple[Any, ...]] = set()
    socks: list[socket.socket] = []
    bound_port: Optional[int] = None
    try:
        for family, type_, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and bound_port is not None:
                # One port for every family, not one random port each.
                sockaddr = (sockaddr[0], bound_port, *sockaddr[2:])
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                if host is None and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    socks.pop().close()  # this family is not configured here
                    continue
                raise OSError(exc.errno, f"cannot listen on {sockaddr!r}: {exc.strerror}") from None
            sock.listen(backlog)
            sock.setblocking(False)
            bound_port = sock.getsockname()[1]
        if not socks:
            raise OSError(errno.EADDRNOTAVAIL, f"no address to listen on for host={host!r}")
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def tls_server_factory(reactor: TransportHost, factory: ProtocolFactory, ssl_context: Any,
                       ssl_handshake_timeout: float, ssl_shutdown_timeout: float) -> ProtocolFactory:
    """*factory*, or with ``ssl=context`` each of its protocols behind a server-side TLS layer.

    ``ssl`` and ``tlsstreams`` are imported only here, when TLS is asked for:
    a plaintext server does not pay ~4 MiB of RSS for them.
    """
    check_factory(factory)
    if ssl_context is None:
        return factory
    import ssl

    from .tlsstreams import TLSProtocol, check_timeouts
    if not isinstance(ssl_context, ssl.SSLContext):
        raise TypeError(f"ssl must be an ssl.SSLContext (server side), not {ssl_context!r}")
    check_timeouts(ssl_handshake_timeout, ssl_shutdown_timeout)
    return lambda: TLSProtocol(reactor, factory(), ssl_context, server_side=True,
                               ssl_handshake_timeout=ssl_handshake_timeout,
                               ssl_shutdown_timeout=ssl_shutdown_timeout)


def listen_tcp(reactor: TransportHost, factory: ProtocolFactory, host: Optional[str] = None,
               port: int = 0, *, backlog: int = DEFAULT_BACKLOG, reuse_port: bool = False,
               max_connections: Optional[int] = None, nodelay: bool = True,
               transport_setup: Optional[Callable[[Any], None]] = None,
               ssl: Optional["_ssl.SSLContext"] = None,
               ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
               ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Listener:
    factory = tls_server_factory(reactor, factory, ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    socks = _bind_tcp(host, port, backlog, reuse_port)
    try:
        return Listener(reactor, socks, factory, max_connections=max_connections, nodelay=nodelay,
                        transport_setup=transport_setup, tls=ssl is not None)
    except BaseException:
        for sock in socks:
            sock.close()
        raise


def listen_unix(reactor: TransportHost, factory: ProtocolFactory, path: PathLike, *,
                backlog: int = DEFAULT_BACKLOG, max_connections: Optional[int] = None,
                transport_setup: Optional[Callable[[Any], None]] = None,
                ssl: Optional["_ssl.SSLContext"] = None,
                ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Listener:
    factory = tls_server_factory(reactor, factory, ssl, ssl_handshake_timeout, ssl_shutdown_timeout)
    if not _is_abstract(path):
        # A socket file left by a dead server would make bind() fail; remove
        # it (asyncio does the same). Anything that is not a socket is kept.
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        except FileNotFoundError:
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        sock.listen(backlog)
        sock.setblocking(False)
        return Listener(reactor, [sock], factory, max_connections=max_connections,
                        unix_path=path, transport_setup=transport_setup, tls=ssl is not None)
    except BaseException:
        sock.close()
        raise
