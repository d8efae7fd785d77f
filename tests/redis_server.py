"""A real Redis for the tests: Debian's ``redis-server`` on a loopback port, in a temporary directory.

No persistence (``--save ''``, no AOF): a restart starts empty, as after a
crash. Where ``redis-server`` (or the ``hiredis`` package) is missing the
tests that need it skip with a message saying how to get it, except under
``CI=true``, where a missing component is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

REDIS = shutil.which("redis-server")


def need(component: str, present: bool, how: str) -> None:
    if present:
        return
    message = f"{component} is not available ({how})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; under CI=true a missing component is a failure")
    pytest.skip(message)


def need_hiredis() -> None:
    try:
        import hiredis  # noqa: F401
        present = True
    except ImportError:
        present = False
    need("the hiredis package", present, "pip install -e '.[test]' installs it")


def need_redis() -> None:
    need_hiredis()
    need("redis-server", REDIS is not None, "sh tests/install_components.sh installs it as root")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; ``restart()`` keeps its port."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = 0
        self.proc: Any = None
        self.log = directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        for _ in range(5):
            port = self.port or _free_port()
            assert REDIS is not None
            self.proc = subprocess.Popen(
                [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.dir), "--loglevel", "verbose", "--logfile", str(self.log), "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.ping(port):
                    self.port = port
                    return
                try:  # not listening yet: wait a little (returns at once if it died)
                    self.proc.wait(0.02)
                    break
                except subprocess.TimeoutExpired:
                    pass
            self.stop()
            if self.port:  # a restart on our port: it must come back there
                break
        raise AssertionError(f"redis-server did not start: {self.log.read_text() if self.log.exists() else ''}")

    @staticmethod
    def ping(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop it like a crash (SIGKILL: nothing saved, connections reset)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def command(self, *args: Any) -> Any:
        """One command, blocking (for checks from the test)."""
        import hiredis

        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as sock:
            sock.sendall(hiredis.pack_command(args))
            reader = hiredis.Reader()
            while True:
                reader.feed(sock.recv(65536))
                reply = reader.gets()
                if reply is not False:
                    return reply


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    need_redis()
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
