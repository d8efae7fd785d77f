"""What CPython's socket calls cost in user space: one ``send`` plus one ``recv``.

Every Python server in ``bench.echo`` makes, per request, one
``sock.recv(n)`` and one ``sock.send(data)``. Besides the system calls
themselves (kernel time), each costs user time inside CPython: argument
parsing, the ``bytes`` object ``recv`` allocates and shrinks, and the GIL
released and taken back around the call. No event loop written over the
socket module can spend less than that per request, which is why
``bench.echo`` prints it beside the compiled build's target (a target that
leaves less user time per request than this cannot be met by any loop over
the socket module).

Measured on a TCP loopback pair, as the echo servers use: ``N`` times, one
``send(size bytes)`` then one ``recv(120 KiB)`` of it, user and system time
from ``getrusage``, minus the same loop doing nothing. ``python -m
bench.socketcost`` prints it alone.
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
from typing import Callable, Optional

READ_SIZE = 120 * 1024  # reactor's and the bare loop's recv() size


def _cpu(n: int, work: Callable[[], object]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(n):
        work()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def send_recv_cost(size: int = 1024, n: int = 100_000, repeat: int = 3) -> tuple[float, float]:
    """(user us, kernel us) of one send(size) + one recv(120 KiB), best of *repeat*."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    finally:
        listener.close()
    with a, b:
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        b.setblocking(False)
        send, recv, data = a.send, b.recv, b"x" * size

        def pair() -> None:
            send(data)
            while True:  # (loopback delivers at once; retry the rare miss)
                try:
                    recv(READ_SIZE)
                    return
                except BlockingIOError:
                    continue

        best: Optional[tuple[float, float]] = None
        for _ in range(repeat):
            user, kernel = _cpu(n, pair)
            idle, _ = _cpu(n, lambda: None)
            figure = ((user - idle) / n * 1e6, kernel / n * 1e6)
            if best is None or figure[0] < best[0]:
                best = figure
    assert best is not None
    return best


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.socketcost", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="bytes sent per call (default 1024)")
    parser.add_argument("-n", type=int, default=100_000, help="send+recv pairs per measure (default 100,000)")
    args = parser.parse_args(argv)
    if args.size < 1 or args.n < 1:
        parser.error("--size and -n must be >= 1")
    user, kernel = send_recv_cost(args.size, args.n)
    print(f"one send({args.size:,} B) + one recv({READ_SIZE // 1024} KiB) over TCP loopback, "
          f"through CPython's socket module: {user:.3f} us user, {kernel:.3f} us kernel (best of 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
