"""``--workers N`` (demos/workers.py): N processes behind one port, supervised."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from .workers_util import ROOT, Supervised, alive, connection_owners, env, wait_gone

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"),
                                reason="SO_REUSEPORT and /proc (Linux) are needed to see which worker serves whom")


@pytest.fixture
def supervised():
    started: list[Supervised] = []

    def start(module: str, *args: str) -> Supervised:
        started.append(Supervised(module, *args))
        return started[-1]

    yield start
    for s in started:
        s.close()


def test_four_workers_behind_one_port_serve_400_connections(supervised):
    server = supervised("demos.echo_server", "--port", "0", "--no-udp", "--workers", "4")
    assert len(server.pids) == 4
    socks = []
    try:
        for i in range(400):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(b"ping %d\n" % i)
        for i, s in enumerate(socks):
            expected = b"ping %d\n" % i
            got = b""
            while len(got) < len(expected):
                chunk = s.recv(100)
                assert chunk, f"connection {i} closed"
                got += chunk
            assert got == expected
        owners = connection_owners(server.pids, server.port)
        mine = {s.getsockname()[1] for s in socks}
        assert mine <= set(owners), "every connection is held by a worker"
        per_worker = {pid: sum(1 for port in mine if owners[port] == pid) for pid in server.pids}
        assert all(n > 0 for n in per_worker.values()), per_worker  # the kernel spread them
        assert sum(per_worker.values()) == 400
    finally:
        for s in socks:
            s.close()
    assert server.stop() == 0
    assert not any(alive(pid) for pid in server.pids)


def test_udp_echo_with_workers_loses_no_datagram(supervised):
    server = supervised("demos.echo_server", "--port", "0", "--workers", "2")
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(30)]
    try:
        for i, s in enumerate(socks):  # 30 source ports: the kernel spreads them over the workers
            s.settimeout(10)
            s.sendto(b"datagram %d" % i, ("127.0.0.1", server.port))
        for i, s in enumerate(socks):
            assert s.recv(100) == b"datagram %d" % i  # none went to a socket that does not read
    finally:
        for s in socks:
            s.close()
    assert server.stop() == 0


def greet(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while chunk := s.recv(100):
            data += chunk
        return data


def test_a_dead_worker_is_restarted_and_sigterm_stops_all(supervised):
    server = supervised("demos.greeting_server", "--port", "0", "--workers", "2")
    assert greet(server.port).startswith(b"Hello")
    victim = server.pids[0]
    os.kill(victim, signal.SIGKILL)
    match = server.stderr_until(r"worker 1 \(pid (\d+)\) was killed by SIGKILL after [\d.]+ s; restarting it in "
                                r"0\.5 s")
    assert int(match.group(1)) == victim
    server.stderr_until(r"worker 1 \(pid \d+\) is back")
    for _ in range(20):  # whichever worker the kernel picks, it answers
        assert greet(server.port).startswith(b"Hello")
    started = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 5
    assert "all workers stopped" in server.stderr()
    assert not any(alive(pid) for pid in server.pids)


def test_workers_stop_when_their_supervisor_is_killed(supervised):
    server = supervised("demos.echo_server", "--port", "0", "--no-udp", "--workers", "2")
    server.stop(signal.SIGKILL)
    wait_gone(server.pids, timeout=10)  # each saw its lifeline (stdin) end, and shut down


def test_the_chat_with_workers_is_a_chat(supervised, tmp_path):
    pytest.importorskip("hiredis")
    from .redis_server import RedisServer, need_redis

    need_redis()
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        server = supervised("demos.chat_server", "--port", "0", "--workers", "2", "--redis", redis.url)
        assert server.lines[0].startswith("listening on 127.0.0.1:")
        assert any(l.startswith("Ctrl-C") for l in server.lines)
        assert server.stop() == 0
    finally:
        redis.stop()


def run(*args: str, code: str = "") -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", *args]
    return subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv, message", [
    (["demos.echo_server", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
    (["demos.greeting_server", "--workers", "two"], "argument --workers: expected an integer, got 'two'"),
    (["demos.echo_server", "--workers", "2", "--trace", "x.json"], "--trace FILE records one process"),
    (["demos.chat_server", "--workers", "2"], "--workers needs --redis"),
    (["demos.chat_server", "--workers", "1", "--monitor", "0"], "--monitor serves one process"),
])
def test_bad_workers_options_are_one_line(argv, message):
    result = run(*argv)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_without_so_reuseport_one_clear_error():
    code = ("import socket, sys; del socket.SO_REUSEPORT; from demos.echo_server import main; "
            "sys.exit(main(['--port', '0', '--workers', '2']))")
    result = run(code=code)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("--workers needs SO_REUSEPORT (several sockets listening on one port), "
                                          "which this system does not have (see --help)")
    assert result.stderr.count("\n") == 1


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("demos.greeting_server", "--port", str(port), "--workers", "2")
    assert result.returncode == 2
    assert result.stderr == (f"python -m demos.greeting_server: cannot listen on 127.0.0.1:{port}: "
                             f"Address already in use (try another --port)\n")
