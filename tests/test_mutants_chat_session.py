"""Exact-output tests of the chat session (demos/chat/session.py): the events
each command returns, the deadlines, keepalive, flood control."""

from __future__ import annotations

import pytest

from demos.chat.core import (Chat, Emote, Error, ErrorCode, Goodbye, Help, Ident, Joined, Left, Names, Notice,
                             Ping, Private, Quit, Renamed, RoomInfo, RoomList, Said, Topic, Welcome, Whois)
from demos.chat.session import (EmoteCmd, HelpCmd, JoinCmd, Limits, ListCmd, NamesCmd, NickCmd, NoticeCmd,
                                PartCmd, PongCmd, PrivateCmd, QuitCmd, SayCmd, Session, TokenBucket, TopicCmd,
                                WhoisCmd)

SLOW = "slow down: you are sending too fast; your lines are being delayed"


def session(chat: Chat, now: float = 0.0, limits: Limits = Limits(), **kw) -> tuple[Session, list]:
    inbox: list = []
    return Session(chat, inbox.append, now, limits, **kw), inbox


def test_defaults():
    assert Limits() == Limits(60.0, 0.0, 60.0, 10.0, 20, 0.0, 60.0)
    s, _ = session(Chat())
    assert s.deadline == 60.0 and s.tick(59.9) == [] and s.nick == "" and not s.registered
    assert s.current_room is None


def test_register_auto_join_and_commands_exactly():
    chat = Chat()
    s, inbox = session(chat, 0.0, host="10.0.0.1")
    assert s.handle(SayCmd("hi"), 1.0) == [
        Error(ErrorCode.NOT_REGISTERED, "choose a nickname first (or /nick, /help, /quit)")]
    assert s.handle(HelpCmd(), 1.0) == [Help()]
    assert s.handle(PongCmd(), 1.0) == []
    me = Ident("alice", "al", "10.0.0.1")
    assert s.handle(NickCmd("alice", "al", "Alice A"), 2.0) == [
        Welcome(me, 2.0), Joined("lobby", me, 2.0), Topic("lobby", "", "", 0.0, False, 2.0, on_join=True),
        Names("lobby", ("alice",), on_join=True)]
    assert s.registered and s.nick == "alice" and s.current_room == "lobby" and inbox == []
    assert s.user.realname == "Alice A" and s.user.signon == 2.0
    assert s.handle(WhoisCmd("alice"), 5.0) == [Whois(me, "Alice A", ("lobby",), 0.0, 2.0)]
    assert s.handle(ListCmd(), 6.0) == [RoomList((RoomInfo("lobby", 1, ""),))]
    assert s.handle(NamesCmd(), 6.0) == [Names("lobby", ("alice",))]
    assert s.handle(TopicCmd(), 6.0) == [Topic("lobby", "", "", 0.0, False, 6.0)]
    assert s.handle(TopicCmd(None, "news"), 7.0) == [Topic("lobby", "news", "alice", 7.0, True, 7.0)]
    assert s.handle(TopicCmd("#lobby"), 8.0) == [Topic("lobby", "news", "alice", 7.0, False, 8.0)]
    assert s.handle(SayCmd("hi"), 8.0) == []
    assert s.handle(EmoteCmd("waves"), 9.0) == [Emote("lobby", me, "waves", 9.0)]
    assert s.handle(EmoteCmd("hops", "#lobby"), 9.0) == [Emote("lobby", me, "hops", 9.0)]
    assert s.handle(PrivateCmd("alice", "me", True), 9.0) == [Private(me, "alice", "me", 9.0, action=True)]
    assert s.handle(PrivateCmd("nobody", "x"), 9.0) == [Error(ErrorCode.NO_SUCH_NICK, "no such user: nobody",
                                                              "nobody")]
    assert s.handle(NoticeCmd("nobody", "x"), 9.0) == [Error(ErrorCode.NO_SUCH_NICK, "no such user: nobody",
                                                             "nobody")]
    assert s.handle(NickCmd("Alicia"), 10.0) == [Renamed(me, "Alicia", 10.0)]
    assert s.nick == "Alicia"
    assert s.handle(PartCmd(None, "bye"), 11.0) == [Left("lobby", Ident("Alicia", "al", "10.0.0.1"), "bye", 11.0)]
    assert s.current_room is None
    assert s.handle(SayCmd("x"), 12.0) == [Error(ErrorCode.NOT_IN_ROOM, "you are not in a room; /join ROOM first")]
    assert s.handle(EmoteCmd("x"), 12.0) == [Error(ErrorCode.NOT_IN_ROOM, "you are not in a room; /join ROOM first")]
    assert s.handle(NamesCmd(), 12.0) == [Error(ErrorCode.NOT_IN_ROOM, "you are not in a room; /join ROOM")]
    assert s.handle(TopicCmd(), 12.0) == [Error(ErrorCode.NOT_IN_ROOM, "you are not in a room")]
    assert s.handle(PartCmd(), 12.0) == [Error(ErrorCode.NOT_IN_ROOM, "you are not in a room")]
    assert s.handle(QuitCmd("bye now"), 13.0) == [Goodbye("quit: bye now", "")]
    assert s.closed == Goodbye("quit: bye now", "") and s.deadline is None
    assert s.handle(HelpCmd(), 14.0) == [] and s.tick(1000.0) == []
    assert chat.find_user("alicia") is None


