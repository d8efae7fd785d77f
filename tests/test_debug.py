"""Debug mode: slow callbacks named with where they were scheduled, unclosed transports, traffic."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from reactor import BufferedProtocol, DatagramProtocol, Protocol, Reactor

from .conftest import run_until


def schedule_the_slow_one(reactor):
    reactor.call_soon(time.sleep, 0.12)  # deliberately slow: the thing to report


def test_slow_callbacks_are_named_with_their_origin(caplog):
    with Reactor(debug=True) as reactor:
        reactor.slow_callback_duration = 0.05
        schedule_the_slow_one(reactor)
        reactor.call_soon(lambda: None)  # fast: not reported
        with caplog.at_level(logging.WARNING, logger="reactor"):
            reactor.run_once(0)
    slow = [r.getMessage() for r in caplog.records if "slow callback" in r.getMessage()]
    assert len(slow) == 1
    assert "sleep(0.12)" in slow[0] and "schedule_the_slow_one" in slow[0]


def test_debug_from_the_environment(monkeypatch):
    monkeypatch.setenv("REACTOR_DEBUG", "1")
    with Reactor() as reactor:
        assert reactor.get_debug()
        reactor.set_debug(False)
        assert reactor._instruments is None
    for off in ("0", "off", "no", "false", ""):
        monkeypatch.setenv("REACTOR_DEBUG", off)
        with Reactor() as reactor:
            assert not reactor.get_debug() and reactor._instruments is None and not reactor._log_traffic
    monkeypatch.setenv("REACTOR_DEBUG", "traffic")
    with Reactor() as reactor:
        assert reactor.get_debug() and reactor._log_traffic


def test_no_warning_outside_debug_mode(caplog):
    with Reactor(debug=False) as reactor:
        reactor.slow_callback_duration = 0.0
        reactor.call_soon(lambda: None)
        with caplog.at_level(logging.WARNING, logger="reactor"):
            reactor.run_once(0)
    assert not caplog.records


class Echo(Protocol):
    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        self.t.write(data)


def test_unclosed_transports_are_reported_at_close_and_traffic_is_logged(caplog):
    reactor = Reactor(debug="traffic")
    got = []

    class Client(Protocol):
        def connection_made(self, t):
            t.write(b"hello traffic")

        def data_received(self, data):
            got.append(data)

    try:
        listener = reactor.listen_tcp(Echo, "127.0.0.1", 0)
        with caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
            reactor.connect_tcp(Client, *listener.address)
            run_until(reactor, lambda: got)
        assert any("hello traffic" in r.getMessage() and "received" in r.getMessage()
                   for r in caplog.records if r.name == "reactor.traffic")
    finally:
        with pytest.warns(ResourceWarning, match="unclosed transport"), \
                caplog.at_level(logging.WARNING, logger="reactor"):
            reactor.close()
    assert reactor.connections() == []
    # Also logged: Python hides ResourceWarning unless asked.
    assert any("unclosed transport" in r.getMessage() for r in caplog.records if r.name == "reactor")


def test_a_slow_protocol_is_named_and_threadsafe_callbacks_have_an_origin(caplog):
    class Slow(Protocol):
        def data_received(self, data):
            time.sleep(0.06)

    def from_another_thread(reactor):
        reactor.call_soon_threadsafe(time.sleep, 0.06)

    with Reactor(debug=True) as reactor:
        reactor.slow_callback_duration = 0.05
        listener = reactor.listen_tcp(Slow, "127.0.0.1", 0)
        with caplog.at_level(logging.WARNING, logger="reactor"):
            client = reactor.connect_tcp(Protocol, *listener.address)
            run_until(reactor, lambda: client.done() and listener.connections)
            client.result().write(b"x")
            run_until(reactor, lambda: any("slow" in r.getMessage() for r in caplog.records))
            worker = threading.Thread(target=from_another_thread, args=(reactor,))
            worker.start()
            worker.join()
            reactor.run_once(0)
        slow = [r.getMessage() for r in caplog.records if "slow callback" in r.getMessage()]
        assert len(slow) == 2
        assert "_on_readable" in slow[0] and "in Slow of <StreamTransport" in slow[0]
        assert "sleep(0.06)" in slow[1] and "from_another_thread" in slow[1]
        assert "reactor/loop.py" not in slow[1]  # the caller's frames, not ours
        client.result().close()
        listener.close_connections()
        listener.close()
        run_until(reactor, lambda: not reactor.connections())


def test_traffic_is_logged_on_the_buffered_and_datagram_paths(caplog):
    class Into(BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(100)
            self.got = b""

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, n):
            self.got += self.buf[:n]

    into = Into()

    class Sink(DatagramProtocol):
        got = []

        def datagram_received(self, data, addr):
            Sink.got.append(data)

    with Reactor(debug="traffic") as reactor, caplog.at_level(logging.DEBUG, logger="reactor.traffic"):
        listener = reactor.listen_tcp(lambda: into, "127.0.0.1", 0)
        client = reactor.connect_tcp(Protocol, *listener.address)
        run_until(reactor, lambda: client.done())
        client.result().write(b"into a buffer")
        udp = reactor.open_udp(Sink, local_addr=("127.0.0.1", 0))
        sender = reactor.open_udp(DatagramProtocol, remote_addr=udp.get_extra_info("sockname"))
        run_until(reactor, lambda: sender.is_reading())
        sender.sendto(b"one datagram")
        run_until(reactor, lambda: into.got and Sink.got)
        for t in (client.result(), udp, sender):
            t.close()
        run_until(reactor, lambda: not reactor.connections())  # the server side saw EOF and closed
        listener.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "reactor.traffic"]
    assert any("received 13 bytes b'into a buffer'" in m for m in logged), logged
    assert any("DatagramTransport" in m and "sent 12 bytes b'one datagram'" in m for m in logged)
    assert any("DatagramTransport" in m and "received 12 bytes" in m for m in logged)
    assert any("received 0 bytes (EOF)" in m for m in logged)
