"""The chat server: its core and input hygiene alone, then the real thing over loopback."""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demos.chat.core import Chat, ChatError, ErrorCode, Joined, Said
from demos.chat.hygiene import TelnetFilter, clean_line
from demos.chat.line_door import render_event
from demos.chat.session import JoinCmd, NickCmd, PartCmd, PrivateCmd, QuitCmd, SayCmd, Session, TokenBucket

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 20.0


# -- the core, without sockets ----------------------------------------------------------

class Person:
    """A session whose events (returned or delivered) are rendered as the line door would."""

    def __init__(self, chat: Chat, nick: str) -> None:
        self.lines: list[str] = []
        self.session = Session(chat, self.show, 0.0)
        self.do(NickCmd(nick))

    def show(self, event) -> None:
        self.lines += render_event(event, self.session.nick, self.session.current_room is not None)

    def do(self, cmd) -> None:
        for event in self.session.handle(cmd, 1.0):
            self.show(event)


def make_chat(*nicks):
    chat = Chat()
    people = {nick: Person(chat, nick) for nick in nicks}
    for p in people.values():
        p.lines.clear()
    return chat, people


def test_room_messages_reach_other_members_only():
    chat, p = make_chat("ann", "bob", "cat")
    p["cat"].do(JoinCmd("#dev"))
    for person in p.values():
        person.lines.clear()
    p["ann"].do(SayCmd("hi"))
    assert {n: x.lines for n, x in p.items()} == {"ann": [], "bob": ["<ann> hi"], "cat": []}


def test_nicknames_are_validated_and_unique_case_insensitively():
    chat, p = make_chat("Ann")
    for bad, why in [("ann", "taken"), ("ANN", "taken"), ("", "empty"), ("9lives", "start with"),
                     ("a" * 17, "too long"), ("bad nick", "letters"), ("Server", "reserved")]:
        with pytest.raises(ChatError, match=why):
            chat.register(bad, print, 0.0)
    p["Ann"].do(NickCmd("aNN"))  # changing one's own case is fine
    assert p["Ann"].session.nick == "aNN" and list(chat.users) == ["ann"]


def test_rfc1459_case_mapping():
    chat, p = make_chat("[ann]")
    with pytest.raises(ChatError) as info:
        chat.register("{ANN}", print, 0.0)
    assert info.value.code is ErrorCode.NICK_TAKEN


def test_join_part_rooms_who_and_empty_rooms_vanish():
    chat, p = make_chat("ann", "bob")
    p["bob"].do(JoinCmd("dev"))
    assert p["ann"].lines == ["*** bob left #lobby"]
    assert [(r.name, r.members) for r in chat.room_list()] == [("dev", 1), ("lobby", 1)]
    assert chat.names("dev").nicks == ("bob",)
    p["bob"].do(PartCmd())
    assert [(r.name, r.members) for r in chat.room_list()] == [("lobby", 1)]
    p["bob"].lines.clear()
    p["bob"].do(SayCmd("hello?"))
    assert p["bob"].lines == ["!!! you are not in a room; /join ROOM first"]
    p["ann"].do(JoinCmd("LOBBY"))
    assert p["ann"].lines[-1] == "!!! you are already in #lobby"


def test_private_messages_and_quit():
    chat, p = make_chat("ann", "bob", "cat")
    p["ann"].do(PrivateCmd("BOB", "psst"))
    assert p["bob"].lines == ["[PM from ann] psst"] and p["ann"].lines == ["[PM to bob] psst"]
    assert p["cat"].lines == []
    p["ann"].do(PrivateCmd("dan", "?"))
    assert p["ann"].lines[-1] == "!!! no such user: dan"
    p["cat"].do(QuitCmd("bye"))
    p["cat"].session.close("twice is harmless", 2.0)
    assert p["ann"].lines[-1] == "*** cat quit (bye)" and "cat" not in chat.users


# -- input hygiene ------------------------------------------------------------------------

TELNET = [b"\xff\xfb\x01", b"\xff\xfd\x03", b"\xff\xf1", b"\xff\xfa\x18\x01\xff\xf0", b"\xff\xff"]


@given(parts=st.lists(st.one_of(st.binary(max_size=10).map(lambda b: b.replace(b"\xff", b"")),
                                st.sampled_from(TELNET)), max_size=20),
       cuts=st.lists(st.integers(min_value=0), max_size=10))
def test_telnet_filter_strips_commands_however_the_stream_is_split(parts, cuts):
    stream = b"".join(parts)
    expected = b"".join(b"\xff" if p == b"\xff\xff" else b"" if p in TELNET else p for p in parts)
    expected = expected.replace(b"\r\0", b"\r\n")  # telnet's CR NUL is Enter
    points = sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]
    f, out, prev = TelnetFilter(), b"", 0
    for p in points:
        out += f.feed(stream[prev:p])
        prev = p
    assert out == expected


