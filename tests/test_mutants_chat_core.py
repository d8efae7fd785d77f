"""Exact-output tests of the chat core (demos/chat/core.py): whole event lists,
every error's code, text and argument, as a door would render them."""

from __future__ import annotations

import pytest

from demos.chat.core import (Chat, ChatError, Emote, ErrorCode, Ident, Joined, Left, Names, Notice, Private,
                             Quit, Renamed, Replay, RoomInfo, Said, Topic, User, Whois)


def err(fn, *args, **kw) -> tuple:
    with pytest.raises(ChatError) as info:
        fn(*args, **kw)
    e = info.value
    assert str(e) == e.text
    return (e.code, e.text, e.arg)


def user(chat: Chat, nick: str, now: float = 0.0, **kw):
    inbox: list = []
    return chat.register(nick, inbox.append, now, **kw), inbox


NICK_RULE = "nickname must start with a letter and contain only letters, digits, '-' and '_'"
ROOM_RULE = "room name must start with a letter and contain only letters, digits, '-' and '_'"


def test_nick_errors_exactly():
    chat = Chat()
    sink = [].append
    assert err(chat.register, "", sink, 0.0) == (ErrorCode.NICK_MISSING, "nickname cannot be empty", "")
    long = "a" * 17
    assert err(chat.register, long, sink, 0.0) == (
        ErrorCode.NICK_INVALID, "nickname too long: at most 16 characters", long)
    assert chat.register("a" * 16, sink, 0.0).nick == "a" * 16
    for bad in ("1abc", "a b", "-a", "a.b", "é"):
        assert err(chat.register, bad, sink, 0.0) == (ErrorCode.NICK_INVALID, NICK_RULE, bad)
    for ok in ("[x]", "a-1", "_u", "`q", "^z", "{y}", "|p", "A\\b"):
        assert chat.register(ok, sink, 0.0).nick == ok
    assert err(chat.register, "Server", sink, 0.0) == (ErrorCode.NICK_TAKEN, "nickname Server is reserved", "Server")
    assert err(chat.register, "ADMIN", sink, 0.0) == (ErrorCode.NICK_TAKEN, "nickname ADMIN is reserved", "ADMIN")
    assert err(chat.register, "system", sink, 0.0) == (ErrorCode.NICK_TAKEN, "nickname system is reserved", "system")
    assert err(chat.register, "A" * 16, sink, 0.0) == (ErrorCode.NICK_TAKEN, f"nickname {'A' * 16} is taken", "A" * 16)
    assert err(chat.register, "[X]", sink, 0.0) == (ErrorCode.NICK_TAKEN, "nickname [X] is taken", "[X]")


def test_room_errors_exactly():
    chat = Chat()
    u, _ = user(chat, "u")
    assert err(chat.join, u, "#", 0.0) == (ErrorCode.ROOM_INVALID, "room name cannot be empty", "#")
    assert err(chat.join, u, "", 0.0) == (ErrorCode.ROOM_INVALID, "room name cannot be empty", "")
    long = "r" * 25
    assert err(chat.join, u, "#" + long, 0.0) == (
        ErrorCode.ROOM_INVALID, "room name too long: at most 24 characters", "#" + long)
    chat.join(u, "#" + "r" * 24, 0.0)
    for bad in ("#1a", "#a b", "_a", "##a", "a.b"):
        assert err(chat.join, u, bad, 0.0) == (ErrorCode.ROOM_INVALID, ROOM_RULE, bad)
    chat.join(u, "a_-9", 0.0)
    with pytest.raises(ChatError) as info:
        Chat("#")
    assert info.value.code is ErrorCode.ROOM_INVALID
    assert Chat("#Main").default_room == "Main"


def test_register_ident_and_whois():
    chat = Chat()
    a, _ = user(chat, "Alice", 10.0, username="al", host="h.example", realname="Alice A")
    b, _ = user(chat, "bob", 20.0)
    assert a.ident == Ident("Alice", "al", "h.example")
    assert b.ident == Ident("bob", "bob", "")
    assert b.ident.prefix == "bob!bob@unknown"
    assert Ident("x").prefix == "x!x@unknown"
    assert a.ident.prefix == "Alice!al@h.example"
    assert (a.signon, a.last_active, a.realname, a.rooms) == (10.0, 10.0, "Alice A", {})
    assert (b.signon, b.realname) == (20.0, "bob")
    chat.join(a, "lobby", 11.0)
    chat.join(a, "Dev", 12.0)
    assert chat.whois("ALICE", 15.0) == Whois(Ident("Alice", "al", "h.example"), "Alice A", ("lobby", "Dev"), 5.0, 10.0)
    assert chat.whois("bob", 5.0) == Whois(Ident("bob", "bob", ""), "bob", (), 0.0, 20.0)
    assert err(chat.whois, "carol", 0.0) == (ErrorCode.NO_SUCH_NICK, "no such user: carol", "carol")
    assert repr(a) == "<User Alice in ['lobby', 'Dev']>"


