"""Datagram endpoints: UDP sockets with whole-datagram queues and fair reads.

Theory of operation
-------------------
A ``DatagramTransport`` owns one UDP socket. Unlike a stream, a datagram is
an indivisible unit: it is sent whole or not at all, and never merged with
another. So the send queue holds datagrams, not bytes.

Sending. ``sendto(data, addr)`` tries ``sock.sendto`` at once. If the kernel
says "not now" (``EAGAIN``, or ``ENOBUFS`` when an interface queue is full),
the datagram is queued, whole, and the writer is registered; on writability
the queue is flushed in order, one ``sendto`` per datagram, until the
kernel pushes back again. Other errors (``EMSGSIZE``, say) go to
``protocol.error_received(exc)`` and concern only that datagram: the
endpoint lives on. An ICMP error on a connected socket belongs to an earlier
datagram: it is reported, and the send that revealed it is tried again.
Peers get this wrong in known ways: Twisted raises on ``EAGAIN`` instead of
queueing, and asyncio's byte count drifts (CPython gh-135444) because it
counts a header for some datagrams and not for others. Here the queue counts exactly the payload
bytes and the datagrams it holds, and both return to zero when it drains.

The queue is bounded. Past the high-water mark (64 KiB of payload) the
protocol gets ``pause_writing()``; at the hard bound (``max_queue_size``,
1 MiB by default) a further datagram is **dropped and counted**
(``datagrams_dropped``), never queued: UDP is allowed to lose datagrams, an
event loop is not allowed to run out of memory, and raising from
``sendto`` would turn ordinary congestion into an exception in every caller.
``resume_writing()`` follows at the low-water mark.

Receiving. The reader reads at most ``MAX_DATAGRAMS_PER_EVENT`` datagrams per
readiness event, so a flood on one UDP socket cannot starve the TCP
connections on the same loop: after the batch, everyone else gets a turn.
Each read uses ``recvmsg_into`` a reused buffer one byte larger than the largest
datagram accepted (by default the largest the family carries: 65,507 bytes
of UDP payload over IPv4, 65,527 over IPv6), and
``MSG_TRUNC`` in the returned flags reveals a datagram that did not fit: it
is reported to ``error_received`` as ``DatagramTruncated``, never delivered
cut.

Addresses. ``sendto`` takes IP literals only: a host name would make every
``sendto`` resolve it (``sock.sendto`` calls ``getaddrinfo`` inside),
blocking the loop on /etc/hosts or on DNS for each datagram. A name is
refused with a ``ValueError`` that says to resolve it first
(``socket.getaddrinfo`` once, at start, or off the loop). ``open_udp``
resolves its own addresses once, as it creates the socket.

Lifecycle, reading on and off, water marks: ``transports.SocketTransport``.

Errors in callbacks. An exception from ``datagram_received`` or
``error_received`` concerns one datagram: it goes to the exception handler
and the endpoint reads on, so one malformed datagram from one peer cannot
close a server for all of them (asyncio behaves the same). An exception from
``connection_made``, ``pause_writing`` or ``resume_writing`` leaves the
endpoint in an unknown state: it is reported and the endpoint is closed.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections import deque
from typing import Any, Callable, Optional

from .buffers import BytesLike
from .errors import DatagramTruncated
from .protocols import DatagramProtocol
from .registry import TransportHost
from .transports import SocketTransport, State

__all__ = ["DatagramTransport", "open_udp", "MAX_DATAGRAMS_PER_EVENT", "MAX_UDP_PAYLOAD",
           "MAX_UDP6_PAYLOAD", "DEFAULT_MAX_QUEUE_SIZE"]

logger = logging.getLogger("reactor")

_CLOSING, _LOST = State.CLOSING.value, State.LOST.value

# The largest UDP payload over IPv4: 65,535 - 20 (IP header) - 8 (UDP header).
MAX_UDP_PAYLOAD = 65_507
# Over IPv6 the 16-bit payload length excludes the IPv6 header itself, so
# only the UDP header comes off: 65,535 - 8 (jumbograms aside, RFC 2675).
MAX_UDP6_PAYLOAD = 65_527
# Datagrams read per readiness event: a batch amortises the select() call,
# the bound keeps a flooded socket from monopolising the loop.
MAX_DATAGRAMS_PER_EVENT = 32
DEFAULT_MAX_QUEUE_SIZE = 1024 * 1024
_QUEUE_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR)
_INET_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class DatagramTransport(SocketTransport):
    """A UDP socket driven by the reactor, with asyncio's DatagramTransport API."""

    __slots__ = ("_remote", "_bufsize", "_recv_view", "_recv_views", "_queue", "_queued_bytes",
                 "_max_queue", "_checked_addr", "datagrams_received", "datagrams_sent",
                 "datagrams_dropped")

    _protocol: Any

    def __init__(self, reactor: TransportHost, sock: socket.socket, protocol: DatagramProtocol, *,
                 remote: Any = None, max_datagram_size: Optional[int] = None,
                 max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE) -> None:
        if max_datagram_size is None:  # the largest datagram the family can carry
            max_datagram_size = MAX_UDP6_PAYLOAD if sock.family == socket.AF_INET6 else MAX_UDP_PAYLOAD
        self._remote = remote  # the peer's sockaddr when connected
        self._bufsize = max_datagram_size + 1  # one spare byte: see MSG_TRUNC
        self._recv_view = memoryview(bytearray(self._bufsize))
        self._recv_views = [self._recv_view]
        self._queue: deque[tuple[bytes, Any]] = deque()
        self._queued_bytes = 0
        self._max_queue = max_queue_size
        self._checked_addr: Any = None  # the last address sendto() found to be a literal
        # Statistics.
        self.datagrams_received = 0
        self.datagrams_sent = 0
        self.datagrams_dropped = 0
        super().__init__(reactor, sock, protocol, peername=remote,
                         extra={"sockname": sock.getsockname()})

    def _describe(self) -> str:
        return f"queued={len(self._queue)}/{self._queued_bytes}B"

    # -- the lifecycle's hooks -------------------------------------------------

    def _reader(self) -> Callable[[], None]:
        return self._on_readable

    def _clear_write_buffer(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0

    def _has_pending_writes(self) -> bool:
        return bool(self._queue)  # (an empty datagram is queued but counts 0 bytes)

    # -- sending -----------------------------------------------------------

    def sendto(self, data: BytesLike, addr: Any = None) -> None:
        """Send one datagram, now or queued whole; never blocks, never splits.

        On a connected endpoint *addr* must be None or the remote address;
        otherwise an IP literal (see the module docstring on names).
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
        if self._remote is not None:
            if addr is not None and not _same_address(addr, self._remote):
                raise ValueError(f"this endpoint is connected to {self._remote!r}; "
                                 f"cannot send to {addr!r}")
            addr = None
        elif addr is None:
            raise ValueError("sendto() needs an address on an unconnected endpoint")
        elif addr != self._checked_addr:
            _check_literal(addr, self._sock.family)
            self._checked_addr = addr
        if self._state >= _CLOSING:
            return  # like a datagram lost in the network; close() was explicit
        if not self._queue:
            try:
                self._send(data, addr)
                return
            except OSError as exc:
                if exc.errno not in _QUEUE_ERRNOS:
                    self._error_received(exc)
                    return
            self._reactor.add_writer(self._sock, self._on_writable)
        self._enqueue(bytes(data), addr)

    def _send(self, data: BytesLike, addr: Any) -> None:
        """One sendto; OSError if the kernel refused it. Returns early if the
        protocol aborted us from ``error_received``."""
        if addr is None:
            try:
                n = self._sock.send(data)
            except ConnectionRefusedError as exc:
                # Discussion: on a connected socket, the ICMP "port
                # unreachable" of an *earlier* datagram is reported by the
                # next send(), which then sends nothing; reporting it clears
                # it. This datagram deserves its own attempt, or a peer that
                # comes back would silently miss it.
                self._error_received(exc)
                if self._state >= _LOST:
                    return
                n = self._sock.send(data)
        else:
            n = self._sock.sendto(data, addr)
        self.datagrams_sent += 1
        self.bytes_sent += n
        reactor = self._reactor
        if reactor.watch_io:
            reactor.observe_io(self, False, data, n)

    def _enqueue(self, data: bytes, addr: Any) -> None:
        if self._queued_bytes + len(data) > self._max_queue:
            self.datagrams_dropped += 1
            if self.datagrams_dropped == 1 or self.datagrams_dropped % 1000 == 0:
                logger.warning("%r: send queue full (%d bytes); %d datagram(s) dropped so far",
                               self, self._queued_bytes, self.datagrams_dropped)
            if not self._queue:  # nothing to flush after all
                self._reactor.remove_writer(self._sock)
            return
        self._queue.append((data, addr))
        self._queued_bytes += len(data)
        self._maybe_pause_protocol()

    def _on_writable(self) -> None:
        queue = self._queue
        while queue:
            data, addr = queue[0]
            try:
                self._send(data, addr)
            except OSError as exc:
                if exc.errno in _QUEUE_ERRNOS:
                    break  # the kernel is full again: wait for the next event
                # This datagram failed; the rest may not. Dequeue it before
                # telling the protocol, which may abort() (clearing the queue).
                queue.popleft()
                self._queued_bytes -= len(data)
                self._error_received(exc)
                if self._state >= _LOST:
                    return
                continue
            if self._state >= _LOST:
                return  # aborted from error_received inside _send: the queue is gone
            queue.popleft()
            self._queued_bytes -= len(data)
        if not self._maybe_resume_protocol():
            return
        if not queue:
            self._reactor.remove_writer(self._sock)
            if self._state == _CLOSING:
                self._schedule_connection_lost(None)

    # -- receiving ---------------------------------------------------------

    def _on_readable(self) -> None:
        sock, protocol = self._sock, self._protocol
        for _ in range(MAX_DATAGRAMS_PER_EVENT):
            try:
                # Into a reused buffer, as for streams: no 64 KiB allocation
                # per datagram; only the datagram itself is copied out.
                n, _, flags, addr = sock.recvmsg_into(self._recv_views)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # On a connected socket, an earlier datagram's ICMP error
                # (port unreachable...) surfaces here. Report it; carry on.
                self._error_received(exc)
                return
            if flags & socket.MSG_TRUNC or n >= self._bufsize:
                self._error_received(DatagramTruncated(
                    f"a datagram from {addr!r} was larger than {self._bufsize - 1} bytes "
                    "and was discarded"))
                if self._reading_paused or self._state >= _CLOSING:
                    return
                continue
            data = self._recv_view[:n].tobytes()
            self.datagrams_received += 1
            self.bytes_received += n
            reactor = self._reactor
            if reactor.watch_io:
                reactor.observe_io(self, True, data, n)
            try:
                protocol.datagram_received(data, addr)
            except Exception as exc:
                # One bad datagram (from any peer) must not close the
                # endpoint for every peer: report it and read on.
                self._report(exc, "datagram_received")
            if self._reading_paused or self._state >= _CLOSING:
                return

    def _error_received(self, exc: Exception) -> None:
        try:
            self._protocol.error_received(exc)
        except Exception as error:
            self._report(error, "error_received")

    # -- flow control and introspection --------------------------------------

    def get_write_buffer_size(self) -> int:
        """Payload bytes queued (exact: no per-datagram overhead is counted)."""
        return self._queued_bytes

    def get_write_buffer_count(self) -> int:
        """Datagrams queued."""
        return len(self._queue)

    def _protocol_error(self, exc: BaseException, method: str) -> None:
        """A lifecycle or flow-control callback raised: the endpoint's state is
        unknown, so close it (per-datagram callbacks only ``_report``)."""
        self._report(exc, method, "; closing the endpoint")
        self._force_close(exc)


def _check_literal(addr: Any, family: int) -> None:
    """Refuse a host name where an IP literal is needed (see the module docstring)."""
    if family not in _INET_FAMILIES:
        return
    if not (isinstance(addr, tuple) and len(addr) >= 2 and isinstance(addr[0], str)):
        raise TypeError(f"an address (host, port) was expected, got {addr!r}")
    host = addr[0]
    if host in ("", "<broadcast>") or _packed_host(host.partition("%")[0]) is not None:
        return
    raise ValueError(f"sendto() needs an IP address, not the name {host!r}: resolve it first "
                     "(socket.getaddrinfo, once), since resolving here would block the loop")


def _same_address(a: Any, b: Any) -> bool:
    """Same (host, port)? IP literals compare by value ("::1" is
    "0:0:0:0:0:0:0:1"); names are not resolved (that would block), so
    "localhost" is not "127.0.0.1" here, as in asyncio."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return bool(a[1] == b[1] and (_packed_host(a[0]) or a[0]) == (_packed_host(b[0]) or b[0]))
    return bool(a == b)


def _packed_host(host: Any) -> Optional[bytes]:
    """The address as bytes if *host* is an IPv4 or IPv6 literal, else None."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, host)
        except (OSError, TypeError, ValueError):
            pass
    return None


def open_udp(reactor: TransportHost, factory: Callable[[], DatagramProtocol], local_addr: Any = None, remote_addr: Any = None, *,
             family: int = 0, reuse_port: bool = False, allow_broadcast: bool = False,
             max_datagram_size: Optional[int] = None,
             max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE) -> DatagramTransport:
    if not callable(factory):
        raise TypeError(f"a protocol factory must be callable, got {factory!r}")
    if local_addr is None and remote_addr is None and not family:
        raise ValueError("open_udp() needs local_addr, remote_addr or family")
    if (max_datagram_size is not None and max_datagram_size < 1) or max_queue_size < 0:
        raise ValueError("max_datagram_size must be >= 1 and max_queue_size >= 0")
    local: Any = None
    remote: Any = None
    if remote_addr is not None:
        infos = socket.getaddrinfo(remote_addr[0], remote_addr[1], family, socket.SOCK_DGRAM)
        family, _, _, _, remote = infos[0]
    if local_addr is not None:
        infos = socket.getaddrinfo(local_addr[0], local_addr[1], family, socket.SOCK_DGRAM, 0,
                                   socket.AI_PASSIVE)
        family, _, _, _, local = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if allow_broadcast:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        if local is not None:
            sock.bind(local)
        if remote is not None:
            sock.connect(remote)  # UDP connect: sets the peer, filters replies, no handshake
            remote = sock.getpeername()
        sock.setblocking(False)
        protocol = factory()
        return DatagramTransport(reactor, sock, protocol, remote=remote,
                                 max_datagram_size=max_datagram_size, max_queue_size=max_queue_size)
    except BaseException:
        sock.close()
        raise