@pytest.mark.parametrize("stream, text", [
    (b"caf\xe9 \xff\xfa oops\r\nnext line\r\n", b"caf\xe9 \nnext line\r\n"),  # stray IAC SB: up to the newline
    (b"\xff\xfa" + b"z" * 300 + b"ok", b"z" * (300 - 256) + b"ok"),  # or a bounded length
    (b"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0hi", b"hi"),  # a real one (window size)
    (b"a\xffbc", b"abc"),  # IAC before a non-command byte: only the IAC goes
    (b"line\r\0", b"line\r\n"),  # Enter in telnet's character mode
    (b"nul\0alone", b"nul\0alone"),  # (clean_line removes that NUL later)
])
def test_telnet_filter_edge_cases(stream, text):
    assert TelnetFilter().feed(stream) == text
    f = TelnetFilter()  # and byte by byte
    assert b"".join(f.feed(stream[i:i + 1]) for i in range(len(stream))) == text


@pytest.mark.parametrize("raw, text", [
    (b"hello \x1b[31mred\x1b[0m", "hello red"),
    (b"\x1b]0;pwned title\x07ok", "ok"),
    (b"bell\x07 and \x00nul\x7f", "bell and nul"),
    (b"bad \xff\xfe utf8", "bad \ufffd\ufffd utf8"),
    (b"tab\there", "tab here"),
    ("rtl \u202eevil".encode(), "rtl evil"),
    ("caf\u00e9 \u2713".encode(), "caf\u00e9 \u2713"),
    ("family \U0001F468\u200d\U0001F469\u200d\U0001F467".encode(),
     "family \U0001F468\u200d\U0001F469\u200d\U0001F467"),  # joiners build emoji sequences
    ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645".encode(), "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"),  # Persian ZWNJ
    (b"\x9b31m c1", "\ufffd31m c1"),  # a lone C1 byte is invalid UTF-8
    ("\u009b31m c1".encode(), "31m c1"),  # the C1 control character itself is removed
])
def test_clean_line(raw, text):
    assert clean_line(raw) == text


@given(st.binary(max_size=200))
def test_clean_line_never_lets_a_control_character_through(raw):
    text = clean_line(raw)
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in text)


def test_token_bucket():
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)


# -- the server, over loopback ------------------------------------------------------------

def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def read_line(proc: subprocess.Popen, timeout: float = DEADLINE) -> str:
    """One line of *proc*'s stdout, or fail after *timeout* (never hang on a silent child)."""
    if not select.select([proc.stdout], [], [], timeout)[0]:
        raise AssertionError(f"no output from {proc.args} within {timeout}s")
    return proc.stdout.readline().decode()


class Server:
    def __init__(self, *args: str) -> None:
        # stderr goes to a file: a pipe nobody reads during the test would
        # block the server once its log passed the pipe's 64 KiB.
        self.log = tempfile.TemporaryFile()
        self.clients: list[Client] = []
        self.signalled = False
        self.proc = subprocess.Popen([sys.executable, "-m", "demos.chat_server", "--port", "0", *args],
                                     cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=self.log,
                                     bufsize=0)  # unbuffered: read_line's select() sees every line
        self.startup: list[str] = []  # what it printed: where it listens, how to connect
        try:
            line = read_line(self.proc)
            assert line.startswith("listening on "), self.stderr()
            self.startup.append(line.rstrip("\n"))
            while not self.startup[-1].startswith("Ctrl-C"):
                self.startup.append(read_line(self.proc).rstrip("\n"))
        except BaseException:
            self.stop()
            raise
        self.port = int(line.rsplit(":", 1)[1])
        ports = {l.split(" on ")[0]: int(l.rsplit(":", 1)[1]) for l in self.startup if " on 127.0.0.1:" in l}
        self.irc_port = ports.get("irc")
        self.monitor_port = ports.get("monitor")

    def signal(self, sig: int) -> None:
        """Send *sig* once; stop() then only waits (a second signal could land
        after the server restored the default handlers, and kill it)."""
        self.signalled = True
        self.proc.send_signal(sig)

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode()

    def client(self, nick=None, rcvbuf=None) -> "Client":
        c = Client(self.port, rcvbuf)
        self.clients.append(c)
        c.read_until("Choose a nickname:")
        if nick:
            c.send(nick)
            c.read_until(f"*** {nick} joined #lobby")
        return c

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None and not self.signalled:
            self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=DEADLINE)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        err = self.stderr()
        self.proc.stdout.close()
        self.log.close()
        for c in self.clients:
            c.sock.close()
        return code, err


