"""The chat itself: users, rooms, who hears what, as typed events. No I/O.

Theory of operation
-------------------
``Chat`` holds every user and room of one server. It never touches a
socket, a loop or a clock: each operation is a method call that takes the
time as an argument (``now``, seconds since the epoch, as the door's clock
says) and hands *events* to the users concerned, synchronously, through the
``sink`` each user was registered with. An event is a frozen dataclass
(``Joined``, ``Said``, ``Quit`` ...) holding plain data: strings, numbers,
tuples. It says what happened, not how to show it; each door renders it in
its own dialect (the line door writes ``<alice> hi``, the IRC door
``:alice!alice@host PRIVMSG #lobby :hi``), and a backplane could ship it
to another process as it is.

Who gets what:

- ``Said`` and ``Emote``: every member of the room *except* the speaker
  for ``Said``; everyone including the speaker for ``Emote`` (a door that
  echoes its own actions, like IRC clients, drops the speaker's copy).
- ``Joined``, ``Left``, ``Topic`` changes: every member, the actor included,
  in the same order for everyone. The joiner then gets the room's topic,
  its names (``Names(on_join=True)``) and its recent lines (``Replay``).
- ``Renamed`` and ``Quit``: once to each user sharing at least one room
  with the actor (``Renamed`` to the actor too).
- ``Private`` and user ``Notice``: the target, and for ``Private`` an
  ``echo=True`` copy to the sender.
- ``Error``: to nobody: a user's mistake raises ``ChatError`` (a code for
  doors that have numeric replies, a sentence for people), and the
  ``Session`` turns it into an ``Error`` event for that user alone.

Names: nicknames and room names compare with IRC's ``rfc1459`` case
mapping (``irc_lower``: ASCII letters, and ``[]\\~`` are the capitals of
``{}|^``), so ``Bob`` and ``bob`` are one user on every door. Room names are
stored without IRC's ``#``; the IRC door adds it.

Each room keeps its last ``history_lines`` lines (bounded in bytes too),
replayed to a user who joins, with the time they were said.

How a door plugs in: it creates one ``session.Session`` per connection
with a ``deliver(event)`` function, parses what the client sends into the
session's command objects, passes them to ``Session.handle(command, now)``
(which returns the events for that client), renders every event it is given
(returned or delivered) in its dialect, and calls ``Session.tick(now)`` at
``Session.deadline``. ``line_door`` and ``irc_door`` are the two examples.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

__all__ = [
    "Chat", "User", "Room", "ChatError", "ErrorCode", "Ident", "RoomInfo", "irc_lower",
    "Event", "Joined", "Left", "Said", "Emote", "Renamed", "Quit", "Private", "Notice", "Topic",
    "Names", "RoomList", "Whois", "Replay", "Help", "Ping", "Welcome", "Goodbye", "Error",
    "DEFAULT_ROOM", "MAX_NICK", "MAX_ROOM", "MAX_TOPIC",
]

DEFAULT_ROOM = "lobby"
MAX_NICK = 16  # IRC's classic limit is 9; 16 leaves room for real names
MAX_ROOM = 24
MAX_TOPIC = 300
HISTORY_LINES = 20
HISTORY_BYTES = 16 * 1024
RESERVED = {"server", "admin", "system"}
_NICK = re.compile(r"[A-Za-z\[\]\\`^{}|_][A-Za-z0-9\[\]\\`^{}|_-]*\Z")
_ROOM = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_RFC1459 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ[]\\~", "abcdefghijklmnopqrstuvwxyz{}|^")


def irc_lower(name: str) -> str:
    """The key a name is compared by: IRC's rfc1459 case mapping."""
    return name.translate(_RFC1459)


class ErrorCode(enum.Enum):
    """Why a request failed; doors with numeric replies map these (IRC: 401, 433 ...)."""

    NICK_MISSING = "nick missing"
    NICK_INVALID = "nick invalid"
    NICK_TAKEN = "nick taken"
    NO_SUCH_NICK = "no such nick"
    ROOM_INVALID = "room invalid"
    NO_SUCH_ROOM = "no such room"
    NOT_IN_ROOM = "not in room"
    ALREADY_IN_ROOM = "already in room"
    NO_TEXT = "no text"
    NO_RECIPIENT = "no recipient"
    UNKNOWN_COMMAND = "unknown command"
    NOT_REGISTERED = "not registered"
    NEED_MORE_PARAMS = "need more parameters"
    LINE_TOO_LONG = "line too long"


