"""Exact-output tests of the web door's JSON (demos/chat/web_messages.py):
every message type parsed, every event rendered, every refusal's code and text."""

from __future__ import annotations

import json

import pytest

from demos.chat.core import (Emote, Error, ErrorCode, Goodbye, Help, Ident, Joined, Left, Names, Notice, Ping,
                             Private, Quit, Renamed, Replay, RoomInfo, RoomList, Said, Topic, Welcome, Whois)
from demos.chat.session import (EmoteCmd, JoinCmd, ListCmd, NamesCmd, NickCmd, PartCmd, PrivateCmd, QuitCmd,
                                SayCmd, TopicCmd, WhoisCmd)
from demos.chat.web_messages import encode, parse, render


def p(obj, max_text: int = 20):
    return parse(json.dumps(obj), max_text)


@pytest.mark.parametrize("message, expected", [
    ({"type": "nick", "nick": "alice"}, NickCmd("alice")),
    ({"type": "nick", "nick": ""}, NickCmd("")),
    ({"type": "join", "room": "dev"}, JoinCmd("dev")),
    ({"type": "join", "room": ""}, JoinCmd("")),
    ({"type": "part", "room": "dev", "reason": "bye"}, PartCmd("dev", "bye")),
    ({"type": "part", "room": "dev"}, PartCmd("dev", "")),
    ({"type": "part", "room": "dev", "reason": None}, PartCmd("dev", "")),
    ({"type": "say", "room": "dev", "text": "hi"}, SayCmd("hi", "dev")),
    ({"type": "say", "room": "dev", "text": "a\x1b[31mb\tc"}, SayCmd("ab c", "dev")),
    ({"type": "me", "room": "dev", "text": "waves"}, EmoteCmd("waves", "dev")),
    ({"type": "msg", "to": "bob", "text": "psst"}, PrivateCmd("bob", "psst", action=False)),
    ({"type": "msg", "to": "bob", "text": "psst", "action": True}, PrivateCmd("bob", "psst", action=True)),
    ({"type": "msg", "to": "bob", "text": "psst", "action": 1}, PrivateCmd("bob", "psst", action=False)),
    ({"type": "msg", "to": "bob", "text": "psst", "action": "yes"}, PrivateCmd("bob", "psst", action=False)),
    ({"type": "topic", "room": "dev"}, TopicCmd("dev", None)),
    ({"type": "topic", "room": "dev", "text": ""}, TopicCmd("dev", "")),
    ({"type": "topic", "room": "dev", "text": "news"}, TopicCmd("dev", "news")),
    ({"type": "who", "room": "dev"}, NamesCmd("dev")),
    ({"type": "rooms"}, ListCmd()),
    ({"type": "whois", "nick": "bob"}, WhoisCmd("bob")),
    ({"type": "whois", "nick": ""}, WhoisCmd("")),
    ({"type": "quit", "reason": "bye"}, QuitCmd("bye")),
    ({"type": "quit"}, QuitCmd("")),
    ({"type": "say", "room": "dev", "text": "x" * 20}, SayCmd("x" * 20, "dev")),
])
def test_parse_exactly(message, expected):
    assert p(message) == expected


def need(text):
    return Error(ErrorCode.NEED_MORE_PARAMS, text)


TOO_LONG = Error(ErrorCode.LINE_TOO_LONG, "message too long (at most 20 bytes)")


@pytest.mark.parametrize("message, expected", [
    ({"type": "nick"}, need("nick: 'nick' must be a string")),
    ({"type": "nick", "nick": 5}, need("nick: 'nick' must be a string")),
    ({"type": "join", "room": None}, need("join: 'room' must be a string")),
    ({"type": "part"}, need("part: 'room' must be a string")),
    ({"type": "part", "room": "d", "reason": 3}, need("part: 'reason' must be a string")),
    ({"type": "say", "room": "dev"}, need("say: 'text' must be a string")),
    ({"type": "say", "text": "hi"}, need("say: 'room' must be a string")),
    ({"type": "say", "room": "dev", "text": ""}, Error(ErrorCode.NO_TEXT, "nothing to send")),
    ({"type": "say", "room": "dev", "text": "\x07"}, Error(ErrorCode.NO_TEXT, "nothing to send")),
    ({"type": "say", "room": "dev", "text": "x" * 21}, TOO_LONG),
    ({"type": "say", "room": "dev", "text": "é" * 11}, TOO_LONG),
    ({"type": "me", "room": "dev", "text": ""}, Error(ErrorCode.NO_TEXT, "nothing to send")),
    ({"type": "me", "room": "dev", "text": "x" * 21}, TOO_LONG),
    ({"type": "msg", "to": "bob", "text": "x" * 21}, TOO_LONG),
    ({"type": "msg", "text": "x"}, need("msg: 'to' must be a string")),
    ({"type": "msg", "to": "", "text": "x"},
     Error(ErrorCode.NO_RECIPIENT, "a private message needs someone to send it to")),
    ({"type": "msg", "to": "bob", "text": ""}, Error(ErrorCode.NO_TEXT, "nothing to send")),
    ({"type": "topic", "room": "dev", "text": "x" * 21}, TOO_LONG),
    ({"type": "topic", "room": "dev", "text": 1}, need("topic: 'text' must be a string")),
    ({"type": "who"}, need("who: 'room' must be a string")),
    ({"type": "whois"}, need("whois: 'nick' must be a string")),
    ({"type": "quit", "reason": "x" * 21}, TOO_LONG),
    ({"type": "nick-and-a-very-long-type-name-that-goes-on", "nick": 1},
     Error(ErrorCode.UNKNOWN_COMMAND, "unknown message type 'nick-and-a-very-long-type-name-that-goes'",
           "nick-and-a-very-long-type-name-that-goes")),
    ({"type": "dance"}, Error(ErrorCode.UNKNOWN_COMMAND, "unknown message type 'dance'", "dance")),
    ({"type": 3}, Error(ErrorCode.UNKNOWN_COMMAND, 'each message must be a JSON object with a "type"')),
    ({"nick": "x"}, Error(ErrorCode.UNKNOWN_COMMAND, 'each message must be a JSON object with a "type"')),
    (["type", "nick"], Error(ErrorCode.UNKNOWN_COMMAND, 'each message must be a JSON object with a "type"')),
])
def test_parse_refusals_exactly(message, expected):
    assert p(message) == expected