def test_join_events_exactly():
    chat = Chat()
    a, ia = user(chat, "alice")
    b, ib = user(chat, "bob")
    room = chat.join(a, "#Dev", 1.0)
    assert room.name == "Dev" and chat.find_room("#dev") is room and chat.find_room("DEV") is room
    assert ia == [Joined("Dev", a.ident, 1.0), Topic("Dev", "", "", 0.0, False, 1.0, on_join=True),
                  Names("Dev", ("alice",), on_join=True)]
    ia.clear()
    chat.say(a, "dev", "hi", 2.0)
    chat.emote(a, "#dev", "waves", 3.0)
    assert ia == [Emote("Dev", a.ident, "waves", 3.0)]
    ia.clear()
    chat.topic(a, "#dev", "t" * 400, 4.0)
    assert ia == [Topic("Dev", "t" * 300, "alice", 4.0, True, 4.0)]
    ia.clear()
    assert chat.join(b, "dEV", 5.0) is room
    assert ia == [Joined("Dev", b.ident, 5.0)]
    assert ib == [Joined("Dev", b.ident, 5.0), Topic("Dev", "t" * 300, "alice", 4.0, False, 5.0, on_join=True),
                  Names("Dev", ("alice", "bob"), on_join=True),
                  Replay("Dev", (Said("Dev", a.ident, "hi", 2.0), Emote("Dev", a.ident, "waves", 3.0)))]
    assert err(chat.join, b, "#DEV", 6.0) == (ErrorCode.ALREADY_IN_ROOM, "you are already in #Dev", "DEV")
    assert chat.names("#dev") == Names("Dev", ("alice", "bob"))
    with pytest.raises(ChatError) as info:
        chat.names("#nope")
    assert (info.value.code, info.value.text, info.value.arg) == (ErrorCode.NO_SUCH_ROOM, "no such room: #nope", "#nope")
    with pytest.raises(ChatError) as info:
        chat.names("no pe")
    assert info.value.code is ErrorCode.ROOM_INVALID


def test_talk_and_topic_exactly():
    chat = Chat()
    a, ia = user(chat, "alice")
    b, ib = user(chat, "bob")
    c, ic = user(chat, "carol")
    chat.join(a, "lobby", 0.0)
    chat.join(b, "lobby", 0.0)
    chat.join(c, "other", 0.0)
    for box in (ia, ib, ic):
        box.clear()
    chat.say(a, "#LOBBY", "hello", 1.0)
    assert ia == [] and ib == [Said("lobby", a.ident, "hello", 1.0)] and ic == []
    assert chat.topic(b, "lobby", None, 2.0) == Topic("lobby", "", "", 0.0, False, 2.0)
    assert chat.topic(a, "lobby", "news", 3.0) is None
    assert ia == ib[1:] == [Topic("lobby", "news", "alice", 3.0, True, 3.0)]
    assert chat.topic(b, "#lobby", None, 9.0) == Topic("lobby", "news", "alice", 3.0, False, 9.0)
    room = chat.find_room("lobby")
    assert (room.topic, room.topic_by, room.topic_at) == ("news", "alice", 3.0)
    assert chat.room_list() == [RoomInfo("lobby", 2, "news"), RoomInfo("other", 1, "")]
    # errors on rooms one is not in, or that do not exist
    assert err(chat.say, c, "lobby", "x", 0.0) == (ErrorCode.NOT_IN_ROOM, "you are not in #lobby", "lobby")
    assert err(chat.topic, c, "#LOBBY", "x", 0.0) == (ErrorCode.NOT_IN_ROOM, "you are not in #lobby", "lobby")
    assert err(chat.emote, c, "#nope", "x", 0.0) == (ErrorCode.NO_SUCH_ROOM, "no such room: #nope", "#nope")
    assert err(chat.part, c, "nope", "", 0.0) == (ErrorCode.NO_SUCH_ROOM, "no such room: #nope", "nope")
    assert err(chat.say, c, "#a b", "x", 0.0)[0] is ErrorCode.ROOM_INVALID
    assert room.topic == "news"


