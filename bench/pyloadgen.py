"""The pure-Python fallback of ``bench/loadgen.c``: same command line, same output.

    python -m bench.pyloadgen --port P --conns C --size S --duration D --warmup W
                              [--idle N] [--procs K] [--max-seconds T]

Used by ``bench.echo`` when no C compiler is found (or with ``--client
python``). The C connections are shared among K worker processes (default:
the number of CPUs this process may run on, at most C), each a closed-loop
client on ``selectors``: send S bytes, wait for all S back, repeat. All
workers use one measured window, fixed in advance on the system-wide
monotonic clock, so the coordinator can print ``start`` and ``end`` on
time and merge the workers' histograms afterwards. With ``--idle N`` one
process does everything (see loadgen.c for the sequence).

A Python client is much slower than the C one, so it saturates much sooner:
its ``cpu_frac`` (CPU seconds per second of window, divided by the cores it
had) is what tells you so, and ``bench.echo`` prints the warning.
"""

from __future__ import annotations

import argparse
import json
import math
import selectors
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Optional

from bench._proc import child_env, die_with_parent, raise_nofile, usable_cpus

SUB = 64  # histogram: 128 exact buckets (ns), then 64 per power of two, as in loadgen.c


def bucket_of(v: int) -> int:
    if v < 2 * SUB:
        return v
    shift = v.bit_length() - 7
    return shift * SUB + (v >> shift)


def bucket_mid(b: int) -> float:
    if b < 2 * SUB:
        return float(b)
    shift = b // SUB - 1
    return float((b - shift * SUB) << shift) + (1 << shift) / 2


def quantile(hist: dict[int, int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return 0.0
    want = max(1, int(q * total))
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen >= want:
            return bucket_mid(b)
    return 0.0  # pragma: no cover


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # A reset on close: no TIME_WAIT pile-up over thousands of connections.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    return sock


class Closed:
    """C closed-loop connections on one selector."""

    def __init__(self, host: str, port: int, conns: int, size: int) -> None:
        self.size = size
        self.msg = bytes((97 + i % 26) for i in range(size))
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.state: dict[int, list[Any]] = {}  # fd -> [sock, sent, rcvd, t0, want_out]
        self.hist: dict[int, int] = {}
        self.requests = 0
        self.lat_sum = 0
        self.lat_max = 0
        for _ in range(conns):
            sock = connect(host, port)
            sock.setblocking(False)
            self.socks.append(sock)
            self.state[sock.fileno()] = [sock, 0, 0, 0, False]
            self.sel.register(sock, selectors.EVENT_READ, sock.fileno())

    def close(self) -> None:
        self.sel.close()
        for sock in self.socks:
            sock.close()

    def _push(self, st: list[Any]) -> None:
        sock = st[0]
        while st[1] < self.size:
            try:
                n = sock.send(self.msg[st[1]:] if st[1] else self.msg)
            except (BlockingIOError, InterruptedError):
                break
            st[1] += n
        want = st[1] < self.size
        if want != st[4]:
            st[4] = want
            self.sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0), sock.fileno())

    def start(self, st: list[Any], t: int) -> None:
        st[1] = st[2] = 0
        st[3] = t
        self._push(st)

    def run(self, ws: Optional[int], we: Optional[int], until: int, drain: bool = False,
            on_start: Any = None, on_end: Any = None) -> None:
        """Closed loop until *until* (ns); count requests completed in [ws, we)."""
        started = ended = False
        size, hist = self.size, self.hist
        select, now = self.sel.select, time.monotonic_ns
        state = self.state
        while True:
            t = now()
            if ws is not None and not started and t >= ws:
                started = True
                if on_start:
                    on_start()
            if we is not None and started and not ended and t >= we:
                ended = True
                if on_end:
                    on_end()
            if t >= until:
                return
            if drain and not any(st[3] for st in state.values()):
                return
            nxt = until
            if ws is not None and not started:
                nxt = min(nxt, ws)
            if we is not None and started and not ended:
                nxt = min(nxt, we)
            for key, mask in select((nxt - t) / 1e9 + 0.0005):
                st = state[key.data]
                if mask & selectors.EVENT_WRITE:
                    self._push(st)
                if mask & selectors.EVENT_READ:
                    try:
                        data = st[0].recv(262144)
                    except (BlockingIOError, InterruptedError):
                        continue
                    if not data:
                        raise SystemExit("pyloadgen: the server closed a connection")
                    st[2] += len(data)
                    if st[2] == size:
                        t2 = now()
                        if started and not ended:
                            lat = t2 - st[3]
                            b = bucket_of(lat)
                            hist[b] = hist.get(b, 0) + 1
                            self.requests += 1
                            self.lat_sum += lat
                            if lat > self.lat_max:
                                self.lat_max = lat
                        if drain:
                            st[3] = 0
                        else:
                            self.start(st, t2)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def result(requests: int, duration: float, hist: dict[int, int], lat_sum: int, lat_max: int,
           cpu_s: float, cores: int, conns: int, size: int, idle: int) -> dict[str, Any]:
    return {"client": "python", "requests": requests, "duration": duration,
            "rps": requests / duration if duration > 0 else 0.0,
            "p50_us": quantile(hist, 0.50) / 1e3, "p99_us": quantile(hist, 0.99) / 1e3,
            "mean_us": lat_sum / requests / 1e3 if requests else 0.0, "max_us": lat_max / 1e3,
            "cpu_s": cpu_s, "cpu_frac": cpu_s / duration / cores if duration > 0 else 0.0,
            "cpu_cores": cores, "conns": conns, "size": size, "idle": idle}


