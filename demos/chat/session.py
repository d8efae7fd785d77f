"""One user's session: commands in, events out, and when to look again. No I/O.

Theory of operation
-------------------
A door (line, IRC, WebSocket ...) owns the connection; the ``Session`` owns
everything about the user that does not depend on the wire:

- **the nickname** (``NickCmd`` before registration registers, after it
  renames) and, for the line door, the single current room (``single_room``:
  joining another room leaves the current one; ``auto_join`` puts a new
  user in the default room);
- **commands**: the door parses its dialect into the ``*Cmd`` dataclasses
  below and calls ``handle(cmd, now)``. It returns the events meant for
  this user, in order (errors included: a ``ChatError`` becomes an
  ``Error`` event). Events caused by *other* users arrive between calls
  through the ``deliver`` function given at construction;
- **flood control**: a token bucket (``flood_burst`` lines at once,
  ``flood_rate`` per second after that). The door asks ``throttle(now)``
  before taking the next line: ``None`` means go ahead, a time means "not
  before then". The door then stops reading (``pause_reading``: the lines
  wait in the kernel and in the door's framer, none is dropped) and calls
  again at that time. The first throttle sends the user one ``Notice``, and the
  next only once the bucket has filled up again;
- **deadlines**: choosing a nickname (``nick_timeout``), silence
  (``idle_timeout``, 0 = never), a line that never ends (``line_timeout``,
  from ``partial()``), keepalive (``ping_interval``: a ``Ping`` event after
  that much silence, then ``ping_timeout`` for any answer). ``deadline`` is
  the earliest time ``tick(now)`` has something to do; ``tick`` returns the
  events (``Ping``, or ``Goodbye``) and the door re-arms one timer.

``Goodbye`` is always the last event of a session: the door shows its
message and closes the connection. ``close(reason, now)`` is for the other
direction (the connection went away): the user leaves the chat.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

from .core import (Chat, ChatError, ErrorCode, Event, Error, Goodbye, Help, Notice, Ping, RoomList, User,
                   Welcome, irc_lower)

__all__ = ["Session", "Limits", "TokenBucket", "Command", "NickCmd", "JoinCmd", "PartCmd", "SayCmd",
           "EmoteCmd", "PrivateCmd", "NoticeCmd", "TopicCmd", "NamesCmd", "ListCmd", "WhoisCmd", "HelpCmd",
           "QuitCmd", "PongCmd"]


# -- commands: what a door's parser produces -----------------------------------------------

@dataclass(frozen=True)
class NickCmd:
    """Choose a nickname (registers the session the first time) or change it."""
    nick: str
    username: str = ""
    realname: str = ""


@dataclass(frozen=True)
class JoinCmd:
    room: str


@dataclass(frozen=True)
class PartCmd:
    room: Optional[str] = None  # None: the current room (single-room doors)
    reason: str = ""


@dataclass(frozen=True)
class SayCmd:
    text: str
    room: Optional[str] = None


@dataclass(frozen=True)
class EmoteCmd:
    text: str
    room: Optional[str] = None


@dataclass(frozen=True)
class PrivateCmd:
    nick: str
    text: str
    action: bool = False


@dataclass(frozen=True)
class NoticeCmd:
    target: str  # "#room" or a nick
    text: str


@dataclass(frozen=True)
class TopicCmd:
    room: Optional[str] = None
    text: Optional[str] = None  # None: ask what it is


@dataclass(frozen=True)
class NamesCmd:
    room: Optional[str] = None


@dataclass(frozen=True)
class ListCmd:
    pass


@dataclass(frozen=True)
class WhoisCmd:
    nick: str


@dataclass(frozen=True)
class HelpCmd:
    pass


@dataclass(frozen=True)
class QuitCmd:
    reason: str = ""


@dataclass(frozen=True)
class PongCmd:
    """An answer to ``Ping`` (or the client's own keepalive): proof of life, not activity."""


Command = Union[NickCmd, JoinCmd, PartCmd, SayCmd, EmoteCmd, PrivateCmd, NoticeCmd, TopicCmd, NamesCmd,
                ListCmd, WhoisCmd, HelpCmd, QuitCmd, PongCmd]
PRE_NICK = (NickCmd, HelpCmd, QuitCmd, PongCmd)


@dataclass(frozen=True)
class Limits:
    nick_timeout: float = 60.0
    idle_timeout: float = 0.0  # 0: never
    line_timeout: float = 60.0  # a line started but not ended; 0: never
    flood_rate: float = 10.0  # lines per second, sustained
    flood_burst: int = 20  # lines at once
    ping_interval: float = 0.0  # 0: no keepalive
    ping_timeout: float = 60.0


class TokenBucket:
    """At most *burst* lines at once, *rate* per second sustained."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def ready_at(self, now: float) -> float:
        """When the next token is there (*now* if it is)."""
        self._refill(now)
        if self.tokens >= 1:
            return now
        return now + (1 - self.tokens) / self.rate


class Session:
    def __init__(self, chat: Chat, deliver: Callable[[Event], None], now: float, limits: Limits = Limits(),
                 *, host: str = "", single_room: bool = True, auto_join: Optional[str] = "") -> None:
        """*auto_join*: the room a new user is put in ("" = the chat's default
        room, None = none). *host* is the client's address, for ``Ident``."""
        self.chat = chat
        self.limits = limits
        self.host = host
        self.single_room = single_room
        self.auto_join = chat.default_room if auto_join == "" else auto_join
        self.user: Optional[User] = None
        self.closed: Optional[Goodbye] = None
        self._deliver = deliver
        self._collect: Optional[list[Event]] = None
        self._bucket = TokenBucket(limits.flood_rate, limits.flood_burst, now)
        self._throttled_until: Optional[float] = None
        self._warned = False
        self._started = now
        self._last_activity = now  # lines that do something (not pongs)
        self._last_heard = now  # anything at all
        self._pinged_at: Optional[float] = None
        self._partial_since: Optional[float] = None
        self._pings = 0

    # -- state ------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        return self.user is not None

    @property
    def nick(self) -> str:
        return self.user.nick if self.user is not None else ""

    @property
    def current_room(self) -> Optional[str]:
        """The room a single-room door's plain lines go to (the latest joined)."""
        if self.user is None or not self.user.rooms:
            return None
        return list(self.user.rooms.values())[-1].name

    def _sink(self, event: Event) -> None:
        if self._collect is not None:
            self._collect.append(event)
        else:
            self._deliver(event)

    # -- input ------------------------------------------------------------------

    def heard(self, now: float) -> None:
        """Some bytes arrived (any at all): the peer is alive."""
        self._last_heard = now
        self._pinged_at = None

    def partial(self, now: float, pending: bool) -> None:
        """Whether an unfinished line is waiting: its deadline runs from the first byte."""
        if not pending:
            self._partial_since = None
        elif self._partial_since is None:
            self._partial_since = now

    def throttle(self, now: float) -> Optional[float]:
        """None if a line may be handled now; else the time to try again."""
        when = self._bucket.ready_at(now)
        if when <= now:
            self._throttled_until = None
            if self._bucket.tokens >= self._bucket.burst:
                self._warned = False  # the burst is over: warn again next time
            return None
        if not self._warned:  # once per burst, not per line
            self._warned = True
            self._sink(Notice("slow down: you are sending too fast; your lines are being delayed", now))
        self._throttled_until = when
        return when

    def note_line(self, now: float, active: bool = True) -> None:
        """A line arrived (handled by ``handle``, or refused by the door's
        parser): it costs a flood token and, if *active*, resets the idle time."""
        self.heard(now)
        self._bucket.take(now)  # throttle() decided; a line taken anyway only borrows
        if active:
            self._last_activity = now
            if self.user is not None:
                self.user.last_active = now

    def handle(self, command: Command, now: float) -> list[Event]:
        """Do *command*; the events for this user, in order."""
        if self.closed is not None:
            return []
        self.note_line(now, not isinstance(command, PongCmd))
        out: list[Event] = []
        self._collect = out
        try:
            self._dispatch(command, now)
        except ChatError as exc:
            out.append(Error(exc.code, exc.text, exc.arg))
        finally:
            self._collect = None
        return out

    def _dispatch(self, cmd: Command, now: float) -> None:
        chat, user = self.chat, self.user
        if isinstance(cmd, PongCmd):
            return
        if isinstance(cmd, HelpCmd):
            self._sink(Help())
            return
        if isinstance(cmd, QuitCmd):
            self._finish(f"quit: {cmd.reason}" if cmd.reason else "quit", "", cmd.reason, now)
            return
        if isinstance(cmd, NickCmd):
            if user is None:
                self._register(cmd, now)
            else:
                chat.rename(user, cmd.nick, now)
            return
        if user is None:
            raise ChatError(ErrorCode.NOT_REGISTERED, "choose a nickname first (or /nick, /help, /quit)")
        if isinstance(cmd, JoinCmd):
            if self.single_room:
                target = irc_lower(cmd.room[1:] if cmd.room.startswith("#") else cmd.room)
                for key, room in list(user.rooms.items()):
                    if key == target:
                        break  # the core says "already in"
                    chat.part(user, room.name, "", now)
            chat.join(user, cmd.room, now)
        elif isinstance(cmd, PartCmd):
            chat.part(user, self._room(cmd.room), cmd.reason, now)
        elif isinstance(cmd, SayCmd):
            chat.say(user, self._room(cmd.room, "; /join ROOM first"), cmd.text, now)
        elif isinstance(cmd, EmoteCmd):
            chat.emote(user, self._room(cmd.room, "; /join ROOM first"), cmd.text, now)
        elif isinstance(cmd, PrivateCmd):
            chat.private(user, cmd.nick, cmd.text, now, action=cmd.action)
        elif isinstance(cmd, NoticeCmd):
            chat.notice(user, cmd.target, cmd.text, now)
        elif isinstance(cmd, TopicCmd):
            reply = chat.topic(user, self._room(cmd.room), cmd.text, now)
            if reply is not None:
                self._sink(reply)
        elif isinstance(cmd, NamesCmd):
            self._sink(chat.names(self._room(cmd.room, "; /join ROOM")))
        elif isinstance(cmd, ListCmd):
            self._sink(RoomList(tuple(chat.room_list())))
        elif isinstance(cmd, WhoisCmd):
            self._sink(chat.whois(cmd.nick, now))
        else:  # pragma: no cover - a door passed something else
            raise TypeError(f"not a command: {cmd!r}")

    def _room(self, room: Optional[str], hint: str = "") -> str:
        if room is not None:
            return room
        current = self.current_room
        if current is None:
            raise ChatError(ErrorCode.NOT_IN_ROOM, "you are not in a room" + hint)
        return current

    def _register(self, cmd: NickCmd, now: float) -> None:
        self.user = self.chat.register(cmd.nick, self._sink, now, username=cmd.username, host=self.host,
                                       realname=cmd.realname)
        self._sink(Welcome(self.user.ident, now))
        if self.auto_join is not None:
            self.chat.join(self.user, self.auto_join, now)

    # -- time -------------------------------------------------------------------

    @property
    def deadline(self) -> Optional[float]:
        """The earliest time ``tick()`` has something to do (None: nothing pending)."""
        if self.closed is not None:
            return None
        lim = self.limits
        times = []
        if self.user is None:
            times.append(self._started + lim.nick_timeout)
        elif lim.idle_timeout:
            times.append(self._last_activity + lim.idle_timeout)
        if self._partial_since is not None and lim.line_timeout:
            times.append(self._partial_since + lim.line_timeout)
        if lim.ping_interval and self.user is not None:
            times.append(self._last_heard + lim.ping_interval if self._pinged_at is None
                         else self._pinged_at + lim.ping_timeout)
        if self._throttled_until is not None:
            times.append(self._throttled_until)
        return min(times) if times else None

    def tick(self, now: float) -> list[Event]:
        """Whatever is due at *now*: a keepalive ``Ping``, or a ``Goodbye``."""
        if self.closed is not None:
            return []
        lim = self.limits
        if self._throttled_until is not None and now >= self._throttled_until:
            self._throttled_until = None  # the door asks throttle() again if it holds a line
        out: list[Event] = []
        self._collect = out
        try:
            if self.user is None and now >= self._started + lim.nick_timeout:
                self._finish("no nickname chosen in time",
                             f"you did not choose a nickname within {lim.nick_timeout:g} seconds", "", now)
            elif self.user is not None and lim.idle_timeout and now >= self._last_activity + lim.idle_timeout:
                self._finish("idle", f"idle for {lim.idle_timeout:g} seconds", "idle", now)
            elif (self._partial_since is not None and lim.line_timeout
                  and now >= self._partial_since + lim.line_timeout):
                self._finish("partial line timeout", f"no end of line within {lim.line_timeout:g} seconds",
                             "partial line timeout", now)
            elif lim.ping_interval and self.user is not None:
                if self._pinged_at is None and now >= self._last_heard + lim.ping_interval:
                    self._pinged_at = now
                    self._pings += 1
                    out.append(Ping(f"keepalive-{self._pings}"))
                elif self._pinged_at is not None and now >= self._pinged_at + lim.ping_timeout:
                    seconds = f"{lim.ping_interval + lim.ping_timeout:g}"
                    self._finish("ping timeout", f"Ping timeout: {seconds} seconds", f"Ping timeout: {seconds} seconds",
                                 now)
        finally:
            self._collect = None
        return out

    def _finish(self, reason: str, message: str, quit_reason: str, now: float) -> None:
        if self.user is not None:
            self.chat.quit(self.user, quit_reason, now)
        self.closed = Goodbye(reason, message)
        self._sink(self.closed)

    def close(self, reason: str, now: float) -> None:
        """The connection is gone (*reason* for the others); idempotent."""
        if self.user is not None:
            self.chat.quit(self.user, reason, now)
        if self.closed is None:
            self.closed = Goodbye(reason)