def test_quit_without_reason_and_others_hear():
    chat = Chat()
    a, ia = session(chat)
    b, _ = session(chat)
    a.handle(NickCmd("a"), 0.0)
    b.handle(NickCmd("b"), 0.0)
    ia.clear()
    assert b.handle(QuitCmd(), 1.0) == [Goodbye("quit", "")]
    assert ia == [Quit(Ident("b", "b", ""), "", 1.0)]
    c, _ = session(chat)
    c.handle(NickCmd("c"), 0.0)
    ia.clear()
    assert c.handle(QuitCmd("later"), 2.0)[-1] == Goodbye("quit: later", "")
    assert ia == [Quit(Ident("c", "c", ""), "later", 2.0)]


def test_no_auto_join_and_multi_room():
    chat = Chat()
    s, _ = session(chat, auto_join=None, single_room=False)
    assert s.handle(NickCmd("m"), 0.0) == [Welcome(Ident("m", "m", ""), 0.0)]
    assert s.current_room is None
    s.handle(JoinCmd("#one"), 1.0)
    s.handle(JoinCmd("two"), 1.0)
    assert list(s.user.rooms) == ["one", "two"] and s.current_room == "two"
    t, _ = session(chat, auto_join="Dev")
    assert t.handle(NickCmd("t"), 0.0)[1] == Joined("Dev", Ident("t", "t", ""), 0.0)


def test_single_room_join_leaves_the_current_room():
    chat = Chat()
    s, _ = session(chat)
    s.handle(NickCmd("s"), 0.0)
    me = Ident("s", "s", "")
    assert s.handle(JoinCmd("#Dev"), 1.0) == [
        Left("lobby", me, "", 1.0), Joined("Dev", me, 1.0), Topic("Dev", "", "", 0.0, False, 1.0, on_join=True),
        Names("Dev", ("s",), on_join=True)]
    assert s.handle(JoinCmd("#DEV"), 2.0) == [Error(ErrorCode.ALREADY_IN_ROOM, "you are already in #Dev", "DEV")]
    assert s.handle(JoinCmd("dev"), 2.0) == [Error(ErrorCode.ALREADY_IN_ROOM, "you are already in #Dev", "dev")]
    assert list(s.user.rooms) == ["dev"]


