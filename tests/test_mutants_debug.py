"""Debug-mode behaviours that mutation testing found unpinned (python -m tests.mutation):
what turns debug mode and the traffic log on, the exact wording of the slow-callback
warning and of the traffic log's lines, and how TLS's two kinds of bytes are told apart."""

from __future__ import annotations

import logging
import re
import ssl

import pytest

from reactor import Protocol, Reactor
from reactor.debug import SlowCallbackWarner, debug_setting

from .conftest import run_until


def f():
    pass


class Fake:
    """A transport of the user's own (``observe_io`` is public): no ``layer``, no ``get_protocol``."""

    def __repr__(self):
        return "<Fake>"


def traffic(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "reactor.traffic"]


def warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "reactor" and r.levelno == logging.WARNING]


# -- what turns debug mode on ------------------------------------------------------------------

def test_debug_is_off_when_reactor_debug_is_unset(monkeypatch):
    monkeypatch.delenv("REACTOR_DEBUG", raising=False)
    assert debug_setting(None, {}) == (False, False)
    with Reactor() as reactor:
        assert not reactor.get_debug() and not reactor.watch_io


def test_debug_true_does_not_log_traffic(monkeypatch, caplog):
    monkeypatch.delenv("REACTOR_DEBUG", raising=False)
    assert debug_setting(True, {}) == (True, False)
    assert debug_setting(None, {"REACTOR_DEBUG": " Traffic "}) == (True, True)
    with Reactor(debug=True) as reactor, caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
        assert reactor.get_debug()
        assert not reactor.watch_io  # transports do not even report their reads and sends
        reactor.observe_io(Fake(), True, b"abc", 3)
    assert traffic(caplog) == []


# -- the traffic log's lines ---------------------------------------------------------------------

HIGH = b"\xff\x80"  # bytes above 127: shown as they are, whatever the buffer's format


def test_traffic_lines_exactly(caplog):
    with Reactor(debug="traffic") as reactor, caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
        reactor.observe_io(Fake(), True, b"abc", 3)
        reactor.observe_io(Fake(), False, memoryview(b"xyz"), 3)
        reactor.observe_io(Fake(), True, b"", 0)
        reactor.observe_io(Fake(), False, b"s" * 64, 64)  # 64 bytes: all shown
        reactor.observe_io(Fake(), True, b"r" * 65, 65)  # 65: the first 64, then "..."
        reactor.observe_io(Fake(), True, bytearray(HIGH * 50), 100)
    assert traffic(caplog) == [
        "<Fake> received 3 bytes b'abc'",
        "<Fake> sent 3 bytes b'xyz'",
        "<Fake> received 0 bytes (EOF) b''",
        f"<Fake> sent 64 bytes {b's' * 64!r}",
        f"<Fake> received 65 bytes {b'r' * 64!r}...",
        f"<Fake> received 100 bytes {HIGH * 32!r}...",
    ]


def test_traffic_over_a_real_connection_is_truncated_at_64_bytes(caplog):
    got = bytearray()

    class Sink(Protocol):
        def data_received(self, data):
            got.extend(data)

    with Reactor(debug="traffic") as traced, caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
        listener = traced.listen_tcp(Sink, "127.0.0.1", 0)
        connector = traced.connect_tcp(Protocol, *listener.address)
        run_until(traced, connector.done)
        client = connector.result()
        client.write(b"a" * 64)
        client.write(b"b" * 65)
        run_until(traced, lambda: len(got) == 129)
        client.close()
        run_until(traced, lambda: not traced.connections())
        listener.close()
    sent = [m for m in traffic(caplog) if " sent " in m]
    assert sent[0].endswith(f" sent 64 bytes {b'a' * 64!r}")
    assert sent[1].endswith(f" sent 65 bytes {b'b' * 64!r}...")
    assert all(" tls " not in m and "plaintext" not in m for m in traffic(caplog))  # plain TCP: no layer


