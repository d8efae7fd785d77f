"""Accepting under limits: out of descriptors (EMFILE), no fd leaks, max_connections.

The EMFILE and leak tests run their server in a subprocess
(``tests/scripts/``), because they lower RLIMIT_NOFILE, which would starve
pytest itself. The parent talks to it over loopback with plain blocking
sockets that all have timeouts: a server that hangs fails a test, it does
not hang it.
"""

from __future__ import annotations

import gc
import os
import re
import select
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reactor import Protocol

from .conftest import SELECTOR_CLASSES, run_until
from .scripts._fds import fd_dir, open_fds

ROOT = Path(__file__).resolve().parent.parent
SELECTOR_NAMES = [cls.__name__ for cls in SELECTOR_CLASSES]
ANSWER_TIMEOUT = 5.0  # for one reply, or the close of a turned-away peer

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None  # type: ignore[assignment]

needs_fd_limits = pytest.mark.skipif(
    resource is None or fd_dir() is None or not sys.platform.startswith("linux"),
    reason="needs RLIMIT_NOFILE and /proc/self/fd (and Linux's accept(), which takes a fd first)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


# -- 1. out of descriptors: the server survives, sheds, does not spin, recovers ----------

HEADROOM = 25  # descriptors the EMFILE server leaves itself for connections
SEQUENTIAL = HEADROOM + 10  # opened one at a time, each answered before the next
FLOOD = 80  # in all: the rest are opened in one burst


class EmfileServer:
    """tests/scripts/emfile_server.py in a subprocess, and the client sockets opened to it."""

    def __init__(self, selector_name: str) -> None:
        self.socks: list[socket.socket] = []
        self._result: tuple[int, str] | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.scripts.emfile_server", selector_name, str(HEADROOM)],
            cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        try:
            ready, _, _ = select.select([self.proc.stdout], [], [], 20.0)
            line = self.proc.stdout.readline().decode() if ready else ""
            match = re.fullmatch(r"port=(\d+) free=(\d+)\n", line)
        except BaseException:
            self.kill()
            self.stop()
            raise
        if not match:
            self.kill()
            raise AssertionError(f"no port from the server: {line!r}\n{self.stop()[1]}")
        self.port, self.free = int(match[1]), int(match[2])

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=ANSWER_TIMEOUT)
        self.socks.append(sock)
        return sock

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> tuple[int, str]:
        """Close every client socket, wait for the process (kill it if it lingers), close the pipes.

        Returns its exit status and stderr. Idempotent.
        """
        if self._result is None:
            for sock in self.socks:
                sock.close()
            try:
                code = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            with self.proc.stdout, self.proc.stderr:
                self._result = code, self.proc.stderr.read().decode()
        return self._result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


