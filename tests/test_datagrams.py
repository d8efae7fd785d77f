"""UDP endpoints: whole datagrams, bounded queues, ICMP errors, fairness."""

from __future__ import annotations

import errno
import select
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reactor import DatagramProtocol, DatagramTruncated, Protocol, Reactor
from reactor.datagrams import MAX_UDP6_PAYLOAD, MAX_UDP_PAYLOAD, DatagramTransport

from .conftest import examples, run_until
from .test_streams import ipv6_available


class Recorder(DatagramProtocol):
    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.events: list = []
        self.datagrams: list = []
        self.errors: list = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))
        if self.echo:
            self.transport.sendto(data, addr)

    def error_received(self, exc):
        self.errors.append(exc)

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))


# -- the send queue against a socket that pushes back at random ------------------

class CongestedSocket:
    """A UDP socket whose sends follow a script: "ok", "eagain" or "enobufs".

    The selector watches a real socketpair end (always writable)."""

    family = socket.AF_INET
    type = socket.SOCK_DGRAM

    def __init__(self, script):
        self._real, self._other = socket.socketpair()
        self.script = list(script)
        self.wire: list[bytes] = []

    def fileno(self):
        return self._real.fileno()

    def setblocking(self, flag):
        pass

    def getsockname(self):
        return ("127.0.0.1", 1)

    def sendto(self, data, addr):
        step = self.script.pop(0) if self.script else "ok"
        if step == "eagain":
            raise BlockingIOError(errno.EAGAIN, "busy")
        if step == "enobufs":
            raise OSError(errno.ENOBUFS, "no buffer space")
        self.wire.append(bytes(data))
        return len(data)

    def recvmsg_into(self, buffers):
        raise BlockingIOError

    def close(self):
        self._real.close()
        self._other.close()


sizes = st.one_of(st.integers(0, 64), st.integers(0, MAX_UDP_PAYLOAD), st.just(MAX_UDP_PAYLOAD))


@settings(max_examples=examples(50))
@given(datagrams=st.lists(st.tuples(sizes, st.integers(0, 2)), max_size=30),
       script=st.lists(st.sampled_from(["ok", "ok", "eagain", "enobufs"]), max_size=80))
def test_every_datagram_arrives_whole_once_in_order(datagrams, script):
    sock = CongestedSocket(script)
    protocol = Recorder()
    with Reactor() as reactor:
        try:
            transport = DatagramTransport(reactor, sock, protocol, max_queue_size=10**9)
            reactor.run_once(0)
            sent = []
            for i, (size, iterations) in enumerate(datagrams):
                data = bytes([i % 256]) * size
                transport.sendto(data, ("127.0.0.1", 9))
                sent.append(data)
                queued = sent[len(sock.wire):]
                assert transport.get_write_buffer_count() == len(queued)
                assert transport.get_write_buffer_size() == sum(map(len, queued))
                for _ in range(iterations):
                    reactor.run_once(0)
            for _ in range(len(script) + 5):
                reactor.run_once(0)
            assert sock.wire == sent
            assert transport.get_write_buffer_size() == 0 and transport.get_write_buffer_count() == 0
            assert protocol.errors == [] and transport.datagrams_dropped == 0
            flow = [e for e in protocol.events if e in ("pause", "resume")]
            assert flow == ["pause", "resume"] * (len(flow) // 2)
        finally:
            sock.close()


def test_a_full_queue_pauses_then_drops_and_counts():
    sock = CongestedSocket(["eagain"] * 1000)
    protocol = Recorder()
    with Reactor() as reactor:
        try:
            transport = DatagramTransport(reactor, sock, protocol, max_queue_size=10_000)
            transport.set_write_buffer_limits(high=4000, low=1000)
            reactor.run_once(0)
            for i in range(30):
                transport.sendto(b"%03d" % i + b"." * 997, ("127.0.0.1", 9))
            assert protocol.events == ["made", "pause"]
            assert transport.get_write_buffer_count() == 10
            assert transport.get_write_buffer_size() == 10_000
            assert transport.datagrams_dropped == 20
            sock.script.clear()  # congestion over
            run_until(reactor, lambda: transport.get_write_buffer_count() == 0)
            assert [d[:3] for d in sock.wire] == [b"%03d" % i for i in range(10)]
            assert protocol.events == ["made", "pause", "resume"]
            assert transport.get_write_buffer_size() == 0
        finally:
            sock.close()


# -- loopback ----------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(
    not ipv6_available(), reason="no IPv6 loopback"))])
