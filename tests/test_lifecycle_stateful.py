"""The stream transport's lifecycle as a state machine, driven by hypothesis.

Rules do what a protocol, a peer and the loop can do in any order: write,
writelines, write_eof, pause and resume reading, close, abort, a peer that
sends, half-closes or resets, and steps of the loop. After every step the
invariants of protocols.py and transports.py are checked:

* callbacks in the documented order: ``connection_made`` first and once,
  ``connection_lost`` last and once, nothing after it; no data after EOF;
  ``pause_writing``/``resume_writing`` alternating, pause first;
* once closed, the fd is out of the selector and the socket is closed;
* the peer has received a prefix of what was accepted by ``write``, and,
  after a clean ``close()`` (with nothing unread on our side), all of it,
  in order;
* the write buffer never exceeds its hard cap.

Runs on every selector; ``HYPOTHESIS_PROFILE=deep`` runs it much longer.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import time

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reactor import Protocol, Reactor
from reactor.streams import StreamTransport

from .conftest import SELECTOR_CLASSES, examples

CAP = 256 * 1024  # the transport's hard cap on buffered bytes
HIGH, LOW = 32 * 1024, 8 * 1024
DEADLINE = 10.0


class Recording(Protocol):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.received = bytearray()
        self.lost_exc: object = "not lost"

    def connection_made(self, transport):
        self.events.append("made")

    def data_received(self, data):
        self.events.append("data")
        self.received += data

    def eof_received(self):
        self.events.append("eof")
        return None  # the transport closes itself

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost_exc = exc


# Small writes, and ones larger than the kernel's 4 KiB buffers here, so
# that most runs buffer, pause and drain.
# (Large ones are made from a seed: hypothesis' own buffer would overrun.)
payloads = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda size, seed: random.Random(seed).randbytes(size),
              st.integers(5000, 70_000), st.integers(0, 2**32)))


class Lifecycle(RuleBasedStateMachine):
    selector_class: type[selectors.BaseSelector] = selectors.DefaultSelector

    def __init__(self) -> None:
        super().__init__()
        self.reactor = Reactor(selector=self.selector_class())
        # Small kernel buffers on both sides, so that writes do back up into
        # the transport's own buffer and flow control comes into play.
        with socket.create_server(("127.0.0.1", 0)) as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            self.peer = socket.socket()
            self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            self.peer.connect(server.getsockname())
            ours, _ = server.accept()
        self.peer.setblocking(False)
        self.protocol = Recording()
        self.transport = StreamTransport(self.reactor, ours, self.protocol)
        self.transport.set_write_buffer_limits(HIGH, LOW)
        self.transport.set_max_write_buffer_size(CAP)
        self.fd = ours.fileno()
        self.written = bytearray()  # accepted by write()/writelines(), in order
        self.delivered = bytearray()  # what the peer read
        self.peer_eof = False
        self.peer_gone = False  # reset (or closed) by the peer: no more reading there
        self.clean_close = False  # close() called on a healthy connection
        self.eof_written = False
        self.peer_sent = 0  # bytes the peer's kernel took

    # -- what the protocol does ----------------------------------------------------

    def _accepting(self) -> bool:
        return not self.transport.is_closing() and not self.eof_written

    @rule(data=payloads)
    def write(self, data):
        accepting = self._accepting()
        try:
            self.transport.write(data)
        except RuntimeError:
            assert self.eof_written and not self.transport.is_closing()
            return
        if accepting:
            self.written += data

    @rule(items=st.lists(payloads, max_size=5))
    def writelines(self, items):
        accepting = self._accepting()
        try:
            self.transport.writelines(items)
        except RuntimeError:
            assert self.eof_written and not self.transport.is_closing()
            return
        if accepting:
            self.written += b"".join(items)

    @rule()
    def write_eof(self):
        if not self.transport.is_closing():
            self.eof_written = True
        self.transport.write_eof()

    @rule()
    def pause_reading(self):
        self.transport.pause_reading()

    @rule()
    def resume_reading(self):
        self.transport.resume_reading()

    @rule()
    def close(self):
        if not self.transport.is_closing():
            self.clean_close = not self.peer_gone
        self.transport.close()

    @rule()
    def abort(self):
        self.clean_close = False
        self.transport.abort()

    # -- what the peer does ----------------------------------------------------------

    @precondition(lambda self: not self.peer_gone)
    @rule(data=st.binary(min_size=1, max_size=2000))
    def peer_sends(self, data):
        try:
            self.peer_sent += self.peer.send(data)
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass

    @precondition(lambda self: not self.peer_gone)
    @rule()
    def peer_half_closes(self):
        try:
            self.peer.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    @precondition(lambda self: not self.peer_gone)
    @rule()
    def peer_resets(self):
        self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.peer.close()
        self.peer_gone = True
        self.clean_close = False

    # -- the loop ------------------------------------------------------------------------

    @rule(n=st.integers(1, 5), peer_reads=st.booleans())
    def step(self, n, peer_reads):
        for _ in range(n):
            self.reactor.run_once(0)
            if peer_reads:
                self._peer_read()

    def _peer_read(self):
        if self.peer_gone or self.peer_eof:
            return
        while True:
            try:
                chunk = self.peer.recv(1 << 20)
            except BlockingIOError:
                return
            except ConnectionResetError:
                self.peer_eof = True
                return
            if not chunk:
                self.peer_eof = True
                return
            self.delivered += chunk

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def callbacks_in_the_documented_order(self):
        events = self.protocol.events
        if not events:
            return
        assert events[0] == "made" and events.count("made") == 1
        assert events.count("lost") <= 1
        if "lost" in events:
            assert events[-1] == "lost"
        assert events.count("eof") <= 1
        if "eof" in events:
            assert "data" not in events[events.index("eof"):]
        flow = [e for e in events if e in ("pause", "resume")]
        assert all(e == ("pause" if i % 2 == 0 else "resume") for i, e in enumerate(flow))

    @invariant()
    def closed_means_unregistered_and_closed(self):
        if "lost" in self.protocol.events:
            assert self.fd not in self.reactor._selector.get_map()
            assert self.transport.get_extra_info("socket").fileno() == -1

    @invariant()
    def delivery_is_a_prefix_and_buffers_are_capped(self):
        assert self.written.startswith(self.delivered)
        assert self.transport.get_write_buffer_size() <= CAP

    def teardown(self):
        try:
            if not self.transport.is_closing():
                self.clean_close = not self.peer_gone
                self.transport.close()
            deadline = time.monotonic() + DEADLINE
            while "lost" not in self.protocol.events or not (self.peer_eof or self.peer_gone):
                assert time.monotonic() < deadline, "the connection did not finish"
                self.reactor.run_once(0.01)
                self._peer_read()
            self.callbacks_in_the_documented_order()
            self.closed_means_unregistered_and_closed()
            assert self.written.startswith(self.delivered)
            # Closing a socket with unread input sends RST, not FIN, and the
            # peer may then lose what it had not read yet (TCP, RFC 2525
            # 2.17): the promise holds when everything the peer sent was read.
            if (self.clean_close and self.protocol.lost_exc is None
                    and len(self.protocol.received) == self.peer_sent):
                assert bytes(self.delivered) == bytes(self.written)
        finally:
            if not self.peer_gone:
                self.peer.close()
            self.reactor.close()


for _cls in SELECTOR_CLASSES:
    _machine = type(f"Lifecycle{_cls.__name__}", (Lifecycle,), {"selector_class": _cls})
    _case = _machine.TestCase
    _case.settings = settings(max_examples=examples(60), stateful_step_count=40, deadline=None)
    globals()[f"TestLifecycle{_cls.__name__}"] = _case
del _cls, _machine, _case
