"""Tracers: instruments that record the loop's life for people to look at.

``ChromeTracer(path)`` writes the Chrome Trace Event format (a JSON object
with a ``traceEvents`` list), which Perfetto (ui.perfetto.dev) and
``chrome://tracing`` open as a timeline: each ``select()`` wait and each
callback is a begin/end pair (``"ph": "B"``/``"E"``) on the loop's one
thread, and I/O, timers and connections are instant events (``"ph": "i"``)
between them. ``StderrTracer()`` prints the same story as text, one line per
event, to watch live.

Both are ordinary ``Instrument``s: ``reactor.add_instrument(tracer)``, and
``tracer.close()`` (the Chrome tracer writes its file then).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Optional, TextIO

from .handles import describe_callback
from .instruments import Instrument

__all__ = ["ChromeTracer", "StderrTracer", "describe_handle"]


def describe_handle(handle: Any) -> str:
    callback = getattr(handle, "_callback", None)
    if callback is None:
        return "<cancelled>"
    return describe_callback(callback, getattr(handle, "_args", ()) or ())


def _describe_transport(transport: Any) -> str:
    peer = transport.get_extra_info("peername")
    return f"fd={getattr(transport, '_fileno', '?')} peer={peer}"


class ChromeTracer(Instrument):
    """Records a Trace Event JSON file; ``close()`` writes it."""

    def __init__(self, path: str, *, max_events: int = 1_000_000) -> None:
        self.path = path
        self.max_events = max_events  # a long run must not eat all memory
        self.events: list[dict[str, Any]] = []
        self._pid = os.getpid()
        self._t0 = time.perf_counter()
        self._open: list[str] = []  # names of B events awaiting their E
        self.dropped = 0

    def _ts(self) -> float:
        return (time.perf_counter() - self._t0) * 1e6  # microseconds

    def _add(self, event: dict[str, Any]) -> None:
        if len(self.events) >= self.max_events and event["ph"] != "E":
            self.dropped += 1
            return
        event.setdefault("pid", self._pid)
        event.setdefault("tid", 1)
        event.setdefault("ts", self._ts())
        self.events.append(event)

    def _begin(self, name: str, cat: str, args: Optional[dict[str, Any]] = None) -> None:
        if len(self.events) >= self.max_events:
            self.dropped += 1
            return
        self._open.append(name)
        self._add({"name": name, "cat": cat, "ph": "B", "args": args or {}})

    def _end(self, args: Optional[dict[str, Any]] = None) -> None:
        if self._open:
            self._add({"name": self._open.pop(), "ph": "E", "args": args or {}})

    def _instant(self, name: str, cat: str, args: dict[str, Any]) -> None:
        self._add({"name": name, "cat": cat, "ph": "i", "s": "t", "args": args})

    def before_select(self, timeout: float) -> None:
        self._begin("select", "loop", {"timeout": timeout})

    def after_select(self, nevents: int, waited: float) -> None:
        self._end({"events": nevents, "waited_ms": waited * 1e3})

    def before_callback(self, handle: Any) -> None:
        self._begin(describe_handle(handle), "callback")

    def after_callback(self, handle: Any, elapsed: float) -> None:
        self._end({"elapsed_ms": elapsed * 1e3})

    def timer_fired(self, handle: Any) -> None:
        self._instant("timer fired", "timer", {"callback": describe_handle(handle)})

    def fd_registered(self, fd: int, events: int) -> None:
        self._instant("fd registered", "io", {"fd": fd, "events": events})

    def fd_unregistered(self, fd: int) -> None:
        self._instant("fd unregistered", "io", {"fd": fd})

    def connection_opened(self, transport: Any) -> None:
        self._instant("connection opened", "net", {"transport": _describe_transport(transport)})

    def connection_closed(self, transport: Any, exc: Optional[BaseException]) -> None:
        self._instant("connection closed", "net", {"transport": _describe_transport(transport),
                                                    "error": repr(exc) if exc else None})

    def bytes_received(self, transport: Any, n: int) -> None:
        self._instant("recv", "net", {"fd": getattr(transport, "_fileno", None), "bytes": n})

    def bytes_sent(self, transport: Any, n: int) -> None:
        self._instant("send", "net", {"fd": getattr(transport, "_fileno", None), "bytes": n})

    def close(self) -> None:
        """Close any open span and write the file."""
        while self._open:
            self._end()
        doc = {"traceEvents": self.events, "displayTimeUnit": "ms",
               "otherData": {"producer": "reactor", "dropped_events": self.dropped}}
        with open(self.path, "w", encoding="utf-8") as f:
            json.dump(doc, f)


class StderrTracer(Instrument):
    """Prints one line per loop event: the reactor narrating itself."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._t0 = time.perf_counter()
        self._iteration = 0

    def _say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self._t0:10.6f}] {text}", file=self.stream, flush=True)

    def before_select(self, timeout: float) -> None:
        self._iteration += 1
        self._say(f"iteration {self._iteration}: select(timeout={timeout:.6g})")

    def after_select(self, nevents: int, waited: float) -> None:
        self._say(f"  select returned {nevents} event(s) after {waited * 1e3:.3f} ms")

    def timer_fired(self, handle: Any) -> None:
        self._say(f"  timer due: {describe_handle(handle)}")

    def before_callback(self, handle: Any) -> None:
        self._say(f"  run {describe_handle(handle)}")

    def after_callback(self, handle: Any, elapsed: float) -> None:
        if elapsed > 0.001:
            self._say(f"  ... took {elapsed * 1e3:.3f} ms")

    def fd_registered(self, fd: int, events: int) -> None:
        what = {1: "read", 2: "write", 3: "read+write"}.get(events, str(events))
        self._say(f"  watch fd {fd} for {what}")

    def fd_unregistered(self, fd: int) -> None:
        self._say(f"  stop watching fd {fd}")

    def connection_opened(self, transport: Any) -> None:
        self._say(f"  connection opened {_describe_transport(transport)}")

    def connection_closed(self, transport: Any, exc: Optional[BaseException]) -> None:
        self._say(f"  connection closed {_describe_transport(transport)}" + (f": {exc!r}" if exc else ""))

    def bytes_received(self, transport: Any, n: int) -> None:
        self._say(f"  recv {n} bytes on fd {getattr(transport, '_fileno', '?')}")

    def bytes_sent(self, transport: Any, n: int) -> None:
        self._say(f"  sent {n} bytes on fd {getattr(transport, '_fileno', '?')}")
