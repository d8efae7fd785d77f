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

``--malloc raised|mmap|as-is`` puts glibc's allocator in a known state
before serving (see ``set_malloc_state``): it decides what a ``recv()`` of
more than 128 KiB costs, and so asyncio's figures (docs/PERFORMANCE.md,
"The allocator"). ``bench.echo`` starts every server ``raised`` except its
``asyncio-mmap`` row. ``--expect-compiled`` (reactor only) refuses to serve
unless ``reactor.COMPILED``: the ``reactor-compiled`` row must not silently
measure the pure-Python build.

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
MALLOC_STATES = ("raised", "mmap", "as-is")
# glibc's initial mmap threshold: a malloc() this large or larger is served
# by mmap() and given back by munmap() on free(), until the process frees
# one such block (then the threshold rises to that block's size; it only
# ever rises, up to 32 MiB on 64-bit).
GLIBC_MMAP_THRESHOLD = 128 * 1024
M_MMAP_THRESHOLD = -3  # mallopt() parameter number, <malloc.h>


def set_malloc_state(state: str) -> str:
    """Put glibc's dynamic mmap threshold in a known state; say what was done.

    * ``raised``: allocate and free one 1 MiB block. It is above the
      threshold, so mmap() serves it, and freeing it raises the threshold to
      its size: from then on a 256 KiB ``recv()`` buffer comes from the heap
      and costs ~1 us, not an mmap()+munmap() pair (~9 us). It is what any
      process that once freed a large buffer is in, and the state in which
      asyncio is fastest.
    * ``mmap``: ``mallopt(M_MMAP_THRESHOLD, 128 KiB)``: glibc's initial
      threshold, held there (setting it turns the dynamic adjustment off,
      as ``MALLOC_MMAP_THRESHOLD_=131072`` in the environment does). Every
      allocation of 128 KiB or more is an mmap()+munmap() pair.
    * ``as-is``: whatever the interpreter's start-up left (it depends on
      what the process happened to allocate and free).

    Not glibc (or no ctypes): nothing to do, and the answer says so.
    """
    if state == "as-is":
        return "as-is"
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version
    except (OSError, AttributeError, ImportError):
        return f"{state} requested, but this is not glibc: as-is"
    gnu_get_libc_version.restype = ctypes.c_char_p
    version = gnu_get_libc_version().decode()
    if state == "mmap":
        if not mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD):
            return f"mmap requested, mallopt() refused: as-is (glibc {version})"
        return f"mmap threshold held at {GLIBC_MMAP_THRESHOLD // 1024} KiB (glibc {version})"
    block = bytearray(1 << 20)  # > the threshold: mmap()ed (a bytearray: not a shared constant)
    del block  # munmap(): the threshold rises to ~1 MiB
    return f"mmap threshold raised by freeing one 1 MiB block (glibc {version})"


def announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def serve_reactor(host: str, port: int, backlog: int, profiled: Callable[[Callable[[], None]], None],
                  tls: Any = None) -> None:
    from reactor import Protocol, Reactor

    class Echo(Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    with Reactor() as reactor:
        listener = reactor.listen_tcp(Echo, host, port, backlog=backlog, ssl=tls)
        for sig in (signal.SIGTERM, signal.SIGINT):
            reactor.add_signal_handler(sig, reactor.stop)
        announce(listener.address[1])
        profiled(reactor.run)


def serve_asyncio(host: str, port: int, backlog: int, profiled: Callable[[Callable[[], None]], None],
                  use_uvloop: bool = False, tls: Any = None) -> None:
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
        server = loop.run_until_complete(loop.create_server(Echo, host, port, backlog=backlog, ssl=tls))
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
    parser.add_argument("--malloc", choices=MALLOC_STATES, default="as-is",
                        help="glibc allocator state before serving (default as-is; see set_malloc_state)")
    parser.add_argument("--expect-compiled", action="store_true",
                        help="reactor only: refuse to serve unless reactor.COMPILED (the mypyc build)")
    parser.add_argument("--tls", metavar="CERT,KEY",
                        help="serve TLS with this PEM certificate and key (reactor, asyncio, uvloop)")
    args = parser.parse_args(argv)
    tls = None
    if args.tls:
        import ssl

        if args.kind not in ("reactor", "asyncio", "uvloop"):
            parser.error("--tls is for reactor, asyncio and uvloop")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(*args.tls.split(",", 1))
    die_with_parent()
    raise_nofile()
    if args.expect_compiled:
        import reactor

        if args.kind != "reactor" or not reactor.COMPILED:
            print(f"--expect-compiled: reactor.COMPILED is {reactor.COMPILED} "
                  f"(imported from {reactor.__file__})", file=sys.stderr)
            return 2
    malloc_note = set_malloc_state(args.malloc)
    print(f"MALLOC {malloc_note}", file=sys.stderr, flush=True)

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
        serve_reactor(args.host, args.port, args.backlog, profiled, tls)
    elif args.kind in ("asyncio", "uvloop"):
        serve_asyncio(args.host, args.port, args.backlog, profiled, use_uvloop=args.kind == "uvloop", tls=tls)
    elif args.kind == "selectors":
        serve_selectors(args.host, args.port, args.backlog, profiled)
    else:
        serve_twisted(args.host, args.port, args.backlog, profiled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
