"""Echo servers side by side: reactor (interpreted and compiled), asyncio, uvloop and Twisted, one load generator.

Run from the repository root::

    python -m bench.echo                      # the full grid, 3 repeats (about 10 minutes on 2 cores)
    python -m bench.echo --quick              # a smoke run: tiny grid, short windows
    python -m bench.echo --sizes 1024 --concurrency 10,100 --repeat 5 --json echo.json

uvloop and Twisted are optional (``pip install -e '.[bench]'``); without
them their rows say "not installed". The ``reactor-compiled`` row is the
same source compiled with mypyc, built on the fly (``bench.compiled``; it
needs mypy, setuptools and a C compiler, or the row says "not built" and
why); ``--quick`` uses a build made earlier, and builds none.

What runs
---------
Each server is the textbook Protocol echo of its library (``data_received``
-> ``transport.write``), started in its own process by ``bench.servers``
(``--kind reactor|asyncio|uvloop|twisted``) on 127.0.0.1 and a free port.
``selectors`` is not a peer but the floor: the bare loop of a tutorial.

asyncio runs twice, because its speed depends on an accident of glibc's
allocator (docs/PERFORMANCE.md, "The allocator"): it reads with
``recv(256 KiB)``, which costs an mmap()+munmap() pair per read until the
process has once freed a block above the mmap threshold. ``asyncio`` is
started with the threshold raised (one 1 MiB block allocated and freed,
``bench.servers --malloc raised``), ``asyncio-mmap`` with it held at glibc's
initial 128 KiB (``--malloc mmap``). Every other server also starts
``raised``, so all rows but one run in the same allocator state (none of
them reads more than 120 KiB at a time, so none is slower in either state).
Headline ratios compare with the faster of the two asyncio rows in each
cell: the one that spends less CPU per request (requests/s would pick the
luckier one at one connection, or on a busy machine).
A fresh server process serves each measurement, so its peak RSS belongs to
that measurement alone. Every server is driven by the same load generator:
``bench/loadgen.c``, compiled on the fly with the system's C compiler into a
cache directory, or, where there is none, ``bench.pyloadgen`` (the same
protocol in Python, several processes; much slower, so it saturates early).

The load is closed-loop: C connections each send a message of S bytes, wait
until all S bytes are echoed, and send the next. The grid is S in 64 B,
1 KiB, 16 KiB, 100 KiB by C in 1, 10, 100. Then the idle test: A active
connections (1 KiB), then N idle ones (5,000; each pinged once, so the
server has accepted and read from it); the server's RSS before and after
the idle connections arrived, divided by N, is its memory per connection.

Method
------
* **Separate cores.** With two or more CPUs, the server runs on one and the
  load generator (and this script) on another (``sched_setaffinity``), so
  they do not steal each other's time slices.
* **Warm-up, then a measured window.** The client warms up, then prints
  ``start`` and, ``--duration`` seconds later, ``end``; this script samples
  the server's CPU counters (utime + stime in ``/proc/PID/stat``: the
  server's own accounting, all threads) at those two instants. CPU per
  request = server CPU seconds in the window / requests completed in it.
* **The client's own CPU.** The load generator reports its CPU time over
  the window; at 90% of its core or more it may be the bottleneck, and the
  table says so ("client saturated"): the server's figure is then a lower
  bound.
* **The kernel's part.** "(kernel)" is the server's stime alone per
  request: the system calls (recv, send, epoll_wait), which every server
  makes alike and no user-space work can save. It is read in clock ticks
  (10 ms), so it is approximate for short windows.
* **Latency** is per request, send of the first byte to receipt of the last,
  in a log-linear histogram (1.6% resolution): p50 and p99.
* **Peak RSS** is the server's ``VmHWM`` at the end of its measurement.
* **Interleaving and medians.** Each repeat (``--repeat``, default 3) runs
  every cell for every server, rotating which server goes first, so slow
  drift of a shared machine hits all servers alike; the table quotes the
  median of the repeats. Ratios compare medians in the same invocation:
  "x asyncio" with the faster asyncio row, the one with less CPU per
  request (above 1: more requests per second; below 1: less CPU per
  request), "x uvloop" and "x floor" the CPU per request with uvloop's and
  the bare loop's.
* **Bounded.** Only 127.0.0.1 is contacted; each client process ends itself
  after its window (and has a hard ``alarm()``); every child is terminated,
  waited for, and dies with this process.

Why the tests assert no timings: see ``bench/micro.py``. Speed is read from
this table, compared on one machine, in one run.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from bench import compiled, socketcost
from bench._proc import (CLK_TCK, Child, ChildTimeout, cpu_ticks, hwm_kib, pin, raise_nofile, rss_kib,
                         sys_ticks,
                         usable_cpus, write_json)

# "selectors" is not a peer but the floor: a bare selectors loop (bench.servers).
ALL_SERVERS = ("reactor", "reactor-compiled", "asyncio", "asyncio-mmap", "uvloop", "twisted", "selectors")
OPTIONAL = {"uvloop": "uvloop", "twisted": "twisted"}  # server -> module it needs
# Row name -> (bench.servers --kind, --malloc). See the module docstring.
SERVER_ARGS = {"reactor-compiled": ("reactor", "raised"), "asyncio-mmap": ("asyncio", "mmap")}
ASYNCIO_ROWS = ("asyncio", "asyncio-mmap")  # ratios: the faster of the two
FLOOR = "selectors"
W = 16  # the server column: len("reactor-compiled")
DEFAULT_SIZES = (64, 1024, 16 * 1024, 100 * 1024)
DEFAULT_CONCURRENCY = (1, 10, 100)
QUICK_SIZES = (1024,)
QUICK_CONCURRENCY = (1, 10)
SATURATED = 0.90  # client CPU, as a fraction of the cores it had
# With 10 or more connections in a closed loop the server always has work:
# below this share of its core, while the client is not saturated either,
# both waited for a CPU that something else on the machine was using. Its
# requests/s then measure the machine, not the server; CPU per request still
# holds. Such rows are marked.
CONTENDED = 0.85
LOADGEN_SRC = Path(__file__).with_name("loadgen.c")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def human_size(n: int) -> str:
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def short_size(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else f"{n}B"


# -- the load generator --------------------------------------------------------

def _cache_dirs() -> list[Path]:
    dirs = []
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    dirs.append(Path(base) / "reactor-bench")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    dirs.append(Path(tempfile.gettempdir()) / f"reactor-bench-{uid}")
    return dirs


def build_loadgen() -> tuple[Optional[Path], str]:
    """Compile loadgen.c once per source version; (binary or None, what happened)."""
    compiler = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if compiler is None:
        return None, "no C compiler found (cc, gcc, clang)"
    source = LOADGEN_SRC.read_bytes()
    tag = hashlib.sha256(source + compiler.encode() + platform.machine().encode()).hexdigest()[:16]
    errors = []
    for directory in _cache_dirs():
        binary = directory / f"loadgen-{tag}"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary, f"{binary} (cached)"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".loadgen-{tag}-{os.getpid()}"
            proc = subprocess.run([compiler, "-O2", "-o", str(tmp), str(LOADGEN_SRC)],
                                  capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                tmp.unlink(missing_ok=True)
                return None, f"{compiler} failed: {proc.stderr.strip()[-500:]}"
            os.replace(tmp, binary)  # atomic: concurrent runs see a whole binary or none
            return binary, f"{binary} (compiled with {compiler})"
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"{directory}: {exc}")
    return None, "cannot compile loadgen.c: " + "; ".join(errors)


class Setup:
    """Everything a measurement needs to know, decided once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.duration: float = args.duration
        self.warmup: float = args.warmup
        self.client_kind = "python"
        self.client_note = ""
        binary = None
        if args.client in ("auto", "c"):
            binary, self.client_note = build_loadgen()
            if binary is None and args.client == "c":
                raise SystemExit(f"--client c: {self.client_note}")
        if binary is not None:
            self.client_kind = "c"
            self.client_argv = [str(binary)]
        else:
            if args.client == "auto":
                self.client_note = f"{self.client_note}; falling back to the Python client"
            else:
                self.client_note = "the Python client (--client python)"
            self.client_argv = [sys.executable, "-m", "bench.pyloadgen"]
        cpus = usable_cpus()
        self.server_cpus: Optional[list[int]] = None
        self.client_cpus: Optional[list[int]] = None
        if len(cpus) >= 2 and not args.no_pin:
            self.server_cpus = [cpus[0]]
            # The C client is one thread: one core. Python workers: all the rest.
            self.client_cpus = [cpus[1]] if self.client_kind == "c" else cpus[1:]
        self.cpus = cpus
        self.compiled_dir: Optional[Path] = None  # bench.compiled's build, for reactor-compiled