@pytest.mark.parametrize("connected", [True, False])
def test_echo_round_trips(reactor, host, connected):
    server = Recorder(echo=True)
    st = reactor.open_udp(lambda: server, local_addr=(host, 0))
    client = Recorder()
    addr = st.get_extra_info("sockname")
    if connected:
        ct = reactor.open_udp(lambda: client, remote_addr=addr[:2])
    else:
        ct = reactor.open_udp(lambda: client, local_addr=(host, 0))
    reactor.run_once(0)
    payloads = [b"", b"x", b"y" * 1400, b"z" * 60_000]
    for p in payloads:
        if connected:
            ct.sendto(p)
        else:
            ct.sendto(p, addr[:2])
    run_until(reactor, lambda: len(client.datagrams) == len(payloads))
    assert sorted(d for d, _ in client.datagrams) == sorted(payloads)  # UDP may reorder
    assert all(a[:2] == addr[:2] for _, a in client.datagrams)
    assert server.transport.datagrams_received == len(payloads)
    ct.close()
    st.close()
    run_until(reactor, lambda: ("lost", None) in client.events and ("lost", None) in server.events)


def test_address_rules(reactor):
    server = Recorder()
    st = reactor.open_udp(lambda: server, local_addr=("127.0.0.1", 0))
    ct = reactor.open_udp(Recorder, remote_addr=st.get_extra_info("sockname"))
    with pytest.raises(ValueError, match="connected"):
        ct.sendto(b"x", ("127.0.0.2", 9))
    ct.sendto(b"same address is fine", st.get_extra_info("sockname"))
    with pytest.raises(ValueError, match="address"):
        st.sendto(b"x")
    with pytest.raises(TypeError):
        st.sendto("text", ("127.0.0.1", 9))
    with pytest.raises(ValueError):
        reactor.open_udp(Recorder)
    run_until(reactor, lambda: server.datagrams)
    st.abort()
    ct.abort()
    run_until(reactor, lambda: not reactor.connections())


def test_icmp_port_unreachable_reaches_error_received_and_endpoint_lives(reactor):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once probe closes
    client = Recorder()
    ct = reactor.open_udp(lambda: client, remote_addr=("127.0.0.1", port))
    reactor.run_once(0)
    ct.sendto(b"anyone?")
    run_until(reactor, lambda: client.errors)
    assert isinstance(client.errors[0], ConnectionRefusedError)
    assert not ct.is_closing()
    server = Recorder(echo=True)
    st = reactor.open_udp(lambda: server, local_addr=("127.0.0.1", port))
    reactor.run_once(0)
    ct.sendto(b"now?")
    run_until(reactor, lambda: client.datagrams)
    assert client.datagrams[0][0] == b"now?"
    ct.close()
    st.close()
    run_until(reactor, lambda: not reactor.connections())


def test_truncated_datagram_is_reported_not_delivered(reactor):
    server = Recorder()
    st = reactor.open_udp(lambda: server, local_addr=("127.0.0.1", 0), max_datagram_size=100)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"a" * 101, st.get_extra_info("sockname"))
        raw.sendto(b"b" * 100, st.get_extra_info("sockname"))
        run_until(reactor, lambda: server.datagrams)
    assert len(server.errors) == 1 and isinstance(server.errors[0], DatagramTruncated)
    assert [d for d, _ in server.datagrams] == [b"b" * 100]
    st.close()
    run_until(reactor, lambda: not reactor.connections())


