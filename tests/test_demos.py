"""The demos as a user runs them: subprocesses on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GREETING = b"Hello, Client! Welcome to the server.\r\n"
DEADLINE = 20.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def greeting_server():
    """Start the server on port 0 and read the port it announces."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "demos.greeting_server", "--port", "0"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("listening on "), (line, proc.stderr.read() if proc.poll() is not None else "")
        host, port = line.split()[-1].rsplit(":", 1)
        yield proc, host, int(port)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=DEADLINE)
        proc.stdout.close()
        proc.stderr.close()


def test_greeting_server_greets_each_raw_client(greeting_server):
    _, host, port = greeting_server
    socks = [socket.create_connection((host, port), timeout=DEADLINE) for _ in range(20)]
    try:
        for sock in socks:
            data = b""
            while chunk := sock.recv(4096):  # the server hangs up after the greeting
                data += chunk
            assert data == GREETING
    finally:
        for sock in socks:
            sock.close()


def test_greeting_client_against_server(greeting_server):
    _, host, port = greeting_server
    result = subprocess.run(
        [sys.executable, "-m", "demos.greeting_client", "--host", host, "--port", str(port),
         "--count", "100", "--quiet"],
        cwd=ROOT, env=_env(), capture_output=True, timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip().splitlines()[-1] == "100/100 greetings received"


def test_greeting_client_reports_refused_connection():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "demos.greeting_client", "--port", str(port), "--count", "3"],
            cwd=ROOT, env=_env(), capture_output=True, timeout=DEADLINE,
        )
    assert result.returncode == 1
    assert result.stdout.decode().strip().splitlines()[-1] == "0/3 greetings received"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_greeting_server_exits_cleanly_on_signal(greeting_server, sig):
    proc, host, port = greeting_server
    with socket.create_connection((host, port), timeout=DEADLINE) as sock:
        assert sock.recv(4096).startswith(b"Hello")  # it is serving
    proc.send_signal(sig)
    assert proc.wait(timeout=DEADLINE) == 0
    assert b"Traceback" not in proc.stderr.read()


@pytest.mark.parametrize("module", ["demos.greeting_server", "demos.greeting_client"])
def test_demo_help(module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=_env(),
                            capture_output=True, timeout=DEADLINE)
    assert result.returncode == 0
    assert b"--port" in result.stdout
