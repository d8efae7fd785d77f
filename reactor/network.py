"""``Reactor``: the core loop plus its network front doors.

``loop.BaseReactor`` knows only file descriptors, timers, threads and
signals. This class adds one thin method per kind of endpoint, each handing
the real work to the module of its layer (``streams.py`` for TCP and Unix);
so the loop stays ignorant of networking, and a reader can find the code for
a front door by its name.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import replace
from typing import Any, Callable, Optional

from . import datagrams, streams
from .datagrams import DatagramTransport
from .instruments import ReactorStats
from .loop import BaseReactor
from .streams import Connector, Listener, PathLike
from .transports import StreamTransport

__all__ = ["Reactor"]

logger = logging.getLogger("reactor")

ProtocolFactory = Callable[[], Any]


class Reactor(BaseReactor):
    """The event loop, with TCP and Unix servers and clients, and UDP endpoints.

    See ``BaseReactor`` for scheduling, I/O registration and lifecycle.

    ``close()`` also closes every listener and pending connection attempt
    and aborts every connection still open (each protocol still gets its one
    ``connection_lost``), so closing the reactor releases every socket it
    opened.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: set[Any] = set()  # stream and datagram transports
        self._endpoints: set[Any] = set()  # listeners and pending connectors
        # Totals of transports already closed, for stats().
        self._closed_bytes_received = 0
        self._closed_bytes_sent = 0
        self._accepts_shed = 0
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        if self._running:
            raise RuntimeError("cannot close a running reactor; call stop() first")
        if not self._closed:
            if self._debug:
                for transport in self._connections:
                    logger.warning("unclosed transport %r at reactor close", transport)
                    warnings.warn(f"unclosed transport {transport!r} at reactor close",
                                  ResourceWarning, source=transport)
            for endpoint in list(self._endpoints):
                endpoint.close() if isinstance(endpoint, Listener) else endpoint.cancel()
            for transport in list(self._connections):
                transport._shutdown()
        super().close()

    def connections(self) -> list[Any]:
        """Every transport (stream or datagram) open on this reactor."""
        return list(self._connections)

    # Called by the transports and endpoints of this reactor.
    def stats(self) -> ReactorStats:
        """The loop's figures plus connections, bytes and shed accepts."""
        conns = self._connections
        return replace(
            super().stats(),
            connections_open=len(conns),
            bytes_received=self._closed_bytes_received + sum(t.bytes_received for t in conns),
            bytes_sent=self._closed_bytes_sent + sum(t.bytes_sent for t in conns),
            bytes_buffered=sum(t.get_write_buffer_size() for t in conns),
            accepts_shed=self._accepts_shed)

    def _connection_opened(self, transport: Any) -> None:
        self._connections.add(transport)
        instruments = self._instruments
        if instruments is not None and instruments.connection_opened is not None:
            instruments.connection_opened(transport)

    def _connection_closed(self, transport: Any, exc: Optional[BaseException] = None) -> None:
        self._connections.discard(transport)
        self._closed_bytes_received += transport.bytes_received
        self._closed_bytes_sent += transport.bytes_sent
        instruments = self._instruments
        if instruments is not None and instruments.connection_closed is not None:
            instruments.connection_closed(transport, exc)

    def listen_tcp(self, factory: ProtocolFactory, host: Optional[str] = None, port: int = 0, *,
                   backlog: int = streams.DEFAULT_BACKLOG, reuse_port: bool = False,
                   max_connections: Optional[int] = None, nodelay: bool = True,
                   transport_setup: Optional[Callable[[StreamTransport], None]] = None) -> Listener:
        """Serve ``factory()`` protocols on TCP; ``host=None`` listens on every family.

        *port* 0 picks a free port (the same one for every family); read it
        from ``listener.address``. *max_connections*: while that many
        connections are open, new peers wait in the kernel's backlog.
        *transport_setup* is called with each new transport before its
        protocol's ``connection_made`` (e.g. to set buffer limits).
        TCP_NODELAY is set on every connection unless *nodelay* is False.
        """
        self._check_closed()
        return streams.listen_tcp(self, factory, host, port, backlog=backlog, reuse_port=reuse_port,
                                  max_connections=max_connections, nodelay=nodelay,
                                  transport_setup=transport_setup)

    def connect_tcp(self, factory: ProtocolFactory, host: str, port: int, *,
                    timeout: Optional[float] = None, local_addr: Any = None, family: int = 0,
                    nodelay: bool = True) -> Connector:
        """Start connecting to *host*:*port*; returns a ``Connector`` at once.

        The outcome arrives through ``connector.add_done_callback(fn)``:
        ``connector.transport`` on success, ``connector.exception`` on failure
        (``ConnectionRefusedError``, ``OSError`` for an unreachable network,
        ``ConnectTimeout`` after *timeout* seconds, ``socket.gaierror``).
        """
        self._check_closed()
        return streams.connect_tcp(self, factory, host, port, timeout=timeout,
                                   local_addr=local_addr, family=family, nodelay=nodelay)

    def listen_unix(self, factory: ProtocolFactory, path: PathLike, *,
                    backlog: int = streams.DEFAULT_BACKLOG, max_connections: Optional[int] = None,
                    transport_setup: Optional[Callable[[StreamTransport], None]] = None) -> Listener:
        """Serve on a Unix socket at *path* (a stale socket file there is replaced)."""
        self._check_closed()
        return streams.listen_unix(self, factory, path, backlog=backlog,
                                   max_connections=max_connections, transport_setup=transport_setup)

    def connect_unix(self, factory: ProtocolFactory, path: PathLike, *,
                     timeout: Optional[float] = None) -> Connector:
        """Start connecting to the Unix socket at *path*; returns a ``Connector``."""
        self._check_closed()
        return streams.connect_unix(self, factory, path, timeout=timeout)

    def open_udp(self, factory: ProtocolFactory, local_addr: Any = None, remote_addr: Any = None, *,
                 family: int = 0, reuse_port: bool = False, allow_broadcast: bool = False,
                 max_datagram_size: Optional[int] = None,
                 max_queue_size: int = datagrams.DEFAULT_MAX_QUEUE_SIZE) -> DatagramTransport:
        """Open a UDP endpoint for a ``DatagramProtocol`` from *factory*; returns its transport.

        *local_addr* ``(host, port)`` binds (port 0: any free port);
        *remote_addr* connects, fixing the peer (``sendto(data)`` then needs
        no address, replies from elsewhere are filtered by the kernel, and
        ICMP errors reach ``error_received``). *max_datagram_size* (default:
        the largest the family carries): larger incoming datagrams are
        reported as ``DatagramTruncated``.
        *max_queue_size*: payload bytes the send queue may hold; beyond it
        datagrams are dropped and counted in ``transport.datagrams_dropped``.
        """
        self._check_closed()
        return datagrams.open_udp(self, factory, local_addr, remote_addr, family=family,
                                  reuse_port=reuse_port, allow_broadcast=allow_broadcast,
                                  max_datagram_size=max_datagram_size,
                                  max_queue_size=max_queue_size)