trustme = pytest.importorskip("trustme", reason="trustme is in the test extra: pip install -e '.[test]'")


def test_tls_bytes_and_plaintext_are_told_apart_in_the_traffic_log(caplog):
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

    with Reactor(debug="traffic") as reactor, caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
        listener = reactor.listen_tcp(Echo, "127.0.0.1", 0, ssl=server_ctx)
        connector = reactor.connect_tcp(Client, "127.0.0.1", listener.address[1], ssl=client_ctx,
                                        server_hostname="localhost")
        run_until(reactor, lambda: bytes(got) == b"hi tls")
        connector.result().close()
        run_until(reactor, lambda: not reactor.connections())
        listener.close()
    lines = traffic(caplog)
    # The TLS transport's bytes are plaintext; the stream transport's below it are TLS records.
    assert sum(bool(re.match(r"<TLSTransport .*> received 6 plaintext bytes b'hi tls'$", m)) for m in lines) == 2
    assert sum(bool(re.match(r"<TLSTransport .*> sent 6 plaintext bytes b'hi tls'$", m)) for m in lines) == 2
    records = [m for m in lines if m.startswith("<StreamTransport")]
    assert records and all(re.search(r" (sent|received) \d+ tls bytes ", m) for m in records)
    assert all(m.startswith("<StreamTransport") for m in lines if " tls bytes " in m)


# -- the slow-callback warning -----------------------------------------------------------------------

WHERE_LINE = re.compile(r'  File "[^"]+", line \d+, in \w+$|    \S.*$')


def test_the_slow_callback_warning_exactly(caplog):
    errors = []
    with Reactor(debug=True) as reactor:
        reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
        reactor.slow_callback_duration = 0.0  # every callback is slow: no need for a slow one
        reactor.call_soon(f)
        reactor.call_soon(f)
        with caplog.at_level(logging.WARNING, logger="reactor"):
            reactor.run_once(0)
    assert errors == []  # the warner did not raise (and was not removed): both are reported
    slow = warnings(caplog)
    assert len(slow) == 2
    for message in slow:
        head, where = message.split("\n", 1)
        assert re.fullmatch(r"slow callback: <Handle f\(\)> took \d+\.\d{3} s \(threshold 0\.000 s\); "
                            r"scheduled at:", head), head
        # The caller's four innermost frames, as a traceback shows them, and nothing after.
        lines = where.split("\n")
        assert all(WHERE_LINE.match(line) for line in lines), where
        assert sum(line.startswith("  File ") for line in lines) == 4
        at = [i for i, line in enumerate(lines) if line.endswith(", in test_the_slow_callback_warning_exactly")]
        assert len(at) == 1 and lines[at[0] + 1] == "    reactor.call_soon(f)"


def test_a_handle_made_before_debug_mode_has_an_unknown_origin(caplog):
    errors = []
    with Reactor(debug=False) as reactor:
        reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
        reactor.call_soon(f)
        reactor.set_debug(True)
        reactor.slow_callback_duration = 0.0
        with caplog.at_level(logging.WARNING, logger="reactor"):
            reactor.run_once(0)
    assert errors == []
    [message] = warnings(caplog)
    assert message.startswith("slow callback: <Handle f()> took ")
    assert message.endswith("s); scheduled at:\n  (unknown)")


def test_a_callback_as_long_as_the_threshold_is_slow(caplog):
    # asyncio's rule: a callback that takes slow_callback_duration or more is reported.
    with Reactor(debug=True) as reactor, caplog.at_level(logging.WARNING, logger="reactor"):
        reactor.slow_callback_duration = 0.25
        warner = SlowCallbackWarner(reactor)
        handle = reactor.call_soon(f)
        warner.after_callback(handle, 0.2499)
        assert warnings(caplog) == []
        warner.after_callback(handle, 0.25)
        [message] = warnings(caplog)
    assert message.startswith("slow callback: <Handle f()> took 0.250 s (threshold 0.250 s); scheduled at:\n  File ")
