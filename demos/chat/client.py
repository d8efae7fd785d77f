"""A terminal client for demos/chat_server.py, on the reactor.

Run ``python -m demos.chat_client --nick alice`` while the server runs.
Type lines; they go to the server. Server lines are printed as they arrive.

One loop watches two file descriptors: the server's socket (through a
transport and a ``LineProtocol``) and standard input (a plain reader
registered with ``add_reader``). Neither waits for the other, which is the
whole point of an event loop: with blocking ``input()`` you could not print
a message that arrives while the user is typing.

Exit: end of input (Ctrl-D, or the end of a pipe) half-closes the
connection and waits for the server to finish sending and close; Ctrl-C
closes at once; either way, and when the server goes away, the client exits
with status 0. It exits with status 1 if it cannot connect.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, Optional

from reactor import LineProtocol, Reactor

from .server import DEFAULT_PORT
from ..tracing_options import add_trace_options, traced


class ServerLines(LineProtocol):
    max_line_length = 64 * 1024

    def __init__(self, client: "ChatClient") -> None:
        self.client = client

    def line_received(self, line: bytes) -> None:
        self.client.show(line.decode("utf-8", errors="replace"))

    def line_too_long(self, exc: Any) -> None:
        self.client.show("[client] a line from the server was too long; skipped")

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.client.server_gone(exc)


class ChatClient:
    def __init__(self, reactor: Reactor, nick: Optional[str], stdin_fd: int, out: Any) -> None:
        self.reactor = reactor
        self.nick = nick
        self.stdin_fd = stdin_fd
        self.out = out
        self.transport: Any = None
        self.pending = bytearray()  # typed before the connection was up
        self.status = 0

    def start(self, host: str, port: int, timeout: float) -> None:
        connector = self.reactor.connect_tcp(lambda: ServerLines(self), host, port, timeout=timeout)
        connector.add_done_callback(self.connected)
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

    def connected(self, connector: Any) -> None:
        if connector.exception is not None:
            self.show(f"[client] cannot connect: {connector.exception}")
            self.status = 1
            self.finish()
            return
        self.transport = connector.transport
        if self.nick:
            self.transport.write(self.nick.encode() + b"\r\n")
        if self.pending:
            self.transport.write(bytes(self.pending))
            self.pending.clear()
        if self.stdin_fd < 0:  # stdin already ended
            self.transport.write_eof()

    def read_stdin(self) -> None:
        data = os.read(self.stdin_fd, 4096)
        if data:
            if self.transport is None:
                self.pending += data
            else:
                self.transport.write(data)
            return
        # End of input: stop watching stdin, tell the server we are done
        # talking, and keep printing until it closes the connection.
        self.reactor.remove_reader(self.stdin_fd)  # False if it was a file
        self.stdin_fd = -1
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write_eof()

    def show(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def server_gone(self, exc: Optional[BaseException]) -> None:
        self.show("[client] disconnected" + (f": {exc}" if exc else ""))
        self.finish()

    def interrupted(self) -> None:
        if self.transport is not None:
            self.transport.close()  # flush what was typed; server_gone() follows
        else:
            self.finish()

    def finish(self) -> None:
        if self.stdin_fd >= 0:
            self.reactor.remove_reader(self.stdin_fd)
        self.reactor.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demos.chat_client", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="server port (default: %(default)s)")
    parser.add_argument("--nick", help="nickname to send first")
    parser.add_argument("--timeout", type=float, default=10.0, help="connect timeout in seconds")
    add_trace_options(parser)
    args = parser.parse_args(argv)

    with Reactor() as reactor, traced(reactor, args):
        client = ChatClient(reactor, args.nick, sys.stdin.fileno(), sys.stdout)
        reactor.add_signal_handler(signal.SIGINT, client.interrupted)
        reactor.add_signal_handler(signal.SIGTERM, client.interrupted)
        client.start(args.host, args.port, args.timeout)
        reactor.run()
    return client.status


if __name__ == "__main__":
    sys.exit(main())
