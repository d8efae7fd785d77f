"""Helpers for tests of ``--workers``: a supervised server as a subprocess, and who serves a connection."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 30.0


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("REACTOR_WORKER", None)
    return e


class Supervised:
    """``python -m MODULE ... --workers N`` started and read until its workers serve."""

    def __init__(self, module: str, *args: str) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env(),
                                     stdout=subprocess.PIPE, stderr=self.log, bufsize=0)
        self.lines: list[str] = []
        try:
            line = self.read_line()
            while "worker(s) serving" not in line:
                line = self.read_line()
        except BaseException:
            self.stop()
            raise
        self.port = int(next(l for l in self.lines if l.startswith("listening on ")).rsplit(":", 1)[1])
        match = re.search(r"pids ([\d, ]+)\); supervisor pid (\d+)", line)
        assert match, line
        self.pids = [int(p) for p in match.group(1).split(", ")]
        self.supervisor = int(match.group(2))
        assert self.supervisor == self.proc.pid

    def read_line(self, timeout: float = DEADLINE) -> str:
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise AssertionError(f"no output within {timeout}s; stderr: {self.stderr()}")
        line = self.proc.stdout.readline().decode()
        if not line:
            raise AssertionError(f"the supervisor exited ({self.proc.wait()}); stderr: {self.stderr()}")
        self.lines.append(line.rstrip("\n"))
        return self.lines[-1]

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stderr_until(self, pattern: str, timeout: float = DEADLINE) -> re.Match:
        """Wait (bounded) for a log line matching *pattern*, by watching the log file grow."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.stderr())
            if match:
                return match
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {pattern!r} within {timeout}s: {self.stderr()}")
            try:  # the file gives no readiness event: wait on the process a little instead
                self.proc.wait(0.05)
            except subprocess.TimeoutExpired:
                pass

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=DEADLINE)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.stop()
        self.log.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int], timeout: float = DEADLINE) -> None:
    """Wait until every process in *pids* has exited (a pidfd becomes readable then); fail after *timeout*."""
    import time

    deadline = time.monotonic() + timeout
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            while alive(pid):  # readable at exit; a zombie (not our child) is gone for us
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"process {pid} still running after {timeout}s")
                select.select([fd], [], [], min(remaining, 0.5))
        finally:
            os.close(fd)


def connection_owners(pids: list[int], server_port: int) -> dict[int, int]:
    """client port -> pid of the process holding the server side of that loopback connection (Linux /proc)."""
    inode_of: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.readlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == server_port and inode != "0":
                inode_of[f"socket:[{inode}]"] = int(remote.rsplit(":", 1)[1], 16)
    owners: dict[int, int] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            client_port: Optional[int] = inode_of.get(target)
            if client_port is not None:
                owners[client_port] = pid
    return owners
