"""What ``/reactor`` shows: one sample of the running loop per second, as JSON-ready dicts.

Theory of operation
-------------------
The monitor console (``reactor.monitor``, ``--monitor``) answers ``stats``
and ``connections`` when asked; the web monitor sends the same figures to a
browser page once a second, and the page draws them. Everything comes from
the reactor's public API:

- ``reactor.stats()``: cumulative counters (iterations, seconds in select()
  and outside it, bytes in and out, timers pending). A ``Sampler`` keeps the
  previous snapshot and turns the differences into rates: iterations per
  second, the share of the last second spent waiting in select().
- ``reactor.connections()``: every open transport, with its peer, bytes in
  and out, write buffer and whether it is reading; the protocol tells which
  door it is and, for a chat user, their nickname.
- an ``Instrument`` (``LoopWatcher``), installed only while a page is open
  (instruments are free when nobody listens, and the per-callback timing
  is not): how long callbacks ran, the slowest one of the last second, and
  the timers scheduled and fired. The reactor has no public list of its
  timers, so the watcher remembers the ones scheduled while it is
  installed (at most ``MAX_TRACKED_TIMERS``), and the page lists the
  soonest of those next to the reactor's own count of every pending timer.

One sample is computed per second, whatever the number of pages open, and
encoded once; ``web_door`` sends it to each page. Every list in a sample is
bounded (``MAX_ROWS`` connections, ``MAX_TIMERS`` timers).
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any, Optional

from reactor.instruments import Instrument, ReactorStats
from reactor.tracing import describe_handle

__all__ = ["LoopWatcher", "Sampler", "is_loopback_host", "MAX_ROWS", "MAX_TIMERS", "MAX_TRACKED_TIMERS"]

MAX_ROWS = 200  # connections listed per sample
MAX_TIMERS = 15  # timers listed per sample
MAX_TRACKED_TIMERS = 10_000  # timer handles remembered between samples


def is_loopback_host(host: str) -> bool:
    """Whether *host* (an address or a name, without a port) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LoopWatcher(Instrument):
    """Callback time and timers, between two samples."""

    def __init__(self) -> None:
        self.callback_seconds = 0.0
        self.callbacks = 0
        self.slowest = 0.0
        self.slowest_name = ""
        self.scheduled = 0
        self.fired = 0
        self.timers: set[Any] = set()  # handles scheduled while installed, not yet fired

    def after_callback(self, handle: Any, elapsed: float) -> None:
        self.callback_seconds += elapsed
        self.callbacks += 1
        if elapsed > self.slowest:
            self.slowest = elapsed
            self.slowest_name = describe_handle(handle)

    def timer_scheduled(self, handle: Any) -> None:
        self.scheduled += 1
        if len(self.timers) >= MAX_TRACKED_TIMERS:
            self.prune()
        if len(self.timers) < MAX_TRACKED_TIMERS:
            self.timers.add(handle)

    def timer_fired(self, handle: Any) -> None:
        self.fired += 1
        self.timers.discard(handle)

    def prune(self) -> None:
        self.timers = {h for h in self.timers if not h.cancelled()}

    def take(self) -> dict[str, Any]:
        """The figures since the last call, and start again."""
        out = {"callback_seconds": self.callback_seconds, "callbacks": self.callbacks,
               "slowest_ms": round(self.slowest * 1000, 3), "slowest": self.slowest_name[:120],
               "scheduled": self.scheduled, "fired": self.fired}
        self.callback_seconds, self.callbacks, self.slowest, self.slowest_name = 0.0, 0, 0.0, ""
        self.scheduled = self.fired = 0
        return out


def _peer(transport: Any) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    return str(peer or "-")


def _fd(transport: Any) -> int:
    sock = transport.get_extra_info("socket")
    try:
        return int(sock.fileno()) if sock is not None else -1
    except (OSError, ValueError):
        return -1


