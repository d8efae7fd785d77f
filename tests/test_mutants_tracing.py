"""Tracer behaviours that mutation testing found unpinned (python -m tests.mutation): every
Trace Event and every narrated line exactly, with the tracer's clock (``time.perf_counter``)
under the test's control; the memory bound event by event; how handles, sockets, addresses
and select()'s answer are named; TLS's two kinds of bytes."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import ssl
import threading
import time
from selectors import EVENT_READ, EVENT_WRITE, SelectorKey

import pytest

from reactor import Protocol, Reactor
from reactor.testing import VirtualClock
from reactor.tracing import ChromeTracer, StderrTracer, describe_events, describe_handle

from .conftest import run_until
from .test_streams import ipv6_available


def f(*args):
    pass


class Perf:
    """The tracers' clock, moved by hand."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def perf(monkeypatch):
    clock = Perf(1000.0)
    monkeypatch.setattr(time, "perf_counter", clock)  # (the loop keeps its own reference)
    return clock


def key(fd, mask):
    """One (key, mask) pair of select()'s answer."""
    return SelectorKey(fileobj=fd, fd=fd, events=mask, data=None), mask


class Bare:
    """A transport of the user's own reporting its bytes (``observe_io`` is public): no fd."""

    def get_extra_info(self, name, default=None):
        return default


class Sink(Protocol):
    def connection_made(self, t):
        self.t = t


@pytest.fixture
def connection():
    """(reactor, client transport, its fd, its peer as "host:port") on loopback TCP."""
    with Reactor(clock=VirtualClock(10.0)) as reactor:
        listener = reactor.listen_tcp(Sink, "127.0.0.1", 0)
        connector = reactor.connect_tcp(Protocol, *listener.address)
        run_until(reactor, lambda: connector.done() and listener.connections)
        t = connector.result()
        host, port = t.get_extra_info("peername")
        yield reactor, t, t.get_extra_info("socket").fileno(), f"{host}:{port}"
        t.close()
        listener.close_connections()
        listener.close()
        run_until(reactor, lambda: not reactor.connections())


def drive(tracer, perf, reactor, t):
    """The same hook calls for both tracers, as the loop and the transports make them."""
    handle = reactor.call_soon(f, 1, "x")
    timer = reactor.call_later(2.5, f)
    perf.now = 1000.5
    tracer.before_select(1.5)
    perf.now = 1000.75
    tracer.after_select([key(7, EVENT_READ), key(9, EVENT_WRITE), key(11, EVENT_READ | EVENT_WRITE)], 0.25)
    tracer.timer_scheduled(timer)
    tracer.timer_fired(timer)
    tracer.before_callback(handle)
    perf.now = 1001.0
    tracer.after_callback(handle, 0.001)
    tracer.after_callback(handle, 0.0015)
    for events in (EVENT_READ, EVENT_WRITE, EVENT_READ | EVENT_WRITE, 4):
        tracer.fd_registered(5, events)
    tracer.fd_unregistered(5)
    tracer.connection_opened(t)
    tracer.connection_closed(t, None)
    tracer.connection_closed(t, ConnectionResetError("gone"))
    tracer.connection_opened(Bare())
    tracer.bytes_received(t, 10)
    tracer.bytes_received(t, 0)
    tracer.bytes_sent(t, 4)
    tracer.bytes_received(Bare(), 3)
    tracer.bytes_sent(Bare(), 2)
    perf.now = 1001.5
    tracer.before_select(0.0)
    handle.cancel()
    timer.cancel()


