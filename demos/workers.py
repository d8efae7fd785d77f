"""``--workers N``: one server on N cores, as N processes behind one port (SO_REUSEPORT).

Theory of operation
-------------------
A reactor runs on one thread, so one server process uses one core. To use
N, a small *supervisor* process starts N *workers*: the same program, run
again (``python -m demos.echo_server ...``) with the same options, each with
its own reactor and its own listening socket on the same port. Each socket
has ``SO_REUSEPORT`` set, so the kernel accepts connections on all of them
and spreads new connections over them (by a hash of the addresses). Nothing
is shared between workers; a chat's workers share rooms through Redis
(``--redis``).

The supervisor:

- **Reserves the ports first.** It binds (without listening) a socket with
  ``SO_REUSEPORT`` on each TCP port the program serves, and keeps it while
  it runs: ``--port 0`` becomes one concrete port that every worker, and
  every replacement worker, then binds too, and no other program can take
  the port between a worker's death and its replacement. A bound socket
  that does not listen gets no connections. (A UDP port, the echo
  server's, is only checked: a bound UDP socket would get datagrams.) Without ``SO_REUSEPORT`` (not every
  system has it) it says so in one line and exits with status 2.
- **Starts the workers** with the concrete ports appended to their options
  (the last occurrence of an option wins), ``REACTOR_WORKER=<n>`` in their
  environment (so they set ``SO_REUSEPORT`` and tag their log lines), in a
  process group of their own (a Ctrl-C in the terminal reaches the
  supervisor, which passes it on: one signal per worker, not two), with
  stdout to the supervisor (the first worker's start-up lines are shown:
  where it listens, how to connect) and a *lifeline* on stdin: a pipe the
  supervisor never writes to. A worker whose stdin reaches end of file has
  lost its supervisor (even to SIGKILL) and shuts down as if signalled.
- **Restarts a worker that dies**, after a backoff (0.5 s, doubling up to
  10 s for a worker that keeps dying soon after starting; back to 0.5 s
  once one has run for 30 s), with one log line saying which worker, its
  pid, how it ended and when it comes back. If a worker fails while the
  workers are first starting (a bad option, a port that is taken), the
  supervisor stops the others and exits with that worker's status: a
  mistake is reported once, not retried forever.
- **Stops them all** on SIGINT or SIGTERM: the signal is passed to every
  worker, which shuts down gracefully (a chat tells its users and flushes
  within its ``--shutdown-grace``); workers still running after the grace
  period and a margin are killed; then the supervisor exits with status 0.
  A second signal is passed on too (the chat then aborts at once).

The supervisor is itself a reactor program: signals, child exits
(``SIGCHLD``), the workers' output and the restart timers are callbacks.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from reactor import Reactor

__all__ = ["Endpoint", "add_workers_option", "check_workers", "worker_index", "is_worker", "supervise",
           "watch_lifeline", "log_tag", "reuse_port_problem"]

ENV = "REACTOR_WORKER"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
HEALTHY_AFTER = 30.0  # a worker that ran this long resets its backoff
KILL_MARGIN = 5.0  # seconds past the grace period before stragglers are killed
START_TIMEOUT = 30.0  # for the workers to say where they listen, at start

log = logging.getLogger("demos.workers")


def worker_index() -> Optional[int]:
    """This process's worker number (1..N) if a supervisor started it, else None."""
    value = os.environ.get(ENV, "")
    return int(value) if value.isdigit() else None


def is_worker() -> bool:
    return worker_index() is not None


def log_tag() -> str:
    """``"worker 2 "`` in a worker (for log formats), else ``""``."""
    index = worker_index()
    return f"worker {index} " if index is not None else ""


def add_workers_option(parser: argparse.ArgumentParser) -> None:
    from .cli import positive_int

    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="run N worker processes behind the same port (SO_REUSEPORT), under a "
                             "supervisor that restarts them; default: this process serves alone")


def check_workers(args: argparse.Namespace) -> Optional[str]:
    """The option problems of ``--workers`` shared by every server (one line), or None."""
    if args.workers is None or is_worker():
        return None
    if getattr(args, "trace", None):
        return "--trace FILE records one process; with --workers use --trace-stderr"
    return reuse_port_problem()


def reuse_port_problem() -> Optional[str]:
    """None if this system has SO_REUSEPORT, else the one line saying so."""
    message = ("--workers needs SO_REUSEPORT (several sockets listening on one port), "
               "which this system does not have")
    if not hasattr(socket, "SO_REUSEPORT"):
        return message
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        return message
    finally:
        probe.close()
    return None


