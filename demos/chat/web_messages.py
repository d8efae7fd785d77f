"""The JSON the chat page and the server exchange over their WebSocket. No I/O.

Theory of operation
-------------------
Each WebSocket text message carries one JSON object with a ``"type"``. The
browser sends commands; ``parse`` turns one into the same session command
(``NickCmd``, ``SayCmd`` ...) that the line and IRC doors produce from their
dialects, or into an ``Error`` event to show. The server sends events;
``render`` turns a core event into one JSON-ready dict (or None for events
a browser does not show, like ``Ping``: the web door answers keepalives with
WebSocket ping frames instead).

The browser is multi-room, like an IRC client: every command names its room
and every event says which room it concerns. Nothing here is trusted: every
field is checked for its type, text is cleaned like a line from nc
(``hygiene.clean_text``: no control characters, no escape sequences), and a
message longer than the line door's limit is refused, so a browser user
cannot send what an nc user could not.

Browser -> server::

    {"type": "nick", "nick": "alice"}              choose (then change) a nickname
    {"type": "join", "room": "dev"}                join or create a room
    {"type": "part", "room": "dev", "reason": ""}  leave it
    {"type": "say", "room": "dev", "text": "hi"}   a line to a room
    {"type": "me", "room": "dev", "text": "waves"} an action (/me)
    {"type": "msg", "to": "bob", "text": "psst"}   a private message ("action": true for /me)
    {"type": "topic", "room": "dev"}               ask ("text": "..." sets it)
    {"type": "who", "room": "dev"}                 who is in a room
    {"type": "rooms"}                              every room
    {"type": "whois", "nick": "bob"}               who is bob
    {"type": "quit", "reason": "bye"}              leave the chat

Server -> browser: ``hello`` (first, before a nickname), then one message
per event: ``welcome``, ``joined``, ``left``, ``said``, ``emote``,
``renamed``, ``quit``, ``private``, ``notice``, ``topic``, ``names``,
``rooms``, ``whois``, ``history``, ``help``, ``goodbye``, ``error``; the
fields are in ``render``. Times (``at``) are seconds since the epoch.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Union

from .core import (Emote, Error, ErrorCode, Event, Goodbye, Help, Joined, Left, Names, Notice, Private, Quit,
                   Renamed, Replay, RoomList, Said, Topic, Welcome, Whois)
from .hygiene import clean_text
from .session import (Command, EmoteCmd, JoinCmd, ListCmd, NamesCmd, NickCmd, PartCmd, PrivateCmd, QuitCmd,
                      SayCmd, TopicCmd, WhoisCmd)

__all__ = ["parse", "render", "encode"]


class _Refused(Exception):
    def __init__(self, event: Error) -> None:
        self.event = event


def _bad(text: str) -> _Refused:
    return _Refused(Error(ErrorCode.NEED_MORE_PARAMS, text))


def _field(message: dict[str, Any], name: str, *, required: bool = True, max_bytes: int = 0) -> Optional[str]:
    """The string field *name*, cleaned; None if absent and not *required*."""
    value = message.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _bad(f"{message.get('type')!s:.20}: {name!r} must be a string")
    text = clean_text(value)
    if max_bytes and len(text.encode("utf-8")) > max_bytes:
        raise _Refused(Error(ErrorCode.LINE_TOO_LONG, f"message too long (at most {max_bytes} bytes)"))
    return text


def _text(message: dict[str, Any], max_bytes: int) -> str:
    text = _field(message, "text", max_bytes=max_bytes)
    assert text is not None
    if not text:
        raise _Refused(Error(ErrorCode.NO_TEXT, "nothing to send"))
    return text


def parse(raw: str, max_text: int) -> Union[Command, Error]:
    """One WebSocket text message -> a session command, or an ``Error`` to send back.

    *max_text* is the most bytes a line of text may have (the line door's ``--max-line``).
    """
    try:
        message = json.loads(raw)
    except ValueError:
        return Error(ErrorCode.UNKNOWN_COMMAND, "not JSON: each message must be one JSON object")
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return Error(ErrorCode.UNKNOWN_COMMAND, 'each message must be a JSON object with a "type"')
    kind = message["type"]
    try:
        if kind == "nick":
            return NickCmd(_field(message, "nick") or "")
        if kind == "join":
            return JoinCmd(_field(message, "room") or "")
        if kind == "part":
            return PartCmd(_field(message, "room"), _field(message, "reason", required=False) or "")
        if kind == "say":
            return SayCmd(_text(message, max_text), _field(message, "room"))
        if kind == "me":
            return EmoteCmd(_text(message, max_text), _field(message, "room"))
        if kind == "msg":
            to = _field(message, "to")
            if not to:
                return Error(ErrorCode.NO_RECIPIENT, "a private message needs someone to send it to")
            return PrivateCmd(to, _text(message, max_text), action=message.get("action") is True)
        if kind == "topic":
            return TopicCmd(_field(message, "room"), _field(message, "text", required=False, max_bytes=max_text))
        if kind == "who":
            return NamesCmd(_field(message, "room"))
        if kind == "rooms":
            return ListCmd()
        if kind == "whois":
            return WhoisCmd(_field(message, "nick") or "")
        if kind == "quit":
            return QuitCmd(_field(message, "reason", required=False, max_bytes=max_text) or "")
    except _Refused as refused:
        return refused.event
    return Error(ErrorCode.UNKNOWN_COMMAND, f"unknown message type {kind[:40]!r}", kind[:40])


def _line(line: Union[Said, Emote]) -> dict[str, Any]:
    return {"kind": "said" if isinstance(line, Said) else "emote", "nick": line.who.nick, "text": line.text,
            "at": line.at}


def render(event: Event) -> Optional[dict[str, Any]]:
    """*event* as the JSON object the page gets (None: nothing to send)."""
    if isinstance(event, Said):  # the fan-out case, first
        return {"type": "said", "room": event.room, "nick": event.who.nick, "text": event.text, "at": event.at}
    if isinstance(event, Emote):
        return {"type": "emote", "room": event.room, "nick": event.who.nick, "text": event.text, "at": event.at}
    if isinstance(event, Joined):
        return {"type": "joined", "room": event.room, "nick": event.who.nick, "at": event.at}
    if isinstance(event, Left):
        return {"type": "left", "room": event.room, "nick": event.who.nick, "reason": event.reason, "at": event.at}
    if isinstance(event, Renamed):
        return {"type": "renamed", "nick": event.who.nick, "new": event.new, "at": event.at}
    if isinstance(event, Quit):
        return {"type": "quit", "nick": event.who.nick, "reason": event.reason, "at": event.at}
    if isinstance(event, Private):
        return {"type": "private", "from": event.who.nick, "to": event.target, "text": event.text, "at": event.at,
                "echo": event.echo, "action": event.action}
    if isinstance(event, Notice):
        out: dict[str, Any] = {"type": "notice", "text": event.text, "at": event.at}
        if event.who is not None:
            out["from"] = event.who.nick
        if event.room is not None:
            out["room"] = event.room
        return out
    if isinstance(event, Topic):
        return {"type": "topic", "room": event.room, "text": event.text, "by": event.by, "set_at": event.set_at,
                "changed": event.changed, "on_join": event.on_join, "at": event.at}
    if isinstance(event, Names):
        return {"type": "names", "room": event.room, "nicks": list(event.nicks), "on_join": event.on_join}
    if isinstance(event, RoomList):
        return {"type": "rooms", "rooms": [{"name": r.name, "members": r.members, "topic": r.topic}
                                           for r in event.rooms]}
    if isinstance(event, Whois):
        return {"type": "whois", "nick": event.who.nick, "username": event.who.username, "host": event.who.host,
                "realname": event.realname, "rooms": list(event.rooms), "idle": round(event.idle),
                "signon": event.signon}
    if isinstance(event, Replay):
        return {"type": "history", "room": event.room, "lines": [_line(line) for line in event.lines]}
    if isinstance(event, Welcome):
        return {"type": "welcome", "nick": event.who.nick, "at": event.at}
    if isinstance(event, Help):
        return {"type": "help"}
    if isinstance(event, Goodbye):
        return {"type": "goodbye", "reason": event.reason, "message": event.message}
    if isinstance(event, Error):
        return {"type": "error", "code": event.code.value, "text": event.text, "arg": event.arg}
    return None  # Ping: the door sends a WebSocket ping frame


def encode(message: dict[str, Any]) -> str:
    """Compact JSON; non-ASCII text as itself (the frame is UTF-8 anyway)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
