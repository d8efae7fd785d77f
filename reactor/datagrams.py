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
from typing import TYPE_CHECKING, Any, Optional

from .buffers import BytesLike
from .debug import observe_io
from .errors import DatagramTruncated

if TYPE_CHECKING:  # pragma: no cover
    from .network import Reactor

__all__ = ["DatagramTransport", "open_udp", "MAX_DATAGRAMS_PER_EVENT", "MAX_UDP_PAYLOAD",
           "MAX_UDP6_PAYLOAD", "DEFAULT_MAX_QUEUE_SIZE"]

logger = logging.getLogger("reactor")

# The largest UDP payload over IPv4: 65,535 - 20 (IP header) - 8 (UDP header).
MAX_UDP_PAYLOAD = 65_507
# Over IPv6 the 16-bit payload length excludes the IPv6 header itself, so
# only the UDP header comes off: 65,535 - 8 (jumbograms aside, RFC 2675).
MAX_UDP6_PAYLOAD = 65_527
# Datagrams read per readiness event: a batch amortises the select() call,
# the bound keeps a flooded socket from monopolising the loop.
MAX_DATAGRAMS_PER_EVENT = 32
DEFAULT_HIGH_WATER = 64 * 1024  # asyncio's default
DEFAULT_MAX_QUEUE_SIZE = 1024 * 1024
_QUEUE_ERRNOS = (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS, errno.EINTR)


