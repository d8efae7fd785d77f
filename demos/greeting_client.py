"""The greeting client: open N connections at once and read each greeting.

Run ``python -m demos.greeting_client --port 8000 --count 50`` against
``python -m demos.greeting_server``. All N connections live on one reactor,
driven by readiness callbacks only, like the server:

1. ``connect_ex()`` on a non-blocking socket starts the TCP handshake and
   returns at once (usually with EINPROGRESS) instead of waiting for it.
2. The socket becomes *writable* when the handshake is over, whether it
   succeeded or not; ``SO_ERROR`` then says which.
3. We read until EOF (``recv`` returns ``b""``): the server hangs up after
   the greeting, so EOF is how we know the message is complete.

Exit status: 0 if every connection received the full greeting, 1 otherwise,
2 if the server's address cannot be resolved.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from typing import Any, Optional

from demos import cli
from demos.tracing_options import add_trace_options, traced
from reactor import Reactor

GREETING = b"Hello, Client! Welcome to the server.\r\n"
MAX_REPLY = 64 * 1024  # a server that never stops talking is a failure too
PROG = "python -m demos.greeting_client"  # how users run it, for --help and errors


class Connection:
    """One attempt: the socket, what it received, and how it ended."""

    def __init__(self, number: int, sock: socket.socket) -> None:
        self.number = number
        self.sock = sock
        self.received = bytearray()
        self.error: Optional[str] = None  # set when the attempt failed
        self.done = False


class GreetingClient:
    def __init__(self, reactor: Reactor, sockaddr: Any, family: int, count: int) -> None:
        self.reactor = reactor
        self.connections: list[Connection] = []
        for number in range(1, count + 1):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            conn = Connection(number, sock)
            self.connections.append(conn)
            err = sock.connect_ex(sockaddr)
            if err == 0:  # connected at once (it happens on loopback)
                reactor.add_reader(sock, self._on_readable, conn)
            elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                reactor.add_writer(sock, self._on_connected, conn)
            else:
                self._finish(conn, os.strerror(err))

    def _on_connected(self, conn: Connection) -> None:
        # The writer has done its job: it only told us the handshake ended.
        # Left registered, it would fire on every iteration from now on.
        self.reactor.remove_writer(conn.sock)
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._finish(conn, f"connect failed: {os.strerror(err)}")
        else:
            self.reactor.add_reader(conn.sock, self._on_readable, conn)

    def _on_readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._finish(conn, f"recv failed: {exc}")
            return
        if data:
            conn.received += data
            if len(conn.received) > MAX_REPLY:
                self._finish(conn, "reply too long")
        elif conn.received == GREETING:  # EOF: the reply is complete
            self._finish(conn)
        else:
            self._finish(conn, f"unexpected reply {bytes(conn.received)!r}")

    def _finish(self, conn: Connection, error: Optional[str] = None) -> None:
        conn.error = error
        conn.done = True
        self.reactor.remove_reader(conn.sock)
        self.reactor.remove_writer(conn.sock)
        conn.sock.close()
        if all(c.done for c in self.connections):
            self.reactor.stop()

    def give_up(self) -> None:
        """The overall timeout: fail whatever is still in flight."""
        for conn in self.connections:
            if not conn.done:
                self._finish(conn, "timed out")

    def close(self) -> None:
        for conn in self.connections:
            if not conn.done:
                self._finish(conn, "interrupted")


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address (default: %(default)s)")
    parser.add_argument("--port", type=cli.port, default=8000, help="server port (default: %(default)s)")
    parser.add_argument("--count", type=cli.positive_int, default=1, help="concurrent connections (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="give up after this many seconds (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    add_trace_options(parser)
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    # Name resolution blocks, so it happens once, before the loop starts.
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(
            args.host, args.port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:  # no such host
        print(f"{PROG}: cannot resolve {args.host}: {exc.strerror}", file=sys.stderr)
        return 2

    with Reactor() as reactor, traced(reactor, args):
        client = GreetingClient(reactor, sockaddr, family, args.count)
        try:
            if not all(c.done for c in client.connections):
                timer = reactor.call_later(args.timeout, client.give_up)
                reactor.run()
                timer.cancel()
        finally:
            client.close()

    ok = 0
    for conn in client.connections:
        if conn.error is None:
            ok += 1
            if not args.quiet:
                print(f"#{conn.number}: {conn.received.decode().rstrip()}")
        else:
            print(f"#{conn.number}: {conn.error}", file=sys.stderr)
    print(f"{ok}/{args.count} greetings received", flush=True)
    return 0 if ok == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
