"""Tracers: valid Trace Event JSON with balanced spans, and a readable live trace."""

from __future__ import annotations

import io
import json

from reactor import Protocol
from reactor.tracing import ChromeTracer, StderrTracer

from .conftest import run_until


class Echo(Protocol):
    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        self.t.write(data)
        self.t.close()


def scenario(reactor):
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0)
    got = []

    class Client(Protocol):
        def connection_made(self, t):
            t.write(b"ping")

        def data_received(self, data):
            got.append(data)

    reactor.connect_tcp(Client, *listener.address)
    reactor.call_later(0.0, lambda: None)
    run_until(reactor, lambda: got and not reactor.connections())
    listener.close()


def test_chrome_trace_is_valid_and_balanced(reactor, tmp_path):
    path = tmp_path / "trace.json"
    tracer = ChromeTracer(str(path))
    reactor.add_instrument(tracer)
    scenario(reactor)
    reactor.remove_instrument(tracer)
    tracer.close()
    doc = json.loads(path.read_text())
    events = doc["traceEvents"]
    assert events and all({"name", "ph", "ts", "pid", "tid"} <= e.keys() for e in events)
    stack = []
    for e in events:  # B/E properly nested, E closes the B with the same name
        if e["ph"] == "B":
            stack.append(e["name"])
        elif e["ph"] == "E":
            assert stack and stack.pop() == e["name"]
    assert stack == []
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    names = {e["name"] for e in events}
    assert {"select", "recv", "eof", "send", "connection opened", "connection closed",
            "timer scheduled", "timer fired"} <= names
    assert any("_on_readable" in e["name"] for e in events if e["ph"] == "B")
    sent = sum(e["args"]["bytes"] for e in events if e["name"] == "send")
    assert sent == 8  # "ping" each way
    # Perfetto's labels, then iterations numbered 1, 2, ..., each holding one select.
    assert [e["name"] for e in events[:2]] == ["process_name", "thread_name"]
    iterations = [e["name"] for e in events if e["ph"] == "B" and e["name"].startswith("iteration ")]
    assert iterations == [f"iteration {i}" for i in range(1, len(iterations) + 1)]
    assert len(iterations) == sum(e["ph"] == "B" and e["name"] == "select" for e in events)
    depth, seen = 0, []
    for e in events:  # every callback span sits inside an iteration
        if e["ph"] == "B":
            if e["cat"] == "callback":
                seen.append(depth)
            depth += 1
        elif e["ph"] == "E":
            depth -= 1
    assert seen and min(seen) == 1
    ready = [e["args"]["ready"] for e in events if e["ph"] == "E" and e["name"] == "select"]
    assert any("readable" in r for r in ready)


def test_chrome_tracer_bounds_its_memory(reactor, tmp_path):
    tracer = ChromeTracer(str(tmp_path / "t.json"), max_events=50)
    reactor.add_instrument(tracer)
    for _ in range(100):
        reactor.call_soon(lambda: None)
        reactor.run_once(0)
    tracer.close()
    doc = json.loads((tmp_path / "t.json").read_text())
    assert len(doc["traceEvents"]) <= 52 and doc["otherData"]["dropped_events"] > 0


def test_stderr_tracer_narrates(reactor):
    out = io.StringIO()
    reactor.add_instrument(StderrTracer(out))
    scenario(reactor)
    text = out.getvalue()
    assert "select(timeout=" in text and "recv 4 bytes" in text and "sent 4 bytes" in text
    assert "connection opened" in text and "run StreamTransport._on_readable() [fd " in text
    assert "readable" in text and "end of file on fd" in text and "timer set, due in" in text
    assert "watch fd" in text and "Listener._on_acceptable(<socket fd=" in text