def test_chrome_trace_exactly(perf, connection, tmp_path):
    reactor, t, fd, peer = connection
    path = tmp_path / "trace.json"
    tracer = ChromeTracer(str(path))
    drive(tracer, perf, reactor, t)
    tracer.close()
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc.keys() == {"traceEvents", "displayTimeUnit", "otherData"}
    assert doc["displayTimeUnit"] == "ms"
    assert doc["otherData"] == {"producer": "reactor", "dropped_events": 0}
    pid = os.getpid()

    def ev(ts, name, ph, cat=None, args=None, **more):
        event = {"name": name, "ph": ph, "args": args if args is not None else {}, "pid": pid, "tid": 1, "ts": ts}
        if cat is not None:
            event["cat"] = cat
        if ph == "i":
            event["s"] = "t"
        return {**event, **more}

    fields = {"fd": fd, "bytes": None}
    expected = [
        {"name": "process_name", "ph": "M", "pid": pid, "tid": 1, "ts": 0, "args": {"name": f"reactor (pid {pid})"}},
        {"name": "thread_name", "ph": "M", "pid": pid, "tid": 1, "ts": 0,
         "args": {"name": f"loop ({threading.current_thread().name})"}},
        ev(500000.0, "iteration 1", "B", "loop"),
        ev(500000.0, "select", "B", "loop", {"timeout": 1.5}),
        ev(750000.0, "select", "E", None, {"ready": "fd 7 readable, fd 9 writable, fd 11 readable+writable",
                                           "waited_ms": 250.0}),
        ev(750000.0, "timer scheduled", "i", "timer", {"callback": "f()", "when": 12.5}),
        ev(750000.0, "timer fired", "i", "timer", {"callback": "f()"}),
        ev(750000.0, "f(1, 'x')", "B", "callback"),
        ev(1000000.0, "f(1, 'x')", "E", None, {"elapsed_ms": 1.0}),
        # (the second after_callback has no span left but the iteration's: it closes that)
        ev(1000000.0, "iteration 1", "E", None, {"elapsed_ms": 1.5}),
        ev(1000000.0, "fd registered", "i", "io", {"fd": 5, "events": 1}),
        ev(1000000.0, "fd registered", "i", "io", {"fd": 5, "events": 2}),
        ev(1000000.0, "fd registered", "i", "io", {"fd": 5, "events": 3}),
        ev(1000000.0, "fd registered", "i", "io", {"fd": 5, "events": 4}),
        ev(1000000.0, "fd unregistered", "i", "io", {"fd": 5}),
        ev(1000000.0, "connection opened", "i", "net", {"transport": f"fd {fd} {peer}"}),
        ev(1000000.0, "connection closed", "i", "net", {"transport": f"fd {fd} {peer}", "error": None}),
        ev(1000000.0, "connection closed", "i", "net", {"transport": f"fd {fd} {peer}",
                                                        "error": "ConnectionResetError('gone')"}),
        ev(1000000.0, "connection opened", "i", "net", {"transport": "fd ? -"}),
        ev(1000000.0, "recv", "i", "net", {**fields, "bytes": 10}),
        ev(1000000.0, "eof", "i", "net", {**fields, "bytes": 0}),
        ev(1000000.0, "send", "i", "net", {**fields, "bytes": 4}),
        ev(1000000.0, "recv", "i", "net", {"fd": None, "bytes": 3}),
        ev(1000000.0, "send", "i", "net", {"fd": None, "bytes": 2}),
        ev(1500000.0, "iteration 2", "B", "loop"),
        ev(1500000.0, "select", "B", "loop", {"timeout": 0.0}),
        ev(1500000.0, "select", "E"),  # close() ends what is open
        ev(1500000.0, "iteration 2", "E"),
    ]
    assert doc["traceEvents"] == expected


def test_chrome_tracer_drops_all_but_span_ends_at_its_bound(perf, tmp_path):
    path = tmp_path / "trace.json"
    tracer = ChromeTracer(str(path), max_events=5)  # the 2 metadata events, then 3 more
    tracer.before_select(1.0)  # B iteration, B select: 4
    tracer.after_select([], 0.5)  # E select: 5, the bound
    tracer.fd_unregistered(3)  # an instant: dropped
    tracer.fd_unregistered(4)  # dropped
    tracer.before_callback(object())  # a span that cannot open: dropped, and nothing to close later
    tracer.before_select(2.0)  # closes iteration 1 (an E is always written), then 2 spans dropped
    assert tracer.dropped == 5
    tracer.close()
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert [(e["name"], e["ph"]) for e in doc["traceEvents"]] == [
        ("process_name", "M"), ("thread_name", "M"), ("iteration 1", "B"), ("select", "B"), ("select", "E"),
        ("iteration 1", "E")]
    assert doc["traceEvents"][4]["args"] == {"ready": "nothing", "waited_ms": 500.0}
    assert doc["otherData"]["dropped_events"] == 5


def test_chrome_tracer_keeps_a_million_events_by_default(tmp_path):
    assert ChromeTracer(str(tmp_path / "trace.json")).max_events == 1_000_000