@pytest.fixture
def server_factory():
    servers = []

    def start(*args):
        servers.append(Server(*args))
        return servers[-1]

    yield start
    for s in servers:
        if s.proc.returncode is None:
            s.stop()


class Client:
    def __init__(self, port: int, rcvbuf=None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(DEADLINE)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.lines: list[str] = []

    def send(self, line: str | bytes) -> None:
        self.sock.sendall((line.encode() if isinstance(line, str) else line) + b"\r\n")

    def read_until(self, predicate) -> list[str]:
        """Read lines until one satisfies *predicate* (a string means equality); return them."""
        check = (lambda l: l == predicate) if isinstance(predicate, str) else predicate
        got = []
        while True:
            while b"\r\n" in self.buf:
                raw, self.buf = self.buf.split(b"\r\n", 1)
                line = raw.decode("utf-8", errors="replace")
                self.lines.append(line)
                got.append(line)
                if check(line):
                    return got
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"server closed; got {got}")
            self.buf += chunk

    def read_to_eof(self) -> list[str]:
        got = []
        try:
            self.read_until(lambda line: got.append(line) and False)
        except EOFError:
            pass
        except ConnectionResetError:
            pass
        return got


def test_fifty_clients_three_rooms(server_factory):
    server = server_factory()
    clients = [server.client(f"user{i}") for i in range(50)]
    rooms = {i: f"room{i % 3}" for i in range(50)}
    for i, c in enumerate(clients):
        c.send(f"/join {rooms[i]}")
        c.read_until(f"*** user{i} joined #{rooms[i]}")
    rng = random.Random(7)
    for n in range(3):
        for i in rng.sample(range(50), 50):
            clients[i].send(f"msg {n} from user{i}")
    clients[0].send("/msg user7 a secret")
    members = {r: [i for i in range(50) if rooms[i] == r] for r in set(rooms.values())}
    for i, c in enumerate(clients):
        expected = {f"<user{j}> msg {n} from user{j}" for j in members[rooms[i]] if j != i for n in range(3)}
        seen = set()
        c.read_until(lambda line: line in expected and (seen.add(line) or seen == expected))
    # Barrier: every message was routed by now; anything misrouted is before this reply.
    for c in clients:
        c.send("/rooms")
        c.read_until(lambda line: line.startswith("*** rooms:"))
    for i, c in enumerate(clients):
        talk = [l for l in c.lines if l.startswith("<")]
        expected_order = {j: [f"<user{j}> msg {n} from user{j}" for n in range(3)]
                          for j in members[rooms[i]] if j != i}
        assert len(talk) == len(set(talk)) == 3 * len(expected_order)  # exactly once each
        for j, lines in expected_order.items():
            assert [l for l in talk if l.startswith(f"<user{j}> ")] == lines  # in order
        pms = [l for l in c.lines if "secret" in l]
        assert pms == (["[PM from user0] a secret"] if i == 7 else ["[PM to user7] a secret"] if i == 0 else [])
    assert clients[0].lines[-1] == "*** rooms: #lobby (0), #room0 (17), #room1 (17), #room2 (16)"
    code, err = server.stop()
    assert code == 0, err


def test_nick_collisions_and_errors(server_factory):
    server = server_factory()
    server.client("alice")
    bob = server.client()
    bob.send("ALICE")
    assert bob.read_until("Choose a nickname:")[0] == "!!! nickname ALICE is taken"
    bob.send("no spaces please")
    assert "letters" in bob.read_until("Choose a nickname:")[0]
    bob.send("bob")
    bob.read_until("*** bob joined #lobby")
    bob.send("/nick Alice")
    assert bob.read_until(lambda l: l.startswith("!!!")) == ["!!! nickname Alice is taken"]
    bob.send("/frobnicate")
    assert bob.read_until(lambda l: l.startswith("!!!")) == ["!!! unknown command /frobnicate; try /help"]
    code, err = server.stop()
    assert code == 0


def test_hostile_input(server_factory):
    server = server_factory("--max-line", "100")
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    bob.send(b"x" * 5000)  # over-long: error, discarded, nothing relayed
    assert bob.read_until(lambda l: l.startswith("!!!")) == [
        "!!! line too long (at most 100 bytes); it was discarded"]
    bob.send(b"\xff\xfd\x18\xff\xfb\x01" + b"telnet \x1b[2J\x1b[31mred\x1b[0m \x07bell")
    garbage_bytes = bytes(random.Random(5).randrange(256) for _ in range(90))
    bob.send(garbage_bytes.replace(b"\n", b"").replace(b"\xff", b"").replace(b"\0", b""))  # binary garbage
    bob.send("still here")
    got = alice.read_until("<bob> still here")
    assert got[0] == "<bob> telnet red bell"
    garbage = got[1]
    assert garbage.startswith("<bob> ") and not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in garbage)
    assert "\ufffd" in garbage  # invalid UTF-8 was replaced, not fatal
    assert len(got) == 3  # the long line never reached alice
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err


