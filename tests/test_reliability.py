"""Eleven ways the loop, the transports and the monitor used to break (issue 12).

Each test here failed on the code before its fix; the module docstring of
the fixed code says what it now does. Tests that touch the loop run on
every selector unless the failure belongs to one selector.
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import signal
import socket
import tempfile
import threading

import pytest

from reactor import BufferedProtocol, DatagramProtocol, Protocol, Reactor
from reactor.datagrams import DatagramTransport
from reactor.instruments import Instrument
from reactor.monitor import MAX_COMMANDS_PER_READ, MAX_MONITOR_CONNECTIONS, MAX_MONITOR_OUTPUT, start_monitor

from .conftest import run_until
from .test_datagrams import ConnectedSocket, Recorder as DatagramRecorder
from .test_streams import Recorder, connect


def collect_errors(reactor):
    errors: list = []
    reactor.set_exception_handler(lambda r, ctx: errors.append(ctx))
    return errors


def pump(reactor, iterations=20):
    for _ in range(iterations):
        reactor.run_once(0.01)


# -- 1. close() from another thread, with signal handlers installed ----------------

def test_close_from_a_thread_leaves_the_signal_state_restorable():
    delivered = []
    before_handler = signal.signal(signal.SIGUSR1, lambda signum, frame: delivered.append(signum))
    try:
        reactor = Reactor()
        fired = []
        reactor.add_signal_handler(signal.SIGUSR1, fired.append, "usr1")
        errors: list = []
        thread = threading.Thread(target=lambda: errors.append(_try(reactor.close)))
        thread.start()
        thread.join(10)
        assert errors == [None], errors  # close() itself works from any thread
        assert reactor.is_closed()
        # The process's wakeup fd must not name a freed fd: a file opened now
        # could get that number and receive the signal bytes.
        with tempfile.TemporaryFile() as f:
            # From the main thread, the borrowed state comes back.
            assert reactor.remove_signal_handler(signal.SIGUSR1) is True
            signal.raise_signal(signal.SIGUSR1)
            f.seek(0)
            assert f.read() == b""
        assert delivered == [signal.SIGUSR1]  # the handler from before the reactor
        assert signal.set_wakeup_fd(-1) == -1
        assert fired == []  # the loop is closed: nobody runs the callback
    finally:
        signal.signal(signal.SIGUSR1, before_handler)


def test_sigint_after_a_close_from_another_thread_interrupts_again():
    # Python's own SIGINT disposition to start from (a test runner may have
    # another: mutmut's workers ignore SIGINT), given back afterwards.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        reactor = Reactor()
        reactor.add_signal_handler(signal.SIGINT, lambda: None)
        thread = threading.Thread(target=reactor.close)
        thread.start()
        thread.join(10)
        # The first SIGINT in the main thread puts the process's state back and
        # then acts as if the reactor had never borrowed it.
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.set_wakeup_fd(-1) == -1
        assert reactor.remove_signal_handler(signal.SIGINT) is False
    finally:
        signal.signal(signal.SIGINT, before)


def _try(fn):
    try:
        fn()
    except Exception as exc:  # pragma: no cover - the failure being tested
        return exc
    return None


# -- 2. SelectSelector past FD_SETSIZE -------------------------------------------

FD_SETSIZE = 1024


@pytest.fixture
def high_fds():
    """Hold descriptors until the next one opened is >= FD_SETSIZE; yields a releaser."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < FD_SETSIZE + 64:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {FD_SETSIZE + 64}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, FD_SETSIZE + 64), hard))
    held: list[int] = []

    def fill():
        while True:
            fd = os.open(os.devnull, os.O_RDONLY)
            held.append(fd)
            if fd >= FD_SETSIZE - 1:
                return

    try:
        yield fill
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_select_refuses_fds_past_fd_setsize_and_sheds_such_connections(high_fds):
    with Reactor(selector=selectors.SelectSelector()) as reactor:
        errors = collect_errors(reactor)
        echo = Recorder(echo=True)
        listener = reactor.listen_tcp(lambda: echo, "127.0.0.1", 0)
        old = socket.create_connection(listener.address)
        try:
            run_until(reactor, lambda: echo.transport is not None)
            readers = reactor.stats().readers
            high_fds()
            with socket.socket() as high:
                assert high.fileno() >= FD_SETSIZE
                with pytest.raises(ValueError, match="FD_SETSIZE"):
                    reactor.add_reader(high, lambda: None)
                assert reactor.stats().readers == readers  # not registered
            late = socket.create_connection(listener.address)  # accepted as an fd >= 1024
            try:
                run_until(reactor, lambda: reactor.stats().accepts_shed == 1)
                late.settimeout(5)
                assert late.recv(10) == b""  # closed, promptly
            finally:
                late.close()
            # Old clients are still served; the loop did not break.
            old.sendall(b"still here")
            run_until(reactor, lambda: bytes(echo.data) == b"still here")
            assert errors == []
        finally:
            old.close()
            listener.close()


