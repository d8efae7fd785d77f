"""A terminal client for the chat server's line door, on the reactor.

Run ``python -m demos.chat_client --nick alice`` while the server runs.
On a terminal it opens a split screen (``tui.CursesUI``): messages scroll
above, the line you are typing stays intact at the bottom, and a status
line shows your nickname, room and connection state. With standard input
or output not a terminal (a pipe, a file, a test) it is line-based: lines
typed go to the server, server lines are printed as they arrive.

One loop watches two file descriptors: the server's socket (through a
transport and a ``LineProtocol``) and standard input (a plain reader
registered with ``add_reader``). Neither waits for the other, which is the
whole point of an event loop: with blocking ``input()`` you could not show
a message that arrives while the user is typing.

A line starting with ``/`` is a command (``/help``); ``//`` sends a line
that starts with ``/``. With ``--nick``, the server's "Choose a nickname:"
prompt is not shown: the nickname is already on its way.

Exit: end of input (Ctrl-D, or the end of a pipe) half-closes the
connection and waits for the server to finish sending and close; Ctrl-C
closes at once; either way, and when the server goes away, the client exits
with status 0. It exits with status 1 if it cannot connect.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any, Optional, Protocol as TypingProtocol

from reactor import LineProtocol, Reactor

from ..cli import OneLineParser, add_tls_client_options, client_tls_context, port, positive_float
from ..tracing_options import add_trace_options, traced
from .line_door import PROMPT
from .server import DEFAULT_PORT

_JOINED = re.compile(r"\*\*\* (\S+) joined #(\S+)\Z")
_LEFT = re.compile(r"\*\*\* (\S+) left #(\S+)")
_RENAMED = re.compile(r"\*\*\* (\S+) is now known as (\S+)\Z")
_YOU_ARE = re.compile(r"\*\*\* you are now known as (\S+)\Z")


class UI(TypingProtocol):
    """What the client needs from a user interface (``LineUI`` or ``tui.CursesUI``)."""

    def start(self, client: "ChatClient") -> None: ...
    def show(self, text: str) -> None: ...
    def status(self, nick: str, room: str, state: str) -> None: ...
    def stop(self) -> None: ...


class ServerLines(LineProtocol):
    max_line_length = 64 * 1024

    def __init__(self, client: "ChatClient") -> None:
        self.client = client

    def line_received(self, line: bytes) -> None:
        self.client.received(line.decode("utf-8", errors="replace"))

    def line_too_long(self, exc: Any) -> None:
        self.client.ui.show("[client] a line from the server was too long; skipped")

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.client.server_gone(exc)


class ChatClient:
    def __init__(self, reactor: Any, nick: Optional[str], ui: UI) -> None:
        self.reactor = reactor
        self.nick = nick or ""
        self.asked_nick = bool(nick)
        self.ui = ui
        self.room = ""
        self.state = "connecting"
        self.transport: Any = None
        self.pending = bytearray()  # typed before the connection was up
        self.input_done = False
        self.status = 0

    def start(self, host: str, port: int, timeout: float, tls: Any = None) -> None:
        self.where = f"{host}:{port}" + (" (TLS)" if tls is not None else "")
        self._status()
        connector = self.reactor.connect_tcp(lambda: ServerLines(self), host, port, timeout=timeout,
                                             ssl=tls)
        connector.add_done_callback(self.connected)
        self.ui.start(self)

    def _status(self) -> None:
        self.ui.status(self.nick or "(no nickname)", f"#{self.room}" if self.room else "(no room)", self.state)

    def connected(self, connector: Any) -> None:
        if connector.exception is not None:
            self.ui.show(f"[client] cannot connect: {connector.exception}")
            self.status = 1
            self.finish()
            return
        self.transport = connector.transport
        self.state = f"connected to {self.where}"
        self._status()
        if self.nick:
            self.transport.write(self.nick.encode() + b"\r\n")
        if self.pending:
            self.transport.write(bytes(self.pending))
            self.pending.clear()
        if self.input_done:  # input already ended
            self.transport.write_eof()

    # -- from the user interface ----------------------------------------------

    def send(self, data: bytes) -> None:
        """Bytes typed (lines with their endings)."""
        if self.transport is None:
            self.pending += data
        elif not self.transport.is_closing():
            self.transport.write(data)

    def input_ended(self) -> None:
        """No more input: tell the server we are done talking, and keep
        showing what it sends until it closes the connection."""
        self.input_done = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write_eof()

    # -- from the server --------------------------------------------------------

    def received(self, line: str) -> None:
        if line == PROMPT and self.asked_nick:
            return  # the nickname we gave is on its way; an error would come first
        if line.startswith("!!! nickname") or line.startswith("!!! choose"):
            self.asked_nick = False  # it was refused: the next prompt matters
        self._track(line)
        self.ui.show(line)

    def _track(self, line: str) -> None:
        """Follow our nickname and room for the status line."""
        before = (self.nick, self.room)
        if (m := _JOINED.match(line)) and (m[1] == self.nick or not self.room):
            self.nick, self.room = m[1], m[2]
        elif (m := _LEFT.match(line)) and m[1] == self.nick:
            self.room = ""
        elif (m := _RENAMED.match(line)) and m[1] == self.nick:
            self.nick = m[2]
        elif m := _YOU_ARE.match(line):
            self.nick = m[1]
        if (self.nick, self.room) != before:
            self._status()

    def server_gone(self, exc: Optional[BaseException]) -> None:
        self.state = "disconnected"
        self._status()
        self.ui.show("[client] disconnected" + (f": {exc}" if exc else ""))
        self.finish()

    def interrupted(self) -> None:
        if self.transport is not None:
            self.transport.close()  # flush what was typed; server_gone() follows
        else:
            self.finish()

    def finish(self) -> None:
        self.ui.stop()
        self.reactor.stop()


class LineUI:
    """Plain lines: stdin's bytes go to the server as they are, server lines are printed."""

    def __init__(self, reactor: Any, stdin_fd: int, out: Any) -> None:
        self.reactor = reactor
        self.stdin_fd = stdin_fd
        self.out = out
        self.client: Optional[ChatClient] = None

    def start(self, client: ChatClient) -> None:
        self.client = client
        # stdin stays blocking: one os.read() after the loop said "readable"
        # returns at once. (Making it non-blocking would also make stdout
        # non-blocking when both are the same terminal, and print() would
        # then drop lines whenever the terminal falls behind.)
        try:
            self.reactor.add_reader(self.stdin_fd, self.read_stdin)
        except PermissionError:
            # epoll refuses regular files (input redirected from a file):
            # they are always "ready", so just read them until EOF.
            self.reactor.call_soon(self.read_file)

    def read_file(self) -> None:
        while self.stdin_fd >= 0:
            self.read_stdin()

    def read_stdin(self) -> None:
        assert self.client is not None
        data = os.read(self.stdin_fd, 4096)
        if data:
            self.client.send(data)
            return
        self.reactor.remove_reader(self.stdin_fd)  # False if it was a file
        self.stdin_fd = -1
        self.client.input_ended()

    def show(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def status(self, nick: str, room: str, state: str) -> None:
        pass  # a pipe has no status line

    def stop(self) -> None:
        if self.stdin_fd >= 0:
            self.reactor.remove_reader(self.stdin_fd)
            self.stdin_fd = -1


def main(argv: Optional[list[str]] = None) -> int:
    parser = OneLineParser(prog="python -m demos.chat_client", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address (default: %(default)s)")
    parser.add_argument("--port", type=port, default=DEFAULT_PORT, help="server port (default: %(default)s)")
    parser.add_argument("--nick", help="nickname to send first")
    parser.add_argument("--timeout", type=positive_float, default=10.0, help="connect timeout in seconds")
    parser.add_argument("--plain", action="store_true",
                        help="line-based even on a terminal (the default when not on one)")
    add_tls_client_options(parser)
    add_trace_options(parser)
    args = parser.parse_args(argv)
    tls, problem = client_tls_context(args)
    if problem:
        parser.error(problem)

    tty = sys.stdin.isatty() and sys.stdout.isatty() and not args.plain and os.environ.get("TERM") != "dumb"
    with Reactor() as reactor, traced(reactor, args):
        ui: UI
        if tty:
            from .tui import CursesUI
            ui = CursesUI(reactor, sys.stdin.fileno())
        else:
            ui = LineUI(reactor, sys.stdin.fileno(), sys.stdout)
        client = ChatClient(reactor, args.nick, ui)
        reactor.add_signal_handler(signal.SIGINT, client.interrupted)
        reactor.add_signal_handler(signal.SIGTERM, client.interrupted)
        try:
            client.start(args.host, args.port, args.timeout, tls)
            reactor.run()
        finally:
            ui.stop()
    if tty and client.status:
        print("[client] cannot connect to " + client.where, file=sys.stderr)
    return client.status


if __name__ == "__main__":
    sys.exit(main())