def test_a_client_that_never_reads_is_disconnected_and_others_carry_on(server_factory):
    server = server_factory("--max-output", "65536", "--flood-rate", "100000", "--flood-burst", "100000")
    lazy = server.client("lazy", rcvbuf=4096)
    alice, bob = server.client("alice"), server.client("bob")
    line = "y" * 900
    for n in range(20000):  # ~18 MB of fan-out to lazy, who reads none of it
        alice.send(f"{n} {line}")
        if n % 200 == 0:
            bob.read_until(lambda l: l.startswith(f"<alice> {n} "))  # bob keeps up fine
        if n % 1000 == 999 and any("lazy quit" in l for l in bob.lines):
            break
    if not any(l.startswith("*** lazy quit") for l in bob.lines):
        bob.read_until(lambda l: l.startswith("*** lazy quit"))
    assert "not reading" in [l for l in bob.lines if l.startswith("*** lazy quit")][0]
    alice.send("after lazy left")
    bob.read_until("<alice> after lazy left")
    lazy.read_to_eof()  # the server closed it
    code, err = server.stop()
    assert code == 0 and "reason=not reading" in err


def test_max_clients(server_factory):
    server = server_factory("--max-clients", "2")
    server.client()
    server.client("bee")
    full = Client(server.port)
    server.clients.append(full)
    assert full.read_to_eof() == ["!!! the server is full, try again later"]
    code, err = server.stop()
    assert code == 0


def test_nick_timeout_and_idle_timeout(server_factory):
    server = server_factory("--nick-timeout", "0.3", "--idle-timeout", "0.5")
    unnamed = server.client()
    talker = server.client("talker")
    assert "did not choose a nickname" in unnamed.read_to_eof()[-1]
    assert talker.read_to_eof()[-1] == "*** idle for 0.5 seconds; goodbye"
    code, err = server.stop()
    assert code == 0
    assert "reason=no nickname chosen in time" in err and "nick=talker reason=idle" in err


def test_commands_before_choosing_a_nickname(server_factory):
    server = server_factory()
    c = server.client()
    c.send("/help")
    assert "Commands:" in c.read_until("Choose a nickname:")
    c.send("/who")
    assert c.read_until("Choose a nickname:")[0].startswith("!!! choose a nickname first")
    c.send("/nick early")
    c.read_until("*** early joined #lobby")
    late = server.client()
    late.send("/quit not today")
    assert late.read_to_eof()[-1] == "*** goodbye"
    code, err = server.stop()
    assert code == 0 and "reason=quit: not today" in err


def test_flood_control_delays_lines_and_keeps_every_one_in_order(server_factory):
    server = server_factory("--flood-rate", "40", "--flood-burst", "5")
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    started = time.monotonic()
    bob.sock.sendall(b"".join(b"flood %d\r\n" % i for i in range(100)))  # one paste
    got = alice.read_until("<bob> flood 99")
    elapsed = time.monotonic() - started
    assert [l for l in got if l.startswith("<bob>")] == [f"<bob> flood {i}" for i in range(100)]
    assert elapsed >= (100 - 5) / 40 * 0.9  # delayed at the rate, not all at once
    bob.send("/who")
    notices = bob.read_until(lambda l: l.startswith("*** in #lobby"))
    assert notices.count("*** slow down: you are sending too fast; your lines are being delayed") == 1
    code, err = server.stop()
    assert code == 0


def test_a_200_line_paste_arrives_whole_within_a_minute_at_default_settings(server_factory):
    server = server_factory()
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    started = time.monotonic()
    bob.sock.sendall(b"".join(b"line %d of a long paste\n" % i for i in range(200)))
    alice.sock.settimeout(60)
    got = alice.read_until("<bob> line 199 of a long paste")
    assert time.monotonic() - started < 60
    assert [l for l in got if l.startswith("<bob>")] == [f"<bob> line {i} of a long paste" for i in range(200)]
    code, err = server.stop()
    assert code == 0