# -- 3. a closed fd left registered ----------------------------------------------

def test_registering_a_closed_or_unopened_fd_is_refused(reactor):
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    with pytest.raises(OSError) as info:
        reactor.add_reader(fd, lambda: None)
    assert info.value.errno == errno.EBADF
    with pytest.raises((OSError, ValueError)):
        reactor.add_writer(5000, lambda: None)
    assert reactor.stats().readers == 0 and reactor.stats().writers == 0


def test_an_fd_closed_while_registered_is_reported_and_dropped(reactor):
    errors = collect_errors(reactor)
    a, b = socket.socketpair()
    calls = []
    reactor.add_reader(a.fileno(), calls.append, "a")
    b.send(b"x")
    a.close()  # the user forgot remove_reader()
    b.close()
    ticks = []
    for _ in range(50):
        reactor.call_soon(ticks.append, 1)
        reactor.run_once(0)
    assert len(ticks) == 50  # the loop went on
    assert len(calls) <= 1  # no busy loop on the dead fd
    if not isinstance(reactor._selector, selectors.EpollSelector):  # epoll forgets closed fds itself
        assert len(errors) == 1 and "closed while registered" in errors[0]["message"]
        assert reactor.stats().readers == 0
    # A new socket that gets the same number works normally.
    c, d = socket.socketpair()
    try:
        got = []
        reactor.add_reader(c, lambda: got.append(c.recv(10)))
        d.send(b"new")
        run_until(reactor, lambda: got == [b"new"])
    finally:
        reactor.remove_reader(c)
        c.close()
        d.close()


# -- 4. KeyboardInterrupt in connection_made -------------------------------------

class InterruptOnce(Recorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        if self.events.count("made") == 1:
            raise KeyboardInterrupt


def test_keyboard_interrupt_in_connection_made_leaves_a_working_stream(reactor):
    server = InterruptOnce()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    client = socket.create_connection(listener.address)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_until(reactor, lambda: False, timeout=5)
        assert server.transport.is_reading()
        client.sendall(b"hello")
        run_until(reactor, lambda: bytes(server.data) == b"hello")
        assert server.events == ["made", "data"]
    finally:
        client.close()
        listener.close()
        server.transport.abort()
        run_until(reactor, lambda: server.lost)


class DatagramInterruptOnce(DatagramRecorder):
    def connection_made(self, transport):
        super().connection_made(transport)
        if self.events.count("made") == 1:
            raise SystemExit


def test_system_exit_in_connection_made_leaves_a_working_datagram_endpoint(reactor):
    protocol = DatagramInterruptOnce()
    transport = reactor.open_udp(lambda: protocol, local_addr=("127.0.0.1", 0))
    with pytest.raises(SystemExit):
        run_until(reactor, lambda: False, timeout=5)
    assert transport.is_reading()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"ping", transport.get_extra_info("sockname"))
        run_until(reactor, lambda: protocol.datagrams)
    assert protocol.datagrams[0][0] == b"ping"
    transport.close()
    run_until(reactor, lambda: ("lost", None) in protocol.events)


# -- 5. connection_lost only after connection_made ---------------------------------

