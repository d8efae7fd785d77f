"""The greeting server: accept clients, send each one line, hang up.

Run it with ``python -m demos.greeting_server`` and connect with
``python -m demos.greeting_client`` (or ``nc 127.0.0.1 8000``).

This demo is for learners: it drives the reactor with nothing but raw
readiness callbacks (``add_reader``/``add_writer``) on non-blocking sockets,
which is what transports and protocols will later hide. Why non-blocking?
One thread serves every client, so a single call that waits (an ``accept()``
with nobody there, a ``send()`` to a client that reads slowly) would freeze
all the others. Instead each socket call either makes progress at once or
raises ``BlockingIOError``, and the selector tells us when to try again.
"""

from __future__ import annotations

import errno
import logging
import socket
import sys
from typing import Optional

from demos.tracing_options import add_trace_options, traced
from demos import cli, workers
from reactor import Reactor

GREETING = b"Hello, Client! Welcome to the server.\r\n"
# Accept at most this many connections per readiness event, so that a flood
# of new clients cannot starve the ones already connected (or the timers and
# signals): after a batch we go back to select() and everyone gets a turn.
ACCEPT_BATCH = 64
# Out of file descriptors: how long to stop accepting before trying again.
ACCEPT_PAUSE = 0.5

PROG = "python -m demos.greeting_server"  # how users run it, for --help and errors

log = logging.getLogger("demos.greeting_server")


class Client:
    """One connection and the bytes still to be sent to it."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        # A memoryview lets us drop what was already sent without copying:
        # ``pending[sent:]`` is a new window on the same buffer.
        self.pending = memoryview(b"")


class GreetingServer:
    def __init__(self, reactor: Reactor, host: str, port: int, reuse_port: bool = False) -> None:
        self.reactor = reactor
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # reuse_port: one of several worker processes on this port (--workers).
        self.listener = socket.create_server((host, port), family=family, backlog=128, reuse_port=reuse_port)
        self.listener.setblocking(False)
        self.clients: dict[socket.socket, Client] = {}
        self._warned_fd_limit = False
        # The listening socket becomes readable when a connection is waiting.
        reactor.add_reader(self.listener, self._on_acceptable)

    def address(self) -> tuple[str, int]:
        host, port = self.listener.getsockname()[:2]
        return host, port

    # -- accepting ---------------------------------------------------------

    def _on_acceptable(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, addr = self.listener.accept()
            except BlockingIOError:
                return  # the queue is empty: wait for the next readiness event
            except (ConnectionAbortedError, PermissionError):
                # ECONNABORTED: the client gave up while queued. EPERM: a
                # firewall said no. Both concern one client, not the server.
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause_accepting(exc)
                    return
                raise
            self._greet(sock, f"{addr[0]}:{addr[1]}")

    def _pause_accepting(self, exc: OSError) -> None:
        # The pending connection stays in the kernel's queue, so the listener
        # stays readable: with a level-triggered selector, keeping our reader
        # would call us back at once, forever, and burn the CPU while failing.
        # Stop listening for a moment and let clients finish and free fds.
        level = logging.DEBUG if self._warned_fd_limit else logging.WARNING
        log.log(level, "cannot accept (%s); pausing accept for %.1fs", exc, ACCEPT_PAUSE)
        self._warned_fd_limit = True
        self.reactor.remove_reader(self.listener)
        self.reactor.call_later(ACCEPT_PAUSE, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self.listener.fileno() != -1:  # not closed meanwhile
            self.reactor.add_reader(self.listener, self._on_acceptable)

    # -- writing -----------------------------------------------------------

    def _greet(self, sock: socket.socket, peer: str) -> None:
        # Accepted sockets do not inherit non-blocking mode everywhere; be explicit.
        sock.setblocking(False)
        client = Client(sock, peer)
        self.clients[sock] = client
        log.debug("%s connected", peer)
        self._queue(client, GREETING)

    def _queue(self, client: Client, data: bytes) -> None:
        # Register the writer only while there is unsent data. A socket is
        # writable almost all the time (whenever its send buffer has room),
        # so a writer left registered with nothing to write would be called
        # on every iteration: a busy loop. (asyncio also tries a send() right
        # away and registers only for what is left; we keep one path here.)
        was_empty = not client.pending
        client.pending = memoryview(bytes(client.pending) + data)
        if was_empty:
            self.reactor.add_writer(client.sock, self._on_writable, client)

    def _on_writable(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.pending)
        except BlockingIOError:
            return  # a spurious wake-up: try again at the next event
        except OSError as exc:  # the client reset the connection, ...
            log.info("%s: send failed: %s", client.peer, exc)
            self._close_client(client)
            return
        # A send may take only part of the data (the kernel buffer was
        # nearly full): keep the rest, stay registered, and go on later.
        client.pending = client.pending[sent:]
        if not client.pending:
            log.info("greeted %s", client.peer)
            self._close_client(client)

    def _close_client(self, client: Client) -> None:
        # Unregister *before* closing: once closed, the fd number can be
        # reused by the very next accept(), and must not carry our callback.
        self.reactor.remove_writer(client.sock)
        client.sock.close()
        del self.clients[client.sock]

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._close_client(client)
        self.reactor.remove_reader(self.listener)
        self.listener.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=cli.port, default=8000,
                        help="port to listen on; 0 picks a free one (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_trace_options(parser)
    workers.add_workers_option(parser)
    args = parser.parse_args(argv)
    problem = workers.check_workers(args)
    if problem:
        parser.error(problem)
    cli.setup_logging(args.verbose)
    if args.workers is not None and not workers.is_worker():
        return workers.supervise(PROG, "demos.greeting_server", sys.argv[1:] if argv is None else argv,
                                 [workers.Endpoint("--port", args.host, args.port)], args.workers)

    with Reactor() as reactor, traced(reactor, args):
        server = cli.listen_or_explain(PROG, args.host, args.port,
                                       lambda: GreetingServer(reactor, args.host, args.port, workers.is_worker()))
        if server is None:
            return 2
        workers.watch_lifeline(reactor, reactor.stop)
        try:
            cli.serve(reactor, server.address())
        finally:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