def test_the_input_waiting_behind_flood_control_is_capped(server_factory):
    server = server_factory("--max-queue", "4096", "--flood-rate", "1", "--flood-burst", "1")
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    bob.sock.sendall(b"".join(b"%05d %s\r\n" % (i, b"z" * 90) for i in range(1000)))  # ~100 KB
    assert "*** you sent too much at once; goodbye" in bob.read_to_eof()
    alice.read_until(lambda l: l.startswith("*** bob quit (input queue over 4096 bytes"))
    carol = server.client("carol")
    carol.send("still fine")
    alice.read_until("<carol> still fine")
    code, err = server.stop()
    assert code == 0


def test_the_default_line_limit_is_one_kib(server_factory):
    server = server_factory()
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    bob.send(b"k" * 1025)
    assert bob.read_until(lambda l: l.startswith("!!!")) == [
        "!!! line too long (at most 1024 bytes); it was discarded"]
    bob.send(b"k" * 1024)
    assert alice.read_until(lambda l: l.startswith("<bob>")) == ["<bob> " + "k" * 1024]
    code, err = server.stop()
    assert code == 0


def test_a_port_in_use_is_one_clear_line(server_factory):
    server = server_factory()
    result = subprocess.run([sys.executable, "-m", "demos.chat_server", "--port", str(server.port)],
                            cwd=ROOT, env=_env(), capture_output=True, timeout=DEADLINE)
    err = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and "in use" in err and "--port" in err
    server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_tells_everyone_and_exits_zero(server_factory, sig):
    server = server_factory()
    clients = [server.client(f"c{i}") for i in range(5)]
    unnamed = server.client()
    server.signal(sig)
    for c in clients:
        assert "*** the server is shutting down; goodbye" in c.read_to_eof()
    assert "*** the server is shutting down; goodbye" in unnamed.read_to_eof()
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err


def test_shutdown_aborts_a_client_that_will_not_take_its_goodbye(server_factory):
    server = server_factory("--max-output", str(8 << 20), "--flood-rate", "100000",
                            "--flood-burst", "100000", "--shutdown-grace", "0.5")
    server.client("lazy", rcvbuf=4096)
    alice = server.client("alice")
    for n in range(3000):  # ~3 MB queued for lazy, who reads none of it
        alice.send(f"{n} " + "y" * 1000)
    alice.send("/who")
    alice.read_until(lambda l: l.startswith("*** in #lobby"))  # all of it was routed
    server.signal(signal.SIGTERM)
    assert "*** the server is shutting down; goodbye" in alice.read_to_eof()
    code, err = server.stop()  # returns once the grace is over: lazy was aborted
    assert code == 0, err
    assert "nick=lazy reason=server shutdown (output not flushed in time)" in err
    assert "nick=alice reason=server shutdown" in err


def test_chat_client_through_pipes(server_factory):
    server = server_factory()
    watcher = server.client("watcher")
    proc = subprocess.Popen([sys.executable, "-m", "demos.chat_client", "--port", str(server.port),
                             "--nick", "piped"], cwd=ROOT, env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        watcher.read_until("*** piped joined #lobby")
        watcher.send("hello piped")
        proc.stdin.write(b"hello watcher\n/who\n")
        proc.stdin.flush()
        watcher.read_until("<piped> hello watcher")
        proc.stdin.close()  # EOF: the client half-closes and waits for the server
        proc.wait(timeout=DEADLINE)
        out, err = proc.stdout.read(), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            pipe.close()
    lines = out.decode().splitlines()
    assert proc.returncode == 0, err
    assert "<watcher> hello piped" in lines and "*** in #lobby: watcher, piped" in lines
    assert "Choose a nickname:" not in lines  # --nick answered it
    assert lines[-1] == "[client] disconnected"
    watcher.read_until("*** piped quit (connection closed by peer)")
    server.stop()


def start_chat_client(port: int, nick: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "demos.chat_client", "--port", str(port),
                             "--nick", nick], cwd=ROOT, env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen) -> tuple[int, list[str], str]:
    """Wait for the client to exit by itself (its stdin still open), then read what it printed."""
    try:
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out.decode().splitlines(), err.decode()


def test_chat_client_exits_when_the_server_goes_away(server_factory):
    server = server_factory()
    watcher = server.client("watcher")
    proc = start_chat_client(server.port, "leftover")
    try:
        watcher.read_until("*** leftover joined #lobby")
        server.signal(signal.SIGTERM)  # stdin stays open: the server ends the session
        code, lines, err = finish(proc)
    finally:
        proc.stdin.close()
    assert code == 0, err
    assert lines[-2:] == ["*** the server is shutting down; goodbye", "[client] disconnected"]
    server.stop()