def test_chrome_tracer_writes_at_its_bound_and_not_past_it(perf, tmp_path):
    path = tmp_path / "trace.json"
    tracer = ChromeTracer(str(path), max_events=4)
    tracer.fd_registered(3, 1)  # 3 events
    tracer.before_select(1.0)  # B iteration: 4; B select: dropped
    tracer.fd_unregistered(3)  # dropped
    tracer.close()
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert [(e["name"], e["ph"]) for e in doc["traceEvents"]] == [
        ("process_name", "M"), ("thread_name", "M"), ("fd registered", "i"), ("iteration 1", "B"),
        ("iteration 1", "E")]
    assert doc["otherData"]["dropped_events"] == 2


class Flushed(io.StringIO):
    """A stream that counts flushes: the narration is for watching live, through a pipe too."""

    flushes = 0

    def flush(self):
        self.flushes += 1
        super().flush()


def test_stderr_tracer_narrates_exactly(perf, connection):
    reactor, t, fd, peer = connection
    out = Flushed()
    tracer = StderrTracer(out, clock=reactor.time)
    drive(tracer, perf, reactor, t)
    lines = out.getvalue().splitlines()
    assert lines == [
        "[  0.500000] iteration 1: select(timeout=1.5)",
        "[  0.750000]   select returned after 250.000 ms: fd 7 readable, fd 9 writable, fd 11 readable+writable",
        "[  0.750000]   timer set, due in 2.500 s: f()",
        "[  0.750000]   timer due: f()",
        "[  0.750000]   run f(1, 'x')",
        "[  1.000000]   ... took 1.500 ms",  # (1 ms is not worth a line; 1.5 ms is)
        "[  1.000000]   watch fd 5 for read",
        "[  1.000000]   watch fd 5 for write",
        "[  1.000000]   watch fd 5 for read+write",
        "[  1.000000]   watch fd 5 for 4",
        "[  1.000000]   stop watching fd 5",
        f"[  1.000000]   connection opened fd {fd} {peer}",
        f"[  1.000000]   connection closed fd {fd} {peer}",
        f"[  1.000000]   connection closed fd {fd} {peer}: ConnectionResetError('gone')",
        "[  1.000000]   connection opened fd ? -",
        f"[  1.000000]   recv 10 bytes on fd {fd}",
        f"[  1.000000]   end of file on fd {fd} (the peer closed)",
        f"[  1.000000]   sent 4 bytes on fd {fd}",
        "[  1.000000]   recv 3 bytes on fd ?",
        "[  1.000000]   sent 2 bytes on fd ?",
        "[  1.500000] iteration 2: select(timeout=0)",
    ]
    assert out.flushes == len(lines)


def test_stderr_tracer_writes_to_stderr_by_default(capsys):
    tracer = StderrTracer()
    tracer.fd_unregistered(3)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.endswith("]   stop watching fd 3\n")
    stamp = float(captured.err[1:captured.err.index("]")])
    assert 0.0 <= stamp < 60.0  # seconds since the tracer started


def test_a_tracer_on_a_reactor_gets_the_reactor_s_own_reports():
    # observe_io is public: a transport of the user's own, without an fd, is traced as "fd ?".
    out = io.StringIO()
    with Reactor() as reactor:
        reactor.add_instrument(StderrTracer(out))
        reactor.observe_io(Bare(), True, b"abc", 3)
        reactor.observe_io(Bare(), False, b"de", 2)
    assert out.getvalue().splitlines()[-2].endswith("]   recv 3 bytes on fd ?")
    assert out.getvalue().splitlines()[-1].endswith("]   sent 2 bytes on fd ?")


# -- naming handles, sockets, addresses and select()'s answer -----------------------------------

class Callable:
    """A callable object: no __qualname__."""

    def __call__(self, *args):
        pass

    def __repr__(self):
        return "<a Callable>"


class Writer:
    """Not a transport, though it answers get_extra_info (as asyncio's StreamWriter does)."""

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1)

    def drain(self):
        pass


def test_describe_events():
    assert describe_events([]) == "nothing"
    assert describe_events([key(3, EVENT_READ), key(4, 8)]) == "fd 3 readable, fd 4 8"