def test_reactor_close_before_connection_made_calls_neither_callback(selector_class, tmp_path):
    reactor = Reactor(selector=selector_class())
    accepted = Recorder()
    listener = reactor.listen_tcp(lambda: accepted, "127.0.0.1", 0)
    client = socket.create_connection(listener.address)
    unix_server = Recorder()
    unix_listener = reactor.listen_unix(lambda: unix_server, str(tmp_path / "s"))
    unix_client = Recorder()
    reactor.connect_unix(lambda: unix_client, str(tmp_path / "s"))  # completes synchronously
    udp = DatagramRecorder()
    reactor.open_udp(lambda: udp, local_addr=("127.0.0.1", 0))
    # Accept the TCP peer, but stop before the queued connection_made runs.
    listener._on_acceptable(listener.sockets[0])
    try:
        reactor.close()
    finally:
        client.close()
    assert accepted.transport is None and unix_client.events == [] and udp.events == []
    assert accepted.events == []
    assert reactor.connections() == []
    assert unix_listener is not None


# -- 6. get_buffer() returning something unwritable ---------------------------------

@pytest.mark.parametrize("bad", [b"bytes", memoryview(bytearray(8)).toreadonly(), bytearray()],
                         ids=["bytes", "readonly-view", "empty"])
def test_an_unwritable_buffer_aborts_that_connection_once(reactor, bad):
    errors = collect_errors(reactor)

    class Bad(BufferedProtocol):
        lost = None

        def get_buffer(self, sizehint):
            return bad

        def buffer_updated(self, nbytes):  # pragma: no cover - never reached
            raise AssertionError

        def connection_lost(self, exc):
            self.lost = exc

    protocol = Bad()
    listener = reactor.listen_tcp(lambda: protocol, "127.0.0.1", 0)
    client = socket.create_connection(listener.address)
    try:
        client.sendall(b"data")
        run_until(reactor, lambda: protocol.lost is not None)
        pump(reactor, 5)
        assert len(errors) == 1 and "get_buffer" in errors[0]["message"]
    finally:
        client.close()
        listener.close()


# -- 7. writelines() whose iterable fails midway ---------------------------------------

def _failing_items():
    yield b"one"
    yield b"two"
    raise RuntimeError("the producer broke")


@pytest.mark.parametrize("items", [_failing_items, lambda: [b"one", memoryview(bytearray(b"abcdef"))[::2]]],
                         ids=["raising-generator", "non-contiguous-view"])
def test_writelines_that_fails_queues_nothing_and_later_writes_go_out(reactor, items):
    server = Recorder()
    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0)
    client = Recorder()
    transport = connect(reactor, listener, lambda: client)
    try:
        run_until(reactor, lambda: server.transport is not None)
        with pytest.raises((RuntimeError, TypeError, ValueError)):
            transport.writelines(items())
        assert transport.get_write_buffer_size() == 0
        transport.write(b"after")
        run_until(reactor, lambda: bytes(server.data) == b"after")
    finally:
        transport.abort()
        listener.close()
        server.transport.abort()
        run_until(reactor, lambda: client.lost and server.lost)


# -- 8. a transport_setup callback that raises ---------------------------------------

def test_a_raising_transport_setup_is_reported_and_the_connection_refused(reactor):
    errors = collect_errors(reactor)
    served = []

    def setup(transport):
        raise RuntimeError("bad limits")

    listener = reactor.listen_tcp(lambda: served.append(Recorder()) or served[-1], "127.0.0.1", 0,
                                  transport_setup=setup)
    client = socket.create_connection(listener.address)
    try:
        client.settimeout(0)
        run_until(reactor, lambda: errors)
        assert isinstance(errors[0]["exception"], RuntimeError)
        assert "transport_setup" in errors[0]["message"]

        def closed():
            try:
                return client.recv(10) == b""
            except BlockingIOError:
                return False
            except ConnectionResetError:
                return True
        run_until(reactor, closed)
        assert all(p.events == [] for p in served)  # never served
        assert reactor.connections() == []
    finally:
        client.close()
        listener.close()


# -- 9. abort() from error_received during a queue flush --------------------------------

def test_abort_from_error_received_during_a_connected_flush(reactor):
    errors = collect_errors(reactor)

    class Aborting(DatagramRecorder):
        def error_received(self, exc):
            super().error_received(exc)
            self.transport.abort()

    sock = ConnectedSocket(["eagain"])
    protocol = Aborting()
    try:
        transport = DatagramTransport(reactor, sock, protocol, remote=("127.0.0.1", 9))
        reactor.run_once(0)
        transport.sendto(b"queued")  # EAGAIN: queued, writer registered
        transport.sendto(b"second")
        real = sock.sendto

        def sendto(data, addr, refusals=[ConnectionRefusedError(errno.ECONNREFUSED, "refused")]):
            if refusals:
                raise refusals.pop()
            return real(data, addr)

        sock.sendto = sendto
        run_until(reactor, lambda: ("lost", None) in protocol.events)
        assert errors == []
        assert transport.get_write_buffer_count() == 0
    finally:
        sock.close()


