"""Protocols: the user's side of a connection, as callbacks with asyncio's names.

The callback contract
---------------------
A transport calls its protocol in this order. Callbacks come from the loop,
never from inside another protocol callback of the same transport, with one
exception, as in asyncio: ``pause_writing()`` is called from inside the
``write()`` (or ``set_write_buffer_limits()``) that pushes the buffer over
the high-water mark, so a producer learns at once.

1. ``connection_made(transport)``: exactly once, first.
2. ``data_received(data)`` (or, for a ``BufferedProtocol``, ``get_buffer`` /
   ``buffer_updated``): zero or more times, while reading is not paused.
3. ``eof_received()``: at most once, when the peer half-closed. Return a true
   value to keep writing on a half-open connection; otherwise the transport
   closes itself (flushing what was written).
4. ``connection_lost(exc)``: exactly once, last. *exc* is ``None`` after a
   clean ``close()`` or EOF, the exception otherwise (a reset, a
   ``WriteBufferOverflow``, a ``FramingError`` ...). Only ever after
   ``connection_made``: a transport ended before its ``connection_made``
   ran (the reactor closed first, or a listener's ``transport_setup``
   failed) calls neither, as in asyncio.

``pause_writing()`` and ``resume_writing()`` may come at any time between 1
and 4, strictly alternating, starting with ``pause_writing``: once each time
the write buffer crosses the high-water mark upward and the low-water mark
downward (or new limits put it on the other side). A paused protocol should stop writing until resumed; the transport
still accepts writes (up to its optional hard cap), so nothing is lost.

An exception raised by any of these callbacks is reported to the reactor's
exception handler and the connection is aborted; other connections and the
loop carry on.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol as _Structural

from .errors import FramingError, FrameTooLong
from .framing import DEFAULT_MAX_LINE, LineFramer


__all__ = ["BaseProtocol", "Protocol", "BufferedProtocol", "LineProtocol", "DatagramProtocol",
           "WriteTransport"]


class WriteTransport(_Structural):
    """What a stream protocol may call on its transport (``streams.StreamTransport`` is one).

    Structural, so that this layer needs nothing from the transports above
    it, and a test may hand a protocol any object with these methods.
    """

    def write(self, data: Any) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


class BaseProtocol:
    """Callbacks common to stream and datagram protocols."""

    def connection_made(self, transport: Any) -> None:
        """The transport is ready; keep a reference to it to write."""

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        """The connection is gone; the transport's socket is closed."""

    def pause_writing(self) -> None:
        """The write buffer passed the high-water mark: stop producing."""

    def resume_writing(self) -> None:
        """The write buffer drained to the low-water mark: produce again."""


class Protocol(BaseProtocol):
    """A stream protocol that receives bytes as they arrive."""

    def data_received(self, data: bytes) -> None:
        """Some bytes arrived: any amount, cut anywhere. Frame them yourself
        (see ``reactor.framing``) or use ``LineProtocol``."""

    def eof_received(self) -> Optional[bool]:
        """The peer will send no more. Return True to keep the connection half-open."""
        return None


class BufferedProtocol(BaseProtocol):
    """A stream protocol that supplies the buffer the transport reads into.

    The transport calls ``get_buffer(sizehint)`` and ``recv_into()`` the
    returned buffer, then ``buffer_updated(nbytes)``: no ``bytes`` object is
    allocated per read, which pays off for bulk transfers.
    """

    def get_buffer(self, sizehint: int) -> Any:
        """Return a writable buffer (bytearray, memoryview) of at least 1 byte."""
        raise NotImplementedError

    def buffer_updated(self, nbytes: int) -> None:
        """The first *nbytes* of the last buffer returned hold new data."""
        raise NotImplementedError

    def eof_received(self) -> Optional[bool]:
        return None


class LineProtocol(Protocol):
    r"""A line-at-a-time protocol on ``LineFramer`` (``\n`` or ``\r\n``).

    Override ``line_received(line)``; *line* is ``bytes`` without its
    terminator. ``send_line(line)`` writes a line ending in ``\r\n``.

    Over-long lines (more than ``max_line_length`` bytes, default 16 KiB):
    the line is discarded without being buffered beyond the limit, and
    ``line_too_long(exc)`` is called once for it. The default closes the
    connection, as Twisted's ``LineReceiver.lineLengthExceeded`` does: a peer
    that sends megabytes without a newline is rarely speaking our protocol.
    Override it to reply and carry on instead; the next line is then received
    normally.
    """

    max_line_length: int = DEFAULT_MAX_LINE
    transport: Optional[WriteTransport] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._framer = LineFramer(self.max_line_length)

    def data_received(self, data: bytes) -> None:
        framer = self._framer
        framer.feed(data)
        while True:
            # Stop if a callback closed us: bytes after that are not for anyone.
            if self.transport is not None and self.transport.is_closing():
                return
            try:
                line = framer.next_frame()
            except FrameTooLong as exc:
                self.line_too_long(exc)
                continue
            except FramingError:  # pragma: no cover - lines cannot be malformed
                raise
            if line is None:
                return
            self.line_received(line)

    def line_received(self, line: bytes) -> None:
        """One complete line arrived."""

    def line_too_long(self, exc: FrameTooLong) -> None:
        """A line over ``max_line_length`` was discarded. Default: close."""
        if self.transport is not None:
            self.transport.close()

    def send_line(self, line: bytes) -> None:
        """Write *line* and ``\r\n``."""
        if self.transport is None:  # (not an assert: python -O would let it through)
            raise RuntimeError("send_line() before connection_made()")
        self.transport.write(LineFramer.encode(line))


class DatagramProtocol(BaseProtocol):
    """A datagram protocol: whole datagrams in, and their errors."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """One datagram arrived from *addr*."""

    def error_received(self, exc: Exception) -> None:
        """A send or receive failed (e.g. ICMP port unreachable); the endpoint lives on."""
