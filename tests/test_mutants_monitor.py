"""Monitor console behaviours that mutation testing found unpinned (python -m tests.mutation):
every reply exactly (greeting, help, stats, connections, timers, errors), the limits (consoles,
commands per iteration, listing rows, command length) and which hosts it agrees to bind."""

from __future__ import annotations

import dataclasses
import logging
import socket
import time

import pytest

from reactor import Protocol, Reactor
from reactor import monitor
from reactor.instruments import ReactorStats
from reactor.monitor import MAX_COMMANDS_PER_READ, MAX_MONITOR_CONNECTIONS, MonitorProtocol, start_monitor
from reactor.testing import VirtualClock

from .conftest import run_until
from .test_streams import ipv6_available

SENTINEL = b"unknown command 'zz'; try help\r\n"


class Console:
    """A person at ``nc``: sends lines, reads replies (through the loop, with a deadline)."""

    def __init__(self, reactor, address, rcvbuf=None):
        self.reactor = reactor
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # (before connect: the window)
        self.sock.connect(address[:2])
        self.sock.setblocking(False)
        self.buf = b""

    def _read(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        if not data:
            return True
        self.buf += data
        return False

    def read_until(self, end: bytes) -> bytes:
        run_until(self.reactor, lambda: self._read() or self.buf.endswith(end))
        got, self.buf = self.buf, b""
        return got

    def closed(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except ConnectionResetError:
            return True
        self.buf += data
        return not data

    def ask(self, command: str) -> bytes:
        """The exact reply to *command* (an unknown command after it marks its end)."""
        self.sock.sendall(command.encode() + b"\nzz\n")
        reply = self.read_until(SENTINEL)
        return reply[:-len(SENTINEL)]

    def close(self):
        self.sock.close()


@pytest.fixture
def clock():
    return VirtualClock(100.0)


@pytest.fixture
def setup(clock):
    """(reactor on a virtual clock at 100 s, the monitor's listener, a console maker)."""
    consoles = []
    with Reactor(clock=clock) as reactor:  # (no attribute of our own on the reactor: compiled classes refuse it)
        listener = start_monitor(reactor)

        def console():
            c = Console(reactor, listener.address)
            consoles.append(c)
            return c

        yield reactor, listener, console
        for c in consoles:
            c.close()
        listener.close_connections()
        listener.close()
        run_until(reactor, lambda: not reactor.connections())


def test_greeting_help_and_errors_exactly(setup):
    reactor, listener, console = setup
    c = console()
    assert c.read_until(b"\r\n") == b"reactor monitor; type help\r\n"
    assert c.ask("help") == (
        b"commands:\r\n"
        b"  stats         the reactor's counters (reactor.stats())\r\n"
        b"  connections   open transports: peer, state, bytes in/out, write buffer, reading?\r\n"
        b"  timers        pending timers, soonest first\r\n"
        b"  help          this text\r\n"
        b"  quit          close this console\r\n")
    assert c.ask("  HeLp \r") == c.ask("help")  # case and blanks do not matter
    assert c.ask("bogus") == b"unknown command 'bogus'; try help\r\n"
    assert c.ask("x" * 60) == b"unknown command '" + b"x" * 40 + b"'; try help\r\n"  # at most 40 shown
    assert c.ask("") == b"\r\n"  # an empty line: an empty answer
    assert c.ask("help2") == b"unknown command 'help2'; try help\r\n"  # letters only: no cmd_ lookups
    assert c.ask("__init__") == b"unknown command '__init__'; try help\r\n"
    assert c.ask("say") == b"unknown command 'say'; try help\r\n"  # a method, not a command
    assert c.ask("caf\xe9") == "unknown command 'caf\ufffd\ufffd'; try help\r\n".encode()  # ascii only
    assert c.ask("y" * 300) == b"command too long (at most 256 bytes)\r\n"
    assert c.ask("help").startswith(b"commands:\r\n")  # and the console goes on


def test_quit_says_bye_closes_and_frees_a_place(setup, caplog):
    reactor, listener, console = setup
    consoles = [console() for _ in range(MAX_MONITOR_CONNECTIONS)]
    for c in consoles:
        c.read_until(b"type help\r\n")
    extra = console()
    assert extra.read_until(b"\r\n") == b"too many monitor consoles (at most 4); try later\r\n"
    run_until(reactor, extra.closed)
    consoles[0].sock.sendall(b"quit\nhelp\n")
    assert consoles[0].read_until(b"bye\r\n") == b"bye\r\n"
    run_until(reactor, consoles[0].closed)
    assert consoles[0].buf == b""  # nothing after bye: the close came first
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []  # nor tried to be
    again = console()  # the place it freed
    assert again.read_until(b"\r\n") == b"reactor monitor; type help\r\n"


def test_stats_lists_every_field_of_stats_exactly(setup):
    reactor, listener, console = setup
    c = console()
    c.read_until(b"type help\r\n")
    lines = c.ask("stats").decode().split("\r\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    names = [field for field in ReactorStats.__dataclass_fields__] + ["busy_ratio"]
    assert [line[:18].rstrip() for line in lines] == names
    assert all(line[18] == " " and line[19] != " " for line in lines)  # names in 18 columns, then one space
    values = dict(line.split() for line in lines)
    for name in ("select_seconds", "busy_seconds"):
        whole, _, decimals = values[name].partition(".")
        assert whole.isdigit() and len(decimals) == 6
    assert values["busy_ratio"][-2:] == "00" and len(values["busy_ratio"].partition(".")[2]) == 6  # 4 places
    assert 0.0 <= float(values["busy_ratio"]) <= 1.0
    assert values["connections_open"] == "1" and values["readers"] == "2"  # the console; its listener too
    assert values["timers_pending"] == "0" and values["iterations"].isdigit()


class Sink(Protocol):
    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        pass


HEADER = "  fd peer                     state            in        out  buffered reading"


def test_connections_lists_each_transport_exactly(setup, tmp_path):
    reactor, listener, console = setup
    servers = []
    app = reactor.listen_tcp(lambda: servers.append(Sink()) or servers[-1], "127.0.0.1", 0)
    path = str(tmp_path / "a-rather-long-unix-socket-name")
    unix = reactor.listen_unix(lambda: servers.append(Sink()) or servers[-1], path)
    tcp_client = socket.create_connection(app.address)
    unix_client = socket.socket(socket.AF_UNIX)
    unix_client.connect(path)
    try:
        tcp_client.sendall(b"hello")
        run_until(reactor, lambda: len(servers) == 2 and all(hasattr(s, "t") for s in servers)
                  and sum(s.t.bytes_received for s in servers) == 5)
        tcp_t = next(s.t for s in servers if isinstance(s.t.get_extra_info("peername"), tuple))
        unix_t = next(s.t for s in servers if s.t is not tcp_t)
        tcp_t.write(b"abc")
        unix_t.pause_reading()
        c = console()
        c.read_until(b"type help\r\n")
        lines = c.ask("connections").decode().split("\r\n")
        host, port = tcp_client.getsockname()
        fds = sorted(t.get_extra_info("socket").fileno() for t in reactor.connections())
        assert lines[0] == HEADER
        assert [int(line[:4]) for line in lines[1:-2]] == fds  # by fd
        rows = {int(line[:4]): line for line in lines[1:-2]}
        tcp_fd = tcp_t.get_extra_info("socket").fileno()
        unix_fd = unix_t.get_extra_info("socket").fileno()
        assert rows[tcp_fd] == f"{tcp_fd:>4} {host + ':' + str(port):24} open              5          3         0 yes"
        assert rows[unix_fd] == f"{unix_fd:>4} {'-':24} open              0          0         0 paused"
        assert lines[-2:] == ["3 connection(s)", ""]
    finally:
        tcp_client.close()
        unix_client.close()
        app.close_connections()
        unix.close_connections()
        app.close()
        unix.close()


def test_connections_shows_closing_ones_and_a_long_peer_cut_to_24(setup, tmp_path):
    reactor, listener, console = setup
    path = str(tmp_path / "a-rather-long-unix-socket-name")
    unix_listener = reactor.listen_unix(Sink, path)
    try:
        transport = None

        def made(t):
            nonlocal transport
            transport = t

        class Client(Protocol):
            def connection_made(self, t):
                made(t)

        connector = reactor.connect_unix(Client, path)
        run_until(reactor, lambda: connector.done() and transport is not None and unix_listener.connections)
        server_t = next(iter(unix_listener.connections))
        server_t.pause_reading()
        transport.write(b"x" * (8 << 20))  # more than the kernel holds: some stays buffered
        transport.close()  # closing, with bytes still to send
        assert transport.is_closing() and transport.get_write_buffer_size() > 0
        c = console()
        c.read_until(b"type help\r\n")
        lines = c.ask("connections").decode().split("\r\n")
        fd = transport.get_extra_info("socket").fileno()
        [row] = [line for line in lines if line.startswith(f"{fd:>4} ")]
        assert row[5:30] == f"{path[:24]:24} "  # the peer's path, cut to 24 characters
        assert row[30:39] == "closing  "
        assert int(row.split()[-2]) == transport.get_write_buffer_size() and row.endswith(" paused")
        server_t.resume_reading()
        run_until(reactor, lambda: transport not in reactor.connections())
    finally:
        unix_listener.close_connections()
        unix_listener.close()


def test_connections_stop_at_max_rows(setup, monkeypatch):
    reactor, listener, console = setup
    monkeypatch.setattr(monitor, "MAX_ROWS", 2)
    consoles = [console() for _ in range(3)]
    for c in consoles:
        c.read_until(b"type help\r\n")
    lines = consoles[0].ask("connections").decode().split("\r\n")
    assert lines[0] == HEADER and len(lines) == 1 + 2 + 3
    assert lines[-3:] == ["... and 1 more", "3 connection(s)", ""]


def test_timers_soonest_first_exactly(setup, clock):
    reactor, listener, console = setup
    reactor.call_later(30, print, "later")
    reactor.call_later(1.5, print, "sooner")
    reactor.call_later(5, print, "cancelled").cancel()
    c = console()
    c.read_until(b"type help\r\n")
    clock.advance(0.5)
    assert c.ask("timers") == (b"in     1.000s  print('sooner')\r\n"
                               b"in    29.500s  print('later')\r\n"
                               b"2 timer(s) pending\r\n")


def test_connections_at_max_rows_are_all_shown(setup, monkeypatch):
    reactor, listener, console = setup
    monkeypatch.setattr(monitor, "MAX_ROWS", 2)
    consoles = [console() for _ in range(2)]
    for c in consoles:
        c.read_until(b"type help\r\n")
    lines = consoles[0].ask("connections").decode().split("\r\n")
    assert len(lines) == 1 + 2 + 2 and lines[-2:] == ["2 connection(s)", ""]


@pytest.mark.parametrize("n, more", [(50, []), (51, ["... and 1 more"])])
def test_timers_at_fifty_and_one_more(setup, n, more):
    reactor, listener, console = setup
    timers = [reactor.call_later(i + 1, print, i) for i in range(n)]
    c = console()
    c.read_until(b"type help\r\n")
    lines = c.ask("timers").decode().split("\r\n")
    assert lines[50:] == more + [f"{n} timer(s) pending", ""]
    for timer in timers:
        timer.cancel()


def test_timers_stop_at_fifty(setup):
    reactor, listener, console = setup
    timers = [reactor.call_later(i + 1, print, i) for i in range(52)]
    c = console()
    c.read_until(b"type help\r\n")
    lines = c.ask("timers").decode().split("\r\n")
    assert len(lines) == 50 + 3
    assert lines[49] == "in    50.000s  print(49)"
    assert lines[-3:] == ["... and 2 more", "52 timer(s) pending", ""]
    for timer in timers:
        timer.cancel()


class Stamped(MonitorProtocol):
    """Notes the loop iteration each command ran in."""

    def __init__(self, reactor, seen):
        super().__init__(reactor)
        self.seen = seen

    def line_received(self, line):
        self.seen.append(self.reactor.stats().iterations)
        super().line_received(line)


def test_at_most_sixteen_commands_per_iteration_then_reading_resumes(setup):
    reactor, listener, console = setup
    seen = []
    own = reactor.listen_tcp(lambda: Stamped(reactor, seen), "127.0.0.1", 0)
    c = Console(reactor, own.address)
    try:
        c.read_until(b"type help\r\n")
        c.sock.sendall(b"help\n" * 40)
        run_until(reactor, lambda: len(seen) == 40)
        per_iteration = [seen.count(i) for i in sorted(set(seen))]
        assert per_iteration == [MAX_COMMANDS_PER_READ, MAX_COMMANDS_PER_READ, 8]
        assert c.ask("help").startswith(b"commands:")  # reading again once the backlog is done
        [t] = own.connections
        assert t.is_reading()
    finally:
        c.close()
        own.close_connections()
        own.close()


def test_monitor_port_free_by_default_or_the_one_given():
    with Reactor() as reactor:
        first, second = start_monitor(reactor), start_monitor(reactor)  # two at once: each on a free port
        assert first.address[1] != second.address[1] and 0 not in (first.address[1], second.address[1])
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        third = start_monitor(reactor, port)
        assert third.address[1] == port
        for listener in (first, second, third):
            listener.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost"])
def test_monitor_binds_loopback(host):
    with Reactor() as reactor:
        listener = start_monitor(reactor, 0, host)
        assert listener.address[0].startswith("127.")
        listener.close()


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_monitor_binds_ipv6_loopback():
    with Reactor() as reactor:
        listener = start_monitor(reactor, 0, "::1")
        assert listener.address[0] == "::1"
        listener.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "example.com", "localhost.example"])
def test_monitor_refuses_other_hosts_and_says_which(host):
    with Reactor() as reactor:
        with pytest.raises(ValueError) as caught:
            start_monitor(reactor, 0, host)
        assert str(caught.value) == f"the monitor only listens on loopback addresses, not {host!r}"
        assert reactor.connections() == []


HELP_REPLY = len(monitor.HELP.replace("\n", "\r\n")) + 2


class Watched(MonitorProtocol):
    """Notes each pause (with the buffer then) and any command run while the output is paused."""

    def __init__(self, reactor):
        super().__init__(reactor)
        self.paused = False
        self.pauses = []
        self.ran_while_paused = 0

    def pause_writing(self):
        self.paused = True
        self.pauses.append(self.transport.get_write_buffer_size())
        super().pause_writing()

    def resume_writing(self):
        self.paused = False
        super().resume_writing()

    def line_received(self, line):
        self.ran_while_paused += self.paused
        super().line_received(line)


def test_a_console_that_does_not_read_is_paused_then_served_in_full(setup):
    reactor, listener, console = setup
    protocols = []
    own = reactor.listen_tcp(lambda: protocols.append(Watched(reactor)) or protocols[-1], "127.0.0.1", 0)
    c = Console(reactor, own.address, rcvbuf=4096)
    try:
        run_until(reactor, lambda: protocols and protocols[0].transport is not None)
        [console_protocol] = protocols
        t = console_protocol.transport
        assert t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        t.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        c.sock.sendall(b"help\n" * 1000)  # 1000 replies of 300 bytes: more than the output cap
        run_until(reactor, lambda: console_protocol.paused)
        for _ in range(20):
            reactor.run_once(0)
        assert not t.is_reading()  # the replies wait: so do the commands
        assert t in reactor.connections()  # paused, not dropped
        replies = 0
        last_line = b"  quit          close this console\r\n"

        deadline = time.monotonic() + 10
        while replies < 1000:  # read slowly, 4 KiB per iteration: less than a batch of replies
            assert time.monotonic() < deadline, f"{replies} replies of 1000"
            try:
                c.buf += c.sock.recv(4096)
            except BlockingIOError:
                pass
            replies += c.buf.count(last_line)
            c.buf = c.buf.rpartition(last_line)[2]  # (a reply cut in two waits for its end)
            reactor.run_once(0)
        assert t.is_reading()  # all worked through: reading again
        # Paused as soon as a reply took the buffer past 64 KiB, and not one command more until resumed.
        assert len(console_protocol.pauses) >= 2, console_protocol.pauses
        assert all(64 * 1024 < size <= 64 * 1024 + HELP_REPLY for size in console_protocol.pauses)
        assert console_protocol.ran_while_paused == 0
    finally:
        c.close()
        own.close_connections()
        own.close()


@dataclasses.dataclass
class Job:
    """A callable whose repr is as long as its payload (a dataclass's is)."""

    payload: str

    def __call__(self):
        pass


def test_a_reply_past_the_output_cap_drops_that_console_only(setup):
    reactor, listener, console = setup
    timer = reactor.call_later(30, Job("x" * (400 * 1024)))
    c = Console(reactor, listener.address, rcvbuf=4096)
    other = console()
    try:
        c.read_until(b"type help\r\n")
        other.read_until(b"type help\r\n")
        for t in reactor.connections():
            t.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        c.sock.sendall(b"timers\n")
        run_until(reactor, lambda: len(reactor.connections()) == 1, timeout=5)  # dropped, not buffered
        assert other.ask("help").startswith(b"commands:")
    finally:
        c.close()
        timer.cancel()


class Said(MonitorProtocol):
    """Notes the loop iteration of each reply."""

    def __init__(self, reactor, said):
        super().__init__(reactor)
        self.said = said

    def say(self, text):
        self.said.append((self.reactor.stats().iterations, text.splitlines()[0] if text else text))
        super().say(text)


def test_an_over_long_command_counts_as_one_of_the_batch(setup):
    reactor, listener, console = setup
    said = []
    own = reactor.listen_tcp(lambda: Said(reactor, said), "127.0.0.1", 0)
    c = Console(reactor, own.address)
    try:
        c.read_until(b"type help\r\n")
        c.sock.sendall(b"y" * 300 + b"\nhelp\n")
        run_until(reactor, lambda: len(said) == 3)
        (_, greeting), (when_long, long_reply), (when_help, help_reply) = said
        assert long_reply == "command too long (at most 256 bytes)" and help_reply == "commands:"
        assert when_long == when_help  # the batch went on after it, in the same iteration
        assert c.read_until(b"close this console\r\n").startswith(b"command too long")
    finally:
        c.close()
        own.close_connections()
        own.close()


class Extended(MonitorProtocol):
    def cmd_two_words(self):
        return "should not be reachable"

    def cmd_uptime(self):
        return "up"


def test_only_letters_make_a_command_even_in_a_subclass(setup):
    reactor, listener, console = setup
    own = reactor.listen_tcp(lambda: Extended(reactor), "127.0.0.1", 0)
    c = Console(reactor, own.address)
    try:
        c.read_until(b"type help\r\n")
        assert c.ask("uptime") == b"up\r\n"
        assert c.ask("two_words") == b"unknown command 'two_words'; try help\r\n"
    finally:
        c.close()
        own.close_connections()
        own.close()


def test_a_peer_name_that_is_not_utf8_is_shown_with_replacements(setup, tmp_path, monkeypatch):
    reactor, listener, console = setup
    monkeypatch.chdir(tmp_path)
    server = socket.socket(socket.AF_UNIX)
    server.bind(b"\xffsock")  # a relative path: the peer name is short enough to show whole
    server.listen()
    connector = reactor.connect_unix(Protocol, "\udcffsock")
    try:
        run_until(reactor, connector.done)
        fd = connector.result().get_extra_info("socket").fileno()
        c = console()
        c.read_until(b"type help\r\n")
        lines = c.ask("connections").split(b"\r\n")
        [row] = [line for line in lines if line.startswith(f"{fd:>4} ".encode())]
        assert row.startswith(f"{fd:>4} ?sock ".encode())
    finally:
        connector.result().close()
        server.close()