# -- 10. sendto() to a name ------------------------------------------------------------

def test_sendto_a_host_name_is_refused_without_resolving(reactor):
    protocol = DatagramRecorder()
    transport = reactor.open_udp(lambda: protocol, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        with pytest.raises(ValueError, match="resolve"):
            transport.sendto(b"x", ("localhost", port))
        transport.sendto(b"literal", ("127.0.0.1", port))  # literals are fine
        run_until(reactor, lambda: protocol.datagrams)
        assert protocol.datagrams[0][0] == b"literal"
    finally:
        transport.close()
        run_until(reactor, lambda: ("lost", None) in protocol.events)


# -- 11. the monitor's limits -------------------------------------------------------------

class CommandsPerIteration(Instrument):
    def __init__(self):
        self.iterations = 0

    def before_select(self, timeout):
        self.iterations += 1


def test_monitor_caps_consoles_commands_per_read_and_output(reactor, monkeypatch):
    from reactor import monitor

    counts: dict[int, int] = {}
    meter = CommandsPerIteration()
    reactor.add_instrument(meter)
    real = monitor.MonitorProtocol.cmd_connections

    def counted(self):
        counts[meter.iterations] = counts.get(meter.iterations, 0) + 1
        return real(self)

    monkeypatch.setattr(monitor.MonitorProtocol, "cmd_connections", counted)
    listener = start_monitor(reactor, 0)
    consoles = []
    for _ in range(MAX_MONITOR_CONNECTIONS + 1):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (before connect: the window)
        consoles.append(c)
        c.connect(listener.address)
        c.setblocking(False)
    try:

        def refused():
            try:
                return b"too many" in consoles[-1].recv(4096)
            except BlockingIOError:
                return False
        run_until(reactor, refused)
        flood = consoles[0]  # sends 36 KB of commands and never reads
        flood_port = flood.getsockname()[1]
        run_until(reactor, lambda: len(reactor.connections()) == MAX_MONITOR_CONNECTIONS)
        flooded = [t for t in reactor.connections() if t.get_extra_info("peername")[1] == flood_port]
        # Small kernel buffers, so that the replies back up in ours quickly.
        flooded[0].get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        flood.setblocking(True)
        flood.sendall(b"connections\n" * 3000)
        flood.setblocking(False)
        for _ in range(300):  # (the flood is in the kernel already: no need to wait for it)
            reactor.run_once(0)
        assert max(counts.values()) <= MAX_COMMANDS_PER_READ
        server_side = [t for t in reactor.connections() if t.get_write_buffer_size() > 0]
        assert server_side and all(t.get_write_buffer_size() <= MAX_MONITOR_OUTPUT for t in server_side)
        assert all(not t.is_reading() for t in server_side)  # stopped reading from the flooder
        # Another console is still answered promptly.
        other = consoles[1]
        other.recv(4096)  # the greeting
        other.sendall(b"stats\n")

        def answered():
            try:
                return b"iterations" in other.recv(65536)
            except BlockingIOError:
                return False
        run_until(reactor, answered)
    finally:
        for c in consoles:
            c.close()
        listener.close()
        listener.close_connections()
        pump(reactor, 5)


# -- found by the lifecycle state machine: pause_writing before connection_made ------------

def test_writing_past_high_water_before_connection_made_pauses_only_after_it(reactor):
    server = Recorder()

    def setup(transport):
        transport.set_write_buffer_limits(high=1024)
        transport.write(b"x" * (4 << 20))  # more than the kernel takes at once

    listener = reactor.listen_tcp(lambda: server, "127.0.0.1", 0, transport_setup=setup)
    client = socket.create_connection(listener.address)
    try:
        run_until(reactor, lambda: "pause" in server.events)
        assert server.events[:2] == ["made", "pause"]
    finally:
        client.close()
        listener.close()
        server.transport.abort()
        run_until(reactor, lambda: server.lost)
