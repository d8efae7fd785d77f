"""UDP sender and receiver: count datagrams, and send them with flow control.

One module, two subcommands, both running on the reactor:

- ``python -m demos.udp_pair receive --port 9999 [--count N]`` prints (or,
  with ``--quiet``, only counts) the datagrams that arrive, and exits after
  *N* of them if ``--count`` is given, printing ``received N datagrams ...``.
- ``python -m demos.udp_pair send --port 9999 --count 200`` sends 200
  numbered datagrams and prints a summary.

Either exits with status 2 if it cannot start (port taken, unknown host).

What UDP does and does not promise. A datagram arrives whole or not at all,
but may be lost, duplicated or reordered, and nothing slows a sender down:
if the receiver's kernel buffer is full, new datagrams are simply dropped.
Even on loopback. So the sender here is *paced*: it sends ``--burst``
datagrams, then lets ``--interval`` seconds pass before the next burst, and
the receiver asks the kernel for a larger receive buffer.

Flow control on the sending side is still real: ``transport.sendto()``
never blocks. If the kernel refuses a datagram for now (EAGAIN, ENOBUFS),
the transport queues it, whole, and once that queue passes its high-water
mark it calls our ``pause_writing()``. The sender then stops producing until
``resume_writing()``, and only then sends the next datagram: a sender that
ignored pausing would fill the queue up to its hard bound, after which the
transport drops datagrams (and counts them in ``datagrams_dropped``).
On a real network interface a small ``--sndbuf`` makes the kernel push back
and the summary counts the pauses; on Linux loopback the kernel usually
takes every datagram at once and drops the excess at the receiver instead,
which is exactly why the sender is paced.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import time
from typing import Any, Optional

from demos import cli
from demos.cli import why
from demos.tracing_options import add_trace_options, traced
from reactor import DatagramProtocol, Reactor

PROG = "python -m demos.udp_pair"  # how users run it, for --help and errors

log = logging.getLogger("demos.udp_pair")


# -- receiving ----------------------------------------------------------------

class Counter(DatagramProtocol):
    """Count (and print) every datagram; stop the loop after *limit* of them."""

    def __init__(self, reactor: Reactor, limit: Optional[int], quiet: bool) -> None:
        self.reactor = reactor
        self.limit = limit
        self.quiet = quiet
        self.count = 0
        self.nbytes = 0
        self.senders: set[Any] = set()
        self.last_arrival = time.monotonic()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.count += 1
        self.nbytes += len(data)
        self.senders.add(addr)
        self.last_arrival = time.monotonic()
        if not self.quiet:
            preview = data[:40].decode("ascii", "replace")
            print(f"#{self.count} from {addr[0]}:{addr[1]}: {len(data)} bytes: {preview!r}",
                  flush=True)
        if self.limit is not None and self.count >= self.limit:
            # Read nothing more: the next datagrams are not ours to count.
            self.transport.pause_reading()
            self.reactor.stop()

    def error_received(self, exc: Exception) -> None:
        log.info("receive error: %s", exc)

    def summary(self) -> str:
        return (f"received {self.count} datagrams ({self.nbytes} bytes) "
                f"from {len(self.senders)} sender(s)")


def receive(args: argparse.Namespace) -> int:
    with Reactor() as reactor, traced(reactor, args):
        counter = Counter(reactor, args.count, args.quiet)
        try:
            transport = reactor.open_udp(lambda: counter, local_addr=(args.host, args.port))
        except OSError as exc:  # the port is taken, the address is not ours, ...
            print(f"{PROG} receive: cannot bind {args.host}:{args.port}: {why(exc)}",
                  file=sys.stderr)
            return 2
        # The kernel's receive buffer is all that holds datagrams between
        # two turns of our loop; ask for a bigger one (the kernel caps it at
        # net.core.rmem_max). The transport lends us its socket for this.
        transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, args.rcvbuf)
        for sig in (signal.SIGINT, signal.SIGTERM):
            reactor.add_signal_handler(sig, reactor.stop)
        if args.idle_timeout:
            def check_idle() -> None:
                idle = time.monotonic() - counter.last_arrival
                if idle >= args.idle_timeout:
                    log.warning("nothing received for %.1fs; giving up", idle)
                    reactor.stop()
                else:
                    reactor.call_later(args.idle_timeout - idle, check_idle)
            reactor.call_later(args.idle_timeout, check_idle)
        host, port = transport.get_extra_info("sockname")[:2]
        print(f"listening on {host}:{port}", flush=True)
        reactor.run()
        transport.close()
    print(counter.summary(), flush=True)
    # Exit status: 0 unless a --count was asked for and not reached.
    return 0 if args.count is None or counter.count >= args.count else 1


# -- sending ------------------------------------------------------------------

class Sender(DatagramProtocol):
    """Send *total* numbered datagrams in paced bursts, honouring pause_writing."""

    def __init__(self, reactor: Reactor, total: int, size: int, burst: int, interval: float) -> None:
        self.reactor = reactor
        self.total = total
        self.size = size
        self.burst = burst
        self.interval = interval
        self.sent = 0  # datagrams handed to sendto()
        self.paused = False
        self.pauses = 0
        self.errors = 0
        self.timer: Any = None
        self.finished = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.started = time.monotonic()
        self.send_burst()

    def datagram(self, number: int) -> bytes:
        # "00000042 " and filler up to --size bytes: the receiver can see
        # which datagram it got, and a missing number means a lost one.
        head = b"%08d " % number
        return head + b"x" * max(0, self.size - len(head))

    def send_burst(self) -> None:
        self.timer = None
        for _ in range(self.burst):
            if self.paused or self.sent == self.total:
                break
            self.sent += 1
            self.transport.sendto(self.datagram(self.sent))
        if self.sent == self.total:
            # close() sends what is still queued, then closes the socket;
            # connection_lost tells us when that is done.
            self.transport.close()
        elif not self.paused:
            self.timer = self.reactor.call_later(self.interval, self.send_burst)
        # While paused, no timer: resume_writing() restarts the bursts.

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def resume_writing(self) -> None:
        self.paused = False
        if self.timer is None and self.sent < self.total:
            self.timer = self.reactor.call_soon(self.send_burst)

    def error_received(self, exc: Exception) -> None:
        # On a connected UDP socket, "port unreachable" (nobody listening)
        # comes back as ConnectionRefusedError for an earlier datagram.
        self.errors += 1
        if self.errors == 1:
            log.warning("send error: %s", exc)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.finished = True
        self.elapsed = time.monotonic() - self.started
        self.reactor.stop()


def send(args: argparse.Namespace) -> int:
    with Reactor() as reactor, traced(reactor, args):
        sender = Sender(reactor, args.count, args.size, args.burst, args.interval)
        # remote_addr "connects" the UDP socket: sendto() needs no address,
        # and ICMP errors for our datagrams reach error_received().
        try:
            transport = reactor.open_udp(lambda: sender, remote_addr=(args.host, args.port))
        except OSError as exc:  # no such host, no route, ...
            print(f"{PROG} send: cannot send to {args.host}:{args.port}: {why(exc)}",
                  file=sys.stderr)
            return 2
        if args.sndbuf:
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf)
        for sig in (signal.SIGINT, signal.SIGTERM):
            reactor.add_signal_handler(sig, reactor.stop)
        reactor.run()
        completed = sender.finished  # False if a signal stopped us first
        dropped = transport.datagrams_dropped
        wire = transport.datagrams_sent
        transport.abort()  # if interrupted: drop what is still queued
    if not completed:
        print(f"interrupted after {sender.sent} datagrams", file=sys.stderr)
        return 1
    print(f"sent {wire}/{args.count} datagrams of {args.size} bytes in {sender.elapsed:.3f}s; "
          f"paused {sender.pauses} time(s); dropped {dropped}; errors {sender.errors}", flush=True)
    return 0 if wire == args.count and not dropped and not sender.errors else 1


# -- the command line ---------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    parser, rx, tx = cli.receive_send_parser(PROG, __doc__, "count the datagrams that arrive", "send numbered datagrams")
    rx.add_argument("--port", type=cli.port, default=9999,
                    help="port to bind; 0 picks a free one (default: %(default)s)")
    rx.add_argument("--count", type=cli.positive_int, help="exit after this many datagrams")
    rx.add_argument("--idle-timeout", type=float, default=0.0,
                    help="give up after this many seconds without a datagram (default: never)")
    rx.add_argument("--rcvbuf", type=int, default=1 << 20,
                    help="kernel receive buffer to ask for, bytes (default: %(default)s)")
    rx.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    add_trace_options(rx)
    rx.set_defaults(run=receive)

    tx.add_argument("--host", default="127.0.0.1", help="receiver address (default: %(default)s)")
    tx.add_argument("--port", type=cli.port, default=9999, help="receiver port (default: %(default)s)")
    tx.add_argument("--count", type=cli.positive_int, default=200,
                    help="datagrams to send (default: %(default)s)")
    tx.add_argument("--size", type=cli.positive_int, default=100,
                    help="bytes per datagram (default: %(default)s)")
    tx.add_argument("--burst", type=cli.positive_int, default=20,
                    help="datagrams per burst (default: %(default)s)")
    tx.add_argument("--interval", type=float, default=0.002,
                    help="seconds between bursts (default: %(default)s)")
    tx.add_argument("--sndbuf", type=int, default=0,
                    help="kernel send buffer, bytes (default: the system's)")
    add_trace_options(tx)
    tx.set_defaults(run=send)

    return cli.run_subcommand(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
