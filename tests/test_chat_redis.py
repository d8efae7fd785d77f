"""Chat servers sharing rooms through a real Redis, as processes, with nc-style users; and the faults.

- two ``demos.chat_server --redis`` processes, a user on each: lines, joins,
  renames cross both ways, and each room's order is the same on both;
- Redis restarted mid-run: each server says so once (to users and log),
  local delivery goes on, it reconnects, restores its users, carries on;
- a worker of ``--workers 2`` killed: its users are disconnected, the others
  see them quit, the supervisor starts another;
- a stopped (SIGSTOP) Redis: the loop is never blocked, the server goes
  local after ``--redis-timeout``, and comes back when Redis does;
- a server too slow to read its subscription: Redis cuts it off at its
  client output buffer limit, the server says so and resyncs.
"""

from __future__ import annotations

import os
import signal
import socket
import sys

import pytest

from .redis_server import RedisServer, need_redis, redis_server  # noqa: F401
from .test_chat import Client, Server, read_line, server_factory  # noqa: F401
from .workers_util import connection_owners

BACK = "*** the other chat servers are back"


def out_of_reach(line: str) -> bool:
    return line.startswith("*** the other chat servers are out of reach")


def emotes(client: Client) -> list[str]:
    return [line for line in client.lines if line.startswith("* ")]


def who(user: Client, expected: set[str], tries: int = 200) -> bool:
    """Ask /who until it lists *expected* (each answer is a round trip: the pacing); False if never."""
    for _ in range(tries):
        user.send("/who")
        line = user.read_until(lambda l: l.startswith("*** in #"))[-1]
        if set(line.split(": ", 1)[1].split(", ")) == expected:
            return True
    return False


def test_two_servers_one_redis(server_factory, redis_server):
    a = server_factory("--redis", redis_server.url)
    b = server_factory("--redis", redis_server.url)
    assert any("rooms shared through Redis at" in line for line in a.startup)
    alice = a.client("alice")
    bob = b.client("bob")
    alice.read_until("*** bob joined #lobby")
    alice.send("hello from A")
    bob.read_until("<alice> hello from A")
    bob.send("hello from B")
    alice.read_until("<bob> hello from B")
    bob.send("/nick bobby")
    alice.read_until("*** bob is now known as bobby")
    alice.send("/join dev")
    bob.read_until("*** alice left #lobby")
    bob.send("/join dev")
    alice.read_until("*** bobby joined #dev")
    bob.send("/nick alice")
    assert bob.read_until(lambda l: l.startswith("!!!"))[-1] == "!!! nickname alice is taken"
    alice.send("/who")
    assert alice.read_until(lambda l: l.startswith("*** in #dev"))[-1] == "*** in #dev: alice, bobby"
    bob.send("/rooms")
    assert bob.read_until(lambda l: l.startswith("*** rooms"))[-1] == "*** rooms: #dev (2), #lobby (0)"
    alice.send("/msg bobby psst")
    bob.read_until("[PM from alice] psst")

    # One order per room: three users on each server talk at once.
    people = [a.client(f"a{i}") for i in range(3)] + [b.client(f"b{i}") for i in range(3)]
    nicks = [f"a{i}" for i in range(3)] + [f"b{i}" for i in range(3)]
    for p, nick in zip(people, nicks):
        p.send("/join order")
        p.read_until(f"*** {nick} joined #order")
    for p in people[:-1]:
        p.read_until("*** b2 joined #order")  # everyone is in
    for n in range(10):
        for p in people:
            p.send(f"/me counts {n}")
    for p in people:
        seen: list[str] = []
        p.read_until(lambda l: l.startswith("* ") and (seen.append(l) or len(seen) == 60))
    orders = [emotes(p) for p in people]
    assert all(len(o) == 60 for o in orders)
    assert all(o == orders[0] for o in orders), "each server showed the room in another order"
    for n, p in enumerate(people):  # and each user's lines in the order they were sent
        mine = [l for l in orders[0] if l.startswith(f"* {'a' if n < 3 else 'b'}{n % 3} ")]
        assert mine == [f"* {'a' if n < 3 else 'b'}{n % 3} counts {k}" for k in range(10)]
    code, err = b.stop()
    assert code == 0 and "Traceback" not in err
    alice.read_until(lambda l: l.startswith("*** bobby quit"))
    code, err = a.stop()
    assert code == 0 and "Traceback" not in err