def watch_lifeline(reactor: Any, on_gone: Callable[[], None]) -> None:
    """In a worker: call *on_gone()* when the supervisor is gone (our stdin, its pipe, ends)."""
    if not is_worker():
        return
    fd = 0

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            reactor.remove_reader(fd)
            logging.getLogger("demos").warning("the supervisor is gone: shutting down")
            on_gone()

    try:
        reactor.add_reader(fd, readable)
    except (OSError, ValueError):  # no stdin to watch
        pass


@dataclass
class Endpoint:
    """A port the program serves: the option that sets it, where, and whether UDP shares the number."""

    option: str
    host: str
    port: int
    udp: bool = False
    socks: list[socket.socket] = field(default_factory=list)


def _reserve(endpoint: Endpoint) -> None:
    """Bind (not listen) SO_REUSEPORT sockets on the endpoint's port; port 0 becomes a concrete one.

    A UDP port is only checked, not kept: a bound UDP socket is in the
    kernel's reuseport group as soon as it is bound, and would get its share
    of the datagrams without ever reading them.
    """
    attempts = 10 if endpoint.port == 0 else 1
    last: Optional[OSError] = None
    for _ in range(attempts):
        port = endpoint.port
        socks: list[socket.socket] = []
        try:
            infos = socket.getaddrinfo(endpoint.host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                       socket.AI_PASSIVE)
            kinds = [socket.SOCK_STREAM] + ([socket.SOCK_DGRAM] if endpoint.udp else [])
            for family, _, _, _, sockaddr in infos:
                for kind in kinds:
                    sock = socket.socket(family, kind)
                    socks.append(sock)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((sockaddr[0], port, *sockaddr[2:]))
                    port = sock.getsockname()[1]
            for sock in socks:
                if sock.type == socket.SOCK_DGRAM:
                    sock.close()
            endpoint.port, endpoint.socks = port, [s for s in socks if s.type == socket.SOCK_STREAM]
            return
        except OSError as exc:
            for sock in socks:
                sock.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
    assert last is not None
    raise last


@dataclass
class _Slot:
    index: int
    proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
    started: float = 0.0
    ready: bool = False
    ever_ready: bool = False
    backoff: float = FIRST_BACKOFF
    restart: Any = None
    buf: bytes = b""
    spawns: int = 0