# -- one measurement ------------------------------------------------------------

def start_server(kind: str, setup: Setup) -> tuple[Child, int]:
    server_kind, malloc = SERVER_ARGS.get(kind, (kind, "raised"))
    argv = [sys.executable, "-m", "bench.servers", "--kind", server_kind, "--malloc", malloc]
    path_first = None
    if kind == "reactor-compiled":
        assert setup.compiled_dir is not None
        argv.append("--expect-compiled")
        path_first = str(setup.compiled_dir)
    server = Child(argv, cpus=setup.server_cpus, path_first=path_first)
    try:
        line = server.readline(timeout=60)
        if not line or not line.startswith("PORT "):
            raise RuntimeError(f"{kind} server did not start: {line!r} {server.stderr_tail()}")
        return server, int(line.split()[1])
    except BaseException:
        server.close()
        raise


def measure(kind: str, setup: Setup, size: int, conns: int, idle: int = 0) -> dict[str, Any]:
    """One server process, one client run; the figures of its measured window."""
    row: dict[str, Any] = {"server": kind, "size": size, "concurrency": conns, "idle": idle,
                           "client": setup.client_kind, "ok": False}
    try:
        server, port = start_server(kind, setup)
    except (RuntimeError, OSError, ChildTimeout) as exc:
        row["error"] = str(exc)
        return row
    with server:
        argv = setup.client_argv + ["--port", str(port), "--conns", str(conns), "--size", str(size),
                                    "--duration", str(setup.duration), "--warmup", str(setup.warmup)]
        if idle:
            argv += ["--idle", str(idle)]
        with Child(argv, stdin=bool(idle), cpus=setup.client_cpus) as client:
            marks: dict[str, tuple[float, Optional[int], Optional[int], Optional[int]]] = {}
            doc: Optional[dict[str, Any]] = None
            timeout = setup.warmup + setup.duration + 60 + idle / 50
            try:
                while True:
                    line = client.readline(timeout)
                    if line is None:
                        break
                    if line in ("start", "end", "before", "after"):
                        marks[line] = (time.monotonic(), cpu_ticks(server.pid), rss_kib(server.pid),
                                       sys_ticks(server.pid))
                        if line in ("before", "after"):
                            client.send_line()
                    elif line.startswith("{"):
                        doc = json.loads(line)
                status = client.wait(30)
            except (ChildTimeout, OSError, ValueError) as exc:
                row["error"] = f"client: {exc}; {client.stderr_tail()}"
                return row
            if status != 0 or doc is None or "start" not in marks or "end" not in marks:
                alive = server.proc.poll() is None
                row["error"] = (f"client exit status {status}: {client.stderr_tail() or 'no message'}"
                                + ("" if alive else f"; server died: {server.stderr_tail()}"))
                return row
        hwm = hwm_kib(server.pid)
        if server.proc.poll() is not None:
            row["error"] = f"server died: {server.stderr_tail()}"
            return row
    (t0, c0, _, k0), (t1, c1, _, k1) = marks["start"], marks["end"]
    server_cpu = (c1 - c0) / CLK_TCK if c0 is not None and c1 is not None else float("nan")
    # The kernel's part (system calls: recv, send, epoll_wait): what no
    # user-space work can save (docs/PERFORMANCE.md, "Where the time goes").
    server_sys = (k1 - k0) / CLK_TCK if k0 is not None and k1 is not None else float("nan")
    requests = doc["requests"]
    row.update(
        ok=requests > 0, requests=requests, duration=doc["duration"], rps=doc["rps"],
        p50_us=doc["p50_us"], p99_us=doc["p99_us"], mean_us=doc["mean_us"], max_us=doc["max_us"],
        server_cpu_s=server_cpu, server_cpu_frac=server_cpu / (t1 - t0) if t1 > t0 else float("nan"),
        cpu_us_per_req=server_cpu * 1e6 / requests if requests else float("nan"),
        sys_us_per_req=server_sys * 1e6 / requests if requests else float("nan"),
        peak_rss_kib=hwm, client_cpu_s=doc["cpu_s"], client_cpu_frac=doc["cpu_frac"],
        client_saturated=doc["cpu_frac"] >= SATURATED)
    if not requests:
        row["error"] = "no request completed in the window"
    if idle:
        before, after = marks.get("before"), marks.get("after")
        if before and after and before[2] is not None and after[2] is not None:
            row.update(rss_before_kib=before[2], rss_after_kib=after[2],
                       kib_per_conn=(after[2] - before[2]) / idle)
        else:
            row.update(ok=False, error="the server's RSS could not be read")
    return row