def test_largest_ipv4_datagram_arrives_whole(reactor):
    server = Recorder()
    st = reactor.open_udp(lambda: server, local_addr=("127.0.0.1", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        raw.sendto(b"m" * MAX_UDP_PAYLOAD, st.get_extra_info("sockname"))
        run_until(reactor, lambda: server.datagrams or server.errors)
    assert server.errors == [] and server.datagrams[0][0] == b"m" * MAX_UDP_PAYLOAD
    st.close()
    run_until(reactor, lambda: not reactor.connections())


def test_pause_reading_stops_delivery(reactor):
    server = Recorder()
    st = reactor.open_udp(lambda: server, local_addr=("127.0.0.1", 0))
    reactor.run_once(0)
    st.pause_reading()
    assert not st.is_reading()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"wait", st.get_extra_info("sockname"))
        # Loopback delivery is synchronous: the datagram is waiting now.
        assert select.select([st.get_extra_info("socket")], [], [], 0)[0]
        for _ in range(10):
            reactor.run_once(0)
        assert server.datagrams == []
        st.resume_reading()
        run_until(reactor, lambda: server.datagrams)
    st.close()
    run_until(reactor, lambda: not reactor.connections())


# -- fairness: a UDP flood does not starve a TCP connection ------------------------------

def test_udp_flood_does_not_starve_tcp(reactor):
    """A burst of datagrams many read batches long is waiting when a TCP
    ping-pong resumes: the ping-pong keeps making progress while the burst is
    read. (A reader that drained its socket until EAGAIN would read the whole
    burst before the TCP connection got its next turn.)"""
    from reactor.datagrams import MAX_DATAGRAMS_PER_EVENT

    read = []

    class Sink(DatagramProtocol):
        def datagram_received(self, data, addr):
            read.append(data)

    class Echo(Protocol):
        def connection_made(self, t):
            self.t = t

        def data_received(self, data):
            self.t.write(data)

    rounds = []  # datagrams read so far, at each completed round trip

    class PingPong(Protocol):
        def connection_made(self, t):
            self.t = t
            t.write(b"ping")

        def data_received(self, data):
            rounds.append(len(read))
            self.t.write(b"ping")

    udp = reactor.open_udp(Sink, local_addr=("127.0.0.1", 0))
    usock = udp.get_extra_info("socket")
    usock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    # What the kernel lets the socket hold, at a conservative 2 KiB of
    # accounting per small datagram, so that none of the burst is dropped.
    burst = min(2000, usock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2048)
    assert burst >= 4 * MAX_DATAGRAMS_PER_EVENT, burst
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0)
    try:
        reactor.connect_tcp(PingPong, *listener.address)
        run_until(reactor, lambda: len(rounds) >= 3)  # the ping-pong is going
        # The loop is not running now: the burst lands in the socket's queue all at once.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            for i in range(burst):
                raw.sendto(b"%d" % i, udp.get_extra_info("sockname"))
        before = len(rounds)
        run_until(reactor, lambda: len(read) == burst)
        assert read == [b"%d" % i for i in range(burst)]
        during = [n for n in rounds[before:] if n < burst]
        # One round trip takes two iterations; each iteration reads one batch.
        assert len(during) >= 2, (during, burst)
        assert all(b - a <= 2 * MAX_DATAGRAMS_PER_EVENT for a, b in zip(during, during[1:])), during
    finally:
        listener.close()


def test_reads_per_event_are_bounded_so_others_get_their_turn(reactor):
    from reactor.datagrams import MAX_DATAGRAMS_PER_EVENT

    server = Recorder()
    st = reactor.open_udp(lambda: server, local_addr=("127.0.0.1", 0))
    reactor.run_once(0)
    a, b = socket.socketpair()
    other = []
    reactor.add_reader(b, lambda: other.append(b.recv(10)))
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            backlog = 3 * MAX_DATAGRAMS_PER_EVENT
            for i in range(backlog):
                raw.sendto(b"%d" % i, st.get_extra_info("sockname"))
            a.send(b"x")
            # Both are readable now; one iteration serves each, the UDP socket
            # only up to its batch, even though more datagrams are waiting.
            run_until(reactor, lambda: server.datagrams and other)
            assert len(server.datagrams) == MAX_DATAGRAMS_PER_EVENT
            run_until(reactor, lambda: len(server.datagrams) == backlog)
            assert [d for d, _ in server.datagrams] == [b"%d" % i for i in range(backlog)]
    finally:
        reactor.remove_reader(b)
        a.close()
        b.close()
    st.close()
    run_until(reactor, lambda: not reactor.connections())