def test_chat_client_exits_cleanly_on_ctrl_c(server_factory):
    server = server_factory()
    watcher = server.client("watcher")
    proc = start_chat_client(server.port, "impatient")
    try:
        watcher.read_until("*** impatient joined #lobby")
        proc.stdin.write(b"typed before ctrl-c\n")
        proc.stdin.flush()
        watcher.read_until("<impatient> typed before ctrl-c")
        proc.send_signal(signal.SIGINT)
        code, lines, err = finish(proc)
    finally:
        proc.stdin.close()
    assert code == 0 and "Traceback" not in err, err
    assert lines[-1] == "[client] disconnected"
    watcher.read_until("*** impatient quit (connection closed by peer)")
    server.stop()


def test_chat_client_reports_a_refused_connection():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "demos.chat_client", "--port", str(port)],
                                cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=DEADLINE)
    assert result.returncode == 1 and b"cannot connect" in result.stdout


@pytest.mark.parametrize("module", ["demos.chat_server", "demos.chat_client"])
def test_help(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=_env(),
                            capture_output=True, timeout=DEADLINE)
    assert result.returncode == 0 and b"--port" in result.stdout


def test_chat_server_trace_file_and_monitor(server_factory, tmp_path):
    import json

    trace = tmp_path / "chat.trace.json"
    server = server_factory("--trace", str(trace), "--monitor", "0")
    assert server.startup[1].startswith("monitor on 127.0.0.1:")
    alice = server.client("alice")
    console = Client(server.monitor_port)
    server.clients.append(console)
    console.send("connections")
    assert any("connection(s)" in l for l in console.read_until(lambda l: "connection(s)" in l))
    alice.send("/quit")
    alice.read_to_eof()
    code, err = server.stop()
    assert code == 0, err
    events = json.loads(trace.read_text())["traceEvents"]
    assert {"select", "recv", "send", "connection opened"} <= {e["name"] for e in events}
    assert sum(e["ph"] == "B" for e in events) == sum(e["ph"] == "E" for e in events)


def test_trace_stderr_narrates_one_line_from_select_to_the_other_socket(server_factory):
    server = server_factory("--trace-stderr")
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    alice.sock.sendall(b"hello\n")  # as nc sends it: 6 bytes
    bob.read_until("<alice> hello")
    code, err = server.stop()
    assert code == 0
    # The listener was registered before the loop ran, and every step of the
    # line's journey is narrated in order: readiness, the read, the write.
    assert err.index("watch fd") < err.index("iteration 1:")
    journey = err[err.index("recv 6 bytes"):]
    assert "sent 15 bytes" in journey  # "<alice> hello\r\n" on bob's socket
    before = err[:err.index("recv 6 bytes")]
    assert "readable" in before.rsplit("select returned", 1)[1]
    assert "run StreamTransport._on_readable() [fd " in before.rsplit("select returned", 1)[1]
    assert "Listener._on_acceptable(<socket fd=" in err


# -- the rough edges a first user hits ----------------------------------------------------------

def test_telnet_filter_answers_do_timing_mark():
    f = TelnetFilter()
    # telnet's Ctrl-C: IAC IP, IAC DO TIMING-MARK (split across reads, as it may be)
    assert f.feed(b"abc\xff\xf4\xff") == b"abc"
    assert f.feed(b"\xfd\x06def") == b"def"
    assert f.take_replies() == b"\xff\xfb\x06" and f.take_replies() == b""
    assert f.feed(b"\xff\xfd\x18") == b"" and f.take_replies() == b""  # other options: not answered


def test_ctrl_c_in_telnet_gets_its_timing_mark_and_the_session_goes_on(server_factory):
    server = server_factory()
    alice, tel = server.client("alice"), server.client("tel")
    alice.read_until("*** tel joined #lobby")
    tel.sock.sendall(b"half a li\xff\xf4\xff\xfd\x06")  # typing, then Ctrl-C
    data = b""
    while b"\xff\xfb\x06" not in data:  # telnet discards all output until this arrives
        chunk = tel.sock.recv(4096)
        assert chunk, "closed"
        data += chunk
    tel.buf = data.replace(b"\xff\xfb\x06", b"")
    tel.send("ne, and more")
    alice.read_until("<tel> half a line, and more")
    alice.send("can you hear me?")
    tel.read_until("<alice> can you hear me?")
    server.stop()