def describe_connection(transport: Any) -> dict[str, Any]:
    protocol = transport.get_protocol()
    tls = hasattr(protocol, "app_protocol")  # reactor.tlsstreams.TLSProtocol, under the application's
    protocol = getattr(protocol, "app_protocol", protocol)
    session = getattr(protocol, "session", None)
    kind = getattr(protocol, "kind", None) or type(protocol).__name__
    if getattr(protocol, "endpoint", None) == "monitor":
        kind = "web monitor"
    return {"fd": _fd(transport), "peer": _peer(transport), "kind": kind + (" (tls)" if tls else ""),
            "who": getattr(session, "nick", "") or "", "in": transport.bytes_received,
            "out": transport.bytes_sent, "buffered": transport.get_write_buffer_size(),
            "reading": transport.is_reading(), "closing": transport.is_closing()}


class Sampler:
    """Samples of *reactor* (and of *chat*, if given), one ``sample()`` per tick."""

    def __init__(self, reactor: Any, chat: Any = None, clock: Any = time.monotonic) -> None:
        self.reactor = reactor
        self.chat = chat
        self.clock = clock
        self.watcher = LoopWatcher()
        self._last: Optional[ReactorStats] = None
        self._last_at = 0.0

    def start(self) -> None:
        """Begin watching (the first page opened)."""
        self.watcher.take()
        self.watcher.timers.clear()
        self.reactor.add_instrument(self.watcher)
        self._last, self._last_at = self.reactor.stats(), self.clock()

    def stop(self) -> None:
        """Stop watching (the last page closed): the loop is back on its free path."""
        self.reactor.remove_instrument(self.watcher)
        self.watcher.timers.clear()

    def sample(self) -> dict[str, Any]:
        reactor, now = self.reactor, self.clock()
        st = reactor.stats()
        last = self._last or st
        interval = max(now - self._last_at, 1e-6) if self._last is not None else 1.0
        select_s = st.select_seconds - last.select_seconds
        busy_s = st.busy_seconds - last.busy_seconds
        watched = self.watcher.take()
        self._last, self._last_at = st, now

        transports = reactor.connections()
        rows = sorted((describe_connection(t) for t in transports), key=lambda row: row["fd"])

        self.watcher.prune()
        rtime = reactor.time()
        soonest = sorted(self.watcher.timers, key=lambda h: h.when())[:MAX_TIMERS]
        timers = [{"in": round(h.when() - rtime, 3), "what": describe_handle(h)[:120]} for h in soonest]

        sample: dict[str, Any] = {
            "type": "sample", "at": time.time(), "interval": round(interval, 3),
            "loop": {
                "iterations": st.iterations,
                "iterations_per_s": round((st.iterations - last.iterations) / interval, 1),
                "select_s": round(select_s, 6), "busy_s": round(busy_s, 6),
                "callback_s": round(watched["callback_seconds"], 6),
                "select_share": round(select_s / (select_s + busy_s), 4) if select_s + busy_s > 0 else 1.0,
                "callbacks_per_s": round((st.callbacks_run - last.callbacks_run) / interval, 1),
                "slowest_ms": watched["slowest_ms"], "slowest": watched["slowest"],
                "readers": st.readers, "writers": st.writers,
            },
            "io": {
                "bytes_in": st.bytes_received, "bytes_out": st.bytes_sent, "buffered": st.bytes_buffered,
                "in_per_s": round((st.bytes_received - last.bytes_received) / interval),
                "out_per_s": round((st.bytes_sent - last.bytes_sent) / interval),
                "accepts_shed": st.accepts_shed,
            },
            "timers": {"pending": st.timers_pending, "cancelled": st.timers_cancelled,
                       "scheduled_per_s": round(watched["scheduled"] / interval, 1),
                       "fired_per_s": round(watched["fired"] / interval, 1),
                       "soonest": timers, "tracked": len(self.watcher.timers)},
            "connections": rows[:MAX_ROWS], "connections_open": len(rows),
        }
        if self.chat is not None:
            sample["chat"] = {"users": len(self.chat.users),
                              "rooms": [{"name": r.name, "members": r.members} for r in self.chat.room_list()][:50]}
        return sample