# -- aggregation and tables -------------------------------------------------------

def median(values: Sequence[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def summarise(runs: list[dict[str, Any]], keys: Sequence[str], kinds: Sequence[str],
              cells: Sequence[tuple[int, int]], idle: bool) -> list[dict[str, Any]]:
    """Per cell and server: medians of the repeats, and the ratios.

    ``ratio_rps``/``ratio_cpu``: to the faster asyncio row of the cell, the
    one with less CPU per request (``base`` names it); ``cpu_x_uvloop``/``rps_x_uvloop``: to uvloop;
    ``cpu_x_floor``: to the bare ``selectors`` loop.
    """
    out = []
    for size, conc in cells:
        group = {k: [r for r in runs if r["server"] == k and r["size"] == size and r["concurrency"] == conc
                     and bool(r["idle"]) == idle] for k in kinds}
        entries: dict[str, dict[str, Any]] = {}
        for kind in kinds:
            ok = [r for r in group[kind] if r["ok"]]
            entry: dict[str, Any] = {"server": kind, "size": size, "concurrency": conc, "runs": len(ok)}
            if not ok:
                errors = [r.get("error", "?") for r in group[kind]]
                entry["error"] = errors[0] if errors else "not run"
            else:
                for key in keys:
                    entry[key] = median([r[key] for r in ok if r.get(key) is not None])
                entry["client_saturated_runs"] = sum(1 for r in ok if r["client_saturated"])
            entries[kind] = entry
            out.append(entry)
        measured = {k: e for k, e in entries.items() if e.get("rps", 0) > 0}
        # The faster asyncio: the one that spends less CPU per request (on a
        # busy machine, or at one connection, requests/s measure waiting).
        fast = [measured[k] for k in ASYNCIO_ROWS if k in measured]
        base = min(fast, key=lambda e: e["cpu_us_per_req"]) if fast else None
        uvloop, floor = measured.get("uvloop"), measured.get(FLOOR)
        for entry in measured.values():
            if uvloop:
                entry["rps_x_uvloop"] = entry["rps"] / uvloop["rps"]
                entry["cpu_x_uvloop"] = entry["cpu_us_per_req"] / uvloop["cpu_us_per_req"]
            if floor:
                entry["cpu_x_floor"] = entry["cpu_us_per_req"] / floor["cpu_us_per_req"]
            if base is None:
                continue
            entry["base"] = base["server"]
            entry["ratio_rps"] = entry["rps"] / base["rps"]
            entry["ratio_cpu"] = entry["cpu_us_per_req"] / base["cpu_us_per_req"]
            if idle and base.get("kib_per_conn"):
                entry["ratio_kib_per_conn"] = entry["kib_per_conn"] / base["kib_per_conn"]
            # The same ratio taken within each repeat first (pairs run minutes
            # apart are not compared), then the median: robust to drift.
            paired = []
            for r in (x for x in group[entry["server"]] if x["ok"]):
                twin = [a for a in group[base["server"]] if a["ok"] and a["repeat"] == r["repeat"]]
                if twin:
                    paired.append(r["rps"] / twin[0]["rps"])
            entry["ratio_rps_paired"] = median(paired)
    return out


def fmt(value: Any, spec: str, width: int) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-".rjust(width)
    return format(value, spec).rjust(width)


def ratio(value: Any, width: int = 8) -> str:
    return fmt(value, ".2f", width - 1) + "x" if value is not None and value == value else "-".rjust(width)


def status_row(kind: str, entry: Optional[dict[str, Any]], status: dict[str, str]) -> Optional[str]:
    if status[kind] != "ok":
        return f"{kind:<{W}} {status[kind]}"
    if entry is None or "rps" not in entry:
        return f"{kind:<{W}} failed: {(entry or {}).get('error', 'not run')}"
    return None


def find(summary: list[dict[str, Any]], kind: str, size: int, conc: int) -> dict[str, Any]:
    return next((e for e in summary if e["server"] == kind and e["size"] == size
                 and e["concurrency"] == conc), {})


def contended(entry: dict[str, Any]) -> bool:
    """Neither server nor client had its core (see CONTENDED): req/s not comparable."""
    return (entry["concurrency"] >= 10 and entry["server_cpu_frac"] < CONTENDED
            and entry["client_cpu_frac"] < SATURATED)


def grid_tables(summary: list[dict[str, Any]], kinds: Sequence[str], all_kinds: Sequence[str],
                status: dict[str, str], cells: Sequence[tuple[int, int]], repeat: int) -> str:
    lines = []
    header = (f"{'server':<{W}} {'req/s':>9} {'x asyncio':>9} {'CPU us/req':>10} {'(kernel)':>8} {'x asyncio':>9} "
              f"{'x uvloop':>8} {'x floor':>7} {'p50 us':>8} {'p99 us':>8} {'peak RSS':>9} "
              f"{'srv CPU':>7} {'client CPU':>10}")
    for size, conc in cells:
        base = find(summary, ASYNCIO_ROWS[0], size, conc).get("base") or "asyncio"
        lines.append(f"-- {human_size(size)} messages, {conc} connection{'s' if conc > 1 else ''} "
                     f"(median of {repeat}; x asyncio: to {base}, the faster asyncio here) --")
        lines.append(header)
        for kind in all_kinds:
            entry: Optional[dict[str, Any]] = find(summary, kind, size, conc) or None
            bad = status_row(kind, entry, status)
            if bad:
                lines.append(bad)
                continue
            assert entry is not None
            sat = entry["client_saturated_runs"]
            client = fmt(entry["client_cpu_frac"] * 100, ".0f", 3) + "%"
            if sat:
                client += f"  CLIENT SATURATED ({sat}/{entry['runs']} runs)"
            elif contended(entry):
                client += "  CONTENDED"
            lines.append(
                f"{kind:<{W}} {fmt(entry['rps'], ',.0f', 9)} {ratio(entry.get('ratio_rps'), 9)} "
                f"{fmt(entry['cpu_us_per_req'], '.2f', 10)} {fmt(entry.get('sys_us_per_req'), '.2f', 8)} "
                f"{ratio(entry.get('ratio_cpu'), 9)} "
                f"{ratio(entry.get('cpu_x_uvloop'), 8)} {ratio(entry.get('cpu_x_floor'), 7)} "
                f"{fmt(entry['p50_us'], ',.0f', 8)} {fmt(entry['p99_us'], ',.0f', 8)} "
                f"{fmt(entry['peak_rss_kib'] / 1024, '.1f', 5)} MiB {fmt(entry['server_cpu_frac'] * 100, '.0f', 6)}% "
                f"{client:>10}")
        lines.append("")
    # The headline ratios over the whole grid, to read at a glance.
    if len(cells) > 1:
        cols = [f"{short_size(s)}/c{c}" for s, c in cells]
        width = max(8, max(len(c) for c in cols) + 1)
        for title, key in (
                ("req/s relative to the faster asyncio row, same run (medians; > 1.00x is faster):", "ratio_rps"),
                ("req/s relative to uvloop, same run (> 1.00x is faster):", "rps_x_uvloop"),
                ("CPU per request relative to the bare selectors loop, same run (< 1.00x is cheaper):",
                 "cpu_x_floor")):
            lines.append(title)
            lines.append(f"{'server':<{W}}" + "".join(c.rjust(width) for c in cols))
            for kind in all_kinds:
                if status[kind] != "ok":
                    lines.append(f"{kind:<{W}} {status[kind]}")
                    continue
                lines.append(f"{kind:<{W}}" + "".join(
                    ratio(find(summary, kind, size, conc).get(key), width) for size, conc in cells))
            lines.append("")
    return "\n".join(lines)


def targets(summary: list[dict[str, Any]], cells: Sequence[tuple[int, int]],
            socket_user_us: Optional[float] = None) -> str:
    """Issue 14's targets, read from this run's medians (printed, never asserted).

    *socket_user_us*: the user time of one send + recv through CPython's
    socket module (bench.socketcost), printed beside the user time that the
    compiled target leaves per request once the kernel's part is paid.
    """
    def check(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    lines = ["Targets (this run's medians):"]
    small = [(s, c) for s, c in cells if s == 1024 and c in (10, 100)]
    for kind, key, limit, against in (("reactor", "cpu_x_floor", 1.05, "the bare loop"),
                                      ("reactor-compiled", "cpu_x_uvloop", 0.90, "uvloop")):
        values = [find(summary, kind, s, c).get(key) for s, c in small]
        if small and all(v is not None for v in values):
            shown = ", ".join(f"{v:.2f}x at c{c}" for v, (_, c) in zip(values, small))
            lines.append(f"  {kind}: CPU/request at 1 KiB <= {limit:.2f}x {against}'s: "
                         f"{check(all(v <= limit for v in values))} ({shown})")
            if kind == "reactor-compiled" and socket_user_us is not None:
                budget = []
                for s, c in small:
                    mine, peer = find(summary, kind, s, c), find(summary, "uvloop", s, c)
                    if mine.get("sys_us_per_req") is not None and peer.get("cpu_us_per_req") is not None:
                        budget.append(f"{limit * peer['cpu_us_per_req'] - mine['sys_us_per_req']:.2f} us at c{c}")
                if budget:
                    lines.append(f"    (that leaves {', '.join(budget)} of user time per request beside "
                                 f"reactor-compiled's kernel time; one send + one recv through CPython's "
                                 f"socket module alone take {socket_user_us:.2f} us of user time: "
                                 f"python -m bench.socketcost)")
    for kind, key, against, what in (
            ("reactor-compiled", "rps_x_uvloop", "uvloop", "req/s"),
            ("reactor-compiled", "cpu_x_uvloop", "uvloop", "CPU/request"),
            ("reactor", "ratio_rps", "the faster asyncio", "req/s"),
            ("reactor", "ratio_cpu", "the faster asyncio", "CPU/request"),
            ("reactor-compiled", "ratio_rps", "the faster asyncio", "req/s"),
            ("reactor-compiled", "ratio_cpu", "the faster asyncio", "CPU/request")):
        entries = [(find(summary, kind, s, c), s, c) for s, c in cells]
        values = [(e[key], s, c, contended(e)) for e, s, c in entries if e.get(key) is not None]
        if values:
            cpu = what == "CPU/request"  # behind: more CPU per request, fewer req/s
            behind = [f"{short_size(s)}/c{c} {v:.2f}x" + (" (contended)" if busy and not cpu else "")
                      for v, s, c, busy in values if (v > 1.0 if cpu else v < 1.0)]
            lines.append(f"  {kind}: no cell behind {against} in {what}: {check(not behind)}"
                         + (f" (behind: {', '.join(behind)})" if behind else f" ({len(values)} cells)"))
    return "\n".join(lines) + "\n" if len(lines) > 1 else ""


def idle_table(summary: list[dict[str, Any]], all_kinds: Sequence[str], status: dict[str, str],
               idle: int, active: int, repeat: int) -> str:
    lines = [f"-- {idle:,} idle connections + {active} active (1 KiB), median of {repeat} --",
             f"{'server':<{W}} {'RSS before':>10} {'RSS after':>10} {'KiB/conn':>9} {'x asyncio':>9} "
             f"{'active req/s':>12} {'p99 us':>8} {'CPU us/req':>10} {'client CPU':>10}"]
    for kind in all_kinds:
        entry = next((e for e in summary if e["server"] == kind), None)
        bad = status_row(kind, entry, status)
        if bad:
            lines.append(bad)
            continue
        assert entry is not None
        client = fmt(entry["client_cpu_frac"] * 100, ".0f", 3) + "%"
        if entry["client_saturated_runs"]:
            client += f"  CLIENT SATURATED ({entry['client_saturated_runs']}/{entry['runs']} runs)"
        lines.append(
            f"{kind:<{W}} {fmt(entry['rss_before_kib'] / 1024, '.1f', 6)} MiB {fmt(entry['rss_after_kib'] / 1024, '.1f', 6)} MiB "
            f"{fmt(entry['kib_per_conn'], '.2f', 9)} {ratio(entry.get('ratio_kib_per_conn'), 9)} "
            f"{fmt(entry['rps'], ',.0f', 12)} {fmt(entry['p99_us'], ',.0f', 8)} "
            f"{fmt(entry['cpu_us_per_req'], '.1f', 10)} {client:>10}")
    return "\n".join(lines) + "\n"


# -- main -------------------------------------------------------------------

def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("values must be positive")
    return values


def server_list(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in ALL_SERVERS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"servers are {', '.join(ALL_SERVERS)}; got {text!r}")
    return [n for n in ALL_SERVERS if n in names]


def main(argv: Optional[list[str]] = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if "--tls" in args_in:  # the TLS rows: bench/tls_echo.py (its own options follow --tls)
        from . import tls_echo

        args_in.remove("--tls")
        return tls_echo.main(args_in)
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny grid, short windows: a smoke run")
    parser.add_argument("--repeat", type=int, help="repeats, interleaved; medians quoted (default 3; 1 with --quick)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 2; 0.4 with --quick)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 0.5; 0.15 with --quick)")
    parser.add_argument("--sizes", type=int_list, help="message sizes in bytes (default 64,1024,16384,102400)")
    parser.add_argument("--concurrency", type=int_list, help="connections (default 1,10,100)")
    parser.add_argument("--servers", type=server_list, default=list(ALL_SERVERS),
                        help=f"comma-separated subset of {','.join(ALL_SERVERS)} "
                             "(default: all; selectors is the bare-loop floor)")
    parser.add_argument("--compiled", choices=("auto", "build", "cached"), default="auto",
                        help="reactor-compiled: build it if needed (build), use an earlier build only "
                             "(cached), or build unless --quick (auto, the default)")
    parser.add_argument("--idle", type=int, help="idle connections for the memory test (default 5000; 200 with --quick)")
    parser.add_argument("--idle-active", type=int, help="active connections during it (default 100; 10 with --quick)")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle-connections test")
    parser.add_argument("--client", choices=("auto", "c", "python"), default="auto",
                        help="load generator: the C one if a compiler exists (auto), or force one")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to separate cores")
    parser.add_argument("--json", metavar="FILE", help="write every run and the summary as JSON to FILE")
    parser.add_argument("--tls", action="store_true",
                        help="the TLS echo instead (reactor, asyncio, uvloop at 1 and 16 KiB: bench/tls_echo.py)")
    args = parser.parse_args(argv)
    q = args.quick
    args.repeat = args.repeat if args.repeat is not None else (1 if q else 3)
    args.duration = args.duration if args.duration is not None else (0.4 if q else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.15 if q else 0.5)
    sizes = args.sizes or list(QUICK_SIZES if q else DEFAULT_SIZES)
    concurrency = args.concurrency or list(QUICK_CONCURRENCY if q else DEFAULT_CONCURRENCY)
    idle = args.idle if args.idle is not None else (200 if q else 5000)
    active = args.idle_active if args.idle_active is not None else (10 if q else 100)
    if args.repeat < 1 or args.duration <= 0 or args.warmup < 0 or idle < 0 or active < 1:
        parser.error("--repeat, --duration and --idle-active must be positive, --warmup and --idle at least 0")

    status = {k: "ok" for k in ALL_SERVERS}
    for kind in ALL_SERVERS:
        if kind not in args.servers:
            status[kind] = "not selected (--servers)"
        elif kind in OPTIONAL and importlib.util.find_spec(OPTIONAL[kind]) is None:
            status[kind] = f"not installed (pip install {OPTIONAL[kind]}, or the 'bench' extra)"
    compiled_dir = None
    if status["reactor-compiled"] == "ok":
        if args.compiled == "cached" or (args.compiled == "auto" and q):
            compiled_dir = compiled.cached()
            if compiled_dir is None:
                why = compiled.missing() or ("no earlier build of these sources (--quick builds none; "
                                             "run without it, or with --compiled build)")
                status["reactor-compiled"] = f"not built: {why}"
        else:
            log("reactor-compiled: building (bench.compiled; about 30 s the first time) ...")
            compiled_dir, note = compiled.build()
            if compiled_dir is None:
                status["reactor-compiled"] = f"not built: {note}"
    kinds = [k for k in ALL_SERVERS if status[k] == "ok"]
    shown = [k for k in ALL_SERVERS if k in args.servers or k in OPTIONAL or k == "reactor-compiled"]

    soft, hard = raise_nofile()
    idle_note = ""
    if args.no_idle or idle == 0:
        idle_note = "skipped (--no-idle)"
    elif soft < idle + active + 200:
        idle_note = (f"skipped: {idle + active + 200} file descriptors needed, RLIMIT_NOFILE allows "
                     f"{soft} (hard limit {hard})")
    run_idle = not idle_note

    setup = Setup(args)
    setup.compiled_dir = compiled_dir
    old_affinity = usable_cpus()
    if setup.client_cpus:
        pin(0, setup.client_cpus)  # this script: on the client's side, away from the server
    cells = [(s, c) for s in sizes for c in concurrency]
    total = args.repeat * (len(cells) + (1 if run_idle else 0)) * len(kinds)
    est = total * (args.warmup + args.duration + 0.6) + (args.repeat * len(kinds) * idle / 2000 if run_idle else 0)
    lines = [
        f"python -m bench.echo: Python {platform.python_version()} ({platform.python_implementation()}) "
        f"on {platform.platform()}",
        f"load generator: {setup.client_kind} ({setup.client_note})",
        f"reactor-compiled: {compiled_dir}" if compiled_dir else "",
        f"cpus: {len(setup.cpus)}; " + (
            f"server pinned to cpu {setup.server_cpus}, client to cpu {setup.client_cpus}"
            if setup.server_cpus else "not pinned" + (" (--no-pin)" if args.no_pin else " (one cpu)")),
        f"grid: sizes {', '.join(human_size(s) for s in sizes)} x connections "
        f"{', '.join(map(str, concurrency))}; warm-up {args.warmup:g} s, window {args.duration:g} s, "
        f"{args.repeat} repeat(s), interleaved; {total} runs, about {est / 60:.1f} min",
    ]
    for kind in ALL_SERVERS:
        if status[kind] != "ok" and kind in shown:
            lines.append(f"{kind}: {status[kind]}")
    if idle_note:
        lines.append(f"idle test: {idle_note}")
    print("\n".join(line for line in lines if line) + "\n", flush=True)

    runs: list[dict[str, Any]] = []
    done = 0
    started = time.monotonic()
    try:
        for rep in range(args.repeat):
            jobs = [(size, conc, 0) for size, conc in cells] + ([(1024, active, idle)] if run_idle else [])
            for index, (size, conc, n_idle) in enumerate(jobs):
                shift = (rep + index) % len(kinds)
                for kind in kinds[shift:] + kinds[:shift]:
                    row = measure(kind, setup, size, conc, n_idle)
                    row["repeat"] = rep
                    runs.append(row)
                    done += 1
                    what = f"{human_size(size)} c{conc}" + (f" + {n_idle} idle" if n_idle else "")
                    if row["ok"]:
                        extra = f", {row['kib_per_conn']:.2f} KiB/conn" if n_idle else ""
                        sat = " (client saturated)" if row["client_saturated"] else ""
                        log(f"[{done}/{total}] {kind:<{W}} {what}: {row['rps']:,.0f} req/s, "
                            f"{row['cpu_us_per_req']:.1f} us CPU/req{extra}{sat}")
                    else:
                        log(f"[{done}/{total}] {kind:<{W}} {what}: FAILED: {row.get('error')}")
    finally:
        pin(0, old_affinity)
    elapsed = time.monotonic() - started

    keys = ("rps", "cpu_us_per_req", "sys_us_per_req", "p50_us", "p99_us", "peak_rss_kib", "server_cpu_frac",
            "client_cpu_frac", "requests")
    summary = summarise(runs, keys, kinds, cells, idle=False)
    idle_summary = (summarise(runs, keys + ("rss_before_kib", "rss_after_kib", "kib_per_conn"), kinds,
                              [(1024, active)], idle=True) if run_idle else [])
    print(grid_tables(summary, kinds, shown, status, cells, args.repeat))
    print(targets(summary, cells, socketcost.send_recv_cost()[0]))
    if run_idle:
        print(idle_table(idle_summary, shown, status, idle, active, args.repeat))
    else:
        print(f"idle connections test: {idle_note}\n")
    marked = [e for e in summary if "rps" in e and not e["client_saturated_runs"] and contended(e)]
    if marked:
        print(f"note: {len(marked)} of {len(summary)} rows are marked CONTENDED: with 10 or more connections "
              f"neither the server (< {CONTENDED:.0%} of its core) nor the client (< {SATURATED:.0%}) was busy, "
              "so both waited for CPU that something else on this machine used. Their req/s (and ratios of "
              "req/s) measure the machine; their CPU per request still holds. Rerun on a quiet machine.")
    saturated = [r for r in runs if r.get("client_saturated")]
    if saturated:
        print(f"note: the load generator saturated (>= {SATURATED:.0%} of its core) in {len(saturated)} of "
              f"{len(runs)} runs, marked above; those servers may be faster than shown.")
    print(f"{len(runs)} runs in {elapsed / 60:.1f} min. Ratios of medians, same invocation: x asyncio to the "
          "faster of asyncio and asyncio-mmap in each cell, x uvloop and x floor (CPU/request) to uvloop and "
          "the bare selectors loop. CPU is the server process's own utime+stime over the measured window. "
          "Allocator: every server but asyncio-mmap starts with glibc's mmap threshold raised "
          "(bench.servers --malloc).")
    if args.json:
        doc = {
            "meta": {"python": sys.version, "platform": platform.platform(), "cpus": len(setup.cpus),
                     "server_cpus": setup.server_cpus, "client_cpus": setup.client_cpus,
                     "client": setup.client_kind, "client_note": setup.client_note,
                     "repeat": args.repeat, "duration": args.duration, "warmup": args.warmup,
                     "sizes": sizes, "concurrency": concurrency, "quick": q, "idle": idle if run_idle else 0,
                     "idle_active": active, "idle_note": idle_note, "saturation_threshold": SATURATED,
                     "elapsed_s": elapsed, "argv": sys.argv[1:] if argv is None else argv},
            "servers": status, "summary": summary, "idle_summary": idle_summary, "runs": runs,
        }
        write_json(args.json, doc)
    failed = [r for r in runs if not r["ok"]]
    return 1 if failed and len(failed) == len(runs) else 0


if __name__ == "__main__":
    sys.exit(main())