def test_events_from_others_are_delivered_not_returned():
    chat = Chat()
    a, ia = session(chat)
    b, ib = session(chat)
    a.handle(NickCmd("a"), 0.0)
    b.handle(NickCmd("b"), 0.0)
    ia.clear()
    assert b.handle(SayCmd("hello", "#lobby"), 1.0) == []
    assert ia == [Said("lobby", Ident("b", "b", ""), "hello", 1.0)]
    assert b.handle(NoticeCmd("a", "n"), 2.0) == []
    assert ia[-1] == Notice("n", 2.0, Ident("b", "b", ""))
    assert b.handle(PrivateCmd("a", "p"), 3.0) == [Private(Ident("b", "b", ""), "a", "p", 3.0, echo=True)]
    assert ia[-1] == Private(Ident("b", "b", ""), "a", "p", 3.0)
    assert ib == []


def test_nick_timeout_and_idle_exactly():
    chat = Chat()
    s, _ = session(chat, 0.0, Limits(nick_timeout=2.5))
    assert s.deadline == 2.5 and s.tick(2.4) == []
    assert s.tick(2.5) == [Goodbye("no nickname chosen in time", "you did not choose a nickname within 2.5 seconds")]
    other, io = session(chat, 0.0)
    other.handle(NickCmd("o"), 0.0)
    s, _ = session(chat, 0.0, Limits(idle_timeout=7.5))
    s.handle(NickCmd("idler"), 1.0)
    assert s.deadline == 8.5
    s.handle(PongCmd(), 5.0)
    assert s.deadline == 8.5 and s.user.last_active == 1.0
    s.handle(SayCmd("x"), 6.0)
    assert s.deadline == 13.5 and s.user.last_active == 6.0 and s.tick(13.4) == []
    io.clear()
    assert s.tick(13.5) == [Goodbye("idle", "idle for 7.5 seconds")]
    assert io == [Quit(Ident("idler", "idler", ""), "idle", 13.5)]
    s2, _ = session(chat, 0.0, Limits(idle_timeout=0))
    s2.handle(NickCmd("never"), 0.0)
    assert s2.deadline is None and s2.tick(1e9) == []


def test_partial_line_timeout():
    chat = Chat()
    s, _ = session(chat, 0.0, Limits(line_timeout=3))
    s.handle(NickCmd("p"), 0.0)
    s.partial(1.0, True)
    s.partial(2.0, True)  # still the first byte's deadline
    assert s.deadline == 4.0 and s.tick(3.9) == []
    s.partial(3.0, False)
    assert s.deadline is None
    s.partial(5.0, True)
    assert s.deadline == 8.0
    assert s.tick(8.0) == [Goodbye("partial line timeout", "no end of line within 3 seconds")]
    t, _ = session(chat, 0.0, Limits(line_timeout=0))
    t.handle(NickCmd("q"), 0.0)
    t.partial(1.0, True)
    assert t.deadline is None and t.tick(1e9) == []


def test_keepalive_exactly():
    chat = Chat()
    other, io = session(chat, 0.0)
    other.handle(NickCmd("o"), 0.0)
    s, _ = session(chat, 0.0, Limits(ping_interval=10, ping_timeout=5))
    assert s.deadline == 60.0  # not registered: no pings yet
    s.handle(NickCmd("k"), 1.0)
    assert s.deadline == 11.0 and s.tick(10.9) == []
    assert s.tick(11.0) == [Ping("keepalive-1")]
    assert s.deadline == 16.0 and s.tick(15.9) == []
    s.heard(12.0)
    assert s.deadline == 22.0
    assert s.tick(22.0) == [Ping("keepalive-2")]
    s.handle(PongCmd(), 23.0)
    assert s.deadline == 33.0 and s.tick(33.0) == [Ping("keepalive-3")]
    io.clear()
    assert s.tick(38.0) == [Goodbye("ping timeout", "Ping timeout: 15 seconds")]
    assert io == [Quit(Ident("k", "k", ""), "Ping timeout: 15 seconds", 38.0)]
    assert s.deadline is None


