"""A live monitor: a loopback-only text console into a running reactor.

curio's monitor is the model: connect with ``nc 127.0.0.1 PORT`` while your
program runs and type ``stats``, ``connections``, ``timers`` or ``help``.
The console is itself a ``LineProtocol`` on the reactor it inspects, so what
it reports is consistent (nothing moves while a command runs; there is
only one thread).

It refuses to bind anything but a loopback address: it shows peer addresses
and internal state, and has no authentication.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .protocols import LineProtocol
from .tracing import describe_handle

__all__ = ["start_monitor", "MonitorProtocol"]

HELP = """commands:
  stats         the reactor's counters (reactor.stats())
  connections   open transports: peer, state, bytes in/out, write buffer, reading?
  timers        pending timers, soonest first
  help          this text
  quit          close this console"""


class MonitorProtocol(LineProtocol):
    max_line_length = 256

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.say("reactor monitor; type help")

    def say(self, text: str) -> None:
        """Send a reply of one or more lines in one write (one send, one trace event)."""
        lines = text.splitlines() or [""]
        self.transport.write(b"".join(line.encode("utf-8", errors="replace") + b"\r\n" for line in lines))

    def line_received(self, line: bytes) -> None:
        command = line.decode("ascii", errors="replace").strip().lower()
        handler = getattr(self, f"cmd_{command}", None) if command.isalpha() else None
        if handler is None:
            self.say(f"unknown command {command!r}; try help" if command else "")
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
        for t in sorted(self.reactor.connections(), key=lambda t: t._fileno):
            peer = t.get_extra_info("peername")
            peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "-")
            state = "closing" if t.is_closing() else "open"
            lines.append(f"{t._fileno:>4} {peer[:24]:24} {state:8} {t.bytes_received:>10} "
                         f"{t.bytes_sent:>10} {t.get_write_buffer_size():>9} "
                         f"{'yes' if t.is_reading() else 'paused'}")
        lines.append(f"{len(lines) - 1} connection(s)")
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
    return reactor.listen_tcp(lambda: MonitorProtocol(reactor), host, port)
