"""The echo servers of the network benchmark, one per process.

    python -m bench.servers --kind reactor     # or asyncio, uvloop, twisted, selectors
    python -m bench.servers --kind reactor --profile echo.prof

Each prints ``PORT <n>`` on stdout once it listens (on 127.0.0.1, a free
port unless ``--port`` says otherwise), then serves until SIGTERM or SIGINT
(or until the benchmark that started it dies). Every server is the textbook
echo for its library, as its users would write it: a Protocol whose
data-received callback writes the bytes back on its transport. The only
deviation from the defaults, the same for all: a listen backlog of 1024
(``--backlog``) so that connection bursts are not dropped, and TCP_NODELAY
on every connection (reactor, asyncio and uvloop set it by default; Twisted
is asked to, in ``connectionMade``).

``selectors`` is the exception: not a library but the floor, the bare loop
a tutorial would write (``serve_selectors``), to show what reactor's
features cost on top of the readiness and the two system calls per request
that any pure-Python loop pays.

``--profile FILE`` runs the loop under cProfile and writes its stats to FILE
on exit (``python -m pstats FILE``); ``bench.profile_echo`` uses it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Callable, Optional

from bench._proc import die_with_parent, raise_nofile

KINDS = ("reactor", "asyncio", "uvloop", "twisted", "selectors")


def announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def serve_reactor(host: str, port: int, backlog: int, profiled: Callable[[Callable[[], None]], None]) -> None:
    from reactor import Protocol, Reactor

    class Echo(Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    with Reactor() as reactor:
        listener = reactor.listen_tcp(Echo, host, port, backlog=backlog)
        for sig in (signal.SIGTERM, signal.SIGINT):
            reactor.add_signal_handler(sig, reactor.stop)
        announce(listener.address[1])
        profiled(reactor.run)


def serve_asyncio(host: str, port: int, backlog: int, profiled: Callable[[Callable[[], None]], None],
                  use_uvloop: bool = False) -> None:
    import asyncio

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    if use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        server = loop.run_until_complete(loop.create_server(Echo, host, port, backlog=backlog))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, loop.stop)
        announce(server.sockets[0].getsockname()[1])
        profiled(loop.run_forever)
        server.close()
    finally:
        loop.close()


def serve_selectors(host: str, port: int, backlog: int, profiled: Callable[[Callable[[], None]], None]) -> None:
    """The floor, not a peer: the bare ``selectors`` echo loop a tutorial would write.

    No buffering (it assumes every send() takes everything, which holds for
    this benchmark's small messages), no flow control, no error handling, no
    timers: just what any pure-Python loop pays for readiness, one recv and
    one send per request. The distance from this row to reactor's is the
    cost of reactor's features.
    """
    import selectors
    import socket

    sel = selectors.DefaultSelector()
    listener = socket.create_server((host, port), backlog=backlog)
    listener.setblocking(False)
    running = [True]

    def accept(sock: socket.socket) -> None:
        conn, _ = sock.accept()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(conn, selectors.EVENT_READ, echo)

    def echo(conn: socket.socket) -> None:
        data = conn.recv(120 * 1024)  # reactor's MAX_READ_SIZE: the same reads, no features
        if data:
            conn.send(data)
        else:
            sel.unregister(conn)
            conn.close()

    def stop(*_: Any) -> None:
        running[0] = False

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    sel.register(listener, selectors.EVENT_READ, accept)
    announce(listener.getsockname()[1])

    def run() -> None:
        while running[0]:
            for key, _mask in sel.select():
                key.data(key.fileobj)

    try:
        profiled(run)
    finally:
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()


def serve_twisted(host: str, port: int, backlog: int, profiled: Callable[[Callable[[], None]], None]) -> None:
    from twisted.internet import protocol, reactor  # the default reactor (epoll on Linux)

    class Echo(protocol.Protocol):
        def connectionMade(self) -> None:
            self.transport.setTcpNoDelay(True)

        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)

    factory = protocol.Factory()
    factory.protocol = Echo
    factory.noisy = False
    listening = reactor.listenTCP(port, factory, backlog=backlog, interface=host)
    announce(listening.getHost().port)
    # reactor.run() installs its own SIGINT/SIGTERM handlers that stop it.
    profiled(reactor.run)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--backlog", type=int, default=1024)
    parser.add_argument("--profile", metavar="FILE", help="run the loop under cProfile; stats to FILE")
    args = parser.parse_args(argv)
    die_with_parent()
    raise_nofile()

    def profiled(run: Callable[[], None]) -> None:
        if not args.profile:
            run()
            return
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            run()
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)

    if args.kind == "reactor":
        serve_reactor(args.host, args.port, args.backlog, profiled)
    elif args.kind in ("asyncio", "uvloop"):
        serve_asyncio(args.host, args.port, args.backlog, profiled, use_uvloop=args.kind == "uvloop")
    elif args.kind == "selectors":
        serve_selectors(args.host, args.port, args.backlog, profiled)
    else:
        serve_twisted(args.host, args.port, args.backlog, profiled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