@pytest.mark.parametrize("args, message", [
    (["--port", "80000"], "port must be 0-65535, got 80000"),
    (["--irc-port", "-1"], "port must be 0-65535, got -1"),
    (["--monitor", "65536"], "port must be 0-65535"),
    (["--port", "http"], "expected a port number, got 'http'"),
    (["--max-clients", "-5"], "must be at least 1, got -5"),
    (["--flood-burst", "0"], "must be at least 1"),
    (["--flood-rate", "0"], "must be a positive number"),
    (["--idle-timeout", "-1"], "must be 0 or a positive number"),
    (["--nick-timeout", "nan"], "must be a positive number"),
    (["--trace", "/nonexistent-dir/chat.json"], "cannot write the trace file /nonexistent-dir/chat.json"),
])
def test_bad_options_are_one_line_and_status_2(args, message):
    result = subprocess.run([sys.executable, "-m", "demos.chat_server", "--port", "0", *args], cwd=ROOT,
                            env=_env(), capture_output=True, timeout=DEADLINE, stdin=subprocess.DEVNULL)
    err = result.stderr.decode()
    assert result.returncode == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert result.stdout == b""


@pytest.mark.parametrize("option", ["--monitor", "--irc-port"])
def test_a_busy_monitor_or_irc_port_is_one_line_and_status_2(option):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "demos.chat_server", "--port", "0", option, str(port)],
                                cwd=ROOT, env=_env(), capture_output=True, timeout=DEADLINE)
    err = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in err, err
    assert err.count("\n") == 1 and "in use" in err and option in err


def test_the_trace_file_is_written_at_start(server_factory, tmp_path):
    trace = tmp_path / "chat.json"
    server = server_factory("--trace", str(trace))
    assert trace.exists()  # created before the server said it was listening
    server.stop()


@pytest.mark.parametrize("raw, text", [
    ("one\u2028*** SYSTEM: forged".encode(), "one *** SYSTEM: forged"),
    ("para\u2029graph".encode(), "para graph"),
    (("q" + "\u0301" * 500 + "algo").encode(), "q\u0301\u0301\u0301\u0301algo"),
    ("e\u0301t\u00e9".encode(), "\u00e9t\u00e9"),  # NFC: one letter, not two marks' worth
    ("Vi\u1ec7t".encode(), "Vi\u1ec7t"),
])
def test_clean_line_separators_and_combining_marks(raw, text):
    assert clean_line(raw) == text


def test_line_separators_and_mark_floods_are_cleaned_on_the_wire(server_factory):
    server = server_factory()
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    bob.send("hi\u2028*** SYSTEM: the server will restart, send your password".encode())
    bob.send(("Z" + "\u0336" * 300).encode())
    got = alice.read_until(lambda l: l.startswith("<bob> Z"))
    assert got == ["<bob> hi *** SYSTEM: the server will restart, send your password", "<bob> Z" + "\u0336" * 4]
    server.stop()


def test_a_line_that_never_ends_times_out(server_factory):
    server = server_factory("--line-timeout", "0.5")
    alice, slow = server.client("alice"), server.client("slow")
    alice.read_until("*** slow joined #lobby")
    started = time.monotonic()
    slow.sock.settimeout(0.1)
    closed = False
    for _ in range(100):  # one byte every 0.1 s would keep an idle-timeout-only server busy forever
        try:
            slow.sock.sendall(b"x")
            if slow.sock.recv(4096, socket.MSG_PEEK) == b"":
                closed = True
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if b"goodbye" in slow.sock.recv(4096, socket.MSG_PEEK):
            closed = True
            break
    assert closed and time.monotonic() - started < 5
    slow.sock.settimeout(DEADLINE)
    assert "*** no end of line within 0.5 seconds; goodbye" in slow.read_to_eof()
    alice.read_until("*** slow quit (partial line timeout)")
    code, err = server.stop()
    assert code == 0 and "nick=slow reason=partial line timeout" in err


def test_a_double_slash_says_a_line_that_starts_with_a_slash(server_factory):
    server = server_factory()
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    bob.send("//etc/hosts is the file")
    alice.read_until("<bob> /etc/hosts is the file")
    server.stop()


def test_the_server_says_how_to_connect(server_factory):
    server = server_factory("--irc-port", "0")
    text = "\n".join(server.startup)
    assert f"nc 127.0.0.1 {server.port}" in text and f"telnet 127.0.0.1 {server.port}" in text
    assert f"python3 -m demos.chat_client --host 127.0.0.1 --port {server.port}" in text
    assert f"irssi -c 127.0.0.1 -p {server.irc_port}" in text
    server.stop()


