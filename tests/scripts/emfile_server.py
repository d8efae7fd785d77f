"""An echo server that runs itself out of file descriptors, for test_accept_limits.

Usage: python -m tests.scripts.emfile_server SELECTOR_CLASS HEADROOM

Listens on 127.0.0.1 (a free port), lowers its own RLIMIT_NOFILE so that only
HEADROOM descriptors are left, and prints ``port=P free=F`` on stdout (F: the
descriptors actually left). On every connection it answers lines:

- ``stats``: ``stats iterations=I shed=S stats_shed=S connections=C`` (I: selector.select()
  calls so far; S: ``listener.accepts_shed``, and ``reactor.stats().accepts_shed``; C: open server connections);
- ``window``: answers ``window started`` at once, counts the loop's
  iterations for ``WINDOW`` seconds, then answers ``window iterations=I
  shed=S connections=C`` (a measurement window: a loop spinning on a
  readable listener does tens of thousands of iterations in it);
- ``quit``: closes everything and exits 0;
- anything else: echoed back as ``echo LINE``.

``ACCEPT_RETRY_DELAY`` is raised to 60 s, so an unwarranted backoff (the
listener stops watching its socket although the reserved-fd trick would
work) shows as peers left hanging, not as a short pause a test cannot see.
"""

from __future__ import annotations

import selectors
import sys
import warnings

from reactor import LineProtocol, Reactor, streams

from ._fds import lower_fd_limit, open_fds

WINDOW = 0.3


def counting_selector(base: type[selectors.BaseSelector]) -> selectors.BaseSelector:
    class Counting(base):  # type: ignore[misc, valid-type]
        iterations = 0

        def select(self, timeout=None):
            self.iterations += 1
            return super().select(timeout)

    return Counting()


def main() -> int:
    selector_name, headroom = sys.argv[1], int(sys.argv[2])
    streams.ACCEPT_RETRY_DELAY = 60.0
    warnings.simplefilter("error", ResourceWarning)  # an unclosed socket: reported on stderr
    selector = counting_selector(getattr(selectors, selector_name))
    reactor = Reactor(selector=selector)

    def stats(kind: str, iterations: int) -> bytes:
        return (f"{kind} iterations={iterations} shed={listener.accepts_shed} "
                f"stats_shed={reactor.stats().accepts_shed} "
                f"connections={len(listener.connections)}").encode()

    class Server(LineProtocol):
        def line_received(self, line: bytes) -> None:
            if line == b"stats":
                self.send_line(stats("stats", selector.iterations))
            elif line == b"window":
                self.send_line(b"window started")
                start = selector.iterations
                reactor.call_later(WINDOW, self._window_done, start)
            elif line == b"quit":
                reactor.stop()
            else:
                self.send_line(b"echo " + line)

        def _window_done(self, start: int) -> None:
            if self.transport is not None and not self.transport.is_closing():
                self.send_line(stats("window", selector.iterations - start))

    listener = reactor.listen_tcp(Server, "127.0.0.1", 0)
    try:
        limit = lower_fd_limit(headroom)
        free = limit - len(open_fds())
        print(f"port={listener.address[1]} free={free}", flush=True)
        reactor.run()
    finally:
        listener.close()
        reactor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
