"""``Reactor``: the loop plus its network front doors.

``loop.BaseReactor`` knows only file descriptors, timers, threads, signals
and the registry its transports sign into. This class adds one thin method
per kind of endpoint, each handing the real work to the module of its
layer: ``listeners.py`` (servers), ``connectors.py`` (clients),
``datagrams.py`` (UDP). So the loop stays ignorant of networking, and a
reader can find the code for a front door by its name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from . import connectors, datagrams, listeners
from .connectors import Connector
from .datagrams import DatagramTransport
from .listeners import Listener
from .loop import BaseReactor
from .protocols import DatagramProtocol
from .streams import DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, PathLike, ProtocolFactory, StreamTransport

if TYPE_CHECKING:  # pragma: no cover  (ssl is imported only when TLS is used)
    import ssl as _ssl

    from .tlsstreams import SSLArgument, TLSTransport

__all__ = ["Reactor"]


class Reactor(BaseReactor):
    """The event loop, with TCP and Unix servers and clients, and UDP endpoints.

    See ``BaseReactor`` for scheduling, I/O registration and lifecycle:
    ``close()`` there closes every listener and pending connection attempt
    and ends every connection still open (each protocol that got
    ``connection_made`` gets its one ``connection_lost``), so closing the
    reactor releases every socket it opened.
    """

    def listen_tcp(self, factory: ProtocolFactory, host: Optional[str] = None, port: int = 0, *,
                   backlog: int = listeners.DEFAULT_BACKLOG, reuse_port: bool = False,
                   max_connections: Optional[int] = None, nodelay: bool = True,
                   transport_setup: Optional[Callable[[Any], None]] = None,
                   ssl: Optional[_ssl.SSLContext] = None,
                   ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                   ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Listener:
        """Serve ``factory()`` protocols on TCP; ``host=None`` listens on every family.

        *port* 0 picks a free port (the same one for every family); read it
        from ``listener.address``. *max_connections*: while that many
        connections are open, new peers wait in the kernel's backlog.
        *transport_setup* is called with each new transport before its
        protocol's ``connection_made`` (e.g. to set buffer limits).
        TCP_NODELAY is set on every connection unless *nodelay* is False.
        *ssl*: a server ``ssl.SSLContext`` serves TLS (see ``tlsstreams.py``);
        protocols then get a ``TLSTransport``, as does *transport_setup*.
        """
        self._check_closed()
        return listeners.listen_tcp(self, factory, host, port, backlog=backlog, reuse_port=reuse_port,
                                    max_connections=max_connections, nodelay=nodelay,
                                    transport_setup=transport_setup, ssl=ssl,
                                    ssl_handshake_timeout=ssl_handshake_timeout,
                                    ssl_shutdown_timeout=ssl_shutdown_timeout)

    def connect_tcp(self, factory: ProtocolFactory, host: str, port: int, *,
                    timeout: Optional[float] = None, local_addr: Any = None, family: int = 0,
                    nodelay: bool = True, ssl: SSLArgument = None, server_hostname: Optional[str] = None,
                    ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                    ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Connector:
        """Start connecting to *host*:*port*; returns a ``Connector`` at once.

        The outcome arrives through ``connector.add_done_callback(fn)``:
        ``connector.transport`` on success, ``connector.exception`` on failure
        (``ConnectionRefusedError``, ``OSError`` for an unreachable network,
        ``ConnectTimeout`` after *timeout* seconds, ``socket.gaierror``).

        *ssl*: ``True`` (``ssl.create_default_context()``: certificates and
        the hostname verified) or a client ``ssl.SSLContext``; the attempt is
        then done when the TLS handshake is. *server_hostname* defaults to
        *host*.
        """
        self._check_closed()
        return connectors.connect_tcp(self, factory, host, port, timeout=timeout,
                                      local_addr=local_addr, family=family, nodelay=nodelay, ssl=ssl,
                                      server_hostname=server_hostname,
                                      ssl_handshake_timeout=ssl_handshake_timeout,
                                      ssl_shutdown_timeout=ssl_shutdown_timeout)

    def listen_unix(self, factory: ProtocolFactory, path: PathLike, *,
                    backlog: int = listeners.DEFAULT_BACKLOG, max_connections: Optional[int] = None,
                    transport_setup: Optional[Callable[[Any], None]] = None,
                    ssl: Optional[_ssl.SSLContext] = None,
                    ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                    ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Listener:
        """Serve on a Unix socket at *path* (a stale socket file there is replaced); *ssl* as listen_tcp."""
        self._check_closed()
        return listeners.listen_unix(self, factory, path, backlog=backlog,
                                     max_connections=max_connections, transport_setup=transport_setup,
                                     ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout,
                                     ssl_shutdown_timeout=ssl_shutdown_timeout)

    def connect_unix(self, factory: ProtocolFactory, path: PathLike, *,
                     timeout: Optional[float] = None, ssl: SSLArgument = None,
                     server_hostname: Optional[str] = None,
                     ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                     ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Connector:
        """Start connecting to the Unix socket at *path*; returns a ``Connector``.

        With *ssl*, give *server_hostname* (the name in the server's
        certificate), or a context that does not check hostnames.
        """
        self._check_closed()
        return connectors.connect_unix(self, factory, path, timeout=timeout, ssl=ssl,
                                       server_hostname=server_hostname,
                                       ssl_handshake_timeout=ssl_handshake_timeout,
                                       ssl_shutdown_timeout=ssl_shutdown_timeout)

    def start_tls(self, transport: StreamTransport, protocol: Any, context: _ssl.SSLContext, *,
                  server_side: bool = False, server_hostname: Optional[str] = None,
                  ssl_handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                  ssl_shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
                  initial_data: bytes = b"") -> TLSTransport:
        """Upgrade an open connection to TLS (STARTTLS); returns the plaintext transport at once.

        *protocol* gets ``connection_made(tls_transport)`` from the loop, and
        data once the handshake is done. *initial_data*: bytes already read
        past the STARTTLS command (what the old protocol's framer holds):
        they are fed to TLS first. See ``tlsstreams.start_tls``.
        """
        self._check_closed()
        from . import tlsstreams
        return tlsstreams.start_tls(self, transport, protocol, context, server_side=server_side,
                                    server_hostname=server_hostname,
                                    ssl_handshake_timeout=ssl_handshake_timeout,
                                    ssl_shutdown_timeout=ssl_shutdown_timeout, initial_data=initial_data)

    def open_udp(self, factory: Callable[[], DatagramProtocol], local_addr: Any = None, remote_addr: Any = None, *,
                 family: int = 0, reuse_port: bool = False, allow_broadcast: bool = False,
                 max_datagram_size: Optional[int] = None,
                 max_queue_size: int = datagrams.DEFAULT_MAX_QUEUE_SIZE) -> DatagramTransport:
        """Open a UDP endpoint for a ``DatagramProtocol`` from *factory*; returns its transport.

        *local_addr* ``(host, port)`` binds (port 0: any free port);
        *remote_addr* connects, fixing the peer (``sendto(data)`` then needs
        no address, replies from elsewhere are filtered by the kernel, and
        ICMP errors reach ``error_received``). *max_datagram_size* (default:
        the largest the family carries): larger incoming datagrams are
        reported as ``DatagramTruncated``. ``sendto`` takes IP literals
        only (resolving a name would block the loop); a name raises
        ``ValueError``.
        *max_queue_size*: payload bytes the send queue may hold; beyond it
        datagrams are dropped and counted in ``transport.datagrams_dropped``.
        """
        self._check_closed()
        return datagrams.open_udp(self, factory, local_addr, remote_addr, family=family,
                                  reuse_port=reuse_port, allow_broadcast=allow_broadcast,
                                  max_datagram_size=max_datagram_size,
                                  max_queue_size=max_queue_size)