def test_close_is_idempotent():
    chat = Chat()
    other, io = session(chat, 0.0)
    other.handle(NickCmd("o"), 0.0)
    s, inbox = session(chat)
    s.handle(NickCmd("c"), 0.0)
    io.clear()
    s.close("connection reset", 1.0)
    assert s.closed == Goodbye("connection reset") and inbox == []
    assert io == [Quit(Ident("c", "c", ""), "connection reset", 1.0)]
    s.close("again", 2.0)
    assert s.closed == Goodbye("connection reset") and io == [Quit(Ident("c", "c", ""), "connection reset", 1.0)]
    t, _ = session(chat)
    t.close("gone", 0.0)
    assert t.closed == Goodbye("gone")


def test_token_bucket_exactly():
    b = TokenBucket(2.0, 3, 10.0)
    assert (b.rate, b.burst, b.tokens, b.stamp) == (2.0, 3, 3.0, 10.0)
    assert [b.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert b.ready_at(10.0) == 10.5
    assert b.ready_at(10.25) == 10.5 and b.tokens == 0.5
    assert b.ready_at(10.5) == 10.5 and b.tokens == 1.0
    b.ready_at(9.0)  # the clock going back does not refill nor move the stamp back
    assert b.stamp == 10.5 and b.tokens == 1.0
    assert b.take(100.0) and b.tokens == 2.0


def test_flood_control_exactly():
    chat = Chat()
    s, inbox = session(chat, 0.0, Limits(flood_rate=2, flood_burst=2))
    s.handle(NickCmd("f"), 0.0)  # one token
    s.handle(SayCmd("a"), 0.0)  # none left
    inbox.clear()
    assert s.throttle(0.0) == 0.5
    assert inbox == [Notice(SLOW, 0.0)]
    assert s.deadline == 0.5
    assert s.throttle(0.1) == 0.5 and inbox == [Notice(SLOW, 0.0)]  # warned once
    assert s.tick(0.5) == [] and s.deadline is None
    assert s.throttle(0.5) is None
    s.note_line(0.5)
    assert s.throttle(0.5) == 1.0 and len(inbox) == 1  # same burst: no new warning
    assert s.throttle(1.0) is None
    s.note_line(1.0)
    assert s.throttle(2.0) is None  # full again: the next throttle warns
    s.note_line(2.0)
    s.note_line(2.0)
    assert s.throttle(2.0) == 2.5 and inbox == [Notice(SLOW, 0.0), Notice(SLOW, 2.0)]
    s.note_line(2.0)  # a line taken anyway borrows
    assert s.throttle(2.0) == 2.5


def test_deadline_is_the_earliest_and_tick_order():
    chat = Chat()
    s, _ = session(chat, 0.0, Limits(nick_timeout=10, line_timeout=4))
    s.partial(1.0, True)
    assert s.deadline == 5.0
    assert s.tick(5.0) == [Goodbye("partial line timeout", "no end of line within 4 seconds")]
    s, _ = session(chat, 0.0, Limits(nick_timeout=3, line_timeout=4))
    s.partial(0.0, True)
    assert s.deadline == 3.0
    assert s.tick(9.0) == [Goodbye("no nickname chosen in time", "you did not choose a nickname within 3 seconds")]
    s, _ = session(chat, 0.0, Limits(idle_timeout=20, ping_interval=5, ping_timeout=100, line_timeout=50))
    s.handle(NickCmd("d1"), 0.0)
    assert s.deadline == 5.0
    assert s.tick(5.0) == [Ping("keepalive-1")]
    assert s.deadline == 20.0
    s.partial(6.0, True)
    assert s.tick(60.0) == [Goodbye("idle", "idle for 20 seconds")]
    s, _ = session(chat, 0.0, Limits(idle_timeout=100, ping_interval=5, ping_timeout=1, line_timeout=2))
    s.handle(NickCmd("d2"), 0.0)
    s.partial(0.0, True)
    assert s.deadline == 2.0
    assert s.tick(10.0) == [Goodbye("partial line timeout", "no end of line within 2 seconds")]
    s, _ = session(chat, 0.0, Limits(flood_rate=1, flood_burst=1, idle_timeout=50))
    s.handle(NickCmd("d3"), 0.0)
    assert s.throttle(0.0) == 1.0 and s.deadline == 1.0
    assert s.tick(0.5) == [] and s.deadline == 1.0
    s2, _ = session(chat, 0.0, Limits(ping_interval=5, ping_timeout=1.5))
    assert s2.deadline == 60.0 and s2.tick(6.0) == []
    s2.handle(NickCmd("d4"), 0.0)
    assert s2.tick(5.0) == [Ping("keepalive-1")]
    assert s2.tick(6.4) == [] and s2.deadline == 6.5
    assert s2.tick(6.5) == [Goodbye("ping timeout", "Ping timeout: 6.5 seconds")]


def test_explicit_rooms_win_over_the_current_one():
    chat = Chat()
    s, _ = session(chat, auto_join=None, single_room=False)
    s.handle(NickCmd("m"), 0.0)
    s.handle(JoinCmd("one"), 0.0)
    s.handle(JoinCmd("two"), 0.0)
    me = s.user.ident
    assert s.current_room == "two"
    assert s.handle(EmoteCmd("hops", "one"), 1.0) == [Emote("one", me, "hops", 1.0)]
    assert s.handle(TopicCmd("one", "t1"), 2.0) == [Topic("one", "t1", "m", 2.0, True, 2.0)]
    assert s.handle(NamesCmd("#one"), 3.0) == [Names("one", ("m",))]
    s.handle(SayCmd("said", "one"), 4.0)
    assert [line.text for line in chat.find_room("one").history] == ["hops", "said"]
    assert chat.find_room("two").history == type(chat.find_room("two").history)()
    assert s.handle(PartCmd("one", "bye"), 5.0) == [Left("one", me, "bye", 5.0)]
    assert list(s.user.rooms) == ["two"]


def test_partial_line_timeout_tells_the_others():
    chat = Chat()
    other, io = session(chat)
    other.handle(NickCmd("o"), 0.0)
    s, _ = session(chat, 0.0, Limits(line_timeout=3))
    s.handle(NickCmd("p"), 0.0)
    s.partial(1.0, True)
    io.clear()
    assert s.tick(4.0) == [Goodbye("partial line timeout", "no end of line within 3 seconds")]
    assert io == [Quit(Ident("p", "p", ""), "partial line timeout", 4.0)]


def test_lines_refused_by_the_door_count_and_warn_before_any_command():
    chat = Chat()
    s, inbox = session(chat, 0.0, Limits(flood_rate=1, flood_burst=1, idle_timeout=10))
    s.note_line(0.0, False)
    assert s.throttle(0.0) == 1.0
    assert inbox == [Notice(SLOW, 0.0)]
    assert s.throttle(1.0) is None and s.deadline == 60.0  # the nick deadline: no throttle time left behind
    s.handle(NickCmd("n"), 1.0)
    assert s.deadline == 11.0
    s.note_line(4.0)  # active by default: the idle time starts again
    assert s.deadline == 14.0 and s.user.last_active == 4.0


def test_a_foreign_command_is_a_type_error():
    s, _ = session(Chat())
    s.handle(NickCmd("z"), 0.0)
    with pytest.raises(TypeError, match=r"^not a command: 'nope'$"):
        s.handle("nope", 1.0)  # type: ignore[arg-type]
    assert s.handle(HelpCmd(), 2.0) == [Help()]


def test_token_bucket_ready_with_more_than_one_token():
    b = TokenBucket(4.0, 2, 0.0)
    b.take(0.0)
    b.take(0.0)
    assert b.ready_at(0.375) == 0.375 and b.tokens == 1.5
