"""Socket transports: the lifecycle and flow control that every transport shares.

Theory of operation
-------------------
A transport owns one non-blocking socket and sits between the loop and a
protocol. It registers itself with ``add_reader``/``add_writer`` like any
user code would, through the small ``registry.TransportHost`` contract; the
loop does not know what a transport is. ``SocketTransport`` here holds what
stream (``streams.py``) and datagram (``datagrams.py``) transports have in
common: the lifecycle, reading on and off, the water marks, error reports
and extra info. Each subclass adds only how bytes move.

The lifecycle is one attribute, ``_state``::

    NEW --_start--> OPEN --close()--> CLOSING --buffer drained--> LOST --loop--> CLOSED
     |               |                  |                          ^
     +---------------+------------------+--abort(), socket error---+

* ``NEW``: created, signed into the reactor's registry; ``connection_made``
  is queued (``call_soon``), so the creator can still set limits first.
* ``OPEN``: ``connection_made`` ran; reading unless paused.
* ``CLOSING``: ``close()``: no more reading; the write buffer drains.
* ``LOST``: no more I/O; ``connection_lost`` is queued (never called from
  inside the call that caused it); the socket is still open.
* ``CLOSED``: ``connection_lost`` ran, the fd left the selector *before*
  the socket closed (a closed fd left registered breaks select()), and the
  registry has the final byte counts. Nothing happens after this.

Legal moves: NEW->OPEN (``_start``); NEW or OPEN->CLOSING (``close``);
NEW, OPEN or CLOSING->LOST (buffer drained, ``abort``, a socket error);
LOST->CLOSED (the queued call); any->CLOSED (``_shutdown``, when the reactor
closes and queued calls will never run; ``_discard``, when a listener
refuses a connection before its protocol heard of it). A move not listed
does not happen: every method tests the state first.

One fact the state cannot hold: whether ``connection_made`` has run. It
normally has by LOST, but a transport closed before ``_start`` ran (from a
listener's ``transport_setup``, or by the reactor closing) may not. ``_made``
records it, and ``connection_lost`` is called only if it is set: exactly
once, after ``connection_made``, or not at all (asyncio's rule).

Flow control. The subclass says how many bytes wait to be sent
(``get_write_buffer_size``); past the high-water mark the protocol gets
``pause_writing()``, at the low-water mark ``resume_writing()``, once per
crossing (``_maybe_pause_protocol``, ``_maybe_resume_protocol``).

Errors. An exception from a protocol callback is reported to the loop's
exception handler; lifecycle and flow-control callbacks then abort this
transport (``_protocol_error``), since its state is unknown. Other
connections and the loop carry on.
"""

from __future__ import annotations

import enum
import logging
import socket
from typing import TYPE_CHECKING, Any, Final, Optional

from .registry import TransportHost

if TYPE_CHECKING:  # pragma: no cover
    from .protocols import BaseProtocol

__all__ = ["SocketTransport", "State", "DEFAULT_HIGH_WATER", "DEFAULT_LOW_WATER", "water_marks"]

logger = logging.getLogger("reactor")

DEFAULT_HIGH_WATER = 64 * 1024  # asyncio's default
DEFAULT_LOW_WATER = 16 * 1024  # asyncio's default: a quarter of high


def water_marks(high: Optional[int], low: Optional[int]) -> tuple[int, int]:
    """(high, low) with asyncio's defaults: high 64 KiB, or 4 * low; low high // 4."""
    if high is None:
        high = DEFAULT_HIGH_WATER if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


class State(enum.IntEnum):
    """A transport's lifecycle, in order: a later state never goes back."""

    NEW = 0
    OPEN = 1
    CLOSING = 2
    LOST = 3
    CLOSED = 4


# The attribute holds the plain int (State.OPEN.value ...): comparing two
# ints is the cheapest test there is, and write() makes one per call.
# Final: in the compiled build, C constants, not a module-dict lookup per use.
_NEW: Final = State.NEW.value
_OPEN: Final = State.OPEN.value
_CLOSING: Final = State.CLOSING.value
_LOST: Final = State.LOST.value
_CLOSED: Final = State.CLOSED.value


