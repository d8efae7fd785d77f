"""The chat server: one ``Chat``, a line door for nc/telnet, an IRC door (``--irc-port``), a web door (``--web-port``).

Run ``python -m demos.chat_server`` (port 7000) and connect a few terminals
with ``nc 127.0.0.1 7000`` or ``telnet 127.0.0.1 7000``; add ``--irc-port
6667`` and connect an IRC client too (``irssi -c 127.0.0.1 -p 6667``): IRC's
``#lobby`` is the line door's ``lobby``, so everyone talks to everyone.

``ChatServer`` owns what the doors share: the chat, the session limits,
the set of connections (for ``--max-clients`` and shutdown), and the clock.
The clock is wall time (``time.time``): the core stamps lines with it for
the history replay, and a timestamp must mean the same thing to every
process that sees it; deadlines are measured on the same clock.

SIGINT or SIGTERM: everyone is told, output is flushed (with a deadline),
and the process exits with status 0; a second signal aborts at once.

``--redis redis://host:port/db`` shares the rooms with every other chat
server on that Redis (``backplane``); ``--workers N`` runs N processes
behind the same ports (``demos/workers.py``; with ``--redis``, so that
they share their rooms).
"""

from __future__ import annotations

import logging
import signal
import ssl
import sys
import time
from typing import Any, Callable, Optional

from reactor import Reactor
from reactor.monitor import start_monitor

from ..cli import (OneLineParser, add_tls_server_options, non_negative_float, non_negative_int, port,
                   positive_float, positive_int, server_tls_context, why)
from ..tracing_options import add_trace_options, check_trace_file, traced
from .. import workers
from . import backplane, logs, web
from .core import Chat, HISTORY_BYTES, HISTORY_LINES
from .door import Door
from .irc_door import IrcDoor
from .line_door import LineDoor
from .session import Limits

log = logging.getLogger("demos.chat")

DEFAULT_PORT = 7000
DEFAULT_TLS_PORT = 7443  # the line door over TLS, with --tls-cert
MAX_LINE = 1024  # bytes per input line, without the line ending
MAX_OUTPUT = 256 * 1024  # bytes queued for one client before we give up on it
MAX_QUEUE = 256 * 1024  # bytes of input waiting (flood-delayed) per client
NICK_TIMEOUT = 60.0
LINE_TIMEOUT = 60.0
FLOOD_RATE = 10.0  # lines per second, sustained: a 200-line paste takes ~18 s
FLOOD_BURST = 20  # lines at once
PING_INTERVAL = 120.0  # IRC keepalive
PING_TIMEOUT = 60.0
SHUTDOWN_GRACE = 5.0  # seconds to flush goodbyes before aborting


