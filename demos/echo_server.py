"""The echo server: TCP and UDP echo on the same port number, with backpressure.

Run ``python -m demos.echo_server --port 7007`` and try it with
``nc 127.0.0.1 7007`` (TCP) or ``nc -u 127.0.0.1 7007`` (UDP). TCP and UDP
port numbers are separate namespaces, so one number can serve both.

Unlike the greeting server, which drives raw sockets, this demo is written
the way most reactor programs are: a *protocol* class per connection whose
methods the transport calls (``data_received``, ``eof_received``, ...),
and a *transport* that does the socket work (``write``, ``close``, ...).

Backpressure, the one subtle part of an echo server. A client that sends a
lot but reads slowly (or not at all) would make us queue its echoes in our
memory without limit. So the TCP protocol listens to its transport's flow
control: when the write buffer goes over the high-water mark, the transport
calls ``pause_writing()`` and we stop *reading* (``pause_reading()``); the
kernel's receive buffer then fills, TCP's window closes, and the client's
sends block. When the buffer drains, ``resume_writing()`` and we read again.
Memory per connection stays around the high-water mark whatever the client
does. The UDP side does the same with its datagram queue; UDP has no window,
so a client that floods us loses datagrams instead (UDP is allowed to).

``--workers N`` serves the same port from N processes (demos/workers.py).

Exit status: 0 when stopped by SIGINT or SIGTERM, 2 if it cannot listen.
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import Any, Optional

from demos.tracing_options import add_trace_options, traced
from demos import cli, workers
from reactor import DatagramProtocol, Protocol, Reactor

PROG = "python -m demos.echo_server"  # how users run it, for --help and errors

log = logging.getLogger("demos.echo_server")


class TcpEcho(Protocol):
    """One TCP connection: send back every byte, in order."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        log.debug("tcp %s connected", self.peer)

    def data_received(self, data: bytes) -> None:
        # write() never blocks: what the kernel does not take at once is
        # buffered by the transport, and flow control tells us when that
        # buffer gets too big (pause_writing below).
        self.transport.write(data)

    def pause_writing(self) -> None:
        # Our write buffer is over the high-water mark: the client is not
        # reading its echoes fast enough. Stop reading its requests until
        # the buffer drains; TCP then slows the client down for us.
        log.debug("tcp %s: write buffer full, pausing reading", self.peer)
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        log.debug("tcp %s: write buffer drained, resuming reading", self.peer)
        self.transport.resume_reading()

    def eof_received(self) -> Optional[bool]:
        # The client half-closed: it will send nothing more. Returning a
        # false value lets the transport close(), which first flushes the
        # echoes still buffered, then hangs up.
        log.debug("tcp %s: end of input", self.peer)
        return None

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        log.debug("tcp %s closed (%s)", self.peer, exc or "cleanly")


class UdpEcho(DatagramProtocol):
    """The UDP endpoint: send each datagram back to whoever sent it."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        # A datagram too large for our buffer, an ICMP error...: it concerns
        # one datagram, and the endpoint carries on.
        log.info("udp: %s", exc)

    # The same backpressure as TCP: while our send queue is over its
    # high-water mark, stop reading. Datagrams that arrive meanwhile wait in
    # the kernel (and are dropped by it when that buffer is full).
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


class UdpBindError(OSError):
    """TCP could listen, but UDP could not bind the same port number."""

    what = " for udp"
    hint = " (--no-udp serves tcp only)"


def start(reactor: Reactor, host: str, port: int, udp: bool, tls: Any = None,
          reuse_port: bool = False) -> tuple[Any, Any]:
    """Listen on TCP, then open UDP on the same port number.

    With ``port=0`` the kernel picks a free TCP port, which may be taken
    for UDP by another program: then we try again with another one.
    Raises ``OSError``, or ``UdpBindError`` if only the UDP side failed.
    *reuse_port*: a worker's sockets (SO_REUSEPORT, see demos/workers.py).
    """
    attempts = 10 if port == 0 else 1
    for attempt in range(attempts):
        listener = reactor.listen_tcp(TcpEcho, host, port, ssl=tls, reuse_port=reuse_port)
        if not udp:
            return listener, None
        tcp_port = listener.address[1]
        try:
            endpoint = reactor.open_udp(UdpEcho, local_addr=(host, tcp_port), reuse_port=reuse_port)
        except OSError as exc:
            listener.close()
            if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                raise UdpBindError(exc.errno, exc.strerror) from None
            continue
        return listener, endpoint
    raise AssertionError("unreachable")


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=cli.port, default=7007,
                        help="TCP and UDP port; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--no-udp", action="store_true", help="serve TCP only")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    cli.add_tls_server_options(parser)
    add_trace_options(parser)
    workers.add_workers_option(parser)
    args = parser.parse_args(argv)
    tls, problem = cli.server_tls_context(args)
    problem = problem or workers.check_workers(args)
    if problem:
        parser.error(problem)
    cli.setup_logging(args.verbose)
    if args.workers is not None and not workers.is_worker():
        return workers.supervise(PROG, "demos.echo_server", sys.argv[1:] if argv is None else argv,
                                 [workers.Endpoint("--port", args.host, args.port, udp=not args.no_udp)],
                                 args.workers)

    with Reactor() as reactor, traced(reactor, args):
        started = cli.listen_or_explain(PROG, args.host, args.port,
                                        lambda: start(reactor, args.host, args.port, udp=not args.no_udp, tls=tls,
                                                      reuse_port=workers.is_worker()))
        if started is None:
            return 2
        listener, endpoint = started
        log.info("echoing %s", "tcp only" if endpoint is None else "tcp and udp")
        workers.watch_lifeline(reactor, reactor.stop)
        cli.serve(reactor, listener.address)
        listener.close()
        # Leaving the with-block closes the reactor, which closes every
        # connection still open and the UDP endpoint.
    return 0


if __name__ == "__main__":
    sys.exit(main())