def test_parse_type_truncated_in_field_errors_and_not_json():
    kind = "say" + "y" * 30
    # an unknown type is never parsed for fields: only the known ones name their field
    assert p({"type": "say", "room": 1, "text": "x"}) == need("say: 'room' must be a string")
    assert p({"type": kind}).text == f"unknown message type {kind!r}"
    assert parse("{nope", 10) == Error(ErrorCode.UNKNOWN_COMMAND, "not JSON: each message must be one JSON object")
    assert parse("", 10) == Error(ErrorCode.UNKNOWN_COMMAND, "not JSON: each message must be one JSON object")
    # max_text 0: no byte limit on text
    assert parse(json.dumps({"type": "say", "room": "r", "text": "x" * 500}), 0) == SayCmd("x" * 500, "r")


A = Ident("alice", "al", "h")


@pytest.mark.parametrize("event, expected", [
    (Said("dev", A, "hi", 1.5), {"type": "said", "room": "dev", "nick": "alice", "text": "hi", "at": 1.5}),
    (Emote("dev", A, "waves", 2.0), {"type": "emote", "room": "dev", "nick": "alice", "text": "waves", "at": 2.0}),
    (Joined("dev", A, 3.0), {"type": "joined", "room": "dev", "nick": "alice", "at": 3.0}),
    (Left("dev", A, "bye", 4.0), {"type": "left", "room": "dev", "nick": "alice", "reason": "bye", "at": 4.0}),
    (Renamed(A, "alicia", 5.0), {"type": "renamed", "nick": "alice", "new": "alicia", "at": 5.0}),
    (Quit(A, "gone", 6.0), {"type": "quit", "nick": "alice", "reason": "gone", "at": 6.0}),
    (Private(A, "bob", "psst", 7.0), {"type": "private", "from": "alice", "to": "bob", "text": "psst", "at": 7.0,
                                      "echo": False, "action": False}),
    (Private(A, "bob", "psst", 7.0, echo=True, action=True),
     {"type": "private", "from": "alice", "to": "bob", "text": "psst", "at": 7.0, "echo": True, "action": True}),
    (Notice("restart", 8.0), {"type": "notice", "text": "restart", "at": 8.0}),
    (Notice("n", 8.0, A), {"type": "notice", "text": "n", "at": 8.0, "from": "alice"}),
    (Notice("n", 8.0, A, "dev"), {"type": "notice", "text": "n", "at": 8.0, "from": "alice", "room": "dev"}),
    (Topic("dev", "news", "alice", 9.0, True, 10.0, on_join=False),
     {"type": "topic", "room": "dev", "text": "news", "by": "alice", "set_at": 9.0, "changed": True,
      "on_join": False, "at": 10.0}),
    (Topic("dev", "", "", 0.0, False, 11.0, on_join=True),
     {"type": "topic", "room": "dev", "text": "", "by": "", "set_at": 0.0, "changed": False, "on_join": True,
      "at": 11.0}),
    (Names("dev", ("a", "b"), on_join=True), {"type": "names", "room": "dev", "nicks": ["a", "b"], "on_join": True}),
    (Names("dev", ()), {"type": "names", "room": "dev", "nicks": [], "on_join": False}),
    (RoomList((RoomInfo("dev", 2, "t"), RoomInfo("lobby", 0, ""))),
     {"type": "rooms", "rooms": [{"name": "dev", "members": 2, "topic": "t"},
                                 {"name": "lobby", "members": 0, "topic": ""}]}),
    (Whois(A, "Alice A", ("dev", "lobby"), 12.6, 100.0),
     {"type": "whois", "nick": "alice", "username": "al", "host": "h", "realname": "Alice A",
      "rooms": ["dev", "lobby"], "idle": 13, "signon": 100.0}),
    (Replay("dev", (Said("dev", A, "hi", 1.0), Emote("dev", A, "waves", 2.0))),
     {"type": "history", "room": "dev", "lines": [{"kind": "said", "nick": "alice", "text": "hi", "at": 1.0},
                                                  {"kind": "emote", "nick": "alice", "text": "waves", "at": 2.0}]}),
    (Welcome(A, 13.0), {"type": "welcome", "nick": "alice", "at": 13.0}),
    (Help(), {"type": "help"}),
    (Goodbye("idle", "idle for 5 seconds"), {"type": "goodbye", "reason": "idle", "message": "idle for 5 seconds"}),
    (Error(ErrorCode.NO_SUCH_NICK, "no such user: bob", "bob"),
     {"type": "error", "code": "no such nick", "text": "no such user: bob", "arg": "bob"}),
    (Ping("keepalive-1"), None),
])
def test_render_exactly(event, expected):
    out = render(event)
    assert out == expected
    if expected is not None:
        assert list(out) == list(expected)  # field order, as the page sees it


def test_encode_compact_and_utf8():
    assert encode({"type": "said", "text": "héllo ☃", "n": [1, 2]}) == '{"type":"said","text":"héllo ☃","n":[1,2]}'
