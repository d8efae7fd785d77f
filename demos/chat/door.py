"""What every door does with its connection, whatever its dialect.

Theory of operation
-------------------
A door is a ``reactor.Protocol`` per client. This base class does the
plumbing all doors share, so that a door itself is only a parser (bytes of
one line -> a session command) and a renderer (an event -> lines):

- **Framing with a hard limit.** A ``LineFramer`` of ``max_line`` bytes:
  a longer line is reported once (``too_long()``) and discarded without
  being buffered.
- **Flood control that delays, never drops.** Before each line the door
  asks ``Session.throttle(now)``. When the user is over their rate, the
  line is held, reading is paused (``transport.pause_reading()``: the rest
  waits in the framer and the kernel, and TCP pushes back on the sender),
  and the door's timer fires when the next line may go. Every line is
  kept, in order. The input waiting in the framer is capped
  (``max_queue`` bytes); only a client that sends that much in one read
  can pass it, and is disconnected.
- **One timer per connection**, armed at ``Session.deadline`` and moved
  only when the deadline comes earlier (a later one is found when the
  timer fires early and re-arms), so a busy connection does not touch the
  timer heap per line.
- **Output cap**: ``set_max_write_buffer_size(max_output)``; a client that
  stops reading is aborted (``WriteBufferOverflow``) and its session ends
  with the reason "not reading". Nobody else waits for it.
- **End of input**: lines still held are handled, then the connection
  closes; ``connection_lost`` ends the session (the user quits the chat).

Events delivered to a door are rendered at once; events are never sent to
a connection that is closing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from reactor import FrameTooLong, LineFramer, Protocol, WriteBufferOverflow

from .core import Event, Goodbye
from .session import Session

if TYPE_CHECKING:  # pragma: no cover
    from .server import ChatServer

log = logging.getLogger("demos.chat")


def door_lost(door: Any, exc: Optional[BaseException], what: str = "") -> None:
    """What every door (this one, the web door) does when its connection ends:
    say why, stop its timer, end its session, and let the server count it."""
    if isinstance(exc, WriteBufferOverflow):
        door.reason = f"not reading (output queue over {door.server.max_output} bytes)"
    elif exc is not None:
        door.reason = f"error: {exc}"
    if door._timer is not None:
        door._timer.cancel()
        door._timer = None
    if door in door.server.doors:
        door.server.doors.discard(door)
        session = door.session
        if session is not None:
            nick = session.nick or "-"
            session.close(door.reason, door.server.clock())
            log.info("disconnect %s nick=%s reason=%s", door.peer, nick, door.reason)
        elif what:
            log.info("disconnect %s (%s) reason=%s", door.peer, what, door.reason)
        door.server.door_gone()


class Door(Protocol):
    """Base of the line and IRC doors. Subclasses set ``kind`` and implement
    ``make_session``, ``line``, ``render`` and ``too_long`` (and may override
    ``filter``, ``greet`` and ``refuse``)."""

    kind = "door"

    def __init__(self, server: "ChatServer") -> None:
        self.server = server
        self.transport: Any = None
        self.session: Optional[Session] = None
        self.peer = "?"
        self.host = "?"
        self.reason = "connection closed by peer"
        self._framer = LineFramer(self.max_line())
        self._held: Optional[bytes] = None
        self._paused = False
        self._eof = False
        self._timer: Any = None
        self._timer_at = 0.0

    # -- for subclasses -------------------------------------------------------

    def max_line(self) -> int:
        return self.server.max_line

    def make_session(self, now: float) -> Session:  # pragma: no cover - abstract
        raise NotImplementedError

    def filter(self, data: bytes) -> bytes:
        """Bytes as read -> bytes to frame (the line door removes telnet here)."""
        return data

    def greet(self) -> None:
        """The first thing the client sees."""

    def refuse(self, why: str) -> None:
        """The server is full or shutting down: say so (the connection then closes)."""

    def line(self, raw: bytes, now: float) -> None:  # pragma: no cover - abstract
        """One complete line (without its ending): parse it and act."""
        raise NotImplementedError

    def too_long(self) -> None:  # pragma: no cover - abstract
        """A line over ``max_line()`` bytes was discarded."""
        raise NotImplementedError

    def render(self, event: Event) -> list[str]:  # pragma: no cover - abstract
        """The lines that show *event* to this client."""
        raise NotImplementedError

    # -- output ---------------------------------------------------------------

    def send(self, *lines: str) -> None:
        if lines and self.transport is not None and not self.transport.is_closing():
            self.transport.write(("\r\n".join(lines) + "\r\n").encode("utf-8", errors="replace"))

    def deliver(self, event: Event) -> None:
        """An event from someone else (the session's ``deliver``): the fan-out
        path, once per recipient, so it skips ``emit``'s list."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        lines = self.render(event)
        if lines:
            transport.write(("\r\n".join(lines) + "\r\n").encode("utf-8", errors="replace"))

    def emit(self, events: list[Event]) -> None:
        """Render *events*; a ``Goodbye`` among them closes the connection after them."""
        if self.transport is None or self.transport.is_closing():
            return
        lines: list[str] = []
        goodbye = None
        for event in events:
            lines += self.render(event)
            if isinstance(event, Goodbye):
                goodbye = event
        self.send(*lines)
        if goodbye is not None:
            self.reason = goodbye.reason
            self.transport.close()

    def goodbye(self, reason: str, message: str) -> None:
        """Close with *message* (the server's shutdown, say)."""
        self.emit([Goodbye(reason, message)])

    # -- transport events -----------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        server = self.server
        host, port = transport.get_extra_info("peername")[:2]
        self.host, self.peer = host, f"{host}:{port}"
        if server.closing or len(server.doors) >= server.max_clients:
            why = "shutting down" if server.closing else "server full"
            log.info("refused %s: %s", self.peer, why)
            self.refuse(why)
            transport.close()
            return
        server.doors.add(self)
        transport.set_max_write_buffer_size(server.max_output)
        self.session = self.make_session(server.clock())
        log.info("connect %s (%s)", self.peer, self.kind)
        self.greet()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.session is None or self.transport.is_closing():
            return
        now = self.server.clock()
        data = self.filter(data)
        session = self.session
        session.heard(now)
        if data:
            if data.endswith(b"\n"):
                session.partial(now, False)
            else:
                if b"\n" in data:
                    session.partial(now, False)
                session.partial(now, True)
        self._framer.feed(data)
        if self._framer.buffered > self.server.max_queue:
            self.reason = f"input queue over {self.server.max_queue} bytes"
            self.send(*self.render(Goodbye(self.reason, "you sent too much at once")))
            self.transport.abort()
            return
        self.pump()

    def eof_received(self) -> Optional[bool]:
        # Reading is paused while lines wait their turn, so the end of input
        # is normally seen only after them; should any still wait, they go
        # out first and pump() closes the connection after the last.
        self._eof = True
        if self.session is not None and self._held is None and self._framer.buffered == 0:
            return None  # nothing left to do: close
        self.pump()
        return True  # lines are still waiting for their turn; pump() closes after them

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        door_lost(self, exc)

    # -- the input pump -------------------------------------------------------

    def pump(self) -> None:
        """Handle the lines that are waiting, as fast as the session allows."""
        session, transport = self.session, self.transport
        assert session is not None
        now = self.server.clock()
        while not transport.is_closing() and session.closed is None:
            if self._held is None:
                try:
                    self._held = self._framer.next_frame()
                except FrameTooLong:
                    self.too_long()
                    continue
                if self._held is None:  # all done
                    if self._eof:
                        transport.close()
                    elif self._paused:
                        self._paused = False
                        transport.resume_reading()
                    break
            if session.throttle(now) is not None:
                if not self._paused:
                    self._paused = True
                    transport.pause_reading()
                break
            raw, self._held = self._held, None
            self.line(raw, now)
        self._arm()

    # -- the timer ------------------------------------------------------------

    def _arm(self) -> None:
        session = self.session
        if session is None or self.transport.is_closing():
            return
        deadline = session.deadline
        if deadline is None:
            return  # a timer still armed finds nothing to do
        if self._timer is not None and self._timer_at <= deadline:
            return  # fires no later than needed, and re-arms then
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.server.reactor.call_later(max(0.0, deadline - self.server.clock()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        session = self.session
        if session is None or self.transport.is_closing():
            return
        self.emit(session.tick(self.server.clock()))
        self.pump()