class ChatServer:
    def __init__(self, reactor: Any, *, max_clients: int = 1000, max_line: int = MAX_LINE,
                 max_output: int = MAX_OUTPUT, max_queue: int = MAX_QUEUE, limits: Limits = Limits(),
                 irc_ping_interval: float = PING_INTERVAL, irc_ping_timeout: float = PING_TIMEOUT,
                 history_lines: int = HISTORY_LINES, history_bytes: int = HISTORY_BYTES,
                 shutdown_grace: float = SHUTDOWN_GRACE, clock: Callable[[], float] = time.time,
                 chat: Optional[Chat] = None) -> None:
        self.reactor = reactor
        self.clock = clock
        # *chat*: a shared one (backplane.SharedChat, --redis), or our own.
        self.chat = chat if chat is not None else Chat(history_lines=history_lines, history_bytes=history_bytes)
        self.reuse_port = workers.is_worker()  # one of several processes on these ports (--workers)
        self.doors: set[Door] = set()
        self.max_clients = max_clients
        self.max_line = max_line
        self.max_output = max_output
        self.max_queue = max_queue
        self.limits = limits
        self.irc_limits = Limits(**{**limits.__dict__, "ping_interval": irc_ping_interval,
                                    "ping_timeout": irc_ping_timeout})
        self.shutdown_grace = shutdown_grace
        self.closing = False
        self.listeners: list[Any] = []

    def listen(self, host: Optional[str], port: int, tls: Optional[ssl.SSLContext] = None) -> Any:
        """The line door (nc, telnet, chat_client; openssl s_client with *tls*)."""
        listener = self.reactor.listen_tcp(lambda: LineDoor(self), host, port, ssl=tls,
                                           reuse_port=self.reuse_port)
        self.listeners.append(listener)
        return listener

    def listen_irc(self, host: Optional[str], port: int, tls: Optional[ssl.SSLContext] = None) -> Any:
        listener = self.reactor.listen_tcp(lambda: IrcDoor(self), host, port, ssl=tls,
                                           reuse_port=self.reuse_port)
        self.listeners.append(listener)
        return listener

    def listen_web(self, host: Optional[str], port: int, site: Any, tls: Optional[ssl.SSLContext] = None) -> Any:
        """The web door (``web_door.WebSite``: the chat page, its WebSocket, /reactor); https/wss with *tls*."""
        listener = self.reactor.listen_tcp(lambda: site.door(secure=tls is not None), host, port, ssl=tls,
                                           reuse_port=self.reuse_port)
        self.listeners.append(listener)
        return listener

    def shutdown(self, grace: Optional[float] = None) -> None:
        """Tell everyone, flush, close; abort stragglers after *grace* seconds; then stop.

        A second call (a second Ctrl-C) aborts the stragglers at once.
        """
        if self.closing:
            if self.doors:
                log.info("shutting down now: aborting %d client(s)", len(self.doors))
                self._abort_stragglers()
            return
        self.closing = True
        log.info("shutting down: %d client(s)", len(self.doors))
        for listener in self.listeners:
            listener.close()
        for door in list(self.doors):
            door.goodbye("server shutdown", "the server is shutting down")  # flushes, then closes
        self.reactor.call_later(self.shutdown_grace if grace is None else grace, self._abort_stragglers)
        self.door_gone()

    def _abort_stragglers(self) -> None:
        for door in list(self.doors):
            door.reason = "server shutdown (output not flushed in time)"
            door.transport.abort()

    def door_gone(self) -> None:
        if self.closing and not self.doors:
            self.reactor.stop()


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m demos.chat_server",
                           description="A chat server for nc, telnet, demos.chat_client and IRC clients.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=port, default=DEFAULT_PORT,
                        help="port for nc/telnet/chat_client; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--irc-port", type=port, metavar="PORT",
                        help="also serve IRC clients on this port (off unless given; 6667 is IRC's)")
    parser.add_argument("--max-clients", type=positive_int, default=1000, help="default: %(default)s")
    parser.add_argument("--max-line", type=positive_int, default=MAX_LINE,
                        help="bytes per line on the line door (default: %(default)s; IRC's is 512)")
    parser.add_argument("--max-output", type=positive_int, default=MAX_OUTPUT,
                        help="bytes queued per client before disconnecting it (default: %(default)s)")
    parser.add_argument("--max-queue", type=positive_int, default=MAX_QUEUE,
                        help="bytes of input waiting per client while flood control delays it "
                             "(default: %(default)s)")
    parser.add_argument("--nick-timeout", type=positive_float, default=NICK_TIMEOUT,
                        help="seconds to choose a nickname (default: %(default)s)")
    parser.add_argument("--idle-timeout", type=non_negative_float, default=0.0,
                        help="disconnect clients silent this long; 0 = never (default)")
    parser.add_argument("--line-timeout", type=non_negative_float, default=LINE_TIMEOUT,
                        help="seconds a started line may take to end; 0 = forever (default: %(default)s)")
    parser.add_argument("--flood-rate", type=positive_float, default=FLOOD_RATE,
                        help="lines per second per client, sustained; faster lines are delayed, "
                             "not dropped (default: %(default)s)")
    parser.add_argument("--flood-burst", type=positive_int, default=FLOOD_BURST,
                        help="lines a client may send at once (default: %(default)s)")
    parser.add_argument("--history", type=non_negative_int, default=HISTORY_LINES,
                        help="lines each room replays to people who join it (default: %(default)s)")
    parser.add_argument("--ping-interval", type=non_negative_float, default=PING_INTERVAL,
                        help="IRC: PING a client silent this long; 0 = never (default: %(default)s)")
    parser.add_argument("--ping-timeout", type=positive_float, default=PING_TIMEOUT,
                        help="IRC: seconds to answer a PING (default: %(default)s)")
    parser.add_argument("--shutdown-grace", type=non_negative_float, default=SHUTDOWN_GRACE,
                        help="seconds to flush goodbyes on SIGINT/SIGTERM before disconnecting "
                             "(a second signal: at once; default: %(default)s)")
    add_trace_options(parser)
    add_tls_server_options(parser)
    parser.add_argument("--tls-port", type=port, default=DEFAULT_TLS_PORT, metavar="PORT",
                        help="with --tls-cert: the line door over TLS (default: %(default)s)")
    parser.add_argument("--irc-tls-port", type=port, metavar="PORT",
                        help="with --tls-cert: the IRC door over TLS (off unless given; 6697 is usual)")
    parser.add_argument("--monitor", type=port, metavar="PORT",
                        help="serve the reactor monitor console on 127.0.0.1:PORT (nc to it, type help)")
    backplane.add_options(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    web.add_options(parser)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog

    def fail(message: str) -> int:
        print(f"{prog}: {message}", file=sys.stderr)
        return 2

    tls, problem = server_tls_context(args)
    if not problem and tls is None and args.irc_tls_port is not None:
        problem = "--irc-tls-port needs --tls-cert and --tls-key"
    problem = problem or backplane.check_options(args) or check_trace_file(args) or web.check_options(args, tls)
    if problem:
        return fail(problem)
    if args.workers is not None and not workers.is_worker():
        logs.install(logging.DEBUG if args.verbose else logging.INFO)
        endpoints = [workers.Endpoint("--port", args.host, args.port)]
        if args.irc_port is not None:
            endpoints.append(workers.Endpoint("--irc-port", args.host, args.irc_port))
        if tls is not None:
            endpoints.append(workers.Endpoint("--tls-port", args.host, args.tls_port))
            if args.irc_tls_port is not None:
                endpoints.append(workers.Endpoint("--irc-tls-port", args.host, args.irc_tls_port))
            if args.web_tls_port is not None:
                endpoints.append(workers.Endpoint("--web-tls-port", args.host, args.web_tls_port))
        if args.web_port is not None:
            endpoints.append(workers.Endpoint("--web-port", args.host, args.web_port))
        return workers.supervise(prog, "demos.chat_server", sys.argv[1:] if argv is None else argv, endpoints,
                                 args.workers, grace=args.shutdown_grace, ready="Ctrl-C")
    handler = logs.install(logging.DEBUG if args.verbose else logging.INFO)
    limits = Limits(nick_timeout=args.nick_timeout, idle_timeout=args.idle_timeout,
                    line_timeout=args.line_timeout, flood_rate=args.flood_rate, flood_burst=args.flood_burst)
    with Reactor() as reactor, traced(reactor, args):
        server = ChatServer(reactor, max_clients=args.max_clients, max_line=args.max_line,
                            max_output=args.max_output, max_queue=args.max_queue, limits=limits,
                            irc_ping_interval=args.ping_interval, irc_ping_timeout=args.ping_timeout,
                            history_lines=args.history, shutdown_grace=args.shutdown_grace,
                            chat=backplane.make_chat(args, args.history, HISTORY_BYTES))
        what, bad = "--port", args.port
        try:
            listener = server.listen(args.host, args.port)
            irc = tls_listener = irc_tls = None
            if args.irc_port is not None:
                what, bad = "--irc-port", args.irc_port
                irc = server.listen_irc(args.host, args.irc_port)
            if tls is not None:
                what, bad = "--tls-port", args.tls_port
                tls_listener = server.listen(args.host, args.tls_port, tls)
                if args.irc_tls_port is not None:
                    what, bad = "--irc-tls-port", args.irc_tls_port
                    irc_tls = server.listen_irc(args.host, args.irc_tls_port, tls)
        except OSError as exc:  # the port is taken, or the address is not ours
            return fail(f"cannot listen on {args.host}:{bad}: {why(exc)} (try another {what})")
        web_started, problem = web.start(server, args, tls)
        if problem:
            return fail(problem)
        monitor = None
        if args.monitor is not None:
            try:
                monitor = start_monitor(reactor, args.monitor)
            except OSError as exc:
                return fail(f"cannot start the monitor on 127.0.0.1:{args.monitor}: {why(exc)} "
                            f"(try another --monitor)")
        for sig in (signal.SIGINT, signal.SIGTERM):
            reactor.add_signal_handler(sig, server.shutdown)
        workers.watch_lifeline(reactor, server.shutdown)
        plane = backplane.start(reactor, server.chat, args)
        host, port_ = listener.address[:2]
        print(f"listening on {host}:{port_}", flush=True)
        if irc is not None:
            print(f"irc on {host}:{irc.address[1]}", flush=True)
        if tls_listener is not None:
            print(f"tls on {host}:{tls_listener.address[1]}", flush=True)
        if irc_tls is not None:
            print(f"irc-tls on {host}:{irc_tls.address[1]}", flush=True)
        if monitor is not None:
            print(f"monitor on 127.0.0.1:{monitor.address[1]}", flush=True)
        print(f"connect with: nc {host} {port_}, telnet {host} {port_}, "
              f"or python3 -m demos.chat_client --host {host} --port {port_}", flush=True)
        if irc is not None:
            print(f"IRC clients: irssi -c {host} -p {irc.address[1]}, or in weechat: "
                  f"/server add reactor {host}/{irc.address[1]}", flush=True)
        else:
            print("IRC clients: restart with --irc-port 6667, then irssi -c 127.0.0.1 -p 6667", flush=True)
        if tls_listener is not None:
            tls_port = tls_listener.address[1]
            print(f"over TLS: python3 -m demos.chat_client --tls --cafile {args.tls_cert} --port {tls_port}, "
                  f"or openssl s_client -connect {host}:{tls_port} -CAfile {args.tls_cert} -quiet",
                  flush=True)
        if monitor is not None:
            print(f"monitor: nc 127.0.0.1 {monitor.address[1]}, then type help", flush=True)
        for line in web.announce(web_started, args.web_monitor):
            print(line, flush=True)
        if plane is not None:
            print(f"rooms shared through Redis at {plane.address} (start more servers with the same --redis)",
                  flush=True)
        print("Ctrl-C stops the server", flush=True)
        handler.attach(reactor)
        try:
            reactor.run()
            backplane.finish(reactor, plane)
        finally:
            handler.detach()
    log.info("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