def test_describe_handle_names_sockets_by_fd_and_address(tmp_path):
    with Reactor() as reactor, socket.socket() as tcp, socket.socket(socket.AF_UNIX) as bound, \
            socket.socket(socket.AF_UNIX) as unbound:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        bound.bind(str(tmp_path / "s"))
        closed = socket.socket()
        closed.close()
        assert describe_handle(reactor.call_soon(f, tcp, 1)) == f"f(<socket fd={tcp.fileno()} 127.0.0.1:{port}>, 1)"
        assert describe_handle(reactor.call_soon(Callable(), tcp)) == \
            f"<a Callable>(<socket fd={tcp.fileno()} 127.0.0.1:{port}>)"
        assert describe_handle(reactor.call_soon(f, bound)) == f"f(<socket fd={bound.fileno()} {tmp_path / 's'}>)"
        assert describe_handle(reactor.call_soon(f, unbound)) == f"f(<socket fd={unbound.fileno()} ->)"
        assert describe_handle(reactor.call_soon(f, closed)) == "f(<socket closed>)"
        assert describe_handle(reactor.call_soon(f, "a", 2)) == "f('a', 2)"
        assert describe_handle(reactor.call_soon(Writer().drain)) == "Writer.drain()"
        cancelled = reactor.call_soon(f, 1)
        cancelled.cancel()
        assert describe_handle(cancelled) == "<cancelled>"


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_describe_handle_brackets_ipv6_addresses():
    with Reactor() as reactor, socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        assert describe_handle(reactor.call_soon(f, s)) == f"f(<socket fd={s.fileno()} [::1]:{port}>)"


def test_describe_handle_names_a_transport_s_connection(connection):
    reactor, t, fd, peer = connection
    handle = reactor.call_soon(t.get_write_buffer_size)
    assert describe_handle(handle) == f"StreamTransport.get_write_buffer_size() [fd {fd} {peer}]"
    handle.cancel()


trustme = pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")


def test_tracers_tell_tls_bytes_from_plaintext(tmp_path):
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    got = bytearray()

    class Echo(Protocol):
        def connection_made(self, t):
            self.t = t

        def data_received(self, data):
            self.t.write(data)

    class Client(Protocol):
        def connection_made(self, t):
            t.write(b"hi tls")

        def data_received(self, data):
            got.extend(data)

    out = io.StringIO()
    chrome = ChromeTracer(str(tmp_path / "trace.json"))
    with Reactor() as reactor:
        reactor.add_instrument(StderrTracer(out))
        reactor.add_instrument(chrome)
        listener = reactor.listen_tcp(Echo, "127.0.0.1", 0, ssl=server_ctx)
        connector = reactor.connect_tcp(Client, "127.0.0.1", listener.address[1], ssl=client_ctx,
                                        server_hostname="localhost")
        run_until(reactor, lambda: bytes(got) == b"hi tls")
        tls = connector.result()
        fd = tls.get_extra_info("socket").fileno()
        host, port = tls.get_extra_info("peername")
        handle = reactor.call_soon(tls.get_write_buffer_size)
        assert describe_handle(handle) == f"TLSTransport.get_write_buffer_size() [plaintext fd {fd} {host}:{port}]"
        handle.cancel()
        tls.close()
        run_until(reactor, lambda: not reactor.connections())
        listener.close()
    chrome.close()
    text = out.getvalue()
    assert f"]   connection opened tls fd {fd} {host}:{port}\n" in text
    assert f"]   sent 6 plaintext bytes on fd {fd}\n" in text and f"]   recv 6 plaintext bytes on fd {fd}\n" in text
    assert re.search(rf"\]   sent \d+ tls bytes on fd {fd}\n", text) and re.search(rf"\]   recv \d+ tls bytes on fd {fd}\n", text)
    events = json.loads((tmp_path / "trace.json").read_text(encoding="utf-8"))["traceEvents"]
    names = {e["name"] for e in events if e.get("cat") == "net"}
    assert {"plaintext send", "plaintext recv", "tls send", "tls recv"} <= names
    assert not {"send", "recv"} & names  # every byte of a TLS connection is one or the other
    opened = [e["args"]["transport"] for e in events if e["name"] == "connection opened"]
    assert f"tls fd {fd} {host}:{port}" in opened
