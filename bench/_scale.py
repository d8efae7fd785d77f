"""Plumbing for the scaling benchmarks (``bench.workers``, ``bench.chat_redis``).

* ``RedisProcess``: a throwaway ``redis-server`` on a free loopback port, in a
  temporary directory, without persistence (the benchmarks' backplane).
* ``Supervised``: a server started with ``--workers N`` through
  ``bench._child`` (so it dies with the benchmark); its port and the pids of
  its workers (read from what the supervisor prints), and their CPU time.
* ``SpreadFanOut``: ``chat_fanout.FanOut`` whose clients are dealt round
  robin over several servers' ports (the senders too).
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

from bench._proc import Child, cpu_ticks
from bench.chat_fanout import Client, FanOut


class RedisProcess:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (sh tests/install_components.sh installs it)")
        self.dir = tempfile.TemporaryDirectory(prefix="bench-redis-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir.name, "--logfile", os.path.join(self.dir.name, "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            sock.recv(16)

    def cpu_ticks(self) -> Optional[int]:
        return cpu_ticks(self.proc.pid)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


class Supervised:
    """``python -m MODULE ARGS`` (with or without ``--workers``); ``pids``: the processes that serve."""

    def __init__(self, module: str, args: Sequence[str], timeout: float = 60) -> None:
        self.child = Child([sys.executable, "-m", "bench._child", module, *args])
        self.port = 0
        self.pids = [self.child.pid]
        workers = "--workers" in args
        while True:
            line = self.child.readline(timeout)
            if line is None:
                raise RuntimeError(f"{module} exited: {self.child.stderr_tail()}")
            if line.startswith("listening on ") and not self.port:
                self.port = int(line.rsplit(":", 1)[1])
                if not workers:
                    break
            match = re.search(r"pids ([\d, ]+)\)", line)
            if match:
                self.pids = [int(p) for p in match.group(1).split(", ")]
                break

    def cpu_ticks(self) -> Optional[int]:
        ticks = [cpu_ticks(pid) for pid in self.pids]
        return None if any(t is None for t in ticks) else sum(t for t in ticks if t is not None)

    def close(self) -> None:
        self.child.close(grace=15)


class SpreadFanOut(FanOut):
    """Clients (and so senders) dealt round robin over *ports*."""

    def __init__(self, ports: Sequence[int], n: int, senders: int, window: int, nap: float = 0.0) -> None:
        super().__init__(ports[0], n, senders, window, nap)
        self.ports = list(ports)

    def connect_batch(self, count: int) -> list[Client]:
        batch = []
        for _ in range(count):
            port = self.ports[len(self.clients) % len(self.ports)]
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            c = Client(len(self.clients), sock)
            self.clients.append(c)
            self.sel.register(sock, selectors.EVENT_READ, c)
            batch.append(c)
        return batch


def run_fanout(fan: FanOut, cpu: Any, warmup: float, duration: float, n: int) -> dict[str, Any]:
    """Join everyone, then run *fan* with *cpu()* (server ticks, summed) sampled around the window."""
    t = time.monotonic()
    fan.join_all(deadline=t + 60 + n / 10)
    joined = time.monotonic() - t
    # FanOut.run samples one pid; we want several: patch cpu_ticks through a fake pid lookup.
    import bench.chat_fanout as cf

    real = cf.cpu_ticks
    cf.cpu_ticks = lambda pid: cpu()  # type: ignore[assignment]
    try:
        row = fan.run(0, warmup, duration)
    finally:
        cf.cpu_ticks = real  # type: ignore[assignment]
    row["join_s"] = joined
    return row


def stop(*things: Any) -> None:
    for thing in things:
        if thing is not None:
            try:
                thing.close()
            except Exception:  # pragma: no cover - best effort at the end of a run
                pass


__all__ = ["RedisProcess", "Supervised", "SpreadFanOut", "run_fanout", "stop"]
