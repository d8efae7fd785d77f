"""The chat itself: users, rooms and who hears what. No sockets, no bytes.

This module is the part of the chat server that would stay the same behind
any front door (the line protocol in ``chat_server.py``, a WebSocket, a test).
A front door registers a user with a ``deliver`` function (one line of text
to show that user) and then calls ``say``, ``join``, ``private`` ... on the
user's behalf. Mistakes by users raise ``ChatError`` with a message meant
for them; the front door shows it.

Message formats, one line each (what a user sees)::

    <alice> hello                   someone in your room said something
    * alice waves                   /me
    [PM from alice] psst            a private message (/msg)
    [PM to bob] psst                the sender's copy
    *** alice joined #lobby         notices
    !!! no such user: carol         errors (raised as ChatError)

A line a user sends to a room reaches every *other* member of that room
exactly once, in the order sent, and nobody else.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

DEFAULT_ROOM = "lobby"
MAX_NICK = 16  # IRC's classic limit is 9; 16 leaves room for real names
MAX_ROOM = 24
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
RESERVED = {"server", "admin", "system"}


class ChatError(Exception):
    """A user's request cannot be done; str(exc) is the explanation for them."""


class User:
    def __init__(self, nick: str, deliver: Callable[[str], None]) -> None:
        self.nick = nick
        self.deliver = deliver
        self.room: Optional[Room] = None

    def __repr__(self) -> str:
        return f"<User {self.nick} in {self.room.name if self.room else None}>"


class Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[str, User] = {}  # casefolded nick -> user, in join order

    def send(self, line: str, exclude: Optional[User] = None) -> None:
        for user in list(self.members.values()):
            if user is not exclude:
                user.deliver(line)


def validate_name(kind: str, name: str, max_length: int) -> str:
    if not name:
        raise ChatError(f"{kind} cannot be empty")
    if len(name) > max_length:
        raise ChatError(f"{kind} too long: at most {max_length} characters")
    if not _NAME.match(name):
        raise ChatError(f"{kind} must start with a letter and contain only letters, digits, '-' and '_'")
    return name


class Chat:
    """All users and rooms of one chat server."""

    def __init__(self, default_room: str = DEFAULT_ROOM) -> None:
        self.users: dict[str, User] = {}  # casefolded nick -> user
        self.rooms: dict[str, Room] = {}  # casefolded name -> room
        self.default_room = validate_name("room name", default_room, MAX_ROOM)
        self._room(default_room)

    # -- users -------------------------------------------------------------

    def _check_nick(self, nick: str, current: Optional[User] = None) -> str:
        validate_name("nickname", nick, MAX_NICK)
        key = nick.casefold()
        if key in RESERVED:
            raise ChatError(f"nickname {nick} is reserved")
        holder = self.users.get(key)
        if holder is not None and holder is not current:
            raise ChatError(f"nickname {nick} is taken")
        return key

    def register(self, nick: str, deliver: Callable[[str], None]) -> User:
        """A new user with a valid, unused nickname, placed in the default room."""
        key = self._check_nick(nick)
        user = User(nick, deliver)
        self.users[key] = user
        self.join(user, self.default_room)
        return user

    def rename(self, user: User, nick: str) -> None:
        key = self._check_nick(nick, current=user)
        old = user.nick
        if old == nick:
            return
        del self.users[old.casefold()]
        self.users[key] = user
        if user.room is not None:
            del user.room.members[old.casefold()]
            user.room.members[key] = user
            user.room.send(f"*** {old} is now known as {nick}")
        else:
            user.deliver(f"*** you are now known as {nick}")
        user.nick = nick

    def quit(self, user: User, reason: str = "") -> None:
        """Remove *user*; their room hears why. Safe to call twice."""
        if self.users.get(user.nick.casefold()) is not user:
            return
        del self.users[user.nick.casefold()]
        room = user.room
        if room is not None:
            self._leave(user)
            room.send(f"*** {user.nick} quit" + (f" ({reason})" if reason else ""))

    # -- rooms -------------------------------------------------------------

    def _room(self, name: str) -> Room:
        key = name.casefold()
        room = self.rooms.get(key)
        if room is None:
            room = self.rooms[key] = Room(name)
        return room

    def _leave(self, user: User) -> None:
        room = user.room
        assert room is not None
        del room.members[user.nick.casefold()]
        user.room = None
        if not room.members and room.name.casefold() != self.default_room.casefold():
            del self.rooms[room.name.casefold()]

    def join(self, user: User, name: str) -> None:
        name = validate_name("room name", name.lstrip("#"), MAX_ROOM)
        if user.room is not None and user.room.name.casefold() == name.casefold():
            raise ChatError(f"you are already in #{user.room.name}")
        if user.room is not None:
            self.part(user)
        room = self._room(name)
        room.members[user.nick.casefold()] = user
        user.room = room
        room.send(f"*** {user.nick} joined #{room.name}")

    def part(self, user: User) -> None:
        room = user.room
        if room is None:
            raise ChatError("you are not in a room")
        room.send(f"*** {user.nick} left #{room.name}")
        self._leave(user)

    def room_list(self) -> list[tuple[str, int]]:
        return sorted(((r.name, len(r.members)) for r in self.rooms.values()), key=lambda x: x[0].casefold())

    def who(self, user: User) -> list[str]:
        if user.room is None:
            raise ChatError("you are not in a room; /join ROOM")
        return [u.nick for u in user.room.members.values()]

    # -- talking -----------------------------------------------------------

    def say(self, user: User, text: str) -> None:
        if user.room is None:
            raise ChatError("you are not in a room; /join ROOM first")
        user.room.send(f"<{user.nick}> {text}", exclude=user)

    def action(self, user: User, text: str) -> None:
        if user.room is None:
            raise ChatError("you are not in a room; /join ROOM first")
        user.room.send(f"* {user.nick} {text}")

    def private(self, user: User, nick: str, text: str) -> None:
        target = self.users.get(nick.casefold())
        if target is None:
            raise ChatError(f"no such user: {nick}")
        target.deliver(f"[PM from {user.nick}] {text}")
        if target is not user:
            user.deliver(f"[PM to {target.nick}] {text}")

    def announce(self, text: str) -> None:
        """A server notice to every user."""
        for user in list(self.users.values()):
            user.deliver(f"*** {text}")