def test_abort_from_error_received_during_flush_and_during_reads(reactor):
    class Aborting(Recorder):
        def error_received(self, exc):
            super().error_received(exc)
            self.transport.abort()

    sock = CongestedSocket(["eagain"])
    protocol = Aborting()
    try:
        transport = DatagramTransport(reactor, sock, protocol)
        reactor.run_once(0)
        errors = []
        reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

        def failing_sendto(data, addr, _real=sock.sendto):
            if data == b"too big":
                raise OSError(errno.EMSGSIZE, "message too long")
            return _real(data, addr)

        transport.sendto(b"first", ("127.0.0.1", 9))  # EAGAIN: queued
        sock.sendto = failing_sendto
        transport.sendto(b"too big", ("127.0.0.1", 9))
        transport.sendto(b"never", ("127.0.0.1", 9))
        run_until(reactor, lambda: ("lost", None) in protocol.events)
        assert errors == [] and sock.wire == [b"first"]
        assert isinstance(protocol.errors[0], OSError) and protocol.errors[0].errno == errno.EMSGSIZE
    finally:
        sock.close()

    truncating = Aborting()
    st = reactor.open_udp(lambda: truncating, local_addr=("127.0.0.1", 0), max_datagram_size=10)
    reactor.run_once(0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"x" * 20, st.get_extra_info("sockname"))
        raw.sendto(b"after", st.get_extra_info("sockname"))
        run_until(reactor, lambda: ("lost", None) in truncating.events)
    assert truncating.datagrams == []  # nothing delivered after abort()


# -- callbacks that close, raise or come back ----------------------------------------

class ConnectedSocket(CongestedSocket):
    """The congested fake, connected: send() follows the same script."""

    def send(self, data):
        return self.sendto(data, None)


@pytest.mark.parametrize("where", ["error_received", "resume_writing"])
def test_close_from_a_callback_during_a_flush_unregisters_the_socket(reactor, where):
    class Closing(Recorder):
        def error_received(self, exc):
            super().error_received(exc)
            if where == "error_received":
                self.transport.close()

        def resume_writing(self):
            super().resume_writing()
            if where == "resume_writing":
                self.transport.close()

    sock = CongestedSocket(["eagain"])
    fd = sock.fileno()
    protocol = Closing()
    try:
        transport = DatagramTransport(reactor, sock, protocol)
        transport.set_write_buffer_limits(high=10, low=0)
        reactor.run_once(0)

        def sendto(data, addr, _real=sock.sendto):
            if data == b"too big":
                raise OSError(errno.EMSGSIZE, "message too long")
            return _real(data, addr)

        sock.sendto = sendto
        transport.sendto(b"x" * 20, ("127.0.0.1", 9))  # EAGAIN: queued, over high water
        transport.sendto(b"too big", ("127.0.0.1", 9))
        run_until(reactor, lambda: ("lost", None) in protocol.events)
        assert sock.wire == [b"x" * 20]
        # The closed fd left the selector: with it still registered, select()
        # fails with EBADF (SelectSelector) or a reused fd number cannot be added.
        assert fd not in [key.fd for key in reactor._selector.get_map().values()]
        for _ in range(3):
            reactor.run_once(0)
    finally:
        sock.close()


