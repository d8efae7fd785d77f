"""Stream transports: one connected socket, its send buffer, and its protocol.

Theory of operation
-------------------
A ``StreamTransport`` owns a connected, non-blocking stream socket (TCP or
Unix) and sits between the reactor and a protocol. It registers itself with
``add_reader``/``add_writer`` like any user code would; the loop does not
know it exists.

Reading. While reading is on, the socket's reader is ``_on_readable`` (or,
for a ``BufferedProtocol``, ``_read_into_buffer``): one
``recv`` per readiness event (bounded, so one fast peer cannot monopolise the
loop), handed to ``protocol.data_received``; an empty ``recv`` is EOF.
``pause_reading()`` simply removes the reader: the kernel's receive buffer
fills, TCP's window closes, and the peer's sends block. That is backpressure
across the network, and it costs nothing.

Writing (asyncio's design). ``write()`` first tries ``send()`` directly when
nothing is buffered, which on a healthy connection sends everything with no
buffering and no writer registration at all. Whatever the kernel did not take
goes to the ``SendBuffer`` and the writer is registered; ``_on_writable``
sends as much as the kernel takes (all buffered chunks in one vectored
``sendmsg`` when there are several) and unregisters the writer when the
buffer is empty. The writer is never left registered on an empty buffer: a
socket is writable nearly all the time, so that would be a busy loop.

Flow control. ``set_write_buffer_limits(high, low)``: the protocol gets
``pause_writing()`` when the buffer grows past *high* and
``resume_writing()`` when it drains to *low*, once per crossing. Pausing is
advice; a protocol that ignores it (or a peer that never reads) can still fill
memory, so ``set_max_write_buffer_size(cap)`` adds a hard cap: past it the
connection is aborted with ``WriteBufferOverflow``.

Closing. ``close()`` stops reading, lets the buffer drain, then closes.
``abort()`` drops the buffer and closes now. Either way
``protocol.connection_lost`` runs exactly once, from the loop (``call_soon``),
never from inside the call that caused it, and the socket is closed right
after it. Errors on the socket (reset, broken pipe) abort the connection and
pass the exception to ``connection_lost``; an exception raised by the
protocol is reported to the reactor's exception handler and aborts this
connection only.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Optional

from .buffers import BytesLike, SendBuffer
from .debug import observe_io
from .errors import WriteBufferOverflow
from .protocols import BufferedProtocol

if TYPE_CHECKING:  # pragma: no cover
    from .network import Reactor

__all__ = ["StreamTransport", "DEFAULT_HIGH_WATER", "DEFAULT_LOW_WATER", "MAX_READ_SIZE", "IOV_MAX"]

logger = logging.getLogger("reactor")

DEFAULT_HIGH_WATER = 64 * 1024  # asyncio's default
DEFAULT_LOW_WATER = 16 * 1024  # asyncio's default: a quarter of high
# One recv() per readiness event, at most this much, so that one peer cannot
# keep the loop to itself. recv(n) allocates n bytes and shrinks them to what
# arrived, so n must stay below glibc's mmap threshold (128 KiB by default):
# above it, every read maps and unmaps fresh memory. Measured here, a 1 KiB
# read costs the same with recv(64 KiB) or recv(120 KiB), about 45 ns more
# than the system call alone (recv_into a reused buffer plus the copy out
# costs 150 ns more), but ~9 us with asyncio's recv(256 KiB). Large enough
# for a 100 KiB message in one read: bench.echo 100 KiB x 10 connections
# went from 41,500 req/s with 64 KiB to 57,500 with 120 KiB.
MAX_READ_SIZE = 120 * 1024
# The send buffer of every connection with nothing buffered: shared, always
# empty, never appended to (write() installs a SendBuffer of its own first).
# Most connections, most of the time, buffer nothing; 5,000 idle ones need
# not hold 5,000 empty buffers.
_NO_BUFFER = SendBuffer()
# The most iovecs one sendmsg() accepts (1024 on Linux, 16 is POSIX's floor).
try:
    IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
except (AttributeError, ValueError, OSError):  # pragma: no cover
    IOV_MAX = 16


class StreamTransport:
    """A connected stream socket driven by the reactor, with asyncio's Transport API."""

    # Slots: no per-instance __dict__. A server holding 5,000 idle
    # connections pays for every byte of this object 5,000 times.
    __slots__ = ("_reactor", "_sock", "_fileno", "_protocol", "_server", "_peername",
                 "_extra", "_buffer", "_buffered_protocol", "_high_water", "_low_water",
                 "_max_buffer", "_closing", "_lost", "_eof_written", "_eof_received",
                 "_reading_paused", "_writing_paused", "_warned_write_after_close",
                 "bytes_received", "bytes_sent", "_finished", "_lost_exc", "__weakref__")

    def __init__(
        self,
        reactor: "Reactor",
        sock: socket.socket,
        protocol: Any,
        *,
        server: Any = None,
        peername: Any = None,
        extra: Optional[dict[str, Any]] = None,
    ) -> None:
        sock.setblocking(False)
        self._reactor = reactor
        self._sock = sock
        self._fileno = sock.fileno()
        self._protocol = protocol
        self._server = server
        # Extra info without a dict per connection (see get_extra_info). The
        # peer's address must be read now (later the peer may have gone);
        # accept() already returned it, so a listener passes it in.
        if peername is None:  # (an AF_UNIX peer's address is "", not None)
            try:
                peername = sock.getpeername()
            except OSError:  # the peer may already have gone
                pass
        self._peername = peername
        # What the creator adds, and the sockname once asked for; None until then.
        self._extra = dict(extra) if extra else None
        self._buffer = _NO_BUFFER  # a real SendBuffer once the kernel pushes back
        self._buffered_protocol = isinstance(protocol, BufferedProtocol)
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_LOW_WATER
        self._max_buffer: Optional[int] = None
        self._closing = False  # close() or abort() called, or the connection failed
        self._lost = False  # connection_lost scheduled
        self._eof_written = False
        self._eof_received = False
        self._reading_paused = False
        self._writing_paused = False  # the protocol's state: pause_writing() called
        self._warned_write_after_close = False
        # Per-connection statistics.
        self.bytes_received = 0
        self.bytes_sent = 0
        self._finished = False  # connection_lost called and socket closed
        self._lost_exc: Optional[BaseException] = None
        reactor._connection_opened(self)
        reactor.call_soon(self._start)

    def __repr__(self) -> str:
        if self._lost:
            state = "closed"
        elif self._closing:
            state = "closing"
        else:
            state = "open"
        read = "paused" if self._reading_paused else "eof" if self._eof_received else (
            "idle" if self._closing else "polling")
        write = "polling" if self._buffer else "idle"
        return (f"<StreamTransport fd={self._fileno} {state} read={read} "
                f"write=<{write}, bufsize={len(self._buffer)}>>")

    # -- lifecycle ---------------------------------------------------------

    def _start(self) -> None:
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            self._protocol_error(exc, "connection_made")
            return
        if not self._closing and not self._reading_paused:
            self._reactor.add_reader(self._sock, self._reader())

    def close(self) -> None:
        """Stop reading, send what is buffered, then close. Idempotent."""
        if self._closing:
            return
        self._closing = True
        self._reactor.remove_reader(self._sock)
        if not self._buffer:
            self._schedule_connection_lost(None)

    def abort(self) -> None:
        """Close now, discarding buffered data. Idempotent."""
        self._force_close(None)

    def is_closing(self) -> bool:
        return self._closing

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._closing = True
        self._buffer.clear()
        self._reactor.remove_reader(self._sock)
        self._reactor.remove_writer(self._sock)
        self._schedule_connection_lost(exc)

    def _schedule_connection_lost(self, exc: Optional[BaseException]) -> None:
        if self._lost:
            return
        self._lost = True
        self._lost_exc = exc
        self._reactor.call_soon(self._call_connection_lost, exc)

    def _shutdown(self) -> None:
        """The reactor is closing: finish now, since queued callbacks will never run.

        Buffered data is dropped; ``connection_lost`` still runs exactly once.
        """
        if self._finished:
            return
        self._reactor.remove_reader(self._sock)
        self._reactor.remove_writer(self._sock)
        self._closing = self._lost = True
        self._buffer.clear()
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
            # the number is reused, the next connection's registration.
            self._reactor.remove_reader(self._sock)
            self._reactor.remove_writer(self._sock)
            self._sock.close()
            self._reactor._connection_closed(self, exc)
            server, self._server = self._server, None
            if server is not None:
                server._detach(self)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        """The socket failed: log quietly if it is the network's doing, then abort."""
        if isinstance(exc, OSError):
            # Resets, broken pipes, unreachable peers: facts of networking,
            # not bugs; the protocol hears about them in connection_lost.
            logger.debug("%r: %s: %s", self, message, exc)
        else:  # pragma: no cover - only OSErrors reach here today
            self._reactor.call_exception_handler({
                "message": message, "exception": exc, "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _protocol_error(self, exc: BaseException, method: str) -> None:
        """The protocol raised: report it, and abort this connection only."""
        self._reactor.call_exception_handler({
            "message": f"protocol.{method}() raised; aborting the connection",
            "exception": exc, "transport": self, "protocol": self._protocol})
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
        if reactor._watch_io:
            observe_io(self, True, data, n)
        try:
            self._protocol.data_received(data)
        except Exception as exc:
            self._protocol_error(exc, "data_received")

    def _read_into_buffer(self) -> None:
        try:
            buf = self._protocol.get_buffer(-1)
            if not memoryview(buf).nbytes:
                raise RuntimeError("get_buffer() returned an empty buffer")
        except Exception as exc:
            self._protocol_error(exc, "get_buffer")
            return
        try:
            n = self._sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "recv_into() failed")
            return
        if not n:
            self._on_eof()
            return
        self.bytes_received += n
        reactor = self._reactor
        if reactor._watch_io:
            observe_io(self, True, memoryview(buf)[:n], n)
        try:
            self._protocol.buffer_updated(n)
        except Exception as exc:
            self._protocol_error(exc, "buffer_updated")

    def _on_eof(self) -> None:
        reactor = self._reactor
        if reactor._watch_io:
            observe_io(self, True, b"", 0)  # 0 bytes: end of file
        self._eof_received = True
        self._reactor.remove_reader(self._sock)
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            self._protocol_error(exc, "eof_received")
            return
        if not keep_open:
            self.close()

    def pause_reading(self) -> None:
        """Stop calling data_received until resume_reading(). Idempotent."""
        if self._closing or self._reading_paused:
            return
        self._reading_paused = True
        if not self._eof_received:
            self._reactor.remove_reader(self._sock)

    def resume_reading(self) -> None:
        """Undo pause_reading(). Idempotent."""
        if self._closing or not self._reading_paused:
            return
        self._reading_paused = False
        if not self._eof_received:
            self._reactor.add_reader(self._sock, self._reader())

    def is_reading(self) -> bool:
        return not (self._reading_paused or self._closing or self._eof_received)

    # -- writing -----------------------------------------------------------

    def write(self, data: BytesLike) -> None:
        """Send *data* (bytes-like), now if the kernel takes it, else buffered. Never blocks."""
        if type(data) is bytes:  # the common case first: one type test, not three
            size = len(data)
        elif isinstance(data, (bytearray, memoryview, bytes)):
            size = data.nbytes if isinstance(data, memoryview) else len(data)
        else:
            raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
        if self._closing or self._eof_written:
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
            if n and reactor._watch_io:
                observe_io(self, False, data, n)
            if n == size:
                return
            if buffer is _NO_BUFFER:
                buffer = self._buffer = SendBuffer()
            view = memoryview(data)
            buffer.append(view[n:] if view.format == "B" else view.cast("B")[n:])
            self._reactor.add_writer(self._sock, self._on_writable)
        else:
            buffer.append(data)
        self._after_buffering()

    def _write_refused(self) -> None:
        if self._eof_written and not self._closing:
            raise RuntimeError("cannot write() after write_eof()")
        if not self._warned_write_after_close:
            self._warned_write_after_close = True
            logger.warning("%r: write() after close() or abort(); data dropped", self)

    def writelines(self, list_of_data: Any) -> None:
        """Write each item in order; on an idle connection, all in one vectored send.

        ``write()`` per item would cost one ``send()`` per item: queueing the
        lot first lets the kernel take it in a single ``sendmsg()``.
        """
        if self._buffer or self._closing or self._eof_written:
            for data in list_of_data:  # the cases where write() already queues (or refuses)
                self.write(data)
            return
        buffer = self._buffer = SendBuffer()
        for data in list_of_data:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                buffer.clear()
                raise TypeError(
                    f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")
            buffer.append(data)
        if not buffer or not self._send_buffered():
            return
        if buffer:
            self._reactor.add_writer(self._sock, self._on_writable)
            self._after_buffering()

    def _after_buffering(self) -> None:
        size = len(self._buffer)
        if self._max_buffer is not None and size > self._max_buffer:
            self._force_close(WriteBufferOverflow(
                f"write buffer of {size} bytes is over the cap of {self._max_buffer}; "
                "the peer is not reading"))
            return
        if size > self._high_water and not self._writing_paused:
            self._writing_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._protocol_error(exc, "pause_writing")

    def _on_writable(self) -> None:
        if not self._send_buffered() or self._buffer:
            return
        self._buffer = _NO_BUFFER  # drained: an idle connection keeps no buffer
        self._reactor.remove_writer(self._sock)
        if self._lost:
            return  # closed from resume_writing(); connection_lost is on its way
        if self._closing:
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
        if n and reactor._watch_io:
            observe_io(self, False, chunks[0], n)
        buffer.advance(n)
        self.bytes_sent += n
        if self._writing_paused and len(buffer) <= self._low_water:
            self._writing_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._protocol_error(exc, "resume_writing")
                return False
        return True

    def write_eof(self) -> None:
        """Half-close: send FIN once the buffer is flushed. Reading goes on."""
        if self._closing or self._eof_written:
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

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Set the flow-control water marks (asyncio's rules for the defaults).

        *high* defaults to 64 KiB (or 4 * *low* when only *low* is given);
        *low* defaults to *high* // 4. Requires ``high >= low >= 0``.
        """
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        if self._buffer:
            self._after_buffering()
        if self._writing_paused and len(self._buffer) <= low and not self._closing:
            self._writing_paused = False  # the new marks put us below low water
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._protocol_error(exc, "resume_writing")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

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

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``'peername'``, ``'sockname'``, ``'socket'``, what the creator added, or *default*.

        ``'peername'`` is captured when the transport is made; ``'sockname'``
        is read from the socket the first time it is asked for and kept (so
        that 5,000 idle connections do not each hold a copy nobody reads);
        asked for the first time after the socket closed, it is None.
        """
        if name == "peername":
            return self._peername
        if name == "socket":
            return self._sock
        extra = self._extra
        if name == "sockname" and (extra is None or "sockname" not in extra):
            try:
                sockname = self._sock.getsockname()
            except OSError:  # closed
                return None
            if extra is None:
                extra = self._extra = {}
            extra["sockname"] = sockname
        return extra.get(name, default) if extra is not None else default

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        buffered = isinstance(protocol, BufferedProtocol)
        if buffered != self._buffered_protocol:
            self._buffered_protocol = buffered
            if self._reactor.remove_reader(self._sock):  # reading: switch readers
                self._reactor.add_reader(self._sock, self._reader())
