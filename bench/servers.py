"""The echo servers of the network benchmark, one per process.

    python -m bench.servers --kind reactor     # or asyncio, uvloop, twisted
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

``--profile FILE`` runs the loop under cProfile and writes its stats to FILE
on exit (``python -m pstats FILE``); ``bench.profile_echo`` uses it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, Callable, Optional

from bench._proc import die_with_parent, raise_nofile

KINDS = ("reactor", "asyncio", "uvloop", "twisted")


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
    else:
        serve_twisted(args.host, args.port, args.backlog, profiled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
