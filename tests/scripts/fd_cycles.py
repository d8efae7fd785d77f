"""Connection cycles on one reactor under a tight fd limit, for test_accept_limits.

Usage: python -m tests.scripts.fd_cycles SELECTOR_CLASS UNIX_DIR CYCLES HEADROOM

Sets up a TCP echo listener, a Unix echo listener in UNIX_DIR and a bound but
not listening TCP socket (connecting to it is refused), lowers RLIMIT_NOFILE
so only HEADROOM descriptors are free, then runs CYCLES connection cycles
that end every way a connection can end: closed by the client or by the
server, aborted by either, aborted by the client before the reply arrives,
refused, over TCP and Unix. After every cycle the set of open descriptors
must be exactly what it was before the first; at the end, with everything
closed, exactly what it was before the reactor existed. A cycle that leaks
even one descriptor fails at once (and, with the low limit, the cycles after
it would fail with EMFILE anyway). A socket object left for the garbage
collector to close counts as a leak too (its ResourceWarning is an error
here). Exit status 0 only if everything held; otherwise the reason is on
stderr.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
import warnings

from reactor import LineProtocol, Reactor

from ._fds import lower_fd_limit, open_fds

MODES = ("tcp client-close", "tcp server-close", "tcp client-abort", "tcp server-abort",
         "tcp client-abort-early", "refused", "unix client-close", "unix server-close",
         "unix server-abort")
CYCLE_DEADLINE = 5.0


class Failure(Exception):
    pass


class Server(LineProtocol):
    instances: list["Server"] = []

    def __init__(self) -> None:
        self.lost = False
        Server.instances.append(self)

    def line_received(self, line: bytes) -> None:
        self.send_line(line)
        if line.endswith(b"server-close"):
            self.transport.close()
        elif line.endswith(b"server-abort"):
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        self.lost = True


class Client(LineProtocol):
    def __init__(self, message: bytes) -> None:
        self.message = message
        self.reply = None
        self.lost = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.send_line(self.message)
        if self.message.endswith(b"client-abort-early"):
            transport.abort()

    def line_received(self, line: bytes) -> None:
        self.reply = line
        if self.message.endswith(b"client-close"):
            self.transport.close()
        elif self.message.endswith(b"client-abort"):
            self.transport.abort()

    def connection_lost(self, exc) -> None:
        self.lost = True


def run_until(reactor: Reactor, condition, what: str) -> None:
    deadline = time.monotonic() + CYCLE_DEADLINE
    while not condition():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Failure(f"timed out waiting for {what}")
        reactor.run_once(min(remaining, 0.1))


def one_cycle(reactor: Reactor, i: int, mode: str, tcp_port: int, refused_port: int,
              unix_path: str, listeners) -> None:
    message = f"cycle {i} {mode}".encode()
    client = Client(message)
    servers_before = len(Server.instances)
    if mode == "refused":
        connector = reactor.connect_tcp(lambda: client, "127.0.0.1", refused_port)
    elif mode.startswith("tcp"):
        connector = reactor.connect_tcp(lambda: client, "127.0.0.1", tcp_port)
    else:
        connector = reactor.connect_unix(lambda: client, unix_path)
    called = []
    connector.add_done_callback(called.append)
    run_until(reactor, lambda: bool(called), "the connector's done callback")
    if mode == "refused":
        if not isinstance(connector.exception, ConnectionRefusedError):
            raise Failure(f"expected ConnectionRefusedError, got {connector.exception!r}")
        if connector.transport is not None:
            raise Failure("a refused connector has a transport")
        return
    if connector.exception is not None:
        raise Failure(f"connect failed: {connector.exception!r}")
    run_until(reactor, lambda: len(Server.instances) == servers_before + 1 and Server.instances[-1].lost
              and client.lost, "both ends' connection_lost")
    if mode != "tcp client-abort-early" and client.reply != message:
        raise Failure(f"expected the echo {message!r}, got {client.reply!r}")
    run_until(reactor, lambda: not reactor.connections()
              and not any(lst.connections for lst in listeners), "every transport to be gone")


def main() -> int:
    selector_name, unix_dir, cycles, headroom = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    # An unclosed socket's finaliser warns; as an error it reaches the unraisable hook.
    warnings.simplefilter("error", ResourceWarning)
    unraisable: list[str] = []
    sys.unraisablehook = lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value} ({u.object!r})")
    fds_at_start = open_fds()
    reactor = Reactor(selector=getattr(selectors, selector_name)())
    refuser = socket.socket()
    refuser.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    unix_path = os.path.join(unix_dir, "echo.sock")
    tcp = reactor.listen_tcp(Server, "127.0.0.1", 0)
    unix = reactor.listen_unix(Server, unix_path)
    done = {mode: 0 for mode in MODES}
    try:
        baseline = open_fds()
        lower_fd_limit(headroom)
        for i in range(cycles):
            mode = MODES[i % len(MODES)]
            try:
                one_cycle(reactor, i, mode, tcp.address[1], refuser.getsockname()[1], unix_path, (tcp, unix))
                if unraisable:
                    raise Failure("; ".join(unraisable))
                now = open_fds()
                if now != baseline:
                    raise Failure(f"descriptors changed: opened {sorted(now - baseline)}, "
                                  f"closed {sorted(baseline - now)}")
            except Failure as exc:
                print(f"cycle {i} ({mode}) failed: {exc}", file=sys.stderr)
                return 1
            done[mode] += 1
    finally:
        tcp.close()
        unix.close()
        refuser.close()
        reactor.close()
    if unraisable:
        print("; ".join(unraisable), file=sys.stderr)
        return 1
    if os.path.exists(unix_path):
        print(f"{unix_path} is still there after the Unix listener closed", file=sys.stderr)
        return 1
    left = open_fds()
    if left != fds_at_start:
        print(f"after closing everything: opened {sorted(left - fds_at_start)}, "
              f"closed {sorted(fds_at_start - left)}", file=sys.stderr)
        return 1
    print(" ".join(f"{mode.replace(' ', '_')}={n}" for mode, n in done.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
