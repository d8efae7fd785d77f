"""Framers: turn a byte stream, chopped anywhere, into whole messages. Sans-IO.

Theory of operation
-------------------
TCP delivers a stream of bytes, not messages: one ``recv`` may hold half a
message, or three and a bit. A framer is the small state machine that puts
them back together. Each one here has the same shape (h11's): bytes in with
``feed(data)``, frames out with ``next_frame()``, no socket anywhere, so each
can be fuzzed alone::

    framer.feed(data)                 # once per recv()
    while (frame := framer.next_frame()) is not None:
        handle(frame)                 # or: except FrameTooLong: ...

``next_frame()`` returns one complete frame, or ``None`` when it needs more
bytes. Errors come out of ``next_frame()`` in stream order, between the frames
around them, so a consumer sees exactly the same sequence of frames and errors
however the stream was split. (The tests check this for every split
hypothesis can think of.)

Limits. Every framer has a ``max_length``. A frame longer than that raises
``FrameTooLong`` as soon as that is known (at the length header, or once
``max_length`` bytes have arrived without a delimiter) and the framer then
*discards* the rest of that frame as it arrives, without buffering it. So a
framer never holds more than ``max_length`` plus a header plus the bytes of
one ``feed()``, whatever the peer sends (Twisted's ``LineReceiver.MAX_LENGTH``
is the precedent). After ``FrameTooLong`` the framer continues with the next
frame. A stream that cannot be parsed at all (a netstring with a bad header)
raises ``FramingError``, and the framer stays broken.

The consumer must drain ``next_frame()`` after each ``feed()``: the memory
bound holds for a framer that is drained, not for one that is only fed.
"""

from __future__ import annotations

from typing import Literal, Optional

from .buffers import BytesLike
from .errors import FrameTooLong, FramingError

__all__ = ["Framer", "LineFramer", "LengthPrefixFramer", "NetstringFramer",
           "DEFAULT_MAX_LINE", "DEFAULT_MAX_FRAME"]

# Twisted's LineReceiver.MAX_LENGTH is 16 KiB; a line protocol rarely needs
# more, and a longer limit is one argument away.
DEFAULT_MAX_LINE = 16 * 1024
# Binary frames are bigger; 1 MiB bounds a peer's claim of a 4 GiB frame.
DEFAULT_MAX_FRAME = 1024 * 1024