class ChatError(Exception):
    """A user's request cannot be done: ``str(exc)`` is the explanation for
    them, ``code`` what went wrong, ``arg`` the name it concerns (a nick, a room)."""

    def __init__(self, code: ErrorCode, text: str, arg: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.arg = arg


# -- events ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Ident:
    """Who did something: IRC's ``nick!username@host`` (doors that need less use ``nick``)."""

    nick: str
    username: str = ""
    host: str = ""

    @property
    def prefix(self) -> str:
        return f"{self.nick}!{self.username or self.nick}@{self.host or 'unknown'}"


@dataclass(frozen=True)
class Event:
    """Base of every event; ``at`` is when it happened (the caller's ``now``)."""


@dataclass(frozen=True)
class Welcome(Event):
    """You are registered as *who* (IRC: 001-005 and the MOTD)."""
    who: Ident
    at: float = 0.0


@dataclass(frozen=True)
class Joined(Event):
    room: str
    who: Ident
    at: float = 0.0


@dataclass(frozen=True)
class Left(Event):
    room: str
    who: Ident
    reason: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class Said(Event):
    room: str
    who: Ident
    text: str
    at: float = 0.0


@dataclass(frozen=True)
class Emote(Event):
    """``/me waves`` (IRC: CTCP ACTION)."""
    room: str
    who: Ident
    text: str
    at: float = 0.0


@dataclass(frozen=True)
class Renamed(Event):
    who: Ident  # as it was, with the old nickname
    new: str
    at: float = 0.0


@dataclass(frozen=True)
class Quit(Event):
    who: Ident
    reason: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class Private(Event):
    """A message from *who* to *target*; ``echo`` marks the sender's own copy."""
    who: Ident
    target: str
    text: str
    at: float = 0.0
    echo: bool = False
    action: bool = False


@dataclass(frozen=True)
class Notice(Event):
    """A notice. From the server when *who* is None (shutdown, flood warning);
    from a user otherwise, to *room* or to you."""
    text: str
    at: float = 0.0
    who: Optional[Ident] = None
    room: Optional[str] = None


@dataclass(frozen=True)
class Topic(Event):
    """A room's topic: ``changed`` when *by* just set it, else a reply (on
    join or when asked; *text* "" means no topic is set)."""
    room: str
    text: str
    by: str = ""
    set_at: float = 0.0
    changed: bool = False
    at: float = 0.0
    on_join: bool = False


@dataclass(frozen=True)
class Names(Event):
    """Who is in *room*, in join order; ``on_join`` when sent to a joiner."""
    room: str
    nicks: tuple[str, ...]
    on_join: bool = False


@dataclass(frozen=True)
class RoomInfo:
    name: str
    members: int
    topic: str


@dataclass(frozen=True)
class RoomList(Event):
    rooms: tuple[RoomInfo, ...]


@dataclass(frozen=True)
class Whois(Event):
    who: Ident
    realname: str
    rooms: tuple[str, ...]
    idle: float
    signon: float


@dataclass(frozen=True)
class Replay(Event):
    """A room's recent lines, for someone who just joined it; each keeps its ``at``."""
    room: str
    lines: tuple[Union[Said, Emote], ...]


@dataclass(frozen=True)
class Help(Event):
    """You asked for help; each door knows its own commands."""


@dataclass(frozen=True)
class Ping(Event):
    """Are you there? (a keepalive; the door's reply comes back as ``PongCmd``)."""
    token: str


@dataclass(frozen=True)
class Goodbye(Event):
    """The session is over: say *message* (may be "") and close. *reason* is for the log."""
    reason: str
    message: str = ""


@dataclass(frozen=True)
class Error(Event):
    code: ErrorCode
    text: str
    arg: str = ""


Sink = Callable[[Event], None]


# -- users and rooms ---------------------------------------------------------------------

class User:
    """One registered user: a nickname, the rooms they are in, and where their events go."""

    def __init__(self, ident: Ident, sink: Sink, now: float, realname: str = "") -> None:
        self.ident = ident
        self.sink = sink
        self.realname = realname
        self.signon = now
        self.last_active = now
        self.rooms: dict[str, Room] = {}  # key -> room, in join order

    @property
    def nick(self) -> str:
        return self.ident.nick

    def __repr__(self) -> str:
        return f"<User {self.nick} in {[r.name for r in self.rooms.values()]}>"


class Room:
    def __init__(self, name: str, history_lines: int, history_bytes: int) -> None:
        self.name = name
        self.members: dict[str, User] = {}  # nick key -> user, in join order
        self.topic = ""
        self.topic_by = ""
        self.topic_at = 0.0
        self.history: deque[Union[Said, Emote]] = deque()
        self.history_bytes = 0
        self._max_lines = history_lines
        self._max_bytes = history_bytes

    def send(self, event: Event, exclude: Optional[User] = None) -> None:
        for user in list(self.members.values()):
            if user is not exclude:
                user.sink(event)

    def remember(self, line: Union[Said, Emote]) -> None:
        """Keep *line* for ``Replay``; forget the oldest past either bound."""
        if self._max_lines <= 0:
            return
        self.history.append(line)
        self.history_bytes += _size(line)
        while self.history and (len(self.history) > self._max_lines or self.history_bytes > self._max_bytes):
            self.history_bytes -= _size(self.history.popleft())


def _size(line: Union[Said, Emote]) -> int:
    return len(line.text.encode("utf-8", "replace")) + len(line.who.nick) + 16


def validate_nick(nick: str) -> str:
    if not nick:
        raise ChatError(ErrorCode.NICK_MISSING, "nickname cannot be empty")
    if len(nick) > MAX_NICK:
        raise ChatError(ErrorCode.NICK_INVALID, f"nickname too long: at most {MAX_NICK} characters", nick)
    if not _NICK.match(nick):
        raise ChatError(ErrorCode.NICK_INVALID, "nickname must start with a letter and contain only letters, "
                        "digits, '-' and '_'", nick)
    return nick


def validate_room(name: str) -> str:
    """*name* without a leading ``#``, checked."""
    bare = name[1:] if name.startswith("#") else name
    if not bare:
        raise ChatError(ErrorCode.ROOM_INVALID, "room name cannot be empty", name)
    if len(bare) > MAX_ROOM:
        raise ChatError(ErrorCode.ROOM_INVALID, f"room name too long: at most {MAX_ROOM} characters", name)
    if not _ROOM.match(bare):
        raise ChatError(ErrorCode.ROOM_INVALID, "room name must start with a letter and contain only letters, "
                        "digits, '-' and '_'", name)
    return bare


class Chat:
    """All users and rooms of one chat server. Every method is synchronous and
    delivers its events before it returns."""

    def __init__(self, default_room: str = DEFAULT_ROOM, *, history_lines: int = HISTORY_LINES,
                 history_bytes: int = HISTORY_BYTES) -> None:
        self.users: dict[str, User] = {}  # nick key -> user
        self.rooms: dict[str, Room] = {}  # room key -> room
        self.history_lines = history_lines
        self.history_bytes = history_bytes
        self.default_room = validate_room(default_room)
        self._room(self.default_room)

    # -- looking things up -----------------------------------------------------

    def find_user(self, nick: str) -> Optional[User]:
        return self.users.get(irc_lower(nick))

    def find_room(self, name: str) -> Optional[Room]:
        bare = name[1:] if name.startswith("#") else name
        return self.rooms.get(irc_lower(bare))

    def room_list(self) -> list[RoomInfo]:
        return sorted((RoomInfo(r.name, len(r.members), r.topic) for r in self.rooms.values()),
                      key=lambda info: irc_lower(info.name))

    def neighbours(self, user: User) -> Iterator[User]:
        """Each user sharing at least one room with *user*, once (not *user*)."""
        seen = {id(user)}
        for room in list(user.rooms.values()):
            for other in list(room.members.values()):
                if id(other) not in seen:
                    seen.add(id(other))
                    yield other

    def _member_room(self, user: User, name: str) -> Room:
        room = self.find_room(name)
        if room is None:
            raise ChatError(ErrorCode.NO_SUCH_ROOM, f"no such room: #{validate_room(name)}", name)
        if irc_lower(room.name) not in user.rooms:
            raise ChatError(ErrorCode.NOT_IN_ROOM, f"you are not in #{room.name}", room.name)
        return room

    # -- users -----------------------------------------------------------------

    def _check_nick(self, nick: str, current: Optional[User] = None) -> str:
        validate_nick(nick)
        key = irc_lower(nick)
        if key in RESERVED:
            raise ChatError(ErrorCode.NICK_TAKEN, f"nickname {nick} is reserved", nick)
        holder = self.users.get(key)
        if holder is not None and holder is not current:
            raise ChatError(ErrorCode.NICK_TAKEN, f"nickname {nick} is taken", nick)
        return key

    def register(self, nick: str, sink: Sink, now: float, *, username: str = "", host: str = "",
                 realname: str = "") -> User:
        """A new user with a valid, unused nickname (in no room yet)."""
        key = self._check_nick(nick)
        user = User(Ident(nick, username or nick, host), sink, now, realname or nick)
        self.users[key] = user
        return user

    def rename(self, user: User, nick: str, now: float) -> None:
        key = self._check_nick(nick, current=user)
        old = user.ident
        if old.nick == nick:
            return
        del self.users[irc_lower(old.nick)]
        self.users[key] = user
        for room in user.rooms.values():
            del room.members[irc_lower(old.nick)]
            room.members[key] = user
        user.ident = Ident(nick, old.username, old.host)
        event = Renamed(old, nick, now)
        user.sink(event)
        for other in self.neighbours(user):
            other.sink(event)

    def quit(self, user: User, reason: str, now: float) -> None:
        """Remove *user*; everyone sharing a room hears why. Safe to call twice."""
        if self.users.get(irc_lower(user.nick)) is not user:
            return
        del self.users[irc_lower(user.nick)]
        event = Quit(user.ident, reason, now)
        neighbours = list(self.neighbours(user))
        for room in list(user.rooms.values()):
            self._leave(user, room)
        for other in neighbours:
            other.sink(event)

    # -- rooms -----------------------------------------------------------------

    def _room(self, name: str) -> Room:
        key = irc_lower(name)
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name, self.history_lines, self.history_bytes)
        return room

    def _leave(self, user: User, room: Room) -> None:
        del room.members[irc_lower(user.nick)]
        del user.rooms[irc_lower(room.name)]
        if not room.members and irc_lower(room.name) != irc_lower(self.default_room):
            del self.rooms[irc_lower(room.name)]

    def join(self, user: User, name: str, now: float) -> Room:
        """*user* joins (or creates) room *name*; its members see ``Joined``, then
        the joiner gets the topic, the names and the recent lines."""
        bare = validate_room(name)
        if irc_lower(bare) in user.rooms:
            raise ChatError(ErrorCode.ALREADY_IN_ROOM, f"you are already in #{user.rooms[irc_lower(bare)].name}",
                            bare)
        room = self._room(bare)
        room.members[irc_lower(user.nick)] = user
        user.rooms[irc_lower(room.name)] = room
        room.send(Joined(room.name, user.ident, now))
        user.sink(Topic(room.name, room.topic, room.topic_by, room.topic_at, False, now, on_join=True))
        user.sink(Names(room.name, tuple(u.nick for u in room.members.values()), on_join=True))
        if room.history:
            user.sink(Replay(room.name, tuple(room.history)))
        return room

    def part(self, user: User, name: str, reason: str, now: float) -> None:
        room = self._member_room(user, name)
        room.send(Left(room.name, user.ident, reason, now))
        self._leave(user, room)

    def names(self, name: str) -> Names:
        room = self.find_room(name)
        if room is None:
            raise ChatError(ErrorCode.NO_SUCH_ROOM, f"no such room: #{validate_room(name)}", name)
        return Names(room.name, tuple(u.nick for u in room.members.values()))

    def topic(self, user: User, name: str, text: Optional[str], now: float) -> Optional[Topic]:
        """Set the topic of a room *user* is in (everyone there sees it), or
        return it when *text* is None."""
        room = self._member_room(user, name)
        if text is None:
            return Topic(room.name, room.topic, room.topic_by, room.topic_at, False, now)
        room.topic, room.topic_by, room.topic_at = text[:MAX_TOPIC], user.nick, now
        room.send(Topic(room.name, room.topic, user.nick, now, True, now))
        return None

    # -- talking ---------------------------------------------------------------

    def say(self, user: User, name: str, text: str, now: float) -> None:
        room = self._member_room(user, name)
        line = Said(room.name, user.ident, text, now)
        room.remember(line)
        room.send(line, exclude=user)

    def emote(self, user: User, name: str, text: str, now: float) -> None:
        room = self._member_room(user, name)
        line = Emote(room.name, user.ident, text, now)
        room.remember(line)
        room.send(line)

    def private(self, user: User, nick: str, text: str, now: float, *, action: bool = False) -> None:
        target = self.find_user(nick)
        if target is None:
            raise ChatError(ErrorCode.NO_SUCH_NICK, f"no such user: {nick}", nick)
        target.sink(Private(user.ident, target.nick, text, now, action=action))
        if target is not user:
            user.sink(Private(user.ident, target.nick, text, now, echo=True, action=action))

    def notice(self, user: User, target: str, text: str, now: float) -> None:
        """A user's notice to a room (``#name``) or a nick; nobody answers notices."""
        if target.startswith("#"):
            room = self._member_room(user, target)
            room.send(Notice(text, now, user.ident, room.name), exclude=user)
            return
        other = self.find_user(target)
        if other is None:
            raise ChatError(ErrorCode.NO_SUCH_NICK, f"no such user: {target}", target)
        other.sink(Notice(text, now, user.ident))

    def whois(self, nick: str, now: float) -> Whois:
        user = self.find_user(nick)
        if user is None:
            raise ChatError(ErrorCode.NO_SUCH_NICK, f"no such user: {nick}", nick)
        return Whois(user.ident, user.realname, tuple(r.name for r in user.rooms.values()),
                     max(0.0, now - user.last_active), user.signon)

    def announce(self, text: str, now: float) -> None:
        """A server notice to every user."""
        for user in list(self.users.values()):
            user.sink(Notice(text, now))