class SocketTransport:
    """The shared half of every transport: lifecycle, reading on/off, water marks."""

    # Slots: no per-instance __dict__. A server holding 5,000 idle
    # connections pays for every byte of this object 5,000 times.
    __slots__ = ("_reactor", "_sock", "_fileno", "_protocol", "_state", "_made", "_exc",
                 "_peername", "_extra", "_reading_paused", "_writing_paused",
                 "_high_water", "_low_water", "bytes_received", "bytes_sent", "__weakref__")

    _protocol: Any  # a protocol class matching the transport; Any so subclasses call their own callbacks

    def __init__(self, reactor: TransportHost, sock: socket.socket, protocol: "BaseProtocol", *,
                 peername: Any = None, extra: Optional[dict[str, Any]] = None) -> None:
        sock.setblocking(False)
        self._reactor = reactor
        self._sock = sock
        self._fileno = sock.fileno()
        self._protocol = protocol
        self._state: int = _NEW  # a State's value
        self._made = False
        self._exc: Optional[BaseException] = None  # what connection_lost will receive
        self._peername = peername
        # What the creator adds, and the sockname once asked for; None until then.
        self._extra = dict(extra) if extra else None
        self._reading_paused = False
        self._writing_paused = False  # the protocol's state: pause_writing() called
        self._high_water = DEFAULT_HIGH_WATER
        self._low_water = DEFAULT_LOW_WATER
        self.bytes_received = 0
        self.bytes_sent = 0
        reactor.registry.opened(self)
        reactor.call_soon(self._start)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self._fileno} {State(self._state).name.lower()} {self._describe()}>"

    def _describe(self) -> str:
        """The subclass's part of repr(): its reading and writing state."""
        return ""

    # -- what subclasses define ------------------------------------------------

    def _reader(self) -> Any:
        """The callback to register for readability."""
        raise NotImplementedError

    def _wants_reader(self) -> bool:
        """Is there anything left to read (False after a stream's EOF)?"""
        return True

    def get_write_buffer_size(self) -> int:
        raise NotImplementedError

    def _clear_write_buffer(self) -> None:
        raise NotImplementedError

    def _has_pending_writes(self) -> bool:
        """Is anything waiting to be sent? (Not always "are bytes buffered": a
        queued datagram may be empty.)"""
        return self.get_write_buffer_size() > 0

    def get_server(self) -> Any:
        """The listener that accepted this connection, or None."""
        return None

    def _detached(self) -> None:
        """The socket is closed: tell whoever else keeps count (a listener)."""

    # -- lifecycle -----------------------------------------------------------

    def _start(self) -> None:
        if self._state == _CLOSED:
            return  # discarded before its protocol heard of it
        if self._state == _NEW:
            self._state = _OPEN
        self._made = True
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            # The connection is made all the same: leave it working, so a
            # loop run again after the interrupt serves it.
            self._start_reading()
            raise
        except Exception as exc:
            self._protocol_error(exc, "connection_made")
            return
        self._start_reading()
        if self._state < _LOST:
            self._maybe_pause_protocol()  # written past high water before connection_made

    def _start_reading(self) -> None:
        if self._state == _OPEN and not self._reading_paused and self._wants_reader():
            try:
                self._reactor.add_reader(self._sock, self._reader())
            except (OSError, ValueError) as exc:  # an fd the selector cannot watch
                self._force_close(exc)

    def close(self) -> None:
        """Stop reading, send what is buffered, then close. Idempotent."""
        if self._state >= _CLOSING:
            return
        self._state = _CLOSING
        self._reactor.remove_reader(self._sock)
        if not self._has_pending_writes():
            self._schedule_connection_lost(None)

    def abort(self) -> None:
        """Close now, discarding buffered data. Idempotent."""
        self._force_close(None)

    def is_closing(self) -> bool:
        return self._state >= _CLOSING

    def _force_close(self, exc: Optional[BaseException]) -> None:
        if self._state >= _LOST:
            return
        self._clear_write_buffer()
        self._reactor.remove_reader(self._sock)
        self._reactor.remove_writer(self._sock)
        self._schedule_connection_lost(exc)

    def _schedule_connection_lost(self, exc: Optional[BaseException]) -> None:
        if self._state >= _LOST:
            return
        self._state = _LOST
        self._exc = exc
        self._reactor.call_soon(self._call_connection_lost)

    def _call_connection_lost(self) -> None:
        if self._state != _CLOSED:
            self._finish()

    def _shutdown(self) -> None:
        """The reactor is closing: finish now, since queued callbacks will never run.

        Buffered data is dropped; ``connection_lost`` still runs exactly once
        (if ``connection_made`` did).
        """
        if self._state != _CLOSED:
            self._clear_write_buffer()
            self._finish()

    def _discard(self, exc: BaseException) -> None:
        """Close before the protocol has heard of us: no callback at all."""
        if self._state == _NEW:
            self._exc = exc
            self._finish()

    def _finish(self) -> None:
        """-> CLOSED: the one place a transport's socket is closed."""
        self._state = _CLOSED
        exc = self._exc
        try:
            if self._made:
                self._protocol.connection_lost(exc)
        except Exception as error:
            self._report(error, "connection_lost")
        finally:
            # Out of the selector before the fd is closed, whatever path led
            # here: a registered, closed fd breaks select() (EBADF) or, once
            # the number is reused, the next connection's registration.
            self._reactor.remove_reader(self._sock)
            self._reactor.remove_writer(self._sock)
            self._sock.close()
            self._reactor.registry.closed(self, exc)
            self._detached()

    # -- errors ----------------------------------------------------------------

    def _report(self, exc: BaseException, method: str, consequence: str = "") -> None:
        self._reactor.call_exception_handler({
            "message": f"protocol.{method}() raised{consequence}",
            "exception": exc, "transport": self, "protocol": self._protocol})

    def _protocol_error(self, exc: BaseException, method: str) -> None:
        """A lifecycle or flow-control callback raised: report it, abort this transport only."""
        self._report(exc, method, "; aborting the connection")
        self._force_close(exc)

    # -- reading on and off ----------------------------------------------------

    def pause_reading(self) -> None:
        """Stop delivering data until resume_reading(). Idempotent."""
        if self._state >= _CLOSING or self._reading_paused:
            return
        self._reading_paused = True
        if self._state == _OPEN and self._wants_reader():
            self._reactor.remove_reader(self._sock)

    def resume_reading(self) -> None:
        """Undo pause_reading(). Idempotent."""
        if self._state >= _CLOSING or not self._reading_paused:
            return
        self._reading_paused = False
        self._start_reading()

    def is_reading(self) -> bool:
        return not self._reading_paused and self._state <= _OPEN and self._wants_reader()

    # -- flow control ----------------------------------------------------------

    def _maybe_pause_protocol(self) -> None:
        """Past the high-water mark: pause_writing(), once per crossing.

        Never before ``connection_made`` (the creator may write first, from
        ``transport_setup``): ``_start`` looks again once the protocol is made.
        """
        if (not self._writing_paused and self._made
                and self.get_write_buffer_size() > self._high_water):
            self._writing_paused = True
            try:
                self._protocol.pause_writing()
            except Exception as exc:
                self._protocol_error(exc, "pause_writing")

    def _maybe_resume_protocol(self) -> bool:
        """At the low-water mark: resume_writing(), once. False if that callback failed."""
        if self._writing_paused and self.get_write_buffer_size() <= self._low_water:
            self._writing_paused = False
            try:
                self._protocol.resume_writing()
            except Exception as exc:
                self._protocol_error(exc, "resume_writing")
                return False
        return True

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        """Set the flow-control water marks (asyncio's rules for the defaults).

        *high* defaults to 64 KiB (or 4 * *low* when only *low* is given);
        *low* defaults to *high* // 4. Requires ``high >= low >= 0``. New
        marks that put the buffer on the other side call the protocol now.
        """
        self._high_water, self._low_water = water_marks(high, low)
        if self._state >= _LOST:
            return
        self._maybe_pause_protocol()
        self._maybe_resume_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    # -- introspection ---------------------------------------------------------

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