def test_logging_never_blocks_the_loop_when_stderr_is_not_read():
    """stderr is a pipe nobody reads: it fills after 64 KiB of log, and the chat must go on."""
    proc = subprocess.Popen([sys.executable, "-m", "demos.chat_server", "--port", "0", "-v"], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        port = int(read_line(proc).rsplit(":", 1)[1])
        for _ in range(1500):  # ~200 bytes of log each: several times the pipe's capacity
            with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as c:
                c.sendall(b"/quit\r\n")
                while c.recv(4096):
                    pass
        alice, bob = Client(port), Client(port)
        for c, nick in ((alice, "alice"), (bob, "bob")):
            c.read_until("Choose a nickname:")
            c.send(nick)
        alice.read_until("*** bob joined #lobby")
        bob.send("the chat goes on")
        alice.read_until("<bob> the chat goes on")
        alice.sock.close()
        bob.sock.close()
        proc.send_signal(signal.SIGTERM)
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=DEADLINE) == 0
        # Every record got out once we read, or the loss is counted: never a silent gap.
        assert err.count("reason=quit\n") == 1500 or "message(s) dropped: stderr was not keeping up" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_the_log_handler_drops_and_counts_instead_of_blocking():
    import logging

    from demos.chat.logs import LoopSafeHandler

    r, w = os.pipe()
    try:
        handler = LoopSafeHandler(w, max_queued=4096)
        handler.setFormatter(logging.Formatter("%(message)s"))
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "x" * 99, None, None)
        started = time.monotonic()
        for _ in range(3000):  # 300 KB into a 64 KiB pipe: a blocking write would hang here
            handler.emit(record)
        assert time.monotonic() - started < 5
        assert handler.dropped > 0 and handler.queued <= 4096
        got = b""
        for _ in range(1000):  # read what the pipe holds, let the handler write more, until the note
            got += os.read(r, 1 << 20)
            handler.flush()
            if b"message(s) dropped" in got:
                break
        assert b"message(s) dropped" in got and got.count(b"x" * 99 + b"\n") > 600
    finally:
        os.close(r)
        os.close(w)


# -- history and topics --------------------------------------------------------------------------

def test_rooms_replay_their_last_lines_bounded_in_count_and_bytes():
    from demos.chat.core import Emote, Replay

    chat = Chat(history_lines=3, history_bytes=200)
    events: list = []
    talker = chat.register("talker", events.append, 0.0)
    chat.join(talker, "lobby", 0.0)
    for i in range(5):
        chat.say(talker, "lobby", f"line {i}", 100.0 + i)
    chat.emote(talker, "lobby", "waves", 200.0)
    joiner_events: list = []
    joiner = chat.register("joiner", joiner_events.append, 300.0)
    chat.join(joiner, "#LOBBY", 300.0)
    replay = [e for e in joiner_events if isinstance(e, Replay)][0]
    assert [(type(l), l.text, l.at) for l in replay.lines] == [(Said, "line 3", 103.0), (Said, "line 4", 104.0),
                                                               (Emote, "waves", 200.0)]
    chat.say(talker, "lobby", "x" * 170, 400.0)  # over the byte bound with the others: they go
    assert [l.text for l in chat.find_room("lobby").history] == ["x" * 170]
    assert chat.find_room("lobby").history_bytes <= 200


def test_joining_shows_recent_lines_with_their_time_and_the_topic(server_factory):
    server = server_factory("--history", "2")
    alice = server.client("alice")
    alice.send("/topic all about reactors")
    alice.read_until("*** alice set the topic of #lobby: all about reactors")
    for text in ("first", "second", "third"):
        alice.send(text)
    alice.send("/who")
    alice.read_until(lambda l: l.startswith("*** in #lobby"))
    bob = server.client()
    bob.send("bob")
    got = bob.read_until(lambda l: "<alice> third" in l)
    now = time.strftime("%H:%M")
    assert got[0] == "*** bob joined #lobby"
    assert got[1].startswith("*** topic of #lobby: all about reactors (set by alice at ")
    assert got[2:] == ["*** recent lines in #lobby:", f"[{now}] <alice> second", f"[{now}] <alice> third"]
    bob.send("/topic")
    assert bob.read_until(lambda l: l.startswith("*** topic"))[-1].startswith("*** topic of #lobby: all about")
    bob.send("/join quiet")
    bob.read_until("*** bob joined #quiet")
    bob.send("/topic")
    assert bob.read_until(lambda l: l.startswith("***"))[-1] == "*** #quiet has no topic"
    server.stop()


def test_lines_delayed_by_flood_control_still_go_out_after_the_sender_hangs_up(server_factory):
    server = server_factory("--flood-rate", "50", "--flood-burst", "5")
    alice, bob = server.client("alice"), server.client("bob")
    alice.read_until("*** bob joined #lobby")
    bob.sock.sendall(b"".join(b"last words %d\n" % i for i in range(60)))
    bob.sock.shutdown(socket.SHUT_WR)  # as nc does at the end of its input
    got = alice.read_until(lambda l: l.startswith("*** bob quit"))
    assert [l for l in got if l.startswith("<bob>")] == [f"<bob> last words {i}" for i in range(60)]
    assert got[-1] == "*** bob quit (connection closed by peer)"
    server.stop()