def test_an_exception_in_datagram_received_is_reported_and_the_endpoint_reads_on(reactor):
    errors = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

    class Picky(Recorder):
        def datagram_received(self, data, addr):
            if data == b"malformed":
                raise ValueError("cannot parse")
            super().datagram_received(data, addr)

        def error_received(self, exc):
            raise RuntimeError("error_received is broken too")

    server = Picky()
    st = reactor.open_udp(lambda: server, local_addr=("127.0.0.1", 0), max_datagram_size=100)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for data in (b"malformed", b"x" * 200, b"good"):
            raw.sendto(data, st.get_extra_info("sockname"))
        run_until(reactor, lambda: server.datagrams)
    assert [d for d, _ in server.datagrams] == [b"good"]
    assert [type(ctx["exception"]) for ctx in errors] == [ValueError, RuntimeError]
    assert "datagram_received" in errors[0]["message"] and not st.is_closing()
    st.close()
    run_until(reactor, lambda: not reactor.connections())


def test_the_send_that_reveals_an_icmp_error_is_still_sent(reactor):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Recorder()
    ct = reactor.open_udp(lambda: client, remote_addr=("127.0.0.1", port))
    reactor.run_once(0)
    ct.sendto(b"1")  # nobody there: the port-unreachable is now pending on the socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", port))  # the peer comes back
        peer.settimeout(5)
        ct.sendto(b"2")  # this send() reports datagram 1's error, and sends nothing
        assert peer.recv(10) == b"2"
    assert [type(e) for e in client.errors] == [ConnectionRefusedError]
    assert ct.datagrams_sent == 2
    ct.close()
    run_until(reactor, lambda: not reactor.connections())


def test_icmp_retry_on_a_fake_connected_socket_keeps_the_queue_exact(reactor):
    sock = ConnectedSocket(["eagain"])
    protocol = Recorder()
    try:
        transport = DatagramTransport(reactor, sock, protocol, remote=("127.0.0.1", 9))
        reactor.run_once(0)
        transport.sendto(b"queued")  # EAGAIN
        real = sock.sendto
        refusals = [ConnectionRefusedError(errno.ECONNREFUSED, "refused")]

        def sendto(data, addr):
            if refusals:
                raise refusals.pop()
            return real(data, addr)

        sock.sendto = sendto
        run_until(reactor, lambda: transport.get_write_buffer_count() == 0)
        assert sock.wire == [b"queued"] and len(protocol.errors) == 1
        assert transport.get_write_buffer_size() == 0
    finally:
        sock.close()


def test_flow_control_callbacks_that_raise_go_to_the_handler(reactor):
    errors = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))

    class Broken(Recorder):
        def pause_writing(self):
            raise RuntimeError("pause_writing is broken")

    sock = CongestedSocket(["eagain"] * 5)
    try:
        transport = DatagramTransport(reactor, sock, Broken())
        reactor.run_once(0)
        transport.sendto(b"x" * 100, ("127.0.0.1", 9))
        transport.set_write_buffer_limits(high=10)  # raises inside: reported, endpoint closed
        assert len(errors) == 1 and "pause_writing" in errors[0]["message"]
        assert transport.is_closing()
        reactor.run_once(0)
    finally:
        sock.close()


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_ipv6_endpoints_take_the_largest_ipv6_datagram_and_compare_addresses_by_value(reactor):
    server = Recorder()
    st = reactor.open_udp(lambda: server, local_addr=("::1", 0))
    port = st.get_extra_info("sockname")[1]
    ct = reactor.open_udp(Recorder, remote_addr=("::1", port))
    ct.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    st.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    reactor.run_once(0)
    assert MAX_UDP6_PAYLOAD > MAX_UDP_PAYLOAD
    ct.sendto(b"6" * MAX_UDP6_PAYLOAD, ("0:0:0:0:0:0:0:1", port))  # "::1", spelt out
    run_until(reactor, lambda: server.datagrams or server.errors)
    assert server.errors == [] and server.datagrams[0][0] == b"6" * MAX_UDP6_PAYLOAD
    with pytest.raises(ValueError, match="connected"):
        ct.sendto(b"x", ("localhost", port))  # names are not resolved
    ct.close()
    st.close()
    run_until(reactor, lambda: not reactor.connections())
