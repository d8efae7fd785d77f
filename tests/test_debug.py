"""Debug mode: slow callbacks named with where they were scheduled, unclosed transports, traffic."""

from __future__ import annotations

import logging
import time

import pytest

from reactor import Protocol, Reactor

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
    monkeypatch.setenv("REACTOR_DEBUG", "0")
    with Reactor() as reactor:
        assert not reactor.get_debug() and reactor._instruments is None


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
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            reactor.close()
    assert reactor.connections() == []
