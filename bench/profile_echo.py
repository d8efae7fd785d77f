"""Profile one echo server under the benchmark's load: where does its CPU go?

    python -m bench.profile_echo                        # reactor, 1 KiB, 10 connections, cProfile
    python -m bench.profile_echo --tool py-spy          # sampled instead (pip install py-spy)
    python -m bench.profile_echo --kind asyncio --size 16384 --concurrency 100

The server runs in its own process (``bench.servers``), pinned to one core,
driven by the same load generator as ``bench.echo`` on another; the
profile covers the whole run (warm-up included) and is printed as the
functions with the most *self* time, as a share of all samples (py-spy) or
of all profiled time (cProfile), plus the inclusive share of the main
callbacks.

cProfile counts every call, so it inflates the cost of small Python
functions (its own overhead is per call); py-spy samples the running process
from outside (about 1,000 times a second) and does not slow it down, and with
``--native`` it also shows time spent inside C functions and system calls.
Read them together: cProfile for call counts, py-spy for proportions.
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Optional

from bench._proc import Child, ChildTimeout, usable_cpus
from bench.echo import Setup


def drive(setup: Setup, port: int, size: int, conns: int) -> Optional[str]:
    argv = setup.client_argv + ["--port", str(port), "--conns", str(conns), "--size", str(size),
                                "--duration", str(setup.duration), "--warmup", str(setup.warmup)]
    with Child(argv, cpus=setup.client_cpus) as client:
        last = None
        while True:
            line = client.readline(setup.warmup + setup.duration + 60)
            if line is None:
                break
            last = line
        client.wait(30)
    return last


def report_cprofile(path: str, top: int) -> None:
    stats = pstats.Stats(path)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, name), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((tt, ct, nc, f"{name} ({_short(filename)}:{line})"))
    # Requests served: one recv() per request in this closed loop (one message
    # in flight per connection), so calls per recv() is calls per request.
    recvs = sum(nc for (_f, _l, name), (_cc, nc, *_rest) in stats.stats.items()  # type: ignore[attr-defined]
                if name in ("<method 'recv' of '_socket.socket' objects>",
                            "<method 'recv_into' of '_socket.socket' objects>"))
    calls = sum(nc for (_cc, nc, *_rest) in stats.stats.values())  # type: ignore[attr-defined]
    if recvs:
        python = sum(nc for (f, _l, _n), (_cc, nc, *_r) in stats.stats.items()  # type: ignore[attr-defined]
                     if f != "~")
        print(f"cProfile: {calls:,} calls for {recvs:,} recv() calls: {calls / recvs:.2f} calls per request "
              f"({python / recvs:.2f} to Python functions, {(calls - python) / recvs:.2f} to C functions)\n")
    print(f"cProfile: {total:.2f} s profiled. Self time (tottime) by function:")
    print(f"{'self %':>7} {'incl %':>7} {'calls':>10}  function")
    for tt, ct, nc, label in sorted(rows, reverse=True)[:top]:
        print(f"{tt / total * 100:>6.1f}% {ct / total * 100:>6.1f}% {nc:>10,}  {label}")


def _short(filename: str) -> str:
    for marker in ("/reactor/", "/bench/", "/asyncio/", "/twisted/", "/lib/python"):
        i = filename.rfind(marker)
        if i >= 0:
            return filename[i + 1:]
    return filename


def report_pyspy(path: str, top: int) -> None:
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = [re.sub(r"\s+\((?:[^()]*/)?", " (", fr) for fr in stack.split(";")]
            total += n
            self_counts[frames[-1]] += n
            for fr in set(frames):
                incl_counts[fr] += n
    if not total:
        print("py-spy recorded no samples")
        return
    print(f"py-spy: {total:,} samples. Self time by function (leaf frame):")
    print(f"{'self %':>7} {'incl %':>7}  function")
    for fr, n in self_counts.most_common(top):
        print(f"{n / total * 100:>6.1f}% {incl_counts[fr] / total * 100:>6.1f}%  {fr}")
    print("\nInclusive time of the hot callbacks:")
    for fr, n in incl_counts.most_common():
        if any(k in fr for k in ("_on_readable", "data_received", "write (", "_run_once", "select (",
                                 "_run (", "send", "recv")) and n / total >= 0.01:
            print(f"{n / total * 100:>6.1f}%  {fr}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_echo", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="reactor", choices=("reactor", "asyncio", "uvloop", "twisted", "selectors"))
    parser.add_argument("--tool", default="cprofile", choices=("cprofile", "py-spy"))
    parser.add_argument("--native", action="store_true", help="py-spy: include C frames (system calls)")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--client", choices=("auto", "c", "python"), default="auto")
    parser.add_argument("--keep", metavar="FILE", help="also keep the raw profile in FILE")
    args = parser.parse_args(argv)
    args.no_pin = False
    setup = Setup(args)
    # py-spy on PATH, or installed beside this Python (a venv's bin/, not on PATH).
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    py_spy = shutil.which("py-spy") or (beside if os.access(beside, os.X_OK) else None)
    if args.tool == "py-spy" and py_spy is None:
        parser.error("py-spy is not installed (pip install py-spy)")
    print(f"profiling the {args.kind} echo server: {args.size} B messages, {args.concurrency} connections, "
          f"{args.duration:g} s (+{args.warmup:g} s warm-up); load generator: {setup.client_kind}; "
          f"cpus {usable_cpus()}\n", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        prof = os.path.join(tmp, "server.prof")
        server_argv = [sys.executable, "-m", "bench.servers", "--kind", args.kind]
        if args.tool == "cprofile":
            server_argv += ["--profile", prof]
        with Child(server_argv, cpus=setup.server_cpus) as server:
            try:
                line = server.readline(60)
            except ChildTimeout:
                line = None
            if not line or not line.startswith("PORT "):
                raise SystemExit(f"the server did not start: {server.stderr_tail()}")
            port = int(line.split()[1])
            spy = None
            raw = os.path.join(tmp, "pyspy.txt")
            if args.tool == "py-spy":
                spy_argv = [str(py_spy), "record", "--pid", str(server.pid), "--rate", "1000", "--format", "raw",
                            "--function", "--output", raw, "--duration", str(int(args.duration + args.warmup + 1))]
                if args.native:
                    spy_argv.append("--native")
                spy = subprocess.Popen(spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(0.3)
            try:
                result = drive(setup, port, args.size, args.concurrency)
            finally:
                if spy is not None:
                    try:
                        _, err = spy.communicate(timeout=30)
                    except subprocess.TimeoutExpired:
                        spy.kill()
                        _, err = spy.communicate()
                    if spy.returncode != 0:
                        print(f"py-spy failed: {err.decode(errors='replace').strip()}", file=sys.stderr)
            print(f"load generator: {result}\n")
            server.close(grace=30)  # SIGTERM: the server stops its loop and writes the profile
        if args.tool == "cprofile":
            if not os.path.exists(prof):
                raise SystemExit("the server wrote no profile")
            report_cprofile(prof, args.top)
            if args.keep:
                shutil.copy(prof, args.keep)
        else:
            if not os.path.exists(raw):
                raise SystemExit("py-spy wrote nothing")
            report_pyspy(raw, args.top)
            if args.keep:
                shutil.copy(raw, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
