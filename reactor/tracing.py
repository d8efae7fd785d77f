"""Tracers: instruments that record the loop's life for people to look at.

``ChromeTracer(path)`` writes the Chrome Trace Event format (a JSON object
with a ``traceEvents`` list), which Perfetto (ui.perfetto.dev) and
``chrome://tracing`` open as a timeline. On the loop's one thread, each
iteration is a span (``"ph": "B"``/``"E"``) named ``iteration N``, holding a
``select`` span and one span per callback; I/O, timers and connections are
instant events (``"ph": "i"``) inside them. ``StderrTracer()`` tells the same
story as text, one line per event, to watch live::

    [  0.412113] iteration 7: select(timeout=59.9)
    [  0.900210]   select returned after 488.097 ms: fd 7 readable
    [  0.900231]   run StreamTransport._on_readable() [fd 7 127.0.0.1:40112]
    [  0.900262]   recv 7 bytes on fd 7
    [  0.900301]   sent 15 bytes on fd 8

Both are ordinary ``Instrument``s: ``reactor.add_instrument(tracer)``, and
``tracer.close()`` (the Chrome tracer writes its file then). Install them
before creating listeners to see the listening sockets registered too.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from selectors import EVENT_READ, EVENT_WRITE
from typing import Any, Optional, Sequence, TextIO

from .debug import layer_of
from .handles import describe_callback
from .instruments import Instrument

__all__ = ["ChromeTracer", "StderrTracer", "describe_handle", "describe_events"]

_READY = {EVENT_READ: "readable", EVENT_WRITE: "writable", EVENT_READ | EVENT_WRITE: "readable+writable"}


def _address(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"[{addr[0]}]:{addr[1]}" if ":" in str(addr[0]) else f"{addr[0]}:{addr[1]}"
    return str(addr) if addr else "-"


def _short(arg: Any) -> str:
    """A socket argument as its fd and address, not its 100-character repr."""
    if isinstance(arg, socket.socket):
        try:
            return f"<socket fd={arg.fileno()} {_address(arg.getsockname())}>"
        except OSError:
            return "<socket closed>"
    return repr(arg)


def describe_handle(handle: Any) -> str:
    """``callback(args)``, and for a transport's own callbacks, which connection."""
    callback = getattr(handle, "_callback", None)
    if callback is None:
        return "<cancelled>"
    args = getattr(handle, "_args", ()) or ()
    if any(isinstance(a, socket.socket) for a in args):
        name = getattr(callback, "__qualname__", None) or repr(callback)
        text = f"{name}({', '.join(_short(a) for a in args)})"
    else:
        text = describe_callback(callback, args)
    owner = getattr(callback, "__self__", None)
    if hasattr(owner, "_fileno") and hasattr(owner, "get_extra_info"):
        text += f" [{_describe_transport(owner)}]"
    return text


def describe_events(events: Sequence[tuple[Any, int]]) -> str:
    """select()'s answer in words: ``fd 7 readable, fd 9 writable``."""
    return ", ".join(f"fd {key.fd} {_READY.get(mask, mask)}" for key, mask in events) or "nothing"


def _describe_transport(transport: Any) -> str:
    layer = layer_of(transport)  # "tls " / "plaintext " on a TLS connection
    return (f"{layer}fd {getattr(transport, '_fileno', '?')} "
            f"{_address(transport.get_extra_info('peername'))}")


class ChromeTracer(Instrument):
    """Records a Trace Event JSON file; ``close()`` writes it."""

    def __init__(self, path: str, *, max_events: int = 1_000_000) -> None:
        self.path = path
        self.max_events = max_events  # a long run must not eat all memory
        self.events: list[dict[str, Any]] = []
        self._pid = os.getpid()
        self._t0 = time.perf_counter()
        self._open: list[str] = []  # names of B events awaiting their E
        self._iteration = 0
        self.dropped = 0
        # Metadata: how Perfetto labels the process and the loop's thread.
        self.events.append({"name": "process_name", "ph": "M", "pid": self._pid, "tid": 1, "ts": 0,
                            "args": {"name": f"reactor (pid {self._pid})"}})
        self.events.append({"name": "thread_name", "ph": "M", "pid": self._pid, "tid": 1, "ts": 0,
                            "args": {"name": f"loop ({threading.current_thread().name})"}})

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
        # An iteration runs from one select() to the next: close the last one.
        while self._open:
            self._end()
        self._iteration += 1
        self._begin(f"iteration {self._iteration}", "loop")
        self._begin("select", "loop", {"timeout": timeout})

    def after_select(self, events: Sequence[tuple[Any, int]], waited: float) -> None:
        self._end({"ready": describe_events(events), "waited_ms": waited * 1e3})

    def before_callback(self, handle: Any) -> None:
        self._begin(describe_handle(handle), "callback")

    def after_callback(self, handle: Any, elapsed: float) -> None:
        self._end({"elapsed_ms": elapsed * 1e3})

    def timer_scheduled(self, handle: Any) -> None:
        self._instant("timer scheduled", "timer", {"callback": describe_handle(handle),
                                                   "when": handle.when()})

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
        self._instant(f"{layer_of(transport)}recv" if n else "eof", "net",
                      {"fd": getattr(transport, "_fileno", None), "bytes": n})

    def bytes_sent(self, transport: Any, n: int) -> None:
        self._instant(f"{layer_of(transport)}send", "net", {"fd": getattr(transport, "_fileno", None), "bytes": n})

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

    def __init__(self, stream: Optional[TextIO] = None, clock: Any = time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._t0 = time.perf_counter()
        self._iteration = 0
        self._clock = clock  # the reactor's, to say when a timer is due

    def _say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self._t0:10.6f}] {text}", file=self.stream, flush=True)

    def before_select(self, timeout: float) -> None:
        self._iteration += 1
        self._say(f"iteration {self._iteration}: select(timeout={timeout:.6g})")

    def after_select(self, events: Sequence[tuple[Any, int]], waited: float) -> None:
        self._say(f"  select returned after {waited * 1e3:.3f} ms: {describe_events(events)}")

    def timer_scheduled(self, handle: Any) -> None:
        self._say(f"  timer set, due in {handle.when() - self._clock():.3f} s: {describe_handle(handle)}")

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
        fd = getattr(transport, "_fileno", "?")
        self._say(f"  recv {n} {layer_of(transport)}bytes on fd {fd}" if n
                  else f"  end of file on fd {fd} (the peer closed)")

    def bytes_sent(self, transport: Any, n: int) -> None:
        self._say(f"  sent {n} {layer_of(transport)}bytes on fd {getattr(transport, '_fileno', '?')}")
