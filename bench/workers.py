"""One process against N: ``--workers`` for the echo server and the chat (through Redis).

Run from the repository root::

    python -m bench.workers                  # echo, then chat fan-out; 1 and 2 workers; about 2 minutes
    python -m bench.workers --quick          # a smoke run
    python -m bench.workers --workers 1,2,4 --json workers.json

What runs
---------
**Echo.** ``demos.echo_server --no-udp`` alone (one process, the baseline),
then with ``--workers N`` for each N: a supervisor and N worker processes,
each with its own reactor on the same port (SO_REUSEPORT). The load is
``bench/loadgen.c`` (as in ``bench.echo``; the Python client without a
compiler): C connections (default 50) each sending S bytes (default 64)
and waiting for the echo, closed loop. Requests/s are the client's; the
server's CPU is the sum over the workers (utime + stime from /proc).

**Chat fan-out.** ``demos.chat_server`` alone, then ``--workers N --redis``
(the workers share the room through a ``redis-server`` started for the
run, in a temporary directory, without persistence): N clients in one
room, 10 senders, ``--window`` (4) messages in flight each (more than
``bench.chat_fanout``'s one: a line now makes a round trip through Redis
before it is delivered, and one in flight would measure that latency
rather than the servers' throughput), paced as ``bench.chat_fanout``. A
delivery is one line received by one client. Server CPU sums the workers
(Redis's own CPU is shown apart).

Method, and what to make of it
------------------------------
Nothing is pinned: with two cores, two workers need both, and the load
generator (and Redis) compete with them for the same cores. A worker count
above the number of free cores cannot help; what the table shows is how
much of the second core the second worker turns into requests. Repeats
rotate the order of the rows and the table quotes medians.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any, Optional

from bench._proc import CLK_TCK, Child, ChildTimeout, raise_nofile, usable_cpus, write_json
from bench._scale import RedisProcess, Supervised, run_fanout, stop
from bench.chat_fanout import MAX_OUTPUT, FanOut


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loadgen_argv(kind: str) -> tuple[list[str], str]:
    if kind in ("auto", "c"):
        try:
            from bench.echo import build_loadgen
            binary, note = build_loadgen()
        except ImportError:  # pragma: no cover - bench.echo reorganised
            binary, note = None, "bench.echo.build_loadgen is gone"
        if binary is not None:
            return [str(binary)], "c"
        if kind == "c":
            raise SystemExit(f"--client c: {note}")
    return [sys.executable, "-m", "bench.pyloadgen"], "python"


def echo_row(workers: int, args: argparse.Namespace, client: list[str]) -> dict[str, Any]:
    label = "alone" if workers == 0 else f"{workers} worker(s)"
    row: dict[str, Any] = {"bench": "echo", "workers": workers, "label": label, "ok": False}
    server_args = ["--port", "0", "--no-udp"] + (["--workers", str(workers)] if workers else [])
    server = None
    try:
        server = Supervised("demos.echo_server", server_args)
        argv = client + ["--port", str(server.port), "--conns", str(args.conns), "--size", str(args.size),
                         "--duration", str(args.duration), "--warmup", str(args.warmup)]
        with Child(argv) as load:
            marks: dict[str, tuple[float, Optional[int]]] = {}
            doc = None
            while True:
                line = load.readline(args.warmup + args.duration + 60)
                if line is None:
                    break
                if line in ("start", "end"):
                    marks[line] = (time.monotonic(), server.cpu_ticks())
                elif line.startswith("{"):
                    doc = json.loads(line)
            load.wait(30)
        if doc is None or "start" not in marks or "end" not in marks:
            row["error"] = f"the load generator failed: {load.stderr_tail()}"
            return row
        (t0, c0), (t1, c1) = marks["start"], marks["end"]
        cpu = (c1 - c0) / CLK_TCK if c0 is not None and c1 is not None else float("nan")
        row.update(ok=doc["requests"] > 0, rps=doc["rps"], p50_us=doc["p50_us"], p99_us=doc["p99_us"],
                   server_cpu_frac=cpu / (t1 - t0), cpu_us_per_req=cpu * 1e6 / doc["requests"],
                   client_cpu_frac=doc["cpu_frac"])
    except (RuntimeError, OSError, ChildTimeout, ValueError) as exc:
        row["error"] = str(exc)
    finally:
        stop(server)
    return row


def chat_row(workers: int, args: argparse.Namespace, redis: Optional[RedisProcess]) -> dict[str, Any]:
    label = "alone" if workers == 0 else f"{workers} worker(s) + Redis"
    row: dict[str, Any] = {"bench": "chat", "workers": workers, "label": label, "clients": args.clients,
                           "ok": False}
    n = args.clients
    server_args = ["--port", "0", "--max-clients", str(n + 10), "--flood-rate", "1e9", "--flood-burst",
                   str(10**9), "--max-output", str(MAX_OUTPUT), "--nick-timeout", "600"]
    if workers:
        if redis is None:
            row["error"] = "no redis-server"
            return row
        redis.flush()
        server_args += ["--workers", str(workers), "--redis", redis.url]
    server = fan = None
    try:
        server = Supervised("demos.chat_server", server_args)
        fan = FanOut(server.port, n, min(10, n), args.window, 200e-6)
        r0 = redis.cpu_ticks() if redis is not None else None
        t0 = time.monotonic()
        row.update(run_fanout(fan, server.cpu_ticks, args.warmup, args.duration, n))
        r1 = redis.cpu_ticks() if redis is not None else None
        if workers and r0 is not None and r1 is not None:
            row["redis_cpu_frac"] = (r1 - r0) / CLK_TCK / (time.monotonic() - t0)
        row["ok"] = row["deliveries"] > 0
    except (RuntimeError, OSError, ChildTimeout) as exc:
        row["error"] = str(exc)
    finally:
        stop(server, fan)
    return row


def median_of(rows: list[dict[str, Any]], key: str) -> Optional[float]:
    values = [r[key] for r in rows if r.get("ok") and r.get(key) is not None and r[key] == r[key]]
    return statistics.median(values) if values else None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: short windows, small room")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    parser.add_argument("--conns", type=int, default=50, help="echo: connections (default 50)")
    parser.add_argument("--size", type=int, default=64, help="echo: bytes per request (default 64)")
    parser.add_argument("--clients", type=int, help="chat: clients in the room (default 100; 20 with --quick)")
    parser.add_argument("--window", type=int, default=4,
                        help="chat: messages in flight per sender (default 4: Redis adds a round trip)")
    parser.add_argument("--duration", type=float, help="measured seconds (default 3; 0.5 with --quick)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (default 1; 0.2 with --quick)")
    parser.add_argument("--repeat", type=int, help="repeats, medians quoted (default 3; 1 with --quick)")
    parser.add_argument("--client", choices=("auto", "c", "python"), default="auto",
                        help="echo load generator (default: the C one where a compiler is found)")
    parser.add_argument("--no-chat", action="store_true", help="echo only")
    parser.add_argument("--json", metavar="FILE", help="write every run and the summary as JSON to FILE")
    args = parser.parse_args(argv)
    q = args.quick
    try:
        counts = [int(x) for x in args.workers.split(",") if x.strip()]
    except ValueError:
        parser.error(f"--workers: expected comma-separated integers, got {args.workers!r}")
    if not counts or min(counts) < 1:
        parser.error("--workers: each count must be at least 1")
    args.clients = args.clients or (20 if q else 100)
    args.duration = args.duration or (0.5 if q else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if q else 1.0)
    args.repeat = args.repeat or (1 if q else 3)
    raise_nofile()
    client, client_kind = loadgen_argv(args.client)
    print(f"python -m bench.workers: Python {platform.python_version()} on {platform.platform()}; "
          f"{len(usable_cpus())} cpus, nothing pinned\n"
          f"echo: {args.conns} connections x {args.size} B, {client_kind} load generator; chat: {args.clients} "
          f"clients in one room, 10 senders, {args.window} in flight each; warm-up {args.warmup:g} s, window {args.duration:g} s, "
          f"{args.repeat} repeat(s)\n", flush=True)
    rows: list[dict[str, Any]] = []
    redis = None
    if not args.no_chat:
        try:
            redis = RedisProcess()
        except RuntimeError as exc:
            log(f"chat rows with workers skipped: {exc}")
    started = time.monotonic()
    variants = [0] + counts
    try:
        for rep in range(args.repeat):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for workers in order:
                row = echo_row(workers, args, client)
                row["repeat"] = rep
                rows.append(row)
                log(f"echo {row['label']}: " + (f"{row['rps']:,.0f} req/s, server CPU {row['server_cpu_frac']:.0%}"
                                              if row["ok"] else f"FAILED: {row.get('error')}"))
            if args.no_chat:
                continue
            for workers in order:
                if workers and redis is None:
                    continue
                row = chat_row(workers, args, redis)
                row["repeat"] = rep
                rows.append(row)
                log(f"chat {row['label']}: " + (f"{row['deliveries_per_s']:,.0f} deliveries/s, p99 "
                                              f"{row['p99_ms']:.2f} ms" if row["ok"] else
                                              f"FAILED: {row.get('error')}"))
    finally:
        stop(redis)

    summary = []
    lines = [f"{'echo server':<26} {'req/s':>10} {'p50 us':>8} {'p99 us':>8} {'server CPU':>10} "
             f"{'CPU us/req':>10} {'client CPU':>10}  (median of {args.repeat})"]
    for workers in variants:
        ok = [r for r in rows if r["bench"] == "echo" and r["workers"] == workers]
        label = "alone" if workers == 0 else f"--workers {workers}"
        entry = {"bench": "echo", "workers": workers,
                 **{k: median_of(ok, k) for k in ("rps", "p50_us", "p99_us", "server_cpu_frac", "cpu_us_per_req",
                                                  "client_cpu_frac")}}
        summary.append(entry)
        if entry["rps"] is None:
            lines.append(f"{label:<26} failed: {next((r.get('error') for r in ok), 'not run')}")
            continue
        lines.append(f"{label:<26} {entry['rps']:>10,.0f} {entry['p50_us']:>8.0f} {entry['p99_us']:>8.0f} "
                     f"{entry['server_cpu_frac'] * 100:>9.0f}% {entry['cpu_us_per_req']:>10.1f} "
                     f"{entry['client_cpu_frac'] * 100:>9.0f}%")
    if not args.no_chat:
        lines.append("")
        lines.append(f"{'chat, ' + str(args.clients) + ' in one room':<26} {'deliv/s':>10} {'p50 ms':>8} "
                     f"{'p99 ms':>8} {'server CPU':>10} {'Redis CPU':>10} {'clients CPU':>11}")
        for workers in variants:
            ok = [r for r in rows if r["bench"] == "chat" and r["workers"] == workers]
            if not ok:
                continue
            label = "alone" if workers == 0 else f"--workers {workers} --redis"
            entry = {"bench": "chat", "workers": workers,
                     **{k: median_of(ok, k) for k in ("deliveries_per_s", "p50_ms", "p99_ms", "server_cpu_frac",
                                                      "redis_cpu_frac", "client_cpu_frac")}}
            summary.append(entry)
            if entry["deliveries_per_s"] is None:
                lines.append(f"{label:<26} failed: {ok[0].get('error')}")
                continue
            redis_cpu = entry["redis_cpu_frac"]
            lines.append(f"{label:<26} {entry['deliveries_per_s']:>10,.0f} {entry['p50_ms']:>8.2f} "
                         f"{entry['p99_ms']:>8.2f} {entry['server_cpu_frac'] * 100:>9.0f}% "
                         f"{(f'{redis_cpu * 100:.0f}%' if redis_cpu is not None else '-'):>10} "
                         f"{entry['client_cpu_frac'] * 100:>10.0f}%")
    print("\n".join(lines))
    print(f"\n{len(rows)} runs in {(time.monotonic() - started) / 60:.1f} min. Server CPU sums the workers "
          "(100% = one core).")
    if args.json:
        write_json(args.json, {"meta": {"python": sys.version, "platform": platform.platform(),
                                        "cpus": len(usable_cpus()), "workers": counts, "conns": args.conns,
                                        "size": args.size, "clients": args.clients, "duration": args.duration,
                                        "warmup": args.warmup, "repeat": args.repeat, "client": client_kind},
                               "summary": summary, "runs": rows})
    return 0 if any(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
