"""Chat servers sharing rooms through Redis, in one process: several ``SharedChat`` + ``Backplane`` on one loop.

Each "server" is a ``SharedChat`` with its own backplane (its own two
connections to a real redis-server) and its users are sessions whose events
are rendered as the line door would; everything runs on one reactor, driven
until a condition holds. The process-level tests (real servers, sockets,
signals) are in test_chat_redis.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from demos.chat.backplane import Backplane
from demos.chat.line_door import render_event
from demos.chat.session import EmoteCmd, JoinCmd, ListCmd, NamesCmd, NickCmd, PrivateCmd, QuitCmd, SayCmd, Session
from demos.chat.shared import SharedChat
from demos.resp import Backoff, RedisDown, parse_url
from reactor import Reactor

from .conftest import run_until
from .redis_server import redis_server  # noqa: F401


class Person:
    def __init__(self, server: "Node", nick: str, wait: bool = True) -> None:
        self.server = server
        self.lines: list[str] = []
        self.session = Session(server.chat, self.show, time.time())
        self.do(NickCmd(nick))
        if wait:
            server.until(lambda: f"*** {nick} joined #lobby" in self.lines)

    def show(self, event: Any) -> None:
        self.lines += render_event(event, self.session.nick, self.session.current_room is not None)

    def do(self, cmd: Any) -> None:
        for event in self.session.handle(cmd, time.time()):
            self.show(event)

    def say(self, text: str) -> None:
        self.do(SayCmd(text))

    def saw(self, line: str) -> bool:
        return line in self.lines

    def talk(self) -> list[str]:
        return [line for line in self.lines if line.startswith(("<", "* "))]


class Node:
    def __init__(self, reactor: Reactor, url: str, name: str, alive_ttl: float = 5.0) -> None:
        self.reactor = reactor
        self.chat = SharedChat(name)
        self.plane = Backplane(reactor, self.chat, parse_url(url), timeout=2.0, heartbeat=0.2,
                               alive_ttl=alive_ttl, backoff=Backoff(0.05, 0.2))
        self.plane.start()
        self.until(lambda: self.plane.state == "up")

    def until(self, condition: Any, timeout: float = 10.0) -> None:
        run_until(self.reactor, condition, timeout)

    def crash(self) -> None:
        """Die without a word: connections dropped, no heartbeat, no goodbye."""
        plane = self.plane
        if plane._timer is not None:
            plane._timer.cancel()
        plane.state = "closed"
        for conn in (plane.cmd, plane.sub):
            if conn is not None:
                conn.on_lost = None
                conn.abort(RedisDown("crash"))


@pytest.fixture
def loop():
    with Reactor() as reactor:
        yield reactor


@pytest.fixture
def two(loop, redis_server):
    a, b = Node(loop, redis_server.url, "A"), Node(loop, redis_server.url, "B")
    yield a, b
    for node in (a, b):
        node.plane.close()
    run_until(loop, lambda: a.plane.flushed() and b.plane.flushed())


def test_one_room_one_order_on_both_servers(two):
    a, b = two
    ann, amy = Person(a, "ann"), Person(a, "amy")
    bob, bea = Person(b, "bob"), Person(b, "bea")
    people = [ann, amy, bob, bea]
    a.until(lambda: all(p.saw("*** bea joined #lobby") for p in people))
    for i in range(25):  # everyone at once, without waiting for anything
        for p in people:
            p.do(EmoteCmd(f"waves {i}") if i % 3 == 0 else SayCmd(f"line {i} from {p.session.nick}"))
    total = 25 * 4
    a.until(lambda: all(len(p.talk()) >= total - 25 + 9 for p in people))  # others' 75 + 9 emotes of its own
    for p in people:
        assert len(p.talk()) == total - 25 + 9  # all the others' lines, and its own emotes
    for p in people:  # any two users see the lines they both got in the same order
        for q in people:
            p_own, q_own = f"<{p.session.nick}> ", f"<{q.session.nick}> "
            assert [l for l in p.talk() if not l.startswith(q_own)] == \
                [l for l in q.talk() if not l.startswith(p_own)], (p.session.nick, q.session.nick)


def test_joins_renames_and_private_messages_cross_servers(two):
    a, b = two
    ann, bob = Person(a, "ann"), Person(b, "bob")
    a.until(lambda: ann.saw("*** bob joined #lobby"))
    bob.do(JoinCmd("#dev"))
    a.until(lambda: ann.saw("*** bob left #lobby"))
    ann.do(JoinCmd("dev"))
    a.until(lambda: bob.saw("*** ann joined #dev"))
    ann.do(NickCmd("annie"))
    a.until(lambda: bob.saw("*** ann is now known as annie"))
    assert ann.saw("*** ann is now known as annie")
    bob.do(PrivateCmd("ANNIE", "psst"))
    a.until(lambda: ann.saw("[PM from bob] psst"))
    assert bob.saw("[PM to annie] psst")
    ann.do(NamesCmd())
    bob.do(ListCmd())
    assert ann.lines[-1] == "*** in #dev: bob, annie"
    assert bob.lines[-1] == "*** rooms: #dev (2), #lobby (0)"
    bob.do(QuitCmd("bye"))
    a.until(lambda: ann.saw("*** bob quit (bye)"))


def test_nicknames_are_unique_across_servers(two):
    a, b = two
    Person(a, "ann")
    bob = Person(b, "bob")
    a.until(lambda: b.chat.find_user("ann") is not None)
    bob.do(NickCmd("ANN"))
    assert bob.lines[-1] == "!!! nickname ANN is taken"
    late = Person(b, "x", wait=False)
    late.lines.clear()
    with pytest.raises(Exception, match="taken"):
        b.chat.register("Ann", late.show, time.time())


def test_the_same_nickname_at_the_same_moment_on_two_servers(two):
    a, b = two
    zed_a, zed_b = Person(a, "zed", wait=False), Person(b, "zed", wait=False)  # before either hears of the other
    a.until(lambda: a.chat.find_user("zed") is not None and b.chat.find_user("zed") is not None
            and any(l.startswith("*** zed is now known as Guest") for l in zed_a.lines + zed_b.lines))
    loser = zed_a if zed_a.session.nick != "zed" else zed_b
    winner = zed_b if loser is zed_a else zed_a
    assert winner.session.nick == "zed" and loser.session.nick.startswith("Guest")
    assert any("was taken on another server" in l for l in loser.lines)
    a.until(lambda: {u.nick for u in a.chat.users.values()} == {u.nick for u in b.chat.users.values()}
            == {"zed", loser.session.nick})


def test_history_on_join_comes_from_redis(loop, redis_server, two):
    a, b = two
    ann = Person(a, "ann")
    for i in range(25):
        ann.say(f"old line {i}")
    a.until(lambda: len(a.chat.rooms["lobby"].history) == 20)
    c = Node(loop, redis_server.url, "C")  # a server that was not there when they were said
    try:
        assert [line.text for line in c.chat.rooms["lobby"].history] == [f"old line {i}" for i in range(5, 25)]
        cat = Person(c, "cat")
        c.until(lambda: any(l.endswith("<ann> old line 24") for l in cat.lines))
        replay = cat.lines[cat.lines.index("*** recent lines in #lobby:") + 1:]
        assert [l.split("] ", 1)[1] for l in replay] == [f"<ann> old line {i}" for i in range(5, 25)]
        assert redis_server.command("LLEN", "reactor-chat:0:history:lobby") == 20
    finally:
        c.plane.close()
        run_until(loop, c.plane.flushed)


def test_a_server_that_dies_loses_its_users(loop, redis_server):
    a, b = Node(loop, redis_server.url, "A"), Node(loop, redis_server.url, "B")
    try:
        ann, bob = Person(a, "ann"), Person(b, "bob")
        a.until(lambda: ann.saw("*** bob joined #lobby"))
        b.crash()
        a.until(lambda: ann.saw("*** bob quit (server gone)"), timeout=5)
        assert a.chat.find_user("bob") is None
        assert redis_server.command("HGET", "reactor-chat:0:nicks", "bob") is None
        again = Person(a, "bob")  # the nickname is free again
        assert again.session.nick == "bob"
    finally:
        a.plane.close()
        run_until(loop, a.plane.flushed)


def test_redis_restarted_mid_run(two, redis_server):
    a, b = two
    ann, amy, bob = Person(a, "ann"), Person(a, "amy"), Person(b, "bob")
    a.until(lambda: ann.saw("*** bob joined #lobby") and amy.saw("*** bob joined #lobby"))
    redis_server.stop()
    a.until(lambda: a.chat.outage is not None and b.chat.outage is not None)
    outage = [l for l in ann.lines if "out of reach" in l]
    assert len(outage) == 1 and outage == [l for l in bob.lines if "out of reach" in l]
    ann.say("while Redis is away")  # local delivery goes on
    assert amy.saw("<ann> while Redis is away") and not bob.saw("<ann> while Redis is away")
    redis_server.start()
    a.until(lambda: a.plane.state == "up" and b.plane.state == "up", timeout=15)
    a.until(lambda: ann.saw("*** the other chat servers are back") and bob.saw("*** the other chat servers are back"))
    assert [l for l in ann.lines if "out of reach" in l] == outage  # said once
    a.until(lambda: {u.nick for u in b.chat.users.values()} == {"ann", "amy", "bob"})
    bob.say("after the restart")
    a.until(lambda: ann.saw("<bob> after the restart") and amy.saw("<bob> after the restart"))
    ann.say("and back")
    a.until(lambda: bob.saw("<ann> and back"))
    other = Person(b, "x", wait=False)
    other.lines.clear()
    with pytest.raises(Exception, match="taken"):
        b.chat.register("ann", other.show, time.time())  # the names were restored in Redis
    assert redis_server.command("HGET", "reactor-chat:0:nicks", "ann") is not None


def test_a_server_taken_for_dead_gets_its_users_back(loop, redis_server):
    """A server that stops beating (a long pause) is removed by the others when its key
    expires, although its connections are open; when it sees its own users quit, it
    syncs again and they are back."""
    a = Node(loop, redis_server.url, "A", alive_ttl=0.6)
    b = Node(loop, redis_server.url, "B", alive_ttl=0.6)
    try:
        ann, bob = Person(a, "ann"), Person(b, "bob")
        a.until(lambda: ann.saw("*** bob joined #lobby"))
        a.plane._timer.cancel()  # A stops beating, as if paused; its connections stay open
        a.plane._timer = None
        a.until(lambda: bob.saw("*** ann quit (server gone)"), timeout=5)
        a.until(lambda: a.plane.syncs == 2 and a.plane.state == "up", timeout=5)  # A saw it and synced again
        a.until(lambda: bob.saw("*** ann joined #lobby"))
        assert ann.session.nick == "ann" and not ann.session.closed
        ann.say("still here")
        a.until(lambda: bob.saw("<ann> still here"))
    finally:
        for node in (a, b):
            node.plane.close()
        run_until(loop, lambda: a.plane.flushed() and b.plane.flushed())