def test_part_and_quit_exactly():
    chat = Chat()
    a, ia = user(chat, "alice")
    b, ib = user(chat, "bob")
    c, ic = user(chat, "carol")
    chat.join(a, "dev", 0.0)
    chat.join(b, "dev", 0.0)
    chat.join(a, "lobby", 0.0)
    chat.join(b, "lobby", 0.0)
    chat.join(c, "lobby", 0.0)
    chat.join(c, "solo", 0.0)
    for box in (ia, ib, ic):
        box.clear()
    chat.part(b, "#Dev", "bye", 1.0)
    assert ia == ib == [Left("dev", b.ident, "bye", 1.0)] and ic == []
    chat.part(a, "dev", "", 2.0)
    assert chat.find_room("dev") is None
    chat.part(c, "solo", "", 2.0)
    chat.part(c, "lobby", "", 2.0)
    assert chat.find_room("solo") is None
    chat.part(a, "lobby", "", 2.0)
    chat.part(b, "lobby", "", 2.0)
    assert chat.find_room("lobby") is not None and chat.room_list() == [RoomInfo("lobby", 0, "")]
    chat.join(a, "lobby", 3.0)
    chat.join(b, "lobby", 3.0)
    chat.join(a, "x", 3.0)
    chat.join(b, "x", 3.0)
    chat.join(c, "x", 3.0)
    for box in (ia, ib, ic):
        box.clear()
    chat.quit(a, "gone", 4.0)
    assert ia == [] and ib == ic == [Quit(a.ident, "gone", 4.0)]
    assert chat.find_user("alice") is None and a.rooms == {}
    assert chat.names("x") == Names("x", ("bob", "carol"))
    chat.quit(a, "again", 5.0)
    assert ib == ic == [Quit(a.ident, "gone", 4.0)]


def test_rename_exactly():
    chat = Chat()
    a, ia = user(chat, "alice", username="al", host="h")
    b, ib = user(chat, "bob")
    c, ic = user(chat, "carol")
    chat.join(a, "one", 0.0)
    chat.join(b, "one", 0.0)
    chat.join(a, "two", 0.0)
    chat.join(b, "two", 0.0)
    for box in (ia, ib, ic):
        box.clear()
    old = a.ident
    chat.rename(a, "Alicia", 1.0)
    assert ia == ib == [Renamed(old, "Alicia", 1.0)] and ic == []
    assert a.ident == Ident("Alicia", "al", "h")
    assert chat.find_user("alice") is None and chat.find_user("ALICIA") is a
    assert chat.names("one") == Names("one", ("bob", "Alicia"))
    assert chat.names("two") == Names("two", ("bob", "Alicia"))
    ia.clear()
    ib.clear()
    chat.rename(a, "Alicia", 2.0)
    assert ia == ib == []
    chat.rename(a, "ALICIA", 3.0)
    assert ia == [Renamed(Ident("Alicia", "al", "h"), "ALICIA", 3.0)]
    assert chat.find_user("alicia") is a and a.nick == "ALICIA"
    assert err(chat.rename, a, "Bob", 4.0) == (ErrorCode.NICK_TAKEN, "nickname Bob is taken", "Bob")
    assert err(chat.rename, a, "admin", 4.0) == (ErrorCode.NICK_TAKEN, "nickname admin is reserved", "admin")


def test_private_and_notice_exactly():
    chat = Chat()
    a, ia = user(chat, "alice")
    b, ib = user(chat, "bob")
    c, ic = user(chat, "carol")
    chat.join(a, "room", 0.0)
    chat.join(b, "room", 0.0)
    for box in (ia, ib, ic):
        box.clear()
    chat.private(a, "BOB", "psst", 1.0)
    assert ib == [Private(a.ident, "bob", "psst", 1.0)]
    assert ia == [Private(a.ident, "bob", "psst", 1.0, echo=True)]
    ia.clear()
    ib.clear()
    chat.private(a, "bob", "waves", 2.0, action=True)
    assert ib == [Private(a.ident, "bob", "waves", 2.0, action=True)]
    assert ia == [Private(a.ident, "bob", "waves", 2.0, echo=True, action=True)]
    ia.clear()
    ib.clear()
    chat.private(a, "alice", "me", 3.0)
    assert ia == [Private(a.ident, "alice", "me", 3.0)]
    ia.clear()
    assert err(chat.private, a, "dave", "x", 0.0) == (ErrorCode.NO_SUCH_NICK, "no such user: dave", "dave")
    chat.notice(a, "#ROOM", "hear ye", 4.0)
    assert ia == [] and ic == [] and ib == [Notice("hear ye", 4.0, a.ident, "room")]
    ib.clear()
    chat.notice(a, "Carol", "psst", 5.0)
    assert ic == [Notice("psst", 5.0, a.ident)] and ia == [] and ib == []
    assert err(chat.notice, a, "dave", "x", 0.0) == (ErrorCode.NO_SUCH_NICK, "no such user: dave", "dave")
    assert err(chat.notice, c, "#room", "x", 0.0) == (ErrorCode.NOT_IN_ROOM, "you are not in #room", "room")
    assert err(chat.notice, c, "#nope", "x", 0.0) == (ErrorCode.NO_SUCH_ROOM, "no such room: #nope", "#nope")
    ic.clear()
    chat.announce("restart", 6.0)
    assert ia == ib == ic == [Notice("restart", 6.0)]