def _how(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


class Supervisor:
    def __init__(self, reactor: Any, module: str, argv: Sequence[str], endpoints: Sequence[Endpoint],
                 workers: int, grace: float, ready: str = "listening on ") -> None:
        self.reactor = reactor
        self.ready = ready
        self.module = module
        self.argv = list(argv)
        self.endpoints = list(endpoints)
        self.grace = grace
        self.slots = [_Slot(i + 1) for i in range(workers)]
        self.stopping = False
        self.starting = True
        self.status = 0
        self._kill_timer: Any = None
        self._start_timer: Any = None

    def command(self) -> list[str]:
        overrides: list[str] = []
        for endpoint in self.endpoints:
            overrides += [endpoint.option, str(endpoint.port)]
        return [sys.executable, "-m", self.module, *self.argv, *overrides]

    def start(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.reactor.add_signal_handler(sig, self.stop, sig)
        self.reactor.add_signal_handler(signal.SIGCHLD, self.reap)
        self._start_timer = self.reactor.call_later(START_TIMEOUT, self._slow_start)
        for slot in self.slots:
            self._spawn(slot)
        self.reactor.call_later(1.0, self._poll)

    def _spawn(self, slot: _Slot) -> None:
        slot.restart = None
        if self.stopping:
            return
        env = dict(os.environ)
        env[ENV] = str(slot.index)
        slot.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                     start_new_session=True)
        slot.started = time.monotonic()
        slot.spawns += 1
        slot.ready = False
        slot.buf = b""
        assert slot.proc.stdout is not None
        os.set_blocking(slot.proc.stdout.fileno(), False)
        self.reactor.add_reader(slot.proc.stdout, self._output, slot)
        log.debug("worker %d started (pid %d)", slot.index, slot.proc.pid)

    def _output(self, slot: _Slot) -> None:
        proc = slot.proc
        assert proc is not None and proc.stdout is not None
        try:
            data = os.read(proc.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.reactor.remove_reader(proc.stdout)
            self.reap()
            return
        slot.buf += data
        *lines, slot.buf = slot.buf.split(b"\n")
        slot.buf = slot.buf[-4096:]
        for raw in lines:
            line = raw.decode("utf-8", "replace")
            if slot.index == 1 and slot.spawns == 1:
                print(line, flush=True)  # the first worker's start-up lines: where, how to connect
            if line.startswith(self.ready):
                slot.ready = True
                if slot.ever_ready:
                    log.info("worker %d (pid %d) is back", slot.index, proc.pid)
                slot.ever_ready = True
                self._maybe_started()

    def _maybe_started(self) -> None:
        if self.starting and all(s.ever_ready for s in self.slots):
            self.starting = False
            if self._start_timer is not None:
                self._start_timer.cancel()
                self._start_timer = None
            pids = ", ".join(str(s.proc.pid) for s in self.slots if s.proc is not None)
            print(f"{len(self.slots)} worker(s) serving (pids {pids}); supervisor pid {os.getpid()}: "
                  f"SIGTERM or Ctrl-C stops them all, and a worker that dies is restarted", flush=True)

    def _slow_start(self) -> None:
        self._start_timer = None
        if self.starting:
            log.error("the workers did not start within %g s; stopping", START_TIMEOUT)
            self.status = 1
            self.stop(signal.SIGTERM)

    def _poll(self) -> None:
        self.reap()
        self.reactor.call_later(1.0, self._poll)

    def reap(self) -> None:
        for slot in self.slots:
            proc = slot.proc
            if proc is None or proc.poll() is None:
                continue
            status = proc.returncode
            slot.proc = None
            if proc.stdout is not None:
                self.reactor.remove_reader(proc.stdout)
                proc.stdout.close()
            if proc.stdin is not None:
                proc.stdin.close()
            if self.stopping:
                log.debug("worker %d (pid %d) %s", slot.index, proc.pid, _how(status))
                continue
            if self.starting and not slot.ever_ready:
                log.error("worker %d (pid %d) %s while starting; stopping the others", slot.index, proc.pid,
                          _how(status))
                self.status = status if status > 0 else 1
                self.stop(signal.SIGTERM)
                continue
            lived = time.monotonic() - slot.started
            if lived >= HEALTHY_AFTER:
                slot.backoff = FIRST_BACKOFF
            delay = slot.backoff
            slot.backoff = min(MAX_BACKOFF, slot.backoff * 2)
            log.warning("worker %d (pid %d) %s after %.1f s; restarting it in %.1f s", slot.index, proc.pid,
                        _how(status), lived, delay)
            slot.restart = self.reactor.call_later(delay, self._spawn, slot)
        if self.stopping and all(s.proc is None for s in self.slots):
            if self._kill_timer is not None:
                self._kill_timer.cancel()
                self._kill_timer = None
            self.reactor.stop()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        first = not self.stopping
        self.stopping = True
        for slot in self.slots:
            if slot.restart is not None:
                slot.restart.cancel()
                slot.restart = None
        live = [s for s in self.slots if s.proc is not None]
        if first:
            log.info("stopping %d worker(s)", len(live))
            self._kill_timer = self.reactor.call_later(self.grace + KILL_MARGIN, self._kill)
        for slot in live:
            assert slot.proc is not None
            try:
                slot.proc.send_signal(sig)
            except ProcessLookupError:  # pragma: no cover - it just died: reap() sees it
                pass
        self.reap()

    def _kill(self) -> None:
        self._kill_timer = None
        for slot in self.slots:
            if slot.proc is not None:
                log.warning("worker %d (pid %d) did not stop within %g s: killing it", slot.index, slot.proc.pid,
                            self.grace + KILL_MARGIN)
                slot.proc.kill()
        self.reap()

    def close(self) -> None:
        for slot in self.slots:
            if slot.proc is not None:  # only if the loop was interrupted
                slot.proc.kill()
                slot.proc.wait()
                for pipe in (slot.proc.stdin, slot.proc.stdout):
                    if pipe is not None:
                        pipe.close()
                slot.proc = None


def supervise(prog: str, module: str, argv: Sequence[str], endpoints: Sequence[Endpoint], workers: int,
              grace: float = 5.0, ready: str = "listening on ") -> int:
    """Run *module* as *workers* processes behind *endpoints*; return the exit status.

    *argv*: the program's own options (the workers get them, plus the
    concrete ports). The caller has validated them already. A worker is
    ready when it prints a line starting with *ready* (the last line of
    what it prints at start: the supervisor shows the first worker's lines
    up to there, then its own).
    """
    problem = reuse_port_problem()
    if problem:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    from .cli import why

    reserved: list[Endpoint] = []
    try:
        for endpoint in endpoints:
            try:
                _reserve(endpoint)
            except OSError as exc:
                what = " for udp" if endpoint.udp and exc.errno == errno.EADDRINUSE else ""
                print(f"{prog}: cannot listen on {endpoint.host}:{endpoint.port}{what}: {why(exc)} "
                      f"(try another {endpoint.option})", file=sys.stderr)
                return 2
            reserved.append(endpoint)
        with Reactor() as reactor:
            supervisor = Supervisor(reactor, module, argv, endpoints, workers, grace, ready)
            try:
                supervisor.start()
                reactor.run()
            finally:
                supervisor.close()
        log.info("all workers stopped")
        return supervisor.status
    finally:
        for endpoint in reserved:
            for sock in endpoint.socks:
                sock.close()
