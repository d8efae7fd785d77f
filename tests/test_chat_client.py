"""The chat client on a real terminal (tmux): the split screen keeps what you type intact."""

from __future__ import annotations

import sys

from tests.test_chat import ROOT, server_factory  # noqa: F401 (a fixture)
from tests.test_chat_irc import Tmux, wait_for


def test_the_split_screen_keeps_the_input_line_intact(server_factory, tmp_path):
    server = server_factory()
    watcher = server.client("watcher")
    term = Tmux(tmp_path, ["env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "demos.chat_client",
                           "--nick", "tui", "--port", str(server.port)], width=80, height=12)
    try:
        screen = term.wait_for(" tui | #lobby | connected to 127.0.0.1:")
        assert "Choose a nickname:" not in screen
        watcher.read_until("*** tui joined #lobby")
        term.keys("half typ", enter=False)
        term.wait_for("> half typ")
        watcher.send("a line arriving mid-word")
        screen = term.wait_for("<watcher> a line arriving mid-word")
        rows = screen.rstrip("\n").split("\n")
        assert rows[-1].rstrip() == "> half typ"  # the input line, intact, at the bottom
        assert rows[-2].startswith(" tui | #lobby | connected")  # the status line above it
        assert rows.index("<watcher> a line arriving mid-word") < len(rows) - 2  # messages above
        term.keys("ed, then sent")
        watcher.read_until("<tui> half typed, then sent")
        term.wait_for("<tui> half typed, then sent")  # our own line, shown locally
        term.keys("/nick tui2")
        term.wait_for(" tui2 | #lobby | connected")
        term.keys("//etc is a directory")
        watcher.read_until("<tui2> /etc is a directory")
        term.run("send-keys", "-t", "t", "C-c")
        watcher.read_until("*** tui2 quit (connection closed by peer)")
        wait_for(lambda: "[client] disconnected" in term.screen() or not term.run("list-panes", "-F", "x"),
                 what="the client's exit")
    finally:
        term.close()
    server.stop()


def test_ctrl_c_in_a_real_telnet_leaves_the_session_working(server_factory, tmp_path):
    from tests.test_chat_irc import need

    telnet = need("telnet")
    server = server_factory()
    watcher = server.client("watcher")
    term = Tmux(tmp_path, [telnet, "127.0.0.1", str(server.port)], width=100, height=20)
    try:
        term.wait_for("Choose a nickname:")
        term.keys("tel")
        watcher.read_until("*** tel joined #lobby")
        term.keys("half a line", enter=False)
        term.run("send-keys", "-t", "t", "C-c")  # telnet: IAC IP, IAC DO TIMING-MARK; output flushed until answered
        term.keys("/who")
        term.wait_for("*** in #lobby: watcher, tel")
        watcher.send("after ctrl-c")
        term.wait_for("<watcher> after ctrl-c")
        term.keys("still typing")
        watcher.read_until("<tel> still typing")
    finally:
        term.close()
    server.stop()
