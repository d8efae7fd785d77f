"""The chat's sans-IO layers alone: sessions and their deadlines, the core's
invariants under any sequence of commands, and the input hygiene properties."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from demos.chat.core import Chat, Goodbye, Notice, Ping, Quit, Said, irc_lower
from demos.chat.hygiene import MAX_COMBINING, clean_text
from demos.chat.irc_door import MAX_IRC_LINE, parse_message, split_text
from demos.chat.session import (EmoteCmd, JoinCmd, Limits, NickCmd, PartCmd, PongCmd, QuitCmd, SayCmd, Session,
                                TopicCmd)
from tests.conftest import examples


def session(chat: Chat, now: float = 0.0, **limits) -> tuple[Session, list]:
    inbox: list = []
    return Session(chat, inbox.append, now, Limits(**limits)), inbox


def test_nickname_deadline():
    s, _ = session(Chat(), 0.0, nick_timeout=5)
    assert s.deadline == 5 and s.tick(4.9) == []
    assert s.tick(5.0) == [Goodbye("no nickname chosen in time", "you did not choose a nickname within 5 seconds")]
    assert s.deadline is None and s.handle(SayCmd("too late"), 6.0) == []


def test_idle_deadline_moves_with_activity_and_the_others_hear_why():
    chat = Chat()
    s, _ = session(chat, 0.0, idle_timeout=10)
    other, inbox = session(chat, 0.0)
    other.handle(NickCmd("other"), 0.0)
    s.handle(NickCmd("sleepy"), 1.0)
    assert s.deadline == 11
    s.handle(SayCmd("still here"), 5.0)
    assert s.deadline == 15 and s.tick(14.0) == []
    assert s.tick(15.0) == [Goodbye("idle", "idle for 10 seconds")]
    assert isinstance(inbox[-1], Quit) and inbox[-1].reason == "idle" and "sleepy" not in chat.users


def test_partial_line_deadline_runs_from_the_first_byte():
    s, _ = session(Chat(), 0.0, line_timeout=3)
    s.handle(NickCmd("dripper"), 0.0)
    s.partial(1.0, True)
    s.partial(2.0, True)  # more bytes of the same line: the deadline stays
    assert s.deadline == 4.0
    s.partial(3.0, False)  # the line ended
    assert s.deadline is None
    s.partial(3.5, True)
    assert s.tick(6.5)[-1].reason == "partial line timeout"


def test_keepalive_pings_then_gives_up():
    s, _ = session(Chat(), 0.0, ping_interval=30, ping_timeout=10)
    s.handle(NickCmd("pinged"), 0.0)
    assert s.deadline == 30 and s.tick(30.0) == [Ping("keepalive-1")]
    assert s.deadline == 40
    s.heard(35.0)  # any byte answers
    assert s.deadline == 65
    assert s.tick(65.0) == [Ping("keepalive-2")]
    s.handle(PongCmd(), 70.0)
    assert s.tick(100.0) == [Ping("keepalive-3")]
    assert s.tick(110.0) == [Goodbye("ping timeout", "Ping timeout: 40 seconds")]


def test_throttle_delays_with_one_notice_per_burst():
    chat = Chat()
    s, inbox = session(chat, 0.0, flood_rate=2, flood_burst=2)
    assert s.throttle(0.0) is None
    s.handle(NickCmd("fast"), 0.0)
    assert s.throttle(0.0) is None
    s.handle(SayCmd("one"), 0.0)
    assert s.throttle(0.0) == 0.5 and s.deadline == 0.5
    assert s.throttle(0.1) == 0.5
    assert [e for e in inbox if isinstance(e, Notice)] == [
        Notice("slow down: you are sending too fast; your lines are being delayed", 0.0)]
    assert s.tick(0.5) == [] and s.throttle(0.5) is None


def test_pongs_are_not_activity():
    s, _ = session(Chat(), 0.0, idle_timeout=10)
    s.handle(NickCmd("quiet"), 0.0)
    s.handle(PongCmd(), 9.0)
    assert s.deadline == 10


class ChatMachine(RuleBasedStateMachine):
    """Any sequence of commands from any sessions keeps the chat consistent."""

    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.chat = Chat(history_lines=5, history_bytes=300)
        self.now = 0.0
        self.inboxes: dict[int, list] = {}

    def _t(self) -> float:
        self.now += 1.0
        return self.now

    @rule(target=sessions, single=st.booleans())
    def connect(self, single):
        inbox: list = []
        holder: list = []

        def deliver(event):
            me = holder[0]
            assert me.closed is None, f"{event} delivered after the session ended"
            assert not (isinstance(event, Said) and event.who.nick == me.nick), "heard their own line"
            inbox.append(event)

        s = Session(self.chat, deliver, self._t(), single_room=single, auto_join="" if single else None)
        holder.append(s)
        self.inboxes[id(s)] = inbox
        return s

    @rule(s=sessions, nick=st.sampled_from(["ann", "Ann", "bob", "[x]", "{X}", "9bad", "carol"]))
    def nick(self, s, nick):
        s.handle(NickCmd(nick), self._t())

    @rule(s=sessions, room=st.sampled_from(["lobby", "#LOBBY", "dev", "#dev", "bad room", "x"]))
    def join(self, s, room):
        s.handle(JoinCmd(room), self._t())

    @rule(s=sessions, room=st.sampled_from([None, "lobby", "dev", "nowhere"]))
    def part(self, s, room):
        s.handle(PartCmd(room), self._t())

    @rule(s=sessions, text=st.text(max_size=80), emote=st.booleans())
    def talk(self, s, text, emote):
        s.handle(EmoteCmd(text) if emote else SayCmd(text), self._t())

    @rule(s=sessions, text=st.one_of(st.none(), st.text(max_size=20)))
    def topic(self, s, text):
        s.handle(TopicCmd(None, text), self._t())

    @rule(s=sessions)
    def quit(self, s):
        s.handle(QuitCmd("bye"), self._t())

    @rule(s=sessions)
    def lost(self, s):
        s.close("connection closed by peer", self._t())

    @invariant()
    def consistent(self):
        chat = self.chat
        for key, user in chat.users.items():
            assert key == irc_lower(user.nick)
            for rkey, room in user.rooms.items():
                assert chat.rooms[rkey] is room and room.members[key] is user
        for rkey, room in chat.rooms.items():
            assert rkey == irc_lower(room.name)
            assert room.members or rkey == irc_lower(chat.default_room)  # empty rooms vanish
            for key, user in room.members.items():
                assert chat.users[key] is user
            assert len(room.history) <= 5 and room.history_bytes <= 300

    @invariant()
    def closed_sessions_are_gone(self):
        for user in self.chat.users.values():
            assert user.sink.__self__.closed is None  # a session's sink is its bound method


ChatMachine.TestCase.settings = settings(max_examples=examples(100), stateful_step_count=40, deadline=None)
test_chat_lifecycle = ChatMachine.TestCase


@given(st.text())
def test_clean_text_lets_no_control_separator_or_mark_flood_through(text):
    out = clean_text(text)
    run = 0
    for ch in out:
        category = unicodedata.category(ch)
        assert category not in ("Cc", "Zl", "Zp") and (category != "Cf" or ch in "\u200c\u200d")
        run = run + 1 if category in ("Mn", "Me") else 0
        assert run <= MAX_COMBINING
    assert out == out.strip()


@given(st.text())
def test_the_irc_parser_takes_anything(line):
    command, params = parse_message(line)
    assert command == command.upper() and all(isinstance(p, str) for p in params)


@given(st.text(min_size=1, max_size=2000))
def test_irc_lines_we_split_fit_and_keep_everything(text):
    head = ":somebody!~somebody@127.0.0.1 PRIVMSG #lobby :"
    lines = split_text(head, text)
    assert all(len(line.encode("utf-8", "replace")) <= MAX_IRC_LINE for line in lines)
    assert "".join(line[len(head):] for line in lines) == text.encode("utf-8", "replace").decode("utf-8", "replace")
