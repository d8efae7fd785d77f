"""The chat's IRC door: the protocol byte by byte, then real IRC clients nobody here wrote.

Real clients: the python ``irc`` library (a test dependency), and ii, weechat
and irssi where installed (``tests/install_components.sh`` installs them as
root). A missing client is a skip here, and a failure under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from demos.chat.irc_door import MAX_IRC_LINE, parse_message, split_text
from tests.test_chat import DEADLINE, Client, server_factory  # noqa: F401 (a fixture)


def need(tool: str) -> str:
    """The path of *tool*; skip (fail under CI=true) where it is not installed."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed: run tests/install_components.sh as root to install it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_for(condition, timeout: float = DEADLINE, what: str = "condition"):
    """Poll *condition* (which looks at another process's output) until true, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)  # polling a file another process writes; the deadline bounds it


# -- the protocol, sans-IO pieces -----------------------------------------------------------

@pytest.mark.parametrize("line, parsed", [
    ("NICK alice", ("NICK", ["alice"])),
    ("privmsg #lobby :hello there", ("PRIVMSG", ["#lobby", "hello there"])),
    (":alice!a@h PRIVMSG bob :x", ("PRIVMSG", ["bob", "x"])),
    ("@time=2024 :p TOPIC #a :", ("TOPIC", ["#a", ""])),
    ("USER a 0 *  :Real  Name", ("USER", ["a", "0", "*", "Real  Name"])),
    ("QUIT :", ("QUIT", [""])),
    ("", ("", [])),
])
def test_parse_message(line, parsed):
    assert parse_message(line) == parsed


def test_split_text_fits_512_bytes_and_keeps_every_character():
    text = "é" * 400 + "x" * 300
    lines = split_text(":alice!~alice@127.0.0.1 PRIVMSG #lobby :", text)
    assert len(lines) > 1 and all(len(l.encode()) <= MAX_IRC_LINE for l in lines)
    assert "".join(l.split(" :", 1)[1] for l in lines) == text


# -- the protocol over loopback ----------------------------------------------------------------

def irc(server, nick=None, register=True) -> Client:
    c = Client(server.irc_port)
    server.clients.append(c)
    if nick and register:
        c.send(f"NICK {nick}")
        c.send(f"USER {nick} 0 * :The {nick}")
        c.read_until(lambda l: " 376 " in l or " 422 " in l)
    return c


def barrier(c: Client, token: str = "sync") -> list[str]:
    """Everything the server sent before it answered a PING (what came of our earlier lines)."""
    c.send(f"PING :{token}")
    return c.read_until(lambda l: l.endswith(f"PONG reactor.chat :{token}"))[:-1]


def test_registration_waits_for_cap_end(server_factory):
    server = server_factory("--irc-port", "0")
    c = irc(server)
    c.send("CAP LS 302")
    c.send("NICK capper")
    c.send("USER capper 0 * :Cap Per")
    assert barrier(c) == [":reactor.chat CAP * LS :"]  # held: no 001 yet
    c.send("CAP REQ :sasl multi-prefix")
    assert barrier(c) == [":reactor.chat CAP * NAK :sasl multi-prefix"]
    c.send("CAP END")
    got = c.read_until(lambda l: " 376 " in l)
    codes = [l.split()[1] for l in got]
    assert codes == ["001", "002", "003", "004", "005", "375", "372", "372", "372", "376"]
    assert got[0] == ":reactor.chat 001 capper :Welcome to the reactor chat, capper!~capper@127.0.0.1"
    assert "CASEMAPPING=rfc1459" in got[4]
    server.stop()


def test_commands_before_registration_get_451(server_factory):
    server = server_factory("--irc-port", "0")
    c = irc(server)
    c.send("JOIN #lobby")
    c.send("PRIVMSG #lobby :hi")
    assert barrier(c) == [":reactor.chat 451 * :You have not registered"] * 2
    server.stop()


def test_irc_and_nc_users_share_a_room(server_factory):
    server = server_factory("--irc-port", "0")
    nc = server.client("ncuser")
    nc.send("before the irc user came")
    c = irc(server, "ircuser")
    c.send("JOIN #Lobby")
    got = c.read_until(lambda l: " 366 " in l)
    assert got == [":ircuser!~ircuser@127.0.0.1 JOIN #lobby",
                   ":reactor.chat 331 ircuser #lobby :No topic is set",
                   ":reactor.chat 353 ircuser = #lobby :ncuser ircuser",
                   ":reactor.chat 366 ircuser #lobby :End of /NAMES list"]
    replay = c.read_until(lambda l: "before the irc user came" in l)
    stamp = time.strftime("%H:%M")  # (a test run at 23:59:59.9 would see the minute turn)
    assert replay[-1] == f":reactor.chat NOTICE #lobby :[{stamp}] <ncuser> before the irc user came"
    nc.read_until("*** ircuser joined #lobby")
    c.send("PRIVMSG #lobby :hello from irc")
    c.send("PRIVMSG #lobby :\x01ACTION waves\x01")
    c.send("PRIVMSG ncuser :psst")
    assert nc.read_until("[PM from ircuser] psst") == ["<ircuser> hello from irc", "* ircuser waves",
                                                       "[PM from ircuser] psst"]
    assert barrier(c) == []  # not echoed to the sender
    nc.send("hello from nc")
    nc.send("/me nods")
    nc.send("/msg ircuser private")
    c.read_until(":ncuser!ncuser@127.0.0.1 PRIVMSG ircuser :private")
    assert c.lines[-3:] == [":ncuser!ncuser@127.0.0.1 PRIVMSG #lobby :hello from nc",
                            ":ncuser!ncuser@127.0.0.1 PRIVMSG #lobby :\x01ACTION nods\x01",
                            ":ncuser!ncuser@127.0.0.1 PRIVMSG ircuser :private"]
    c.send("TOPIC #lobby :talk here")
    c.read_until(":ircuser!~ircuser@127.0.0.1 TOPIC #lobby :talk here")
    nc.read_until("*** ircuser set the topic of #lobby: talk here")
    c.send("NICK ircer")
    c.read_until(":ircuser!~ircuser@127.0.0.1 NICK :ircer")
    nc.read_until("*** ircuser is now known as ircer")
    nc.send("/nick ncer")
    c.read_until(":ncuser!ncuser@127.0.0.1 NICK :ncer")
    c.send("PART #lobby :moving on")
    c.read_until(":ircer!~ircuser@127.0.0.1 PART #lobby :moving on")  # the username stays
    nc.read_until("*** ircer left #lobby (moving on)")
    c.send("JOIN #lobby")
    c.send("QUIT :off to bed")
    assert c.read_to_eof()[-1] == "ERROR :Closing Link: 127.0.0.1 (Quit: off to bed)"
    nc.read_until("*** ircer quit (off to bed)")
    code, err = server.stop()
    assert code == 0 and "nick=ircer reason=quit: off to bed" in err


def test_queries(server_factory):
    server = server_factory("--irc-port", "0")
    server.client("ncuser")
    c = irc(server, "q")
    c.send("JOIN #lobby,#other")
    barrier(c)
    c.send("WHO #lobby")
    assert barrier(c) == [":reactor.chat 352 q #lobby ncuser 127.0.0.1 reactor.chat ncuser H :0 ncuser",
                          ":reactor.chat 352 q #lobby ~q 127.0.0.1 reactor.chat q H :0 The q",
                          ":reactor.chat 315 q #lobby :End of WHO list"]
    c.send("WHOIS ncuser")
    got = barrier(c)
    assert [l.split()[1] for l in got] == ["311", "319", "312", "317", "318"]
    assert got[0] == ":reactor.chat 311 q ncuser ncuser 127.0.0.1 * :ncuser" and got[1].endswith(":#lobby")
    c.send("LIST")
    assert barrier(c) == [":reactor.chat 321 q Channel :Users  Name", ":reactor.chat 322 q #lobby 2 :",
                          ":reactor.chat 322 q #other 1 :", ":reactor.chat 323 q :End of /LIST"]
    c.send("NAMES #other")
    assert barrier(c) == [":reactor.chat 353 q = #other :q", ":reactor.chat 366 q #other :End of /NAMES list"]
    c.send("MODE #lobby")
    c.send("MODE #lobby b")
    c.send("MODE #lobby +k key")
    c.send("MODE q")
    c.send("MODE q +w")
    assert barrier(c) == [":reactor.chat 324 q #lobby +n", ":reactor.chat 368 q #lobby :End of channel ban list",
                          ":reactor.chat 472 q k :is unknown mode char to me", ":reactor.chat 221 q +i",
                          ":reactor.chat 501 q :Unknown MODE flag"]
    server.stop()


def test_error_replies(server_factory):
    server = server_factory("--irc-port", "0")
    server.client("ncuser")
    c = irc(server, "[err]")
    other = irc(server)
    other.send("NICK {ERR}")  # rfc1459: { is the lower case of [
    other.send("NICK 9bad")
    other.send("NICK")
    other.send("USER")
    assert barrier(other) == [":reactor.chat 433 * {ERR} :Nickname is already in use",
                              ":reactor.chat 432 * 9bad :Erroneous nickname",
                              ":reactor.chat 431 * :No nickname given",
                              ":reactor.chat 461 * USER :Not enough parameters"]
    for line in ["PRIVMSG nobody :hi", "PRIVMSG #nowhere :hi", "PRIVMSG", "PRIVMSG #lobby", "FROB x",
                 "PART #lobby", "JOIN", "NICK ncuser", "NOTICE nobody :ignored", "JOIN lobby"]:
        c.send(line)
    assert barrier(c) == [":reactor.chat 401 [err] nobody :No such nick/channel",
                          ":reactor.chat 403 [err] #nowhere :No such channel",
                          ":reactor.chat 411 [err] :No recipient given (PRIVMSG)",
                          ":reactor.chat 412 [err] :No text to send",
                          ":reactor.chat 421 [err] FROB :Unknown command",
                          ":reactor.chat 442 [err] #lobby :You're not on that channel",
                          ":reactor.chat 461 [err] JOIN :Not enough parameters",
                          ":reactor.chat 433 [err] ncuser :Nickname is already in use",
                          ":reactor.chat 403 [err] lobby :No such channel"]
    c.send("PRIVMSG #lobby :not a member")
    assert barrier(c) == [":reactor.chat 404 [err] #lobby :Cannot send to channel"]
    server.stop()


def test_lines_over_512_bytes_are_refused_not_buffered(server_factory):
    server = server_factory("--irc-port", "0")
    nc = server.client("ncuser")
    c = irc(server, "longer")
    c.send("JOIN #lobby")
    barrier(c)
    c.send("PRIVMSG #lobby :" + "x" * 600)
    c.sock.sendall(b"PRIVMSG #lobby :" + b"y" * (4 << 20))  # 4 MiB, no end of line yet
    c.send("")
    c.send("PRIVMSG #lobby :short")
    assert barrier(c) == [":reactor.chat 417 longer :Input line was too long"] * 2
    assert nc.read_until("<longer> short")[-1] == "<longer> short"  # nothing of the long ones
    # And what we send fits: a line-door user's 1 KiB line reaches IRC in pieces.
    nc.send("z" * 1000)
    got = c.read_until(lambda l: l.endswith("z") and sum(x.count("z") for x in c.lines) >= 1000)
    assert all(len(l.encode()) + 2 <= 512 for l in c.lines)
    server.stop()


def test_names_are_split_to_fit_512_bytes(server_factory):
    server = server_factory("--irc-port", "0")
    nicks = [f"person{i:02d}abcdefgh" for i in range(60)]
    for nick in nicks:
        server.client(nick)
    c = irc(server, "counter")
    c.send("JOIN #lobby")
    got = c.read_until(lambda l: " 366 " in l)
    names = [l for l in got if " 353 " in l]
    assert len(names) >= 3 and all(len(l.encode()) + 2 <= 512 for l in names)
    assert [n for l in names for n in l.split(" :", 1)[1].split()] == nicks + ["counter"]
    server.stop()


def test_the_server_pings_and_drops_a_silent_client(server_factory):
    server = server_factory("--irc-port", "0", "--ping-interval", "0.3", "--ping-timeout", "0.4")
    nc = server.client("watcher")
    silent, lively = irc(server, "silent"), irc(server, "lively")
    for c in (silent, lively):
        c.send("JOIN #lobby")
    ping = lively.read_until(lambda l: l.startswith("PING :"))[-1]
    lively.send("PONG " + ping.split()[1])
    assert silent.read_until(lambda l: l.startswith("PING :"))
    assert silent.read_to_eof()[-1] == "ERROR :Closing Link: 127.0.0.1 (Ping timeout: 0.7 seconds)"
    nc.read_until("*** silent quit (Ping timeout: 0.7 seconds)")
    nc.send("still there?")
    lively.read_until(":watcher!watcher@127.0.0.1 PRIVMSG #lobby :still there?")
    server.stop()


# -- real clients ------------------------------------------------------------------------------

def test_the_python_irc_library(server_factory):
    import irc.client

    server = server_factory("--irc-port", "0")
    nc = server.client("ncuser")
    lib = irc.client.Reactor()
    seen: list[tuple[str, str, list[str]]] = []
    lib.add_global_handler("all_events", lambda conn, e: seen.append((e.type, str(e.source), e.arguments)))
    conn = lib.server().connect("127.0.0.1", server.irc_port, "pybot")
    try:
        def pump_until(condition, what):
            deadline = time.monotonic() + DEADLINE
            while not condition():
                assert time.monotonic() < deadline, f"{what}: {seen[-5:]}"
                lib.process_once(0.05)

        pump_until(lambda: any(t == "welcome" for t, _, _ in seen), "welcome")
        conn.join("#lobby")
        pump_until(lambda: any(t == "endofnames" for t, _, _ in seen), "joined")
        nc.read_until("*** pybot joined #lobby")
        nc.send("hello bot")
        pump_until(lambda: ("pubmsg", "ncuser!ncuser@127.0.0.1", ["hello bot"]) in seen, "nc's message")
        conn.privmsg("#lobby", "hello human")
        nc.read_until("<pybot> hello human")
        conn.privmsg("ncuser", "just you")
        nc.read_until("[PM from pybot] just you")
        nc.send("/msg pybot and you")
        pump_until(lambda: ("privmsg", "ncuser!ncuser@127.0.0.1", ["and you"]) in seen, "private message")
        conn.nick("pybot2")
        nc.read_until("*** pybot is now known as pybot2")
        pump_until(lambda: conn.get_nickname() == "pybot2", "rename")
        nc.send("/nick ncer")
        pump_until(lambda: any(t == "nick" and s.startswith("ncuser!") for t, s, _ in seen), "nc's rename")
        conn.quit("bye now")
        nc.read_until("*** pybot2 quit (bye now)")
        pump_until(lambda: not conn.is_connected(), "disconnect")
    finally:
        conn.close()
    code, err = server.stop()
    assert code == 0


def test_ii_through_its_fifo(server_factory, tmp_path):
    ii = need("ii")
    server = server_factory("--irc-port", "0")
    nc = server.client("ncuser")
    proc = subprocess.Popen([ii, "-s", "127.0.0.1", "-p", str(server.irc_port), "-n", "iiuser", "-i",
                             str(tmp_path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        base = tmp_path / "127.0.0.1"
        wait_for(lambda: (base / "in").exists(), what="ii's fifo")

        def tell(path: Path, line: str) -> None:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, line.encode() + b"\n")
            finally:
                os.close(fd)

        tell(base / "in", "/j #lobby")
        nc.read_until("*** iiuser joined #lobby")
        wait_for(lambda: (base / "#lobby" / "in").exists(), what="ii's channel fifo")
        tell(base / "#lobby" / "in", "hello from ii")
        nc.read_until("<iiuser> hello from ii")
        nc.send("hello ii")
        wait_for(lambda: "<ncuser> hello ii" in (base / "#lobby" / "out").read_text(errors="replace"),
                 what="ii receiving")
        tell(base / "in", "/q")  # QUIT
        nc.read_until(lambda l: l.startswith("*** iiuser quit"))
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    server.stop()


def test_weechat_headless_through_its_fifo(server_factory, tmp_path):
    weechat = need("weechat-headless")
    server = server_factory("--irc-port", "0")
    nc = server.client("ncuser")
    home = tmp_path / "weechat"
    home.mkdir()
    commands = ";".join(["/set fifo.file.enabled on", "/set logger.file.flush_delay 0",
                         f"/server add r 127.0.0.1/{server.irc_port} -nicks=wcuser", "/connect r"])
    proc = subprocess.Popen([weechat, "--dir", str(home), "-r", commands], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        fifo = wait_for(lambda: next(iter(home.glob("weechat_fifo_*")), None), what="weechat's fifo")
        server_log = home / "logs" / "irc.server.r.weechatlog"
        wait_for(lambda: server_log.exists() and "End of /MOTD" in server_log.read_text(errors="replace"),
                 what="weechat registered")

        def tell(line: str) -> None:
            fd = os.open(fifo, os.O_WRONLY)
            try:
                os.write(fd, line.encode() + b"\n")
            finally:
                os.close(fd)

        tell("irc.server.r */join #lobby")
        nc.read_until("*** wcuser joined #lobby")
        channel_log = home / "logs" / "irc.r.#lobby.weechatlog"
        # The channel's buffer exists once weechat has seen the end of NAMES (it logs it).
        wait_for(lambda: channel_log.exists() and "Channel #lobby:" in channel_log.read_text(errors="replace"),
                 what="weechat's channel buffer")
        tell("irc.r.#lobby *hello from weechat")
        nc.read_until("<wcuser> hello from weechat")
        nc.send("hello weechat")
        wait_for(lambda: channel_log.exists() and "ncuser\thello weechat" in channel_log.read_text(errors="replace"),
                 what="weechat receiving")
        tell("irc.server.r */nick wcuser2")
        nc.read_until("*** wcuser is now known as wcuser2")
        tell("*/quit see you")
        nc.read_until("*** wcuser2 quit (see you)")
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    server.stop()


class Tmux:
    """A program in a private tmux server: send-keys to type, capture-pane to read the screen."""

    def __init__(self, tmp: Path, command: list[str], width: int = 160, height: int = 50) -> None:
        self.tmux = need("tmux")
        self.socket = str(tmp / "tmux.sock")
        self.run("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), *command)

    def run(self, *args: str) -> str:
        # pytest exports COLUMNS and LINES; programs in the pane must see the pane's size.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        return subprocess.run([self.tmux, "-S", self.socket, *args], capture_output=True, text=True,
                              timeout=DEADLINE, check=True, env=env).stdout

    def keys(self, text: str, enter: bool = True) -> None:
        self.run("send-keys", "-t", "t", "-l", text)
        if enter:
            self.run("send-keys", "-t", "t", "Enter")

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "t", "-S", "-200")

    def wait_for(self, text: str, timeout: float = DEADLINE) -> str:
        try:
            return wait_for(lambda: text in self.screen() and self.screen(), timeout, f"{text!r} on the screen")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def close(self) -> None:
        subprocess.run([self.tmux, "-S", self.socket, "kill-server"], capture_output=True, timeout=DEADLINE)


def test_irssi_registers_joins_and_talks(server_factory, tmp_path):
    irssi = need("irssi")
    server = server_factory("--irc-port", "0")
    nc = server.client("ncuser")
    (tmp_path / "home").mkdir()
    # irssi paces its own commands (2.2 s apart after the first 5): pace them faster.
    (tmp_path / "home" / "config").write_text(
        'settings = { "irc/core" = { cmd_queue_speed = "10msec"; cmds_max_at_once = "50"; }; };\n')
    term = Tmux(tmp_path, [irssi, f"--home={tmp_path / 'home'}", "-c", "127.0.0.1", "-p", str(server.irc_port),
                           "-n", "irssiuser"])
    try:
        # irssi opens with CAP LS 302 and waits for the answer before registering.
        term.wait_for("Welcome to the reactor chat, irssiuser!")
        term.keys("/join #lobby")
        nc.read_until("*** irssiuser joined #lobby")
        nc.send("hello irssi")
        term.wait_for("hello irssi")
        term.keys("hello from irssi")
        nc.read_until("<irssiuser> hello from irssi")
        term.keys("/me waves")
        nc.read_until("* irssiuser waves")
        term.keys("/nick irssi2")
        nc.read_until("*** irssiuser is now known as irssi2")
        term.keys("/quit good night")
        nc.read_until("*** irssi2 quit (good night)")
    finally:
        term.close()
    code, err = server.stop()
    assert code == 0 and "nick=irssi2 reason=quit: good night" in err


def test_irssi_a_python_irc_bot_nc_and_chat_client_share_the_lobby(server_factory, tmp_path):
    """The issue's "done when": four kinds of client in #lobby see each other's
    messages, renames and quits, and all in the same order."""
    import re
    import select
    import socket
    import sys

    import irc.client

    from tests.test_chat import ROOT, _env

    irssi = need("irssi")
    server = server_factory("--irc-port", "0")
    watcher = server.client("watcher")  # says nothing: the reference order
    nc = server.client("ncuser")
    cc = subprocess.Popen([sys.executable, "-m", "demos.chat_client", "--port", str(server.port), "--nick", "cc"],
                          cwd=ROOT, env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, bufsize=0)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "config").write_text(
        'settings = { "irc/core" = { cmd_queue_speed = "10msec"; cmds_max_at_once = "50"; }; };\n')
    term = Tmux(tmp_path, [irssi, f"--home={tmp_path / 'home'}", "-c", "127.0.0.1", "-p", str(server.irc_port),
                           "-n", "irssiuser"], width=200, height=60)
    lib = irc.client.Reactor()
    bot_seen: list[str] = []

    def on_event(conn, e):
        nick = irc.client.NickMask(e.source).nick if e.source else ""
        if e.type == "pubmsg":
            bot_seen.append(f"<{nick}> {e.arguments[0]}")
        elif e.type == "nick":
            bot_seen.append(f"*** {nick} is now known as {e.target}")
        elif e.type == "quit":
            bot_seen.append(f"*** {nick} quit ({e.arguments[0] if e.arguments else ''})")
        elif e.type == "join":
            bot_seen.append(f"*** {nick} joined {e.target}")

    lib.add_global_handler("all_events", on_event)
    bot = lib.server().connect("127.0.0.1", server.irc_port, "pybot")
    cc_buf = [b""]
    cc_lines: list[str] = []

    def pump() -> None:
        lib.process_once(0.02)
        if select.select([cc.stdout], [], [], 0)[0]:
            cc_buf[0] += cc.stdout.read(65536) or b""
            *done, cc_buf[0] = cc_buf[0].split(b"\n")
            cc_lines.extend(line.decode().rstrip("\r") for line in done)

    def until(condition, what: str):
        deadline = time.monotonic() + DEADLINE
        while not condition():
            assert time.monotonic() < deadline, f"{what}: watcher saw {watcher.lines[-5:]}"
            pump()

    def watcher_has(line: str) -> bool:
        watcher.sock.settimeout(0.01)
        try:
            watcher.read_until(line)
            return True
        except (socket.timeout, TimeoutError):
            return line in watcher.lines
        finally:
            watcher.sock.settimeout(DEADLINE)

    try:
        term.wait_for("Welcome to the reactor chat, irssiuser!")
        term.keys("/join #lobby")
        until(lambda: watcher_has("*** irssiuser joined #lobby"), "irssi joined")
        bot.join("#lobby")
        until(lambda: watcher_has("*** pybot joined #lobby"), "bot joined")
        until(lambda: watcher_has("*** cc joined #lobby"), "cc joined")
        # Everyone talks at once; the server decides one order, and everyone must see that one.
        nc.send("one from nc")
        bot.privmsg("#lobby", "two from bot")
        cc.stdin.write(b"three from cc\n")
        cc.stdin.flush()
        term.keys("four from irssi")
        for text in ("<ncuser> one from nc", "<pybot> two from bot", "<cc> three from cc",
                     "<irssiuser> four from irssi"):
            until(lambda: watcher_has(text), text)
        bot.nick("pybot2")
        nc.send("/nick ncer")
        term.keys("/nick irssi2")
        for text in ("*** pybot is now known as pybot2", "*** ncuser is now known as ncer",
                     "*** irssiuser is now known as irssi2"):
            until(lambda: watcher_has(text), text)
        bot.quit("bot bye")
        until(lambda: watcher_has("*** pybot2 quit (bot bye)"), "bot quit")
        nc.send("last from nc")
        until(lambda: watcher_has("<ncer> last from nc") and "<ncer> last from nc" in cc_lines
              and "last from nc" in term.screen(), "everyone saw the last line")
        screen = term.screen()
    finally:
        bot.close()
        term.close()
        cc.stdin.close()
        try:
            cc.wait(timeout=DEADLINE)
        finally:
            if cc.poll() is None:
                cc.kill()
                cc.wait()
            cc.stdout.close()

    irssi_seen = []
    for row in screen.splitlines():
        if m := re.search(r"<[ @+]?(\S+)> (.*)$", row):
            irssi_seen.append(f"<{m[1]}> {m[2].rstrip()}")
        elif m := re.search(r"-!- (\S+) is now known as (\S+)", row):
            irssi_seen.append(f"*** {m[1]} is now known as {m[2]}")
        elif m := re.search(r"-!- (\S+) \[.*\] has quit \[(.*)\]", row):
            irssi_seen.append(f"*** {m[1]} quit ({m[2]})")
    tracked = ["<ncuser> one from nc", "<pybot> two from bot", "<cc> three from cc", "<irssiuser> four from irssi",
               "*** pybot is now known as pybot2", "*** ncuser is now known as ncer",
               "*** irssiuser is now known as irssi2", "*** pybot2 quit (bot bye)", "<ncer> last from nc"]
    reference = [l for l in watcher.lines if l in tracked]
    assert sorted(reference) == sorted(tracked)
    nc.read_until("*** pybot2 quit (bot bye)")
    views = {"ncuser": nc.lines, "pybot": bot_seen, "cc": cc_lines, "irssiuser": irssi_seen}
    own = {"ncuser": ("<ncuser>", "<ncer>"), "pybot": ("<pybot>",), "cc": ("<cc>",), "irssiuser": ("<irssiuser>", "*** irssiuser is now")}
    for who, seen in views.items():
        expected = [l for l in reference if not l.startswith(own[who])]
        got = [l for l in seen if l in tracked and not l.startswith(own[who])]
        if who == "pybot":  # it left before the last line
            expected = expected[:expected.index("*** pybot2 quit (bot bye)")]
        assert got == expected, (who, got, expected)
    server.stop()
