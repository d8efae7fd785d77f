"""The loop's own work per echo request, without the system calls: reactor against the bare loop.

    python -m bench.hotpath                    # c10 and c100, interpreted reactor and the floor
    python -m bench.hotpath --compiled         # also the compiled build (bench.compiled builds it)

Each connection's descriptor is real (one end of a socketpair, kept
readable, so epoll reports every connection every iteration), but its
``recv()`` and ``send()`` are stand-ins that return at once: one 1 KiB
message in, all of it out. What is timed is then everything a loop does per
request apart from those two system calls: the loop iteration (one
``epoll_wait`` shared by all connections), dispatch, the transport, the
protocol's ``data_received`` and ``write``. The bare loop is the
``selectors`` floor of ``bench.servers``, over the same stand-ins.

Process CPU time, best of several trials (the machine is shared: the best is
the least disturbed); nanoseconds per request. In ``bench.echo`` the same
requests also pay their system calls (~3 us of kernel time on loopback),
so these differences are a small share of the CPU per request there.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Optional

MSG = b"x" * 1024


class StandInSocket:
    """A real descriptor for the selector; recv()/send() that return at once."""

    __slots__ = ("_sock",)
    family = socket.AF_UNIX

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        pass

    def recv(self, n: int) -> bytes:
        return MSG

    def send(self, data: bytes) -> int:
        return len(data)

    def getpeername(self) -> str:
        return ""

    def close(self) -> None:
        self._sock.close()


def best_ns(step: Callable[[], None], iterations: int, per: int, trials: int) -> float:
    best = float("inf")
    for _ in range(trials):
        t0 = time.process_time_ns()
        for _ in range(iterations):
            step()
        best = min(best, (time.process_time_ns() - t0) / (iterations * per))
    return best


def measure(kind: str, conns: int, iterations: int, trials: int) -> dict[str, Any]:
    """One kind in this process: ns per request."""
    pairs = [socket.socketpair() for _ in range(conns)]
    for _, peer in pairs:
        peer.send(b"!")  # the other end stays readable: nobody reads it
    try:
        if kind == "selectors":
            sel = selectors.DefaultSelector()

            def echo(conn: Any) -> None:  # bench.servers.serve_selectors's echo
                data = conn.recv(120 * 1024)
                if data:
                    conn.send(data)

            for sock, _ in pairs:
                sel.register(StandInSocket(sock), selectors.EVENT_READ, echo)

            def step() -> None:
                for key, _mask in sel.select():
                    key.data(key.fileobj)

            ns = best_ns(step, iterations, conns, trials)
            sel.close()
            return {"kind": kind, "conns": conns, "ns_per_request": ns, "compiled": False}
        import reactor
        from reactor import Protocol, Reactor
        from reactor.streams import StreamTransport

        class Echo(Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.write(data)

        loop = Reactor()
        transports = [StreamTransport(loop, StandInSocket(sock), Echo()) for sock, _ in pairs]  # type: ignore[arg-type]
        loop.run_once(0)  # connection_made
        loop._running = True  # run()'s own loop body, without run_once's entry and exit
        try:
            ns = best_ns(lambda: loop._run_once(None), iterations, conns, trials)
        finally:
            loop._running = False
        for transport in transports:
            transport.abort()
        loop.run_once(0)
        loop.close()
        return {"kind": kind, "conns": conns, "ns_per_request": ns, "compiled": reactor.COMPILED}
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def run_child(kind: str, conns: int, iterations: int, trials: int, path_first: Optional[str]) -> dict[str, Any]:
    """Each measurement in a fresh interpreter (the compiled one from *path_first*)."""
    from bench._proc import ROOT, child_env

    argv = [sys.executable, "-m", "bench.hotpath", "--child", kind, "--conns", str(conns),
            "--iterations", str(iterations), "--trials", str(trials)]
    proc = subprocess.run(argv, cwd=path_first or str(ROOT), env=child_env([path_first] if path_first else []),
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"bench.hotpath {kind}: {proc.stderr.strip()[-800:]}")
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="10,100", help="connections, comma-separated (default 10,100)")
    parser.add_argument("--compiled", action="store_true", help="also the mypyc build (bench.compiled)")
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200_000, help="requests per trial (default 200,000)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--conns", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--iterations", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.conns, args.iterations, args.trials)))
        return 0
    try:
        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--concurrency: expected integers, got {args.concurrency!r}")
    if not levels or min(levels) < 1 or args.trials < 1 or args.requests < 1:
        parser.error("--concurrency, --trials and --requests must be positive")
    kinds: list[tuple[str, str, Optional[str]]] = [("selectors", "selectors (floor)", None),
                                                    ("reactor", "reactor", None)]
    if args.compiled:
        from bench import compiled

        path, note = compiled.build()
        if path is None:
            print(f"reactor-compiled: not built: {note}")
        else:
            kinds.append(("reactor", "reactor-compiled", str(path)))
    print(f"ns of process CPU per request without recv/send system calls (best of {args.trials}; "
          f"pid {os.getpid()}):")
    print(f"{'':<20}" + "".join(f"{'c' + str(c):>10}{'x floor':>9}" for c in levels))
    floor: dict[int, float] = {}
    for kind, label, path in kinds:
        row = f"{label:<20}"
        for conns in levels:
            doc = run_child(kind, conns, max(1, args.requests // conns), args.trials, path)
            ns = doc["ns_per_request"]
            if kind == "selectors":
                floor[conns] = ns
            row += f"{ns:>10.0f}{ns / floor[conns]:>8.2f}x"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