def test_redis_restarted_mid_run(server_factory, redis_server):
    a = server_factory("--redis", redis_server.url, "--redis-timeout", "2")
    b = server_factory("--redis", redis_server.url, "--redis-timeout", "2")
    ann, amy = a.client("ann"), a.client("amy")
    bob = b.client("bob")
    ann.read_until("*** bob joined #lobby")
    redis_server.stop()
    for user in (ann, amy, bob):
        user.read_until(out_of_reach)
    ann.send("only on A")
    amy.read_until("<ann> only on A")
    redis_server.start()  # empty: no persistence
    for user in (ann, amy, bob):
        user.read_until(BACK)
    assert who(bob, {"ann", "amy", "bob"})  # A's users are back in the shared room (whoever synced first)
    ann.send("after the restart")
    bob.read_until("<ann> after the restart")
    bob.send("from B again")
    amy.read_until("<bob> from B again")
    late = b.client()
    late.send("ann")
    assert late.read_until("Choose a nickname:")[0] == "!!! nickname ann is taken"
    for user in (ann, amy, bob):
        assert sum(1 for l in user.lines if out_of_reach(l)) == 1, user.lines
        assert "<ann> only on A" not in bob.lines
    for server in (a, b):
        code, err = server.stop()
        assert code == 0 and "Traceback" not in err
        assert err.count("backplane: lost Redis") == 1, err  # said once, however many attempts
        assert "cannot reach Redis" not in err, err
        assert err.count("backplane: back in touch with Redis") == 1, err


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"),
                    reason="needs SO_REUSEPORT, and /proc to see which worker serves whom")
def test_a_worker_killed_mid_run(server_factory, redis_server):
    server = server_factory("--redis", redis_server.url, "--workers", "2")
    line = read_line(server.proc)  # the supervisor's, after the first worker's start-up lines
    assert "worker(s) serving" in line, line
    pids = [int(p) for p in line.split("(pids ")[1].split(")")[0].split(", ")]
    users = []
    for i in range(40):  # until both workers have users (the kernel hashes the ports)
        users.append(server.client(f"u{i}"))
        owners = connection_owners(pids, server.port)
        served = {owners.get(u.sock.getsockname()[1]) for u in users}
        if len(users) >= 6 and served == set(pids):
            break
    owners = connection_owners(pids, server.port)
    victim = pids[0]
    doomed = [u for u in users if owners[u.sock.getsockname()[1]] == victim]
    spared = [u for u in users if owners[u.sock.getsockname()[1]] != victim]
    assert doomed and spared
    nick = {id(u): f"u{users.index(u)}" for u in users}
    os.kill(victim, signal.SIGKILL)
    for u in doomed:
        u.read_to_eof()  # disconnected by their worker's death
    quits = {f"*** {nick[id(d)]} quit (server gone)" for d in doomed}
    for u in spared:
        seen: set[str] = set()
        u.read_until(lambda l: l in quits and (seen.add(l) or seen == quits))
    newcomer = server.client("newcomer")  # the supervisor's replacement or the survivor: same chat
    spared[0].read_until("*** newcomer joined #lobby")
    newcomer.send("/who")
    listed = newcomer.read_until(lambda l: l.startswith("*** in #lobby"))[0]
    assert sorted(listed.split(": ")[1].split(", ")) == sorted([nick[id(u)] for u in spared] + ["newcomer"])
    code, err = server.stop()
    assert code == 0, err
    assert f"worker 1 (pid {victim}) was killed by SIGKILL" in err and "restarting it in 0.5 s" in err
    assert "worker 1 (pid " in err and "is back" in err


