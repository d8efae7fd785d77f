"""The chat across servers: one room served by two ``demos.chat_server --redis`` against one server alone.

Run from the repository root::

    python -m bench.chat_redis               # 100 clients; 3 repeats (about 1 minute)
    python -m bench.chat_redis --quick       # a smoke run
    python -m bench.chat_redis --clients 300 --window 4 --json chat_redis.json

What runs
---------
Three setups, each with N clients in one room (``#lobby``) and 10 senders
with ``--window`` messages in flight each (``bench.chat_fanout``'s client,
its pacing and its measure: a delivery is one line received by one client):

1. **one server alone**: ``demos.chat_server``, no Redis: the baseline;
2. **one server + Redis**: the same with ``--redis``: every line goes to
   Redis (one ``EVALSHA``) and comes back (one pub/sub message) before it
   is delivered: the cost of the backplane alone;
3. **two servers + Redis**: two ``--redis`` processes, clients and senders
   dealt round robin between them: each line is published once and each
   server delivers it to its half of the room.

A ``redis-server`` is started for the run (temporary directory, no
persistence) and flushed between setups. Server CPU sums the chat
processes; Redis's is shown apart. Nothing is pinned: on a 2-core machine
the two servers, Redis and the clients share the two cores, and the table
says how much each used.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from typing import Any, Optional

from bench._proc import CLK_TCK, ChildTimeout, raise_nofile, usable_cpus, write_json
from bench._scale import RedisProcess, SpreadFanOut, Supervised, run_fanout, stop
from bench.chat_fanout import MAX_OUTPUT

SETUPS = (("alone", 1, False), ("one server + Redis", 1, True), ("two servers + Redis", 2, True))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(label: str, servers: int, shared: bool, args: argparse.Namespace, redis: RedisProcess) -> dict[str, Any]:
    n = args.clients
    row: dict[str, Any] = {"setup": label, "servers": servers, "redis": shared, "clients": n, "ok": False}
    common = ["--port", "0", "--max-clients", str(n + 10), "--flood-rate", "1e9", "--flood-burst", str(10**9),
              "--max-output", str(MAX_OUTPUT), "--nick-timeout", "600"]
    if shared:
        redis.flush()
        common += ["--redis", redis.url]
    procs: list[Supervised] = []
    fan = None
    try:
        for _ in range(servers):
            procs.append(Supervised("demos.chat_server", common))

        def cpu() -> Optional[int]:
            ticks = [p.cpu_ticks() for p in procs]
            return None if any(t is None for t in ticks) else sum(t for t in ticks if t is not None)

        fan = SpreadFanOut([p.port for p in procs], n, min(args.senders, n), args.window, 200e-6)
        r0, t0 = redis.cpu_ticks(), time.monotonic()
        row.update(run_fanout(fan, cpu, args.warmup, args.duration, n))
        r1 = redis.cpu_ticks()
        if shared and r0 is not None and r1 is not None:
            row["redis_cpu_frac"] = (r1 - r0) / CLK_TCK / (time.monotonic() - t0)
        row["ok"] = row["deliveries"] > 0
    except (RuntimeError, OSError, ChildTimeout) as exc:
        row["error"] = str(exc)
    finally:
        stop(fan, *procs)
    return row


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_redis", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 clients, short windows")
    parser.add_argument("--clients", type=int, help="clients in the room (default 100; 20 with --quick)")
    parser.add_argument("--senders", type=int, default=10, help="clients that send (default 10)")
    parser.add_argument("--window", type=int, default=4, help="messages in flight per sender (default 4)")
    parser.add_argument("--duration", type=float, help="measured seconds (default 3; 0.5 with --quick)")
    parser.add_argument("--warmup", type=float, help="seconds before measuring (default 1; 0.2 with --quick)")
    parser.add_argument("--repeat", type=int, help="repeats, medians quoted (default 3; 1 with --quick)")
    parser.add_argument("--json", metavar="FILE", help="write every run and the summary as JSON to FILE")
    args = parser.parse_args(argv)
    q = args.quick
    args.clients = args.clients or (20 if q else 100)
    args.duration = args.duration or (0.5 if q else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if q else 1.0)
    args.repeat = args.repeat or (1 if q else 3)
    if args.clients < 2 or args.senders < 1 or args.window < 1:
        parser.error("--clients must be at least 2, --senders and --window at least 1")
    raise_nofile()
    try:
        redis = RedisProcess()
    except RuntimeError as exc:
        print(f"python -m bench.chat_redis: {exc}", file=sys.stderr)
        return 1
    print(f"python -m bench.chat_redis: Python {platform.python_version()} on {platform.platform()}; "
          f"{len(usable_cpus())} cpus, nothing pinned\n{args.clients} clients in one room, {args.senders} senders, "
          f"{args.window} in flight each; warm-up {args.warmup:g} s, window {args.duration:g} s, "
          f"{args.repeat} repeat(s)\n", flush=True)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for rep in range(args.repeat):
            order = SETUPS[rep % len(SETUPS):] + SETUPS[:rep % len(SETUPS)]
            for label, servers, shared in order:
                row = measure(label, servers, shared, args, redis)
                row["repeat"] = rep
                rows.append(row)
                log(f"{label}: " + (f"{row['deliveries_per_s']:,.0f} deliveries/s, p99 {row['p99_ms']:.2f} ms"
                                    if row["ok"] else f"FAILED: {row.get('error')}"))
    finally:
        stop(redis)
    keys = ("deliveries_per_s", "messages_per_s", "p50_ms", "p99_ms", "server_cpu_frac", "redis_cpu_frac",
            "server_us_per_delivery", "client_cpu_frac")
    summary = []
    lines = [f"{'setup':<22} {'deliv/s':>10} {'msgs/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'server CPU':>10} "
             f"{'Redis CPU':>9} {'us/deliv':>8} {'clients CPU':>11}  (median of {args.repeat})"]
    for label, _, _ in SETUPS:
        ok = [r for r in rows if r["setup"] == label and r["ok"]]
        if not ok:
            err = next((r.get("error") for r in rows if r["setup"] == label), "not run")
            summary.append({"setup": label, "error": err})
            lines.append(f"{label:<22} failed: {err}")
            continue
        entry: dict[str, Any] = {"setup": label, "runs": len(ok)}
        for key in keys:
            values = [r[key] for r in ok if r.get(key) is not None and r[key] == r[key]]
            entry[key] = statistics.median(values) if values else None
        summary.append(entry)
        rc = entry["redis_cpu_frac"]
        lines.append(f"{label:<22} {entry['deliveries_per_s']:>10,.0f} {entry['messages_per_s']:>8,.0f} "
                     f"{entry['p50_ms']:>7.2f} {entry['p99_ms']:>7.2f} {entry['server_cpu_frac'] * 100:>9.0f}% "
                     f"{(f'{rc * 100:.0f}%' if rc is not None else '-'):>9} "
                     f"{entry['server_us_per_delivery']:>8.1f} {entry['client_cpu_frac'] * 100:>10.0f}%")
    print("\n".join(lines))
    print(f"\n{len(rows)} runs in {(time.monotonic() - started) / 60:.1f} min. Server CPU sums the chat servers "
          "(100% = one core); us/deliv is chat-server CPU per delivery.")
    if args.json:
        write_json(args.json, {"meta": {"python": sys.version, "platform": platform.platform(),
                                        "cpus": len(usable_cpus()), "clients": args.clients,
                                        "senders": args.senders, "window": args.window,
                                        "duration": args.duration, "warmup": args.warmup, "repeat": args.repeat},
                               "summary": summary, "runs": rows})
    return 0 if any(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