def read_line(sock: socket.socket) -> bytes | None:
    """One reply line; None if the server closed (EOF or reset); fails on a timeout."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, ConnectionAbortedError):
            return None
        except socket.timeout:
            raise AssertionError(f"no reply and no close within {ANSWER_TIMEOUT}s "
                                 f"(got {data!r}): the peer was left hanging") from None
        if not chunk:
            assert not data, f"the server closed in the middle of a reply: {data!r}"
            return None
        data += chunk
    return data


def exchange(sock: socket.socket, line: bytes) -> bytes | None:
    """Send *line*; its reply without the line end, or None if the server closed the connection."""
    try:
        sock.sendall(line + b"\n")
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
        return None
    reply = read_line(sock)
    return None if reply is None else reply.rstrip(b"\r\n")


def ping(sock: socket.socket, i: int) -> str:
    """'echo' if served, 'closed' if turned away."""
    reply = exchange(sock, b"ping %d" % i)
    if reply is None:
        return "closed"
    assert reply == b"echo ping %d" % i
    return "echo"


def parse_stats(reply: bytes | None, kind: str) -> dict[str, int]:
    assert reply is not None, f"the server closed the connection that asked for {kind}"
    got, *fields = reply.decode().split()
    assert got == kind, reply
    return {key: int(value) for key, value in (field.split("=") for field in fields)}


def stats(sock: socket.socket) -> dict[str, int]:
    return parse_stats(exchange(sock, b"stats"), "stats")


def start_window(sock: socket.socket) -> None:
    assert exchange(sock, b"window") == b"window started"


def window_result(sock: socket.socket) -> dict[str, int]:
    return parse_stats(read_line(sock), "window")


@needs_fd_limits
@pytest.mark.parametrize("selector_name", SELECTOR_NAMES)
def test_out_of_descriptors_the_server_sheds_without_spinning_and_recovers(selector_name):
    server = EmfileServer(selector_name)
    try:
        assert HEADROOM <= server.free < SEQUENTIAL
        # One at a time, each answered before the next connects: every
        # descriptor is used, then each newcomer is turned away at once.
        # (The accept() after the last descriptor is taken fails with
        # EMFILE although nobody is waiting: that must not pause the
        # listener, or the next peers would hang.)
        first = [ping(server.connect(), i) for i in range(SEQUENTIAL)]
        assert first == ["echo"] * server.free + ["closed"] * (SEQUENTIAL - server.free)
        assert server.alive()

        # The rest in one burst, inside a measurement window on the server's
        # loop: turning them away must not make it spin (a level-triggered
        # listener left readable does >10^4 iterations in the window; each
        # newcomer is worth an iteration or two).
        start_window(server.socks[0])
        burst = [server.connect() for _ in range(FLOOD - SEQUENTIAL)]
        window = window_result(server.socks[0])
        assert window["iterations"] < 2 * len(burst) + 20, window
        rest = [ping(sock, SEQUENTIAL + i) for i, sock in enumerate(burst)]
        assert rest == ["closed"] * len(burst)
        assert server.alive()
        # At the limit with nobody waiting, the loop idles too.
        start_window(server.socks[0])
        idle = window_result(server.socks[0])
        assert idle["iterations"] < 20, idle
        assert idle["shed"] == FLOOD - server.free

        # The first peers were served all along and still are.
        served = server.socks[:server.free]
        assert [ping(sock, i) for i, sock in enumerate(served)] == ["echo"] * server.free
        now = stats(served[0])
        assert now["shed"] == now["stats_shed"] == FLOOD - server.free > 0
        assert now["connections"] == server.free

        # Some served peers leave: their descriptors serve newcomers again.
        for sock in served[1:6]:
            sock.close()
        turned_away = 0
        for n in range(5):
            deadline = time.monotonic() + 10.0
            while True:
                sock = server.connect()
                if ping(sock, 1000 + n) == "echo":
                    break
                sock.close()
                turned_away += 1  # the server had not finished the closes yet
                assert time.monotonic() < deadline, "service did not resume after descriptors were freed"
                stats(served[0])  # a round trip: the server's loop turns before the next try
        # Full again: the next newcomer is turned away at once (the spare
        # descriptor was re-reserved after each shedding).
        assert ping(server.connect(), 2000) == "closed"
        after = stats(served[0])
        assert after["connections"] == server.free
        assert after["shed"] == now["shed"] + turned_away + 1

        assert exchange(served[0], b"quit") is None  # the server closes everything and exits
    except BaseException:
        server.kill()
        raise
    finally:
        code, err = server.stop()
    assert code == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    # Logged once per burst, not once per peer turned away (56 or more): a
    # burst ends at a successful accept, and only 5 came after the first burst.
    warnings = err.count("Too many open files")
    assert 1 <= warnings <= 1 + 5, err


# -- 2. no descriptor leaks, whichever way a connection ends ---------------------------

@needs_fd_limits
@pytest.mark.parametrize("selector_name", SELECTOR_NAMES)
def test_connection_cycles_leak_no_descriptors(selector_name, tmp_path):
    cycles = 300  # 20 descriptors are left: a leak of one per cycle would run out by far
    result = subprocess.run(
        [sys.executable, "-m", "tests.scripts.fd_cycles", selector_name, str(tmp_path), str(cycles), "20"],
        cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    err = result.stderr.decode()
    assert result.returncode == 0 and not err, err
    counts = dict(field.split("=") for field in result.stdout.decode().split())
    assert sum(int(n) for n in counts.values()) == cycles
    assert len(counts) == 9 and all(int(n) > 0 for n in counts.values()), counts


# -- 3. max_connections, and closing listeners -------------------------------------------

class Echo(Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Clients:
    """Plain client sockets and what each has received so far (read without blocking)."""

    def __init__(self, address, n: int) -> None:
        self.socks: list[socket.socket] = []
        self.received: list[bytes] = []
        try:
            for _ in range(n):
                self.add(address)
        except BaseException:
            self.close()
            raise

    def add(self, address) -> socket.socket:
        # Loopback: connect() completes in the kernel, accepted or not.
        sock = socket.create_connection(address, timeout=ANSWER_TIMEOUT)
        self.socks.append(sock)
        self.received.append(b"")
        sock.setblocking(False)
        return sock

    def poll(self) -> list[bytes]:
        for i, sock in enumerate(self.socks):
            if sock.fileno() == -1:
                continue
            try:
                self.received[i] += sock.recv(4096)
            except BlockingIOError:
                pass
        return self.received

    def close(self) -> None:
        for sock in self.socks:
            sock.close()


def test_max_connections_keeps_extra_peers_waiting_until_one_leaves(reactor):
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0, max_connections=3)
    clients = Clients(listener.address, 5)  # all five wait in the backlog before the loop runs
    try:
        msgs = [b"hello %d" % i for i in range(5)]
        for sock, msg in zip(clients.socks, msgs):
            sock.sendall(msg)
        run_until(reactor, lambda: clients.poll()[:3] == msgs[:3])
        assert len(listener.connections) == 3
        for _ in range(5):  # more iterations: a listener still watched would accept #4 and #5
            reactor.run_once(0.01)
        assert clients.poll()[3:] == [b"", b""]
        assert len(listener.connections) == 3

        clients.socks[0].close()
        run_until(reactor, lambda: clients.poll()[3] == msgs[3])  # it waited, it was not closed
        assert len(listener.connections) == 3
        assert clients.poll()[4] == b""

        clients.socks[1].close()
        run_until(reactor, lambda: clients.poll()[4] == msgs[4])
        assert len(listener.connections) == 3

        # The server closing a connection frees a place too.
        newcomer = clients.add(listener.address)
        newcomer.sendall(b"late")
        for _ in range(5):
            reactor.run_once(0.01)
        assert clients.poll()[5] == b""
        next(iter(listener.connections)).close()
        run_until(reactor, lambda: clients.poll()[5] == b"late")
        assert len(listener.connections) == 3
    finally:
        clients.close()
        listener.close()


def test_max_connections_must_be_positive(reactor):
    with pytest.raises(ValueError, match="max_connections"):
        reactor.listen_tcp(Echo, "127.0.0.1", 0, max_connections=0)


@pytest.mark.skipif(fd_dir() is None, reason="needs /proc/self/fd or /dev/fd")
def test_listener_close_is_idempotent_and_releases_every_descriptor(reactor):
    gc.collect()  # nothing left for a finaliser to close while we count
    before = open_fds()
    listener = reactor.listen_tcp(Echo, "127.0.0.1", 0)
    port = listener.address[1]
    clients = Clients(listener.address, 1)
    try:
        clients.socks[0].sendall(b"one")
        run_until(reactor, lambda: clients.poll()[0] == b"one")

        listener.close()
        listener.close()
        assert not listener.is_serving() and listener.address is None
        assert all(sock.fileno() == -1 for sock in listener.sockets)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT).close()

        # A connection it accepted lives on.
        clients.socks[0].sendall(b"two")
        run_until(reactor, lambda: clients.poll()[0] == b"onetwo")
        assert len(listener.connections) == 1
    finally:
        clients.close()
    run_until(reactor, lambda: not listener.connections)
    # The listening socket, its reserved descriptor and the connection: all closed.
    assert open_fds() - before == set()


def test_unix_listener_removes_its_socket_file_on_close(reactor, tmp_path):
    path = tmp_path / "echo.sock"
    listener = reactor.listen_unix(Echo, path)
    assert stat.S_ISSOCK(path.stat().st_mode)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.settimeout(ANSWER_TIMEOUT)
        client.connect(str(path))
        client.setblocking(False)
        client.sendall(b"hi")
        got = bytearray()

        def echoed():
            try:
                got.extend(client.recv(16))
            except BlockingIOError:
                pass
            return got == b"hi"

        run_until(reactor, echoed)
        listener.close()
        assert not path.exists()
        assert all(sock.fileno() == -1 for sock in listener.sockets)
        listener.close()  # idempotent, and no error now that the file is gone
    finally:
        client.close()


def test_unix_listener_leaves_a_file_that_replaced_its_socket(reactor, tmp_path):
    path = tmp_path / "echo.sock"
    listener = reactor.listen_unix(Echo, path)
    path.unlink()
    path.write_text("someone else's")
    listener.close()
    assert path.read_text() == "someone else's"
