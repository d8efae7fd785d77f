"""A live monitor: a loopback-only text console into a running reactor.

curio's monitor is the model: connect with ``nc 127.0.0.1 PORT`` while your
program runs and type ``stats``, ``connections``, ``timers`` or ``help``.
The console is itself a ``LineProtocol`` on the reactor it inspects, so what
it reports is consistent (nothing moves while a command runs; there is
only one thread).

It refuses to bind anything but a loopback address: it shows peer addresses
and internal state, and has no authentication.

Limits. A console is a client like any other, and a local program gone
wrong must not be able to hurt the loop it inspects through it:

* at most ``MAX_MONITOR_CONNECTIONS`` consoles at once (one more is told so
  and closed);
* at most ``MAX_COMMANDS_PER_READ`` commands per loop iteration: a paste of
  10,000 commands is worked through a batch at a time, with reading paused
  meanwhile, so other connections get their turn between batches;
* flow control: a console that does not read its replies gets
  ``pause_writing``, and the monitor then stops reading its commands until
  the replies drain; the output buffer has a hard cap
  (``MAX_MONITOR_OUTPUT``) past which the console is dropped; and every
  reply is bounded (listings stop at ``MAX_ROWS`` rows).
"""

from __future__ import annotations

import ipaddress
from typing import Any, Optional

from .errors import FrameTooLong
from .framing import LineFramer
from .protocols import Protocol
from .tracing import describe_handle

__all__ = ["start_monitor", "MonitorProtocol", "MAX_MONITOR_CONNECTIONS", "MAX_COMMANDS_PER_READ",
           "MAX_MONITOR_OUTPUT", "MAX_ROWS"]

MAX_MONITOR_CONNECTIONS = 4  # a console is for a person or two, not a crowd
MAX_COMMANDS_PER_READ = 16  # commands run per loop iteration, per console
MAX_MONITOR_OUTPUT = 256 * 1024  # bytes of replies queued before the console is dropped
MAX_ROWS = 200  # rows in one listing: a reply is bounded whatever the loop holds
MAX_COMMAND_LENGTH = 256

HELP = """commands:
  stats         the reactor's counters (reactor.stats())
  connections   open transports: peer, state, bytes in/out, write buffer, reading?
  timers        pending timers, soonest first
  help          this text
  quit          close this console"""


class MonitorProtocol(Protocol):
    """One console: commands in, replies out, within the limits in the module docstring."""

    def __init__(self, reactor: Any, consoles: Optional[set["MonitorProtocol"]] = None) -> None:
        self.reactor = reactor
        self.transport: Any = None
        self._consoles = consoles if consoles is not None else set()
        self._framer = LineFramer(MAX_COMMAND_LENGTH)
        self._backlog = False  # lines left in the framer for a later iteration
        self._output_paused = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if len(self._consoles) >= MAX_MONITOR_CONNECTIONS:
            self.say(f"too many monitor consoles (at most {MAX_MONITOR_CONNECTIONS}); try later")
            transport.close()
            return
        self._consoles.add(self)
        transport.set_write_buffer_limits(high=64 * 1024)
        transport.set_max_write_buffer_size(MAX_MONITOR_OUTPUT)
        self.say("reactor monitor; type help")

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._consoles.discard(self)

    def say(self, text: str) -> None:
        """Send a reply of one or more lines in one write (one send, one trace event)."""
        lines = text.splitlines() or [""]
        self.transport.write(b"".join(line.encode("utf-8", errors="replace") + b"\r\n" for line in lines))

    def data_received(self, data: bytes) -> None:
        self._framer.feed(data)
        self._work()

    def _work(self) -> None:
        """Run up to MAX_COMMANDS_PER_READ buffered commands; the rest wait for a later iteration."""
        self._backlog = False
        transport = self.transport
        for _ in range(MAX_COMMANDS_PER_READ):
            if transport.is_closing() or self._output_paused:
                break
            try:
                line = self._framer.next_frame()
            except FrameTooLong:
                self.say(f"command too long (at most {MAX_COMMAND_LENGTH} bytes)")
                continue
            if line is None:
                if not self._output_paused:
                    transport.resume_reading()
                return
            self.line_received(line)
        if transport.is_closing():
            return
        # More may be waiting: stop reading until it has been worked through.
        transport.pause_reading()
        if not self._output_paused:
            self._backlog = True
            self.reactor.call_soon(self._work)

    def pause_writing(self) -> None:
        self._output_paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._output_paused = False
        if not self._backlog:
            self._backlog = True
            self.reactor.call_soon(self._work)

    def line_received(self, line: bytes) -> None:
        command = line.decode("ascii", errors="replace").strip().lower()
        handler = getattr(self, f"cmd_{command}", None) if command.isalpha() else None
        if handler is None:
            self.say(f"unknown command {command[:40]!r}; try help" if command else "")
            return
        reply = handler()
        if reply:
            self.say(reply)

    def cmd_help(self) -> str:
        return HELP

    def cmd_quit(self) -> str:
        self.say("bye")
        self.transport.close()
        return ""

    def cmd_stats(self) -> str:
        st = self.reactor.stats()
        rows = [(name, getattr(st, name)) for name in st.__dataclass_fields__]
        rows.append(("busy_ratio", round(st.busy_ratio, 4)))
        return "\n".join(f"{name:18} {value:.6f}" if isinstance(value, float) else f"{name:18} {value}"
                         for name, value in rows)

    def cmd_connections(self) -> str:
        lines = [f"{'fd':>4} {'peer':24} {'state':8} {'in':>10} {'out':>10} {'buffered':>9} reading"]
        transports = sorted(self.reactor.connections(), key=lambda t: t._fileno)
        for t in transports[:MAX_ROWS]:
            peer = t.get_extra_info("peername")
            peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "-")
            state = "closing" if t.is_closing() else "open"
            lines.append(f"{t._fileno:>4} {peer[:24]:24} {state:8} {t.bytes_received:>10} "
                         f"{t.bytes_sent:>10} {t.get_write_buffer_size():>9} "
                         f"{'yes' if t.is_reading() else 'paused'}")
        if len(transports) > MAX_ROWS:
            lines.append(f"... and {len(transports) - MAX_ROWS} more")
        lines.append(f"{len(transports)} connection(s)")
        return "\n".join(lines)

    def cmd_timers(self) -> str:
        now = self.reactor.time()
        live = sorted((h for _, _, h in self.reactor._timers._heap if not h._cancelled),
                      key=lambda h: h.when())
        lines = [f"in {h.when() - now:9.3f}s  {describe_handle(h)}" for h in live[:50]]
        if len(live) > 50:
            lines.append(f"... and {len(live) - 50} more")
        lines.append(f"{len(live)} timer(s) pending")
        return "\n".join(lines)


def start_monitor(reactor: Any, port: int = 0, host: str = "127.0.0.1") -> Any:
    """Serve the monitor console on *host*:*port* (loopback only); returns the listener."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"the monitor only listens on loopback addresses, not {host!r}")
    consoles: set[MonitorProtocol] = set()
    return reactor.listen_tcp(lambda: MonitorProtocol(reactor, consoles), host, port)
