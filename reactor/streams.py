"""Stream transports: one connected TCP or Unix socket, its send buffer, its protocol.

Theory of operation
-------------------
``StreamTransport`` is a ``SocketTransport`` (``transports.py``: lifecycle,
reading on and off, water marks) plus how a byte stream moves.

Reading. While reading is on, the socket's reader is ``_on_readable`` (or,
for a ``BufferedProtocol``, ``_read_into_buffer``): one ``recv`` per
readiness event (bounded, so one fast peer cannot monopolise the loop),
handed to ``protocol.data_received``; an empty ``recv`` is EOF.
``pause_reading()`` simply removes the reader: the kernel's receive buffer
fills, TCP's window closes, and the peer's sends block. That is
backpressure across the network, and it costs nothing.

Writing (asyncio's design). ``write()`` first tries ``send()`` directly when
nothing is buffered, which on a healthy connection sends everything with no
buffering and no writer registration at all. Whatever the kernel did not
take goes to the ``SendBuffer`` and the writer is registered;
``_on_writable`` sends as much as the kernel takes (all buffered chunks in
one vectored ``sendmsg`` when there are several) and unregisters the writer
when the buffer is empty. The writer is never left registered on an empty
buffer: a socket is writable nearly all the time, so that would be a busy
loop.

Flow control. The water marks (``set_write_buffer_limits``) are advice; a
protocol that ignores ``pause_writing`` (or a peer that never reads) can
still fill memory, so ``set_max_write_buffer_size(cap)`` adds a hard cap:
past it the connection is aborted with ``WriteBufferOverflow``.

Closing. ``close()`` stops reading, lets the buffer drain, then closes;
``write_eof()`` half-closes once the buffer is flushed. ``abort()`` drops
the buffer and closes now. Errors on the socket (reset, broken pipe) abort
the connection and pass the exception to ``connection_lost``.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Callable, Final, Iterable, Optional, Union

from .buffers import BytesLike, SendBuffer
from .errors import WriteBufferOverflow
from .protocols import BufferedProtocol, Protocol
from .registry import TransportHost
from .transports import SocketTransport, State

__all__ = ["StreamTransport", "MAX_READ_SIZE", "IOV_MAX", "ProtocolFactory", "PathLike", "check_factory"]

logger = logging.getLogger("reactor")

# (Final, here and below: constants in the compiled build, not a dict lookup per use.)
_OPEN: Final = State.OPEN.value
_CLOSING: Final = State.CLOSING.value
_LOST: Final = State.LOST.value

# One recv() per readiness event, at most this much, so that one peer cannot
# keep the loop to itself. recv(n) allocates n bytes and shrinks them to what
# arrived, so n must stay below glibc's mmap threshold (128 KiB by default):
# above it, every read maps and unmaps fresh memory. Measured here, a 1 KiB
# read costs the same with recv(64 KiB) or recv(120 KiB), about 45 ns more
# than the system call alone (recv_into a reused buffer plus the copy out
# costs 150 ns more), but ~9 us with asyncio's recv(256 KiB). Large enough
# for a 100 KiB message in one read: bench.echo 100 KiB x 10 connections
# went from 41,500 req/s with 64 KiB to 57,500 with 120 KiB.
MAX_READ_SIZE: Final = 120 * 1024
# The send buffer of every connection with nothing buffered: shared, always
# empty, never appended to (write() installs a SendBuffer of its own first).
# Most connections, most of the time, buffer nothing; 5,000 idle ones need
# not hold 5,000 empty buffers.
_NO_BUFFER: Final = SendBuffer()
# The most iovecs one sendmsg() accepts (1024 on Linux, 16 is POSIX's floor).
try:
    IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (AttributeError, ValueError, OSError):  # pragma: no cover
    IOV_MAX = 16

# TLS's time limits (asyncio's defaults), here so that listening and
# connecting without TLS never import ssl (tlsstreams.py does, lazily).
DEFAULT_HANDSHAKE_TIMEOUT = 60.0
DEFAULT_SHUTDOWN_TIMEOUT = 30.0

StreamProtocol = Union[Protocol, BufferedProtocol]
ProtocolFactory = Callable[[], StreamProtocol]
PathLike = Union[str, bytes, "os.PathLike[str]"]


def check_factory(factory: Any) -> None:
    """Refuse a non-callable factory at once, not at the first connection."""
    if not callable(factory):
        raise TypeError(f"a protocol factory must be callable, got {factory!r}")


def _nbytes(data: Any) -> int:
    """The size of one bytes-like item; TypeError for anything a socket cannot send whole."""
    if isinstance(data, (bytes, bytearray)):
        return len(data)
    if isinstance(data, memoryview):
        if not data.contiguous:
            raise TypeError("a memoryview to write must be contiguous")
        return data.nbytes
    raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")


class StreamTransport(SocketTransport):
    """A connected stream socket driven by the reactor, with asyncio's Transport API."""

    __slots__ = ("_server", "_buffer", "_buffered_protocol", "_max_buffer", "_eof_written",
                 "_eof_received", "_warned_write_after_close")

    _protocol: Any

    def __init__(
        self,
        reactor: TransportHost,
        sock: socket.socket,
        protocol: StreamProtocol,
        *,
        server: Any = None,
        peername: Any = None,
        extra: Optional[dict[str, Any]] = None,
    ) -> None:
        self._server = server
        # The peer's address must be read now (later the peer may have gone);
        # accept() already returned it, so a listener passes it in.
        if peername is None:  # (an AF_UNIX peer's address is "", not None)
            try:
                peername = sock.getpeername()
            except OSError:  # the peer may already have gone
                pass
        self._buffer = _NO_BUFFER  # a real SendBuffer once the kernel pushes back
        self._buffered_protocol = isinstance(protocol, BufferedProtocol)
        self._max_buffer: Optional[int] = None
        self._eof_written = False
        self._eof_received = False
        self._warned_write_after_close = False
        super().__init__(reactor, sock, protocol, peername=peername, extra=extra)

    def _describe(self) -> str:
        read = "paused" if self._reading_paused else "eof" if self._eof_received else (
            "idle" if self._state >= _CLOSING else "polling")
        write = "polling" if self._buffer else "idle"
        return f"read={read} write=<{write}, bufsize={len(self._buffer)}>"

    # -- the lifecycle's hooks -------------------------------------------------

    def _wants_reader(self) -> bool:
        return not self._eof_received

    def _clear_write_buffer(self) -> None:
        self._buffer.clear()

    def get_server(self) -> Any:
        return self._server

    def _detached(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server._detach(self)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        """The socket failed: log quietly (it is the network's doing), then abort."""
        # Resets, broken pipes, unreachable peers: facts of networking,
        # not bugs; the protocol hears about them in connection_lost.
        logger.debug("%r: %s: %s", self, message, exc)
        self._force_close(exc)

    # -- reading -----------------------------------------------------------

    def _reader(self) -> Any:
        """The reader for this kind of protocol, chosen at registration, not per read."""
        return self._read_into_buffer if self._buffered_protocol else self._on_readable

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(MAX_READ_SIZE)  # (why not more: see MAX_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "recv() failed")
            return
        n = len(data)
        if not n:
            self._on_eof()
            return
        self.bytes_received += n
        reactor = self._reactor
        if reactor.watch_io:
            reactor.observe_io(self, True, data, n)
        try:
            self._protocol.data_received(data)
        except Exception as exc:
            self._protocol_error(exc, "data_received")

    def _read_into_buffer(self) -> None:
        try:
            buf = self._protocol.get_buffer(-1)
            view = memoryview(buf)
            # recv_into() refuses these every time, and the reader would be
            # called again at once: a busy loop of tracebacks. Refuse once.
            if view.readonly or not view.nbytes:
                raise ValueError(f"get_buffer() returned an {'empty' if view.nbytes == 0 else 'unwritable'} "
                                 f"buffer ({type(buf).__name__}); it must be writable and non-empty")
        except Exception as exc:
            self._protocol_error(exc, "get_buffer")
            return
        try:
            n = self._sock.recv_into(view)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "recv_into() failed")
            return
        if n:
            self.bytes_received += n
            if self._reactor.watch_io:
                self._reactor.observe_io(self, True, view[:n], n)
            try:
                self._protocol.buffer_updated(n)
            except Exception as exc:
                self._protocol_error(exc, "buffer_updated")
        else:
            self._on_eof()

    def _on_eof(self) -> None:
        reactor = self._reactor
        if reactor.watch_io:
            reactor.observe_io(self, True, b"", 0)  # 0 bytes: end of file
        self._eof_received = True
        reactor.remove_reader(self._sock)
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._protocol_error(exc, "eof_received")
            return
        if not keep_open:
            self.close()

    # -- writing -----------------------------------------------------------

    def write(self, data: BytesLike) -> None:
        """Send *data* (bytes-like), now if the kernel takes it, else buffered. Never blocks."""
        # The common case first: one type test, not three.
        size = len(data) if type(data) is bytes else _nbytes(data)
        if self._state >= _CLOSING or self._eof_written:
            self._write_refused()
            return
        if not size:
            return
        buffer = self._buffer
        if not buffer.nbytes:
            try:
                n = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self._fatal_error(exc, "send() failed")
                return
            self.bytes_sent += n
            reactor = self._reactor
            if n and reactor.watch_io:
                reactor.observe_io(self, False, data, n)
            if n == size:
                return
            if buffer is _NO_BUFFER:
                buffer = self._buffer = SendBuffer()
            view = memoryview(data)
            # The rest from byte n: a view of wider items or of several
            # dimensions slices by item or by row, so it is cast to bytes.
            buffer.append(view[n:] if view.format == "B" and view.ndim == 1 else view.cast("B")[n:])
            reactor.add_writer(self._sock, self._on_writable)
        else:
            buffer.append(data)
        self._after_buffering()

    def _write_refused(self) -> None:
        if self._eof_written and self._state < _CLOSING:
            raise RuntimeError("cannot write() after write_eof()")
        if not self._warned_write_after_close:
            self._warned_write_after_close = True
            logger.warning("%r: write() after close() or abort(); data dropped", self)

    def writelines(self, list_of_data: Iterable[BytesLike]) -> None:
        """Write each item in order; on an idle connection, all in one vectored send.

        ``write()`` per item would cost one ``send()`` per item: queueing the
        lot first lets the kernel take it in a single ``sendmsg()``. All or
        nothing: an iterable that raises, or an item that is not bytes-like,
        raises before anything is queued.
        """
        items = list(list_of_data)
        for data in items:
            _nbytes(data)
        if self._buffer or self._state >= _CLOSING or self._eof_written:
            for data in items:  # the cases where write() already queues (or refuses)
                self.write(data)
            return
        buffer = self._buffer = SendBuffer()
        for data in items:
            buffer.append(data)
        if not buffer:
            self._buffer = _NO_BUFFER
            return
        if not self._send_buffered():
            return
        if buffer:
            self._reactor.add_writer(self._sock, self._on_writable)
            self._after_buffering()
        else:
            self._buffer = _NO_BUFFER

    def _after_buffering(self) -> None:
        size = len(self._buffer)
        if self._max_buffer is not None and size > self._max_buffer:
            self._force_close(WriteBufferOverflow(
                f"write buffer of {size} bytes is over the cap of {self._max_buffer}; "
                "the peer is not reading"))
            return
        if size > self._high_water:
            self._maybe_pause_protocol()

    def _on_writable(self) -> None:
        if not self._send_buffered() or self._buffer:
            return
        self._buffer = _NO_BUFFER  # drained: an idle connection keeps no buffer
        self._reactor.remove_writer(self._sock)
        state = self._state
        if state >= _LOST:
            return  # closed from resume_writing(); connection_lost is on its way
        if state == _CLOSING:
            self._schedule_connection_lost(None)
        elif self._eof_written:
            self._shutdown_write()

    def _send_buffered(self) -> bool:
        """Offer the buffer to the kernel once; False if that ended the connection."""
        buffer = self._buffer
        try:
            sendmsg = getattr(self._sock, "sendmsg", None)  # (not on every platform)
            if sendmsg is not None and buffer.chunk_count() > 1:
                chunks = buffer.views(IOV_MAX)
                n = sendmsg(chunks)
            else:
                chunks = [buffer.first()]
                n = self._sock.send(chunks[0])
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            self._fatal_error(exc, "send() failed")
            return False
        reactor = self._reactor
        if n and reactor.watch_io:
            reactor.observe_io(self, False, chunks[0], n)
        buffer.advance(n)
        self.bytes_sent += n
        return self._maybe_resume_protocol()

    def write_eof(self) -> None:
        """Half-close: send FIN once the buffer is flushed. Reading goes on."""
        if self._state >= _CLOSING or self._eof_written:
            return
        self._eof_written = True
        if not self._buffer:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc, "shutdown() failed")

    def can_write_eof(self) -> bool:
        return True

    def set_max_write_buffer_size(self, size: Optional[int]) -> None:
        """Abort with ``WriteBufferOverflow`` when the buffer exceeds *size*; None: no cap."""
        if size is not None and size < 0:
            raise ValueError(f"size must be >= 0 or None, got {size!r}")
        self._max_buffer = size
        if self._buffer:
            self._after_buffering()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    # -- introspection -----------------------------------------------------

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        buffered = isinstance(protocol, BufferedProtocol)
        if buffered != self._buffered_protocol:
            self._buffered_protocol = buffered
            if self._reactor.remove_reader(self._sock):  # reading: switch readers
                self._reactor.add_reader(self._sock, self._reader())