class Framer:
    """Common state: the unparsed bytes, the limit, and the broken flag."""

    def __init__(self, max_length: int) -> None:
        if max_length < 0:
            raise ValueError(f"max_length must be >= 0, got {max_length}")
        self.max_length = max_length
        self._buf = bytearray()
        self._broken: Optional[FramingError] = None
        self._skip = 0  # payload bytes of an over-long (length-prefixed) frame still to drop

    def feed(self, data: BytesLike) -> None:
        """Append the bytes of one read. Then drain ``next_frame()``."""
        if self._broken is not None:
            raise self._broken
        self._buf += data

    def next_frame(self) -> Optional[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _parsable(self) -> bool:
        """Before parsing: re-raise a broken stream's error; drop what has come
        of an over-long frame. False while that frame is still arriving."""
        if self._broken is not None:
            raise self._broken
        return not (self._skip and self._still_skipping())

    def _too_long(self, length: int, message: str) -> FrameTooLong:
        """Start skipping an over-long frame (dropping what is already here, so
        the buffer stays bounded); the error to raise."""
        self._skip = length
        self._still_skipping()
        return FrameTooLong(message, length=length, max_length=self.max_length)

    def _still_skipping(self) -> bool:
        """Drop what has arrived of an over-long frame; True while more is to come."""
        dropped = min(self._skip, len(self._buf))
        del self._buf[:dropped]
        self._skip -= dropped
        return self._skip > 0

    def frames(self) -> list[bytes]:
        """Every complete frame buffered, for consumers that do not expect errors.

        Raises at the first error; frames before it are lost to the caller,
        so protocols that handle ``FrameTooLong`` should loop on
        ``next_frame()`` instead.
        """
        out = []
        while (frame := self.next_frame()) is not None:
            out.append(frame)
        return out

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for the rest of a frame (what the limit bounds)."""
        return len(self._buf)

    def _fail(self, message: str) -> FramingError:
        self._broken = FramingError(message)
        self._buf.clear()
        return self._broken


class LineFramer(Framer):
    r"""Lines ending in ``\n`` or ``\r\n``; the terminator is not part of the frame.

    *max_length* counts the line's bytes without its terminator. An over-long
    line raises ``FrameTooLong`` once, as soon as ``max_length`` bytes (plus a
    possible ``\r``) have arrived without a ``\n``, or when it arrives whole;
    everything up to and including its ``\n`` is then discarded.
    """

    def __init__(self, max_length: int = DEFAULT_MAX_LINE) -> None:
        super().__init__(max_length)
        self._scanned = 0  # bytes of _buf known to hold no b"\n"
        self._discarding = False  # inside an over-long line, until its \n

    def next_frame(self) -> Optional[bytes]:
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        while True:
            nl = buf.find(b"\n", self._scanned)
            if nl < 0:
                if self._discarding:
                    buf.clear()  # still inside the long line: drop it
                    self._scanned = 0
                    return None
                self._scanned = len(buf)
                # One byte of grace for a \r whose \n has not arrived yet.
                over = len(buf) - self.max_length
                if over > 1 or (over == 1 and buf[-1] != 0x0D):
                    buf.clear()
                    self._scanned = 0
                    self._discarding = True
                    raise FrameTooLong(
                        f"line longer than {self.max_length} bytes",
                        length=None, max_length=self.max_length)
                return None
            end = nl - 1 if nl > 0 and buf[nl - 1] == 0x0D else nl
            line = bytes(buf[:end])
            del buf[:nl + 1]
            self._scanned = 0
            if self._discarding:
                self._discarding = False  # the long line ends here
                continue
            if len(line) > self.max_length:
                raise FrameTooLong(
                    f"line of {len(line)} bytes is longer than {self.max_length}",
                    length=len(line), max_length=self.max_length)
            return line

    @staticmethod
    def encode(line: BytesLike) -> bytes:
        return bytes(line) + b"\r\n"


class LengthPrefixFramer(Framer):
    """Frames preceded by an unsigned big-endian length of *header_size* bytes.

    An over-long frame raises ``FrameTooLong`` when its header is read; its
    payload is then skipped as it arrives, never buffered.
    """

    def __init__(self, max_length: int = DEFAULT_MAX_FRAME, header_size: int = 4,
                 byteorder: Literal["big", "little"] = "big") -> None:
        super().__init__(max_length)
        if header_size not in (1, 2, 4, 8):
            raise ValueError(f"header_size must be 1, 2, 4 or 8, got {header_size}")
        if byteorder not in ("big", "little"):
            raise ValueError(f"byteorder must be 'big' or 'little', got {byteorder!r}")
        self.header_size = header_size
        self.byteorder: Literal["big", "little"] = byteorder

    def next_frame(self) -> Optional[bytes]:
        if not self._parsable():
            return None
        buf = self._buf
        h = self.header_size
        if len(buf) < h:
            return None
        length = int.from_bytes(buf[:h], self.byteorder)
        if length > self.max_length:
            del buf[:h]
            raise self._too_long(length, f"frame of {length} bytes is longer than {self.max_length}")
        if len(buf) < h + length:
            return None
        frame = bytes(buf[h:h + length])
        del buf[:h + length]
        return frame

    def encode(self, payload: BytesLike) -> bytes:
        n = memoryview(payload).nbytes
        if n > self.max_length:
            raise FrameTooLong(f"frame of {n} bytes is longer than {self.max_length}",
                               length=n, max_length=self.max_length)
        return n.to_bytes(self.header_size, self.byteorder) + bytes(payload)


class NetstringFramer(Framer):
    """D. J. Bernstein's netstrings: ``b"5:hello,"``.

    A header that is not ASCII digits then ``:`` (or has a leading zero, or
    more digits than any sane length), or a payload not followed by ``,``,
    is a ``FramingError``: there is no way to find the next frame. A
    well-formed but over-long netstring raises ``FrameTooLong`` and is
    skipped.
    """

    MAX_DIGITS = 20  # covers any 64-bit length; more is garbage, not a number

    def __init__(self, max_length: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(max_length)
        self._expect_comma = False  # after a skipped payload

    def next_frame(self) -> Optional[bytes]:
        if not self._parsable():
            return None
        buf = self._buf
        if self._expect_comma:
            if not buf:
                return None
            if buf[0] != 0x2C:
                raise self._fail("netstring payload not followed by ','")
            del buf[:1]
            self._expect_comma = False
        colon = buf.find(b":", 0, self.MAX_DIGITS + 1)
        if colon < 0:
            digits = bytes(buf[:self.MAX_DIGITS + 1])
            if len(digits) > self.MAX_DIGITS or not _all_digits(digits):
                raise self._fail(f"bad netstring length header {digits[:24]!r}")
            if digits[:1] == b"0" and len(digits) > 1:
                raise self._fail("netstring length has a leading zero")
            return None
        digits = bytes(buf[:colon])
        if not digits or not _all_digits(digits) or (digits[0] == 0x30 and len(digits) > 1):
            raise self._fail(f"bad netstring length header {digits[:24]!r}")
        length = int(digits)
        if length > self.max_length:
            del buf[:colon + 1]
            self._expect_comma = True
            raise self._too_long(length, f"netstring of {length} bytes is longer than {self.max_length}")
        end = colon + 1 + length
        if len(buf) <= end:
            return None
        if buf[end] != 0x2C:
            raise self._fail("netstring payload not followed by ','")
        frame = bytes(buf[colon + 1:end])
        del buf[:end + 1]
        return frame

    def encode(self, payload: BytesLike) -> bytes:
        data = bytes(payload)
        if len(data) > self.max_length:
            raise FrameTooLong(f"netstring of {len(data)} bytes is longer than {self.max_length}",
                               length=len(data), max_length=self.max_length)
        return b"%d:%s," % (len(data), data)


def _all_digits(data: bytes) -> bool:
    return all(0x30 <= b <= 0x39 for b in data)