def run_worker(args: argparse.Namespace) -> int:
    """One worker: its share of connections, the shared window; JSON on stdout."""
    client = Closed(args.host, args.port, args.conns, args.size)
    cpu = [0.0, 0.0]
    try:
        t = time.monotonic_ns()
        for st in client.state.values():
            client.start(st, t)
        client.run(args.window_start, args.window_end, args.window_end,
                   on_start=lambda: cpu.__setitem__(0, time.process_time()),
                   on_end=lambda: cpu.__setitem__(1, time.process_time()))
    finally:
        client.close()
    say(json.dumps({"requests": client.requests, "hist": client.hist, "lat_sum": client.lat_sum,
                    "lat_max": client.lat_max, "cpu_s": cpu[1] - cpu[0]}))
    return 0


def run_single(args: argparse.Namespace) -> int:
    """Everything in this process: used for --idle, and when one worker is enough."""
    client = Closed(args.host, args.port, args.conns, args.size)
    idle_socks: list[socket.socket] = []
    marks: dict[str, float] = {}

    def mark(name: str) -> None:
        marks[name] = time.monotonic()
        marks["cpu_" + name] = time.process_time()
        say(name)

    try:
        warmup = args.warmup
        t = time.monotonic_ns()
        if args.idle:
            for st in client.state.values():
                client.start(st, t)
            client.run(None, None, t + int(warmup * 1e9))
            client.run(None, None, time.monotonic_ns() + 10 * 10**9, drain=True)
            say("before")
            sys.stdin.readline()
            for i in range(0, args.idle, 64):
                batch = [connect(args.host, args.port) for _ in range(min(64, args.idle - i))]
                idle_socks.extend(batch)
                for sock in batch:
                    sock.sendall(b"x")
                for sock in batch:
                    if sock.recv(1) != b"x":
                        raise SystemExit("pyloadgen: an idle connection was not echoed")
            say("after")
            sys.stdin.readline()
            warmup /= 2
            t = time.monotonic_ns()
        for st in client.state.values():
            client.start(st, t)
        ws = t + int(warmup * 1e9)
        we = ws + int(args.duration * 1e9)
        client.run(ws, we, we, on_start=lambda: mark("start"), on_end=lambda: mark("end"))
        if "end" not in marks:
            mark("end")
    finally:
        client.close()
        for sock in idle_socks:
            sock.close()
    duration = marks["end"] - marks["start"]
    say(json.dumps(result(client.requests, duration, client.hist, client.lat_sum, client.lat_max,
                          marks["cpu_end"] - marks["cpu_start"], 1, args.conns, args.size, args.idle)))
    return 0


def run_coordinator(args: argparse.Namespace) -> int:
    """Start K workers on one window; say start/end on time; merge their results."""
    cpus = usable_cpus()
    procs = args.procs or min(len(cpus), args.conns)
    procs = max(1, min(procs, args.conns))
    if procs == 1:
        return run_single(args)
    shares = [args.conns // procs + (1 if i < args.conns % procs else 0) for i in range(procs)]
    # Room for the workers to start and connect before the warm-up ends.
    ws = time.monotonic_ns() + int((max(args.warmup, 0.0) + 0.5 + 0.05 * procs) * 1e9)
    we = ws + int(args.duration * 1e9)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for share in shares:
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "bench.pyloadgen", "--worker", "--host", args.host,
                 "--port", str(args.port), "--conns", str(share), "--size", str(args.size),
                 "--duration", str(args.duration), "--warmup", str(args.warmup),
                 "--window-start", str(ws), "--window-end", str(we)],
                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=child_env()))
        for target, line in ((ws, "start"), (we, "end")):
            delay = (target - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            say(line)
        docs = []
        for proc in workers:
            out, _ = proc.communicate(timeout=60)
            if proc.returncode != 0:
                raise SystemExit(f"pyloadgen: a worker failed (exit status {proc.returncode})")
            docs.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    hist: dict[int, int] = {}
    for doc in docs:
        for b, n in doc["hist"].items():
            hist[int(b)] = hist.get(int(b), 0) + n
    cores = min(procs, len(cpus))
    say(json.dumps(result(sum(d["requests"] for d in docs), (we - ws) / 1e9, hist,
                          sum(d["lat_sum"] for d in docs), max(d["lat_max"] for d in docs),
                          sum(d["cpu_s"] for d in docs), cores, args.conns, args.size, 0)))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pyloadgen", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=10)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--idle", type=int, default=0)
    parser.add_argument("--procs", type=int, default=0, help="worker processes (default: usable CPUs)")
    parser.add_argument("--max-seconds", type=float, default=0.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--window-start", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--window-end", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.conns < 1 or args.size < 1 or args.duration <= 0 or args.idle < 0:
        parser.error("--conns, --size and --duration must be positive, --idle at least 0")
    die_with_parent()
    raise_nofile()
    # The hard bound on this process's life, as alarm() in loadgen.c.
    bound = args.max_seconds or 60 + 2 * (args.warmup + args.duration) + args.idle / 100
    if hasattr(signal, "alarm"):
        signal.alarm(math.ceil(bound) + 1)
    if args.worker:
        return run_worker(args)
    if args.idle:
        return run_single(args)
    return run_coordinator(args)


if __name__ == "__main__":
    sys.exit(main())