def test_a_stopped_redis_never_blocks_the_server(server_factory, redis_server):
    a = server_factory("--redis", redis_server.url, "--redis-timeout", "1")
    b = server_factory("--redis", redis_server.url, "--redis-timeout", "1")
    ann, amy = a.client("ann"), a.client("amy")
    bob = b.client("bob")
    ann.read_until("*** bob joined #lobby")
    redis_server.pause()
    try:
        ann.send("said while Redis is stopped")
        amy.send("/who")  # answered at once: the loop is not waiting for Redis
        assert amy.read_until(lambda l: l.startswith("*** in #lobby"))[-1] == "*** in #lobby: ann, amy, bob"
        amy.read_until(out_of_reach)  # after --redis-timeout, with the reason
        amy.read_until("<ann> said while Redis is stopped")  # it was on its way: delivered here
        assert "no reply" in next(l for l in amy.lines if out_of_reach(l))
        cat = a.client("cat")  # new users are served meanwhile
        cat.send("meow")
        ann.read_until("<cat> meow")
        bob.read_until(out_of_reach)  # B too, with nothing to say: its heartbeat got no reply
    finally:
        redis_server.resume()
    for user in (ann, bob):
        user.read_until(BACK)
    bob.read_until("*** cat joined #lobby")  # what happened while apart, after the news
    ann.send("and across again")
    bob.read_until("<ann> and across again")
    for server in (a, b):
        code, err = server.stop()
        assert code == 0 and "Traceback" not in err


def test_redis_option_errors(server_factory, tmp_path):
    import subprocess

    from .test_chat import ROOT, _env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    for args, message in [
        (["--redis", "http://x"], "--redis: expected a redis://host:port/db URL, got 'http://x'"),
        (["--redis", "redis://127.0.0.1:6379/x"], "must be a number"),
        (["--redis", f"redis://127.0.0.1:{closed}/0"],
         f"cannot use Redis at 127.0.0.1:{closed}: Connection refused (is redis-server running?)"),
        (["--redis-timeout", "0"], "must be a positive number"),
    ]:
        result = subprocess.run([sys.executable, "-m", "demos.chat_server", *args], cwd=ROOT, env=_env(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_a_server_too_slow_for_redis_is_cut_off_then_catches_up(server_factory, redis_server):
    """Redis caps what it holds for a subscriber that does not read (its client output
    buffer): past it, it drops that connection. The slow server sees it, says so, resyncs."""
    import signal as signals

    a = server_factory("--redis", redis_server.url, "--redis-timeout", "2")
    b = server_factory("--redis", redis_server.url, "--redis-timeout", "2")
    ann, amy = a.client("ann"), a.client("amy")
    bob = b.client("bob")
    ann.read_until("*** bob joined #lobby")
    sid = redis_server.command("HGET", "reactor-chat:0:nicks", "bob").decode().rsplit("/", 1)[0]  # bob's server
    assert redis_server.command("CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 512kb 1") == b"OK"
    b.proc.send_signal(signals.SIGSTOP)  # B stops reading: its subscription backs up in Redis
    try:
        padding = '{"t": "pad", "x": "' + "x" * 1_000_000 + '"}'  # an event B ignores, if it ever reads it
        for _ in range(30):  # far more than the kernel's socket buffers hold
            redis_server.command("PUBLISH", f"reactor-chat:0:server:{sid}", padding)
        ann.send("while B sleeps")
        amy.read_until("<ann> while B sleeps")  # A's users are not held back
    finally:
        b.proc.send_signal(signals.SIGCONT)
    bob.read_until(out_of_reach)
    bob.read_until(BACK)
    ann.send("after the catch-up")
    bob.read_until("<ann> after the catch-up")
    assert "for overcoming of output buffer limits" in redis_server.log.read_text()  # Redis cut B off
    for server in (a, b):
        code, err = server.stop()
        assert code == 0 and "Traceback" not in err