def test_history_bounds_exactly():
    chat = Chat(history_lines=3, history_bytes=10_000)
    a, _ = user(chat, "al")
    chat.join(a, "r", 0.0)
    for i in range(5):
        chat.say(a, "r", f"l{i}", float(i))
    room = chat.find_room("r")
    assert [line.text for line in room.history] == ["l2", "l3", "l4"]
    assert room.history_bytes == 3 * (2 + 2 + 16)
    # bytes: each line costs len(text utf-8) + len(nick) + 16
    chat = Chat(history_lines=100, history_bytes=2 * (1 + 2 + 16))
    a, _ = user(chat, "al")
    chat.join(a, "r", 0.0)
    for text in ("a", "b", "c"):
        chat.say(a, "r", text, 0.0)
    room = chat.find_room("r")
    assert [line.text for line in room.history] == ["b", "c"] and room.history_bytes == 38
    chat.emote(a, "r", "é", 0.0)  # 2 bytes in UTF-8: 20 more, 39 > 38, so "b" and "c" go
    assert [line.text for line in room.history] == ["é"] and room.history_bytes == 20
    # no history at all
    chat = Chat(history_lines=0)
    a, ia = user(chat, "al")
    b, ib = user(chat, "bo")
    chat.join(a, "r", 0.0)
    chat.say(a, "r", "x", 0.0)
    chat.join(b, "r", 0.0)
    assert [type(e) for e in ib] == [Joined, Topic, Names]
    assert chat.find_room("r").history_bytes == 0
    # defaults: 20 lines
    chat = Chat()
    a, _ = user(chat, "al")
    chat.join(a, "r", 0.0)
    for i in range(25):
        chat.say(a, "r", "x", 0.0)
    assert len(chat.find_room("r").history) == 20
    chat = Chat(history_lines=1000)
    a, _ = user(chat, "al")
    chat.join(a, "r", 0.0)
    for i in range(20):
        chat.say(a, "r", "y" * 1000, 0.0)
    room = chat.find_room("r")
    assert room.history_bytes <= 16 * 1024 and len(room.history) == 16


def test_neighbours_once_each_and_room_list_order():
    chat = Chat()
    a, _ = user(chat, "a")
    b, _ = user(chat, "b")
    c, _ = user(chat, "c")
    for r in ("x", "y"):
        chat.join(a, r, 0.0)
        chat.join(b, r, 0.0)
    chat.join(c, "y", 0.0)
    chat.join(c, "Zed", 0.0)
    chat.join(c, "alpha", 0.0)
    assert list(chat.neighbours(a)) == [b, c]
    assert [info.name for info in chat.room_list()] == ["alpha", "lobby", "x", "y", "Zed"]


def test_chat_error_fields():
    e = ChatError(ErrorCode.NO_TEXT, "no text to send")
    assert (e.code, e.text, e.arg, str(e)) == (ErrorCode.NO_TEXT, "no text to send", "", "no text to send")


def test_one_line_of_history_and_a_bare_user():
    chat = Chat(history_lines=1)
    a, _ = user(chat, "al")
    b, ib = user(chat, "bo")
    chat.join(a, "r", 0.0)
    chat.say(a, "r", "first", 1.0)
    chat.say(a, "r", "last", 2.0)
    chat.join(b, "r", 3.0)
    assert ib[-1] == Replay("r", (Said("r", a.ident, "last", 2.0),))
    bare = User(Ident("x"), [].append, 5.0)
    assert (bare.realname, bare.signon, bare.last_active, bare.nick) == ("", 5.0, 5.0, "x")
