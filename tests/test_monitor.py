"""The monitor console answers over loopback and refuses anything else."""

from __future__ import annotations

import socket

import pytest

from reactor import Protocol
from reactor.instruments import Instrument
from reactor.monitor import start_monitor

from .conftest import run_until


class Sink(Protocol):
    def connection_made(self, t):
        self.t = t


def ask(reactor, sock, command, until):
    sock.sendall(command.encode() + b"\n")
    buf = b""

    def got():
        nonlocal buf
        try:
            buf += sock.recv(65536)
        except BlockingIOError:
            pass
        return until.encode() in buf

    try:
        run_until(reactor, got)
    except AssertionError:
        raise AssertionError(f'no {until!r} in {buf!r}')
    return buf.decode()


class Sends(Instrument):
    def __init__(self):
        self.sends = []

    def bytes_sent(self, transport, n):
        self.sends.append(transport)


def test_monitor_commands(reactor):
    sends = Sends()
    reactor.add_instrument(sends)
    monitor = start_monitor(reactor)
    app = reactor.listen_tcp(Sink, "127.0.0.1", 0)
    reactor.call_later(30, print, "a pending timer")
    client = socket.create_connection(app.address)
    console = socket.create_connection(monitor.address[:2])
    console.setblocking(False)
    try:
        assert "type help" in ask(reactor, console, "", "type help")
        assert "connections" in ask(reactor, console, "help", "quit")
        sends.sends.clear()  # every earlier reply has arrived: the console answers in order
        stats = ask(reactor, console, "stats", "busy_ratio")
        assert len(sends.sends) == 1  # a reply of many lines, in one send
        assert "connections_open" in stats and "iterations" in stats
        conns = ask(reactor, console, "connections", "connection(s)")
        assert "127.0.0.1" in conns and "2 connection(s)" in conns  # the app's and the console's
        timers = ask(reactor, console, "timers", "pending")
        assert "print('a pending timer')" in timers
        assert "unknown command" in ask(reactor, console, "bogus", "try help")
        ask(reactor, console, "quit", "bye")
    finally:
        client.close()
        console.close()
        monitor.close()
        app.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_monitor_refuses_non_loopback(reactor, host):
    with pytest.raises(ValueError, match="loopback"):
        start_monitor(reactor, 0, host)
