"""DatagramTransport behaviours that mutation testing found unpinned (python -m tests.mutation).

The send queue is driven through ``CongestedSocket`` (test_datagrams.py), a
fake UDP socket whose sends follow a script, so that "the kernel pushed
back" happens exactly when a test says.
"""

from __future__ import annotations

import pytest

from reactor import DatagramProtocol, DatagramTransport

from .conftest import run_until
from .test_datagrams import CongestedSocket

PEER = ("127.0.0.1", 9)


class Recorder(DatagramProtocol):
    def __init__(self) -> None:
        self.events: list = []

    def connection_made(self, transport):
        self.events.append("made")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


@pytest.fixture
def congested():
    sockets = []

    def make(script):
        sockets.append(CongestedSocket(script))
        return sockets[-1]
    yield make
    for sock in sockets:
        sock.close()


def test_close_twice_with_only_an_empty_datagram_left_still_sends_it(reactor, congested):
    sock = congested(["eagain", "ok", "eagain"])  # b"y" waits; then b"y" goes, b"" waits again
    protocol = Recorder()
    transport = DatagramTransport(reactor, sock, protocol)
    reactor.run_once(0)
    transport.sendto(b"y", PEER)
    transport.sendto(b"", PEER)  # queued behind b"y"
    transport.close()  # 1 byte queued: closing
    reactor.run_once(0)
    assert sock.wire == [b"y"]
    assert transport.get_write_buffer_count() == 1 and transport.get_write_buffer_size() == 0
    transport.close()  # again, with only the empty datagram queued: nothing is dropped
    run_until(reactor, lambda: protocol.events[-1] == ("lost", None))
    assert sock.wire == [b"y", b""]


def test_close_with_only_an_empty_datagram_queued_sends_it_first(reactor, congested):
    sock = congested(["eagain"])
    protocol = Recorder()
    transport = DatagramTransport(reactor, sock, protocol)
    reactor.run_once(0)
    transport.sendto(b"", PEER)  # EAGAIN: queued, 0 bytes
    assert transport.get_write_buffer_count() == 1 and transport.get_write_buffer_size() == 0
    transport.close()
    run_until(reactor, lambda: protocol.events[-1] == ("lost", None))
    assert sock.wire == [b""]  # "close(): send what is queued, then close"
