"""Process plumbing shared by the network benchmarks (Linux-first, degrades elsewhere).

* ``die_with_parent()``: a benchmark child (server, load generator) gets
  SIGTERM when the benchmark that started it dies, so nothing outlives a
  killed run.
* ``raise_nofile()``: the soft RLIMIT_NOFILE up to the hard limit.
* ``cpu_ticks(pid)`` (``sys_ticks(pid)``: its kernel part), ``rss_kib(pid)``, ``hwm_kib(pid)``: a process's own
  CPU accounting (utime + stime from ``/proc/PID/stat``) and memory
  (``VmRSS``, ``VmHWM`` from ``/proc/PID/status``).
* ``pin(pid, cpus)``: ``sched_setaffinity`` when the platform has it.
* ``Child``: a subprocess whose stdout is read line by line with a deadline,
  and which is always terminated, waited for and its pipes closed.
* ``write_json(path, doc)``: results as strict JSON (a figure that could not
  be read, NaN, becomes null).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PARENT_ENV = "REACTOR_BENCH_PARENT"


def child_env(path_first: Sequence[str] = ()) -> dict[str, str]:
    """The environment for a benchmark child: the repository importable, our pid known.

    *path_first*: directories searched before the repository (the compiled
    build of ``bench.compiled``).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*path_first, str(ROOT)]) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env[PARENT_ENV] = str(os.getpid())
    return env


def die_with_parent() -> None:
    """Ask Linux to send us SIGTERM when our parent dies (no-op elsewhere)."""
    expected = os.environ.get(PARENT_ENV)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    # The parent may have died before prctl(): then we were re-parented.
    if expected and os.getppid() != int(expected):
        sys.exit("the benchmark that started this process is gone")


def raise_nofile() -> tuple[int, int]:
    """Raise the soft descriptor limit to the hard one; return (soft, hard)."""
    try:
        import resource
    except ImportError:  # pragma: no cover
        return (1024, 1024)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard_target = max(soft, 1 << 20)
    else:
        hard_target = hard
    if soft != resource.RLIM_INFINITY and soft < hard_target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard_target, hard))
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    return (1 << 30 if soft == inf else soft, 1 << 30 if hard == inf else hard)


def cpu_ticks(pid: int) -> Optional[int]:
    """utime + stime of *pid* (all its threads), in clock ticks; None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = raw[raw.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def sys_ticks(pid: int) -> Optional[int]:
    """stime of *pid* alone (time in the kernel on its behalf: system calls), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return int(raw[raw.rindex(b")") + 2:].split()[12])


def _status_kib(pid: int, key: bytes) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kib(pid: int) -> Optional[int]:
    return _status_kib(pid, b"VmRSS:")


def hwm_kib(pid: int) -> Optional[int]:
    return _status_kib(pid, b"VmHWM:")


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin(pid: int, cpus: Optional[Sequence[int]]) -> bool:
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(pid, set(cpus))
        return True
    except OSError:
        return False


class ChildTimeout(Exception):
    pass


class Child:
    """A benchmark subprocess: stdout read as lines with deadlines; always reaped.

    Use as a context manager; ``close()`` terminates (SIGTERM, then SIGKILL
    after *grace* seconds), waits, and closes every pipe, so no process or
    descriptor outlives the benchmark, whatever went wrong.
    """

    def __init__(self, argv: Sequence[str], *, stdin: bool = False, stderr: Any = None,
                 cpus: Optional[Sequence[int]] = None, path_first: Optional[str] = None) -> None:
        """*path_first*: a directory to run in and import from first (see ``child_env``)."""
        self.argv = list(argv)
        self._stderr_file: Optional[IO[bytes]] = None
        if stderr is None:
            import tempfile

            stderr = self._stderr_file = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=stderr,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            cwd=path_first or str(ROOT), env=child_env([path_first] if path_first else []))
        self.pid = self.proc.pid
        self.pinned = pin(self.pid, cpus)
        self._buf = b""
        self._eof = False

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def readline(self, timeout: float) -> Optional[str]:
        """The next line of stdout (without newline); None at EOF; ChildTimeout after *timeout*."""
        import select

        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            if self._eof:
                if self._buf:
                    line, self._buf = self._buf, b""
                    return line.decode(errors="replace")
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildTimeout(f"no output from {self.argv[0]} within {timeout:g}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    self._buf += chunk
                else:
                    self._eof = True
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode(errors="replace")

    def send_line(self, text: str = "") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def stderr_tail(self, limit: int = 2000) -> str:
        f = self._stderr_file
        if f is None:
            return ""
        try:
            f.seek(0)
            data = f.read()
        except (OSError, ValueError):
            return ""
        return data[-limit:].decode(errors="replace").strip()

    def wait(self, timeout: float) -> Optional[int]:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self, grace: float = 5.0) -> Optional[int]:
        proc = self.proc
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:  # pragma: no cover
                pass
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # pragma: no cover - e.g. a broken stdin pipe
                    pass
        if self._stderr_file is not None:
            self._stderr_file.close()
        return proc.returncode


def _strict(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strict(v) for v in obj]
    return obj


def write_json(path: str, doc: Any) -> None:
    """Write *doc* to *path* as strict JSON: NaN (a figure that could not be read) -> null."""
    import json

    with open(path, "w", encoding="utf-8") as f:
        json.dump(_strict(doc), f, indent=2, allow_nan=False)
