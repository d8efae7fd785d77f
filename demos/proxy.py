"""The TCP proxy: forward every connection to a target, with backpressure both ways.

Run ``python -m demos.proxy --listen-port 8080 --target-host 127.0.0.1
--target-port 7007`` (for instance in front of ``demos.echo_server``), then
``nc 127.0.0.1 8080``: what you type goes to the target and its replies
come back, through the proxy.

For each client it accepts, the proxy opens one connection to the target
and joins the two with a pair of ``Relay`` protocols, one per socket, each
knowing its ``peer``. The interesting parts are the ones a naive
``peer.write(data)`` loop gets wrong:

**Backpressure.** If the target reads slowly, bytes from a fast client pile
up in the target-side transport's write buffer. When that buffer passes its
high-water mark the transport calls ``pause_writing()`` on the target-side
protocol, which *pauses reading on the client side*; the client's bytes then
wait in the kernel, TCP's window closes, and the client's sends block. On
``resume_writing()`` the client side reads again. The same happens in the
other direction. Memory per connection pair stays near two high-water marks
however much is transferred and whichever side is slow.

**Connecting.** The target connection takes a round trip or more; until it
is up, the client side does not read at all, so whatever the client sends
meanwhile waits in the kernel (bounded by the socket's receive buffer)
instead of piling up in ours. If connecting fails, the client is hung up on
and the failure logged.

**Half-close.** End of input on one side (``eof_received``) becomes
``write_eof()`` on the other, sent after the bytes still buffered, and the
other direction keeps flowing: ``printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc``
style clients send, half-close, then read the whole reply. Once both
directions have ended, both sockets are closed.

**Closing.** When one side's connection is lost (closed, reset), the other
is ``close()``d, which first flushes what is still buffered for it.

Exit status: 0 when stopped by SIGINT or SIGTERM, 2 if it cannot listen.
"""

from __future__ import annotations

import itertools
import logging
import sys
from typing import Any, Optional

from demos.tracing_options import add_trace_options, traced
from demos import cli
from reactor import Connector, Protocol, Reactor

PROG = "python -m demos.proxy"  # how users run it, for --help and errors

log = logging.getLogger("demos.proxy")

# A hard cap on each transport's write buffer. A relay that honours
# pause_writing never gets near it (one high-water mark plus one read of at
# most 256 KiB); it is a safety net against a bug here, not flow control.
MAX_WRITE_BUFFER = 4 * 1024 * 1024

_ids = itertools.count(1)


class Relay(Protocol):
    """One side of a proxied connection: bytes read here are written to ``peer``."""

    def __init__(self, name: str, number: int) -> None:
        self.name = name  # "client" or "target", for the logs
        self.number = number  # the pair's number, for the logs
        self.transport: Any = None
        self.peer: Optional["Relay"] = None
        self.got_eof = False  # this side will send nothing more

    def __repr__(self) -> str:
        return f"#{self.number} {self.name}"

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.set_max_write_buffer_size(MAX_WRITE_BUFFER)

    # -- bytes, and flow control ----------------------------------------------

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.peer.transport is not None
        self.peer.transport.write(data)

    def pause_writing(self) -> None:
        # *Our* write buffer is full: whoever fills it must stop. That is
        # our peer, and its bytes come from its transport's reads.
        log.debug("%r: write buffer over the high-water mark; pausing %r", self, self.peer)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        log.debug("%r: write buffer drained; resuming %r", self, self.peer)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    # -- ending -----------------------------------------------------------------

    def eof_received(self) -> Optional[bool]:
        # This side half-closed. Pass the half-close on (write_eof() waits
        # for the peer's buffer to drain), and keep our own socket open:
        # the other direction may still have bytes to deliver to us.
        self.got_eof = True
        peer = self.peer
        log.debug("%r: end of input; half-closing %r", self, peer)
        if peer is None or peer.transport is None:
            return None  # no peer (yet): nothing to keep open for
        peer.transport.write_eof()
        if peer.got_eof:
            # Both directions are finished: close both (each flushes first).
            peer.transport.close()
            return None  # and the transport closes this side
        return True

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        log.debug("%r: connection lost (%s)", self, exc or "closed")
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.close()  # flushes what we sent it, then closes


class ClientRelay(Relay):
    """The accepted side: it starts the connection to the target."""

    def __init__(self, reactor: Reactor, target: tuple[str, int], timeout: float,
                 target_tls: Any = None) -> None:
        super().__init__("client", next(_ids))
        self.reactor = reactor
        self.target = target
        self.timeout = timeout
        self.target_tls = target_tls  # an ssl.SSLContext: connect to the target over TLS
        self.connector: Optional[Connector] = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # Read nothing until the target is there to take it: the client's
        # first bytes wait in the kernel, not in our memory.
        transport.pause_reading()
        log.info("%r: %s connected; connecting to %s:%s", self,
                 _fmt(transport.get_extra_info("peername")), *self.target)

        def make_target_side() -> Relay:
            # The connector calls this once the TCP handshake is done; the
            # new protocol's connection_made runs before our done callback.
            target_side = Relay("target", self.number)
            target_side.peer = self
            self.peer = target_side
            return target_side

        self.connector = self.reactor.connect_tcp(make_target_side, *self.target,
                                                  timeout=self.timeout, ssl=self.target_tls)
        self.connector.add_done_callback(self.target_connected)

    def target_connected(self, connector: Connector) -> None:
        if connector.cancelled():
            return  # we cancelled it: the client left first
        if connector.exception is not None:
            log.warning("%r: cannot connect to %s:%s: %s; closing the client", self,
                        *self.target, connector.exception)
            self.transport.close()
            return
        if self.transport.is_closing():
            # The client went away while we were connecting.
            connector.result().close()
            return
        log.debug("%r: connected to the target; relaying", self)
        self.transport.resume_reading()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.connector is not None and not self.connector.done():
            self.connector.cancel()
        super().connection_lost(exc)


def _fmt(address: Any) -> str:
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)


def main(argv: Optional[list[str]] = None) -> int:
    parser = cli.OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--listen-host", default="127.0.0.1",
                        help="address to accept clients on (default: %(default)s)")
    parser.add_argument("--listen-port", "--port", type=cli.port, default=8080, dest="listen_port",
                        help="port to accept clients on; 0 picks a free one (default: %(default)s)")
    parser.add_argument("--target-host", default="127.0.0.1",
                        help="where to forward connections (default: %(default)s)")
    parser.add_argument("--target-port", type=cli.port, required=True, help="the target's port")
    parser.add_argument("--connect-timeout", type=float, default=10.0,
                        help="give up connecting to the target after this many seconds "
                             "(default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    cli.add_tls_server_options(parser)  # accept clients over TLS (terminate it here)
    cli.add_tls_client_options(parser, "--target-tls")  # reach the target over TLS
    add_trace_options(parser)
    args = parser.parse_args(argv)
    server_tls, problem = cli.server_tls_context(args)
    target_tls, problem = (None, problem) if problem else cli.client_tls_context(args)
    if problem:
        parser.error(problem)
    cli.setup_logging(args.verbose)

    target = (args.target_host, args.target_port)
    with Reactor() as reactor, traced(reactor, args):
        listener = cli.listen_or_explain(PROG, args.listen_host, args.listen_port, lambda: reactor.listen_tcp(
            lambda: ClientRelay(reactor, target, args.connect_timeout, target_tls),
            args.listen_host, args.listen_port, ssl=server_tls))
        if listener is None:
            return 2
        log.info("forwarding to %s:%s", *target)
        cli.serve(reactor, listener.address)
        listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