class DatagramTransport:
    """A UDP socket driven by the reactor, with asyncio's DatagramTransport API."""

    def __init__(self, reactor: "Reactor", sock: socket.socket, protocol: Any, *,
                 remote: Any = None, max_datagram_size: Optional[int] = None,
                 max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE) -> None:
        sock.setblocking(False)
        if max_datagram_size is None:  # the largest datagram the family can carry
            max_datagram_size = MAX_UDP6_PAYLOAD if sock.family == socket.AF_INET6 else MAX_UDP_PAYLOAD
        self._reactor = reactor
        self._sock = sock
        self._fileno = sock.fileno()
        self._protocol = protocol
        self._remote = remote  # the peer's sockaddr when connected
        self._bufsize = max_datagram_size + 1  # one spare byte: see MSG_TRUNC
        self._recv_view = memoryview(bytearray(self._bufsize))
        self._recv_views = [self._recv_view]
        self._extra: dict[str, Any] = {"socket": sock, "sockname": sock.getsockname(),
                                       "peername": remote}
        self._queue: deque[tuple[bytes, Any]] = deque()
        self._queued_bytes = 0
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_HIGH_WATER // 4
        self._max_queue = max_queue_size
        self._writing_paused = False
        self._reading_paused = False
        self._closing = False
        self._lost = False
        self._finished = False
        self._lost_exc: Optional[BaseException] = None
        # Statistics.
        self.datagrams_received = 0
        self.datagrams_sent = 0
        self.datagrams_dropped = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        reactor._connection_opened(self)
        reactor.call_soon(self._start)

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return (f"<DatagramTransport fd={self._fileno} {state} "
                f"queued={len(self._queue)}/{self._queued_bytes}B>")

    def _start(self) -> None:
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            self._protocol_error(exc, "connection_made")
            return
        if not self._closing and not self._reading_paused:
            self._reactor.add_reader(self._sock, self._on_readable)

    # -- sending -----------------------------------------------------------

    def sendto(self, data: BytesLike, addr: Any = None) -> None:
        """Send one datagram, now or queued whole; never blocks, never splits.

        On a connected endpoint *addr* must be None or the remote address.
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
        if self._closing:
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
                if self._closing:
                    return
                n = self._sock.send(data)
        else:
            n = self._sock.sendto(data, addr)
        self.datagrams_sent += 1
        self.bytes_sent += n
        reactor = self._reactor
        if reactor._watch_io:
            observe_io(self, False, data, n)

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
        if self._queued_bytes > self._high_water and not self._writing_paused:
            self._writing_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._protocol_error(exc, "pause_writing")

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
                if self._lost:
                    return
                continue
            queue.popleft()
            self._queued_bytes -= len(data)
        if self._writing_paused and self._queued_bytes <= self._low_water:
            self._writing_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._protocol_error(exc, "resume_writing")
                return
        if not queue:
            self._reactor.remove_writer(self._sock)
            if self._closing:
                self._schedule_connection_lost(None)  # a no-op if already scheduled

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
                if self._reading_paused or self._closing:
                    return
                continue
            data = self._recv_view[:n].tobytes()
            self.datagrams_received += 1
            self.bytes_received += n
            reactor = self._reactor
            if reactor._watch_io:
                observe_io(self, True, data, n)
            try:
                protocol.datagram_received(data, addr)
            except Exception as exc:
                # One bad datagram (from any peer) must not close the
                # endpoint for every peer: report it and read on.
                self._report(exc, "datagram_received")
            if self._reading_paused or self._closing:
                return

    def _error_received(self, exc: Exception) -> None:
        try:
            self._protocol.error_received(exc)
        except Exception as error:
            self._report(error, "error_received")

    def pause_reading(self) -> None:
        if self._closing or self._reading_paused:
            return
        self._reading_paused = True
        self._reactor.remove_reader(self._sock)

    def resume_reading(self) -> None:
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        self._reactor.add_reader(self._sock, self._on_readable)

    def is_reading(self) -> bool:
        return not (self._reading_paused or self._closing)

    # -- flow control and introspection --------------------------------------

    def get_write_buffer_size(self) -> int:
        """Payload bytes queued (exact: no per-datagram overhead is counted)."""
        return self._queued_bytes

    def get_write_buffer_count(self) -> int:
        """Datagrams queued."""
        return len(self._queue)

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Water marks for pause_writing/resume_writing, as for stream transports."""
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        try:
            if self._queued_bytes > high and not self._writing_paused:
                self._writing_paused = True
                self._protocol.pause_writing()
            elif self._writing_paused and self._queued_bytes <= low:
                self._writing_paused = False
                self._protocol.resume_writing()
        except Exception as exc:
            self._protocol_error(exc, "pause_writing" if self._writing_paused else "resume_writing")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        return self._protocol

    # -- closing -----------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, send what is queued, then close. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._reactor.remove_reader(self._sock)
        if not self._queue:
            self._schedule_connection_lost(None)

    def abort(self) -> None:
        """Close now, dropping the queue. Idempotent."""
        self._force_close(None)

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._closing = True
        self._queue.clear()
        self._queued_bytes = 0
        self._reactor.remove_reader(self._sock)
        self._reactor.remove_writer(self._sock)
        self._schedule_connection_lost(exc)

    def _report(self, exc: BaseException, method: str, consequence: str = "") -> None:
        self._reactor.call_exception_handler({
            "message": f"protocol.{method}() raised{consequence}",
            "exception": exc, "transport": self, "protocol": self._protocol})

    def _protocol_error(self, exc: BaseException, method: str) -> None:
        """A lifecycle or flow-control callback raised: the endpoint's state is
        unknown, so close it (per-datagram callbacks only ``_report``)."""
        self._report(exc, method, "; closing the endpoint")
        self._force_close(exc)

    def _schedule_connection_lost(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._lost = True
        self._lost_exc = exc
        self._reactor.call_soon(self._call_connection_lost, exc)

    def _shutdown(self) -> None:
        if self._finished:
            return
        self._reactor.remove_reader(self._sock)
        self._reactor.remove_writer(self._sock)
        self._closing = self._lost = True
        self._queue.clear()
        self._queued_bytes = 0
        self._call_connection_lost(self._lost_exc)

    def _call_connection_lost(self, exc: Optional[BaseException]) -> None:
        if self._finished:
            return
        self._finished = True
        try:
            self._protocol.connection_lost(exc)
        except Exception as error:
            self._reactor.call_exception_handler({
                "message": "protocol.connection_lost() raised",
                "exception": error, "transport": self, "protocol": self._protocol})
        finally:
            # Out of the selector before the fd is closed, whatever path led
            # here: a registered, closed fd breaks select() (EBADF) or, once
            # the number is reused, the next endpoint's registration.
            self._reactor.remove_reader(self._sock)
            self._reactor.remove_writer(self._sock)
            self._sock.close()
            self._reactor._connection_closed(self, exc)


def _same_address(a: Any, b: Any) -> bool:
    """Same (host, port)? IP literals compare by value ("::1" is
    "0:0:0:0:0:0:0:1"); names are not resolved (that would block), so
    "localhost" is not "127.0.0.1" here, as in asyncio."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return a[1] == b[1] and _packed_host(a[0]) == _packed_host(b[0])
    return a == b


def _packed_host(host: Any) -> Any:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(family, host)
        except (OSError, TypeError, ValueError):
            pass
    return host


def open_udp(reactor: "Reactor", factory: Any, local_addr: Any = None, remote_addr: Any = None, *,
             family: int = 0, reuse_port: bool = False, allow_broadcast: bool = False,
             max_datagram_size: Optional[int] = None,
             max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE) -> DatagramTransport:
    if not callable(factory):
        raise TypeError(f"a protocol factory must be callable, got {factory!r}")
    if local_addr is None and remote_addr is None and not family:
        raise ValueError("open_udp() needs local_addr, remote_addr or family")
    if (max_datagram_size is not None and max_datagram_size < 1) or max_queue_size < 0:
        raise ValueError("max_datagram_size must be >= 1 and max_queue_size >= 0")
    local = remote = None
    if remote_addr is not None:
        infos = socket.getaddrinfo(*remote_addr[:2], family, socket.SOCK_DGRAM)
        family, _, _, _, remote = infos[0]
    if local_addr is not None:
        infos = socket.getaddrinfo(*local_addr[:2], family, socket.SOCK_DGRAM, 0, socket.AI_PASSIVE)
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
