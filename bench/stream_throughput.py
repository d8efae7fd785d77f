"""Bulk stream throughput on one reactor: a client pushes N MiB through an echo server.

Run ``python -m bench.stream_throughput [--mib 100]``. Client and server share
one loop and one process, so this measures the transport's bulk path
(vectored sends, recv_into, flow control) rather than the network; use
``bench.echo`` for request/response comparisons against other loops.
"""

from __future__ import annotations

import argparse
import time

from reactor import Protocol, Reactor


class Echo(Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        self.transport.pause_reading()  # backpressure: stop reading what we cannot send

    def resume_writing(self):
        self.transport.resume_reading()


class Pusher(Protocol):
    def __init__(self, size: int, reactor: Reactor) -> None:
        self.size, self.reactor = size, reactor
        self.sent = self.received = 0
        self.paused = False
        self.chunk = b"x" * 65536

    def connection_made(self, transport):
        self.transport = transport
        self.pump()

    def pump(self):
        while not self.paused and self.sent < self.size:
            self.transport.write(self.chunk)
            self.sent += len(self.chunk)
        if self.sent >= self.size:
            self.transport.write_eof()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.pump()

    def data_received(self, data):
        self.received += len(data)

    def connection_lost(self, exc):
        self.reactor.stop()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_throughput", description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100, help="MiB to push (default: %(default)s)")
    args = parser.parse_args(argv)
    size = args.mib * 1024 * 1024
    with Reactor() as reactor:
        listener = reactor.listen_tcp(Echo, "127.0.0.1", 0)
        pusher = Pusher(size, reactor)
        t0 = time.perf_counter()
        reactor.connect_tcp(lambda: pusher, *listener.address)
        reactor.run()
        seconds = time.perf_counter() - t0
    assert pusher.received == size, (pusher.received, size)
    print(f"{args.mib} MiB echoed in {seconds:.3f} s: {size / seconds / 2**20:,.0f} MiB/s each way")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
