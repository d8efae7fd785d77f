"""What one recv() costs in each state of glibc's mmap threshold: the effect behind asyncio's two rows.

    python -m bench.allocator               # recv(64 KiB / 120 KiB / 256 KiB) of 1 KiB, both states
    python -m bench.allocator --strace      # also count mmap/munmap per read (needs strace)

Each figure comes from a fresh interpreter, put in one state by
``bench.servers.set_malloc_state`` (``raised``: one 1 MiB block allocated
and freed; ``mmap``: the threshold held at glibc's initial 128 KiB), that
sends 1 KiB over a socketpair and reads it back with ``recv(N)``, N times
over. ``recv(N)`` allocates N bytes and shrinks them to what arrived: at or
above the threshold, that is one mmap() and one munmap() per read.
asyncio reads with ``recv(256 KiB)``; uvloop reads into one 250 KB buffer
inside its loop object and copies out what arrived, Twisted reads
``recv(64 KiB)``, reactor and the bare loop ``recv(120 KiB)``: only asyncio
crosses the threshold. docs/PERFORMANCE.md, "The allocator", quotes this.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

SIZES = (64 * 1024, 120 * 1024, 256 * 1024)
STATES = ("raised", "mmap")


def child(state: str, size: int, n: int) -> dict[str, float]:
    from bench.servers import set_malloc_state

    set_malloc_state(state)
    a, b = socket.socketpair()
    msg = b"x" * 1024
    with a, b:
        for _ in range(1000):  # warm-up
            a.send(msg)
            b.recv(size)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            a.send(msg)
            b.recv(size)
        t1, c1 = time.perf_counter(), time.process_time()
    return {"wall_us": (t1 - t0) / n * 1e6, "cpu_us": (c1 - c0) / n * 1e6}


def run(state: str, size: int, n: int, strace: Optional[str]) -> tuple[dict[str, float], Optional[float]]:
    from bench._proc import ROOT, child_env

    argv = [sys.executable, "-m", "bench.allocator", "--child", state, str(size), str(n)]
    per_read = None
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "strace.txt")
        if strace:
            argv = [strace, "-f", "-c", "-o", out, "-e", "trace=mmap,munmap"] + argv
        proc = subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"bench.allocator child failed: {proc.stderr.strip()[-500:]}")
        if strace:
            calls = 0
            with open(out) as f:
                for line in f:
                    fields = line.split()
                    if fields and fields[-1] in ("mmap", "munmap") and fields[3].isdigit():
                        calls += int(fields[3])
            per_read = calls / (n + 1000)
    doc: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc, per_read


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.allocator", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=50_000, help="reads per figure (default 50,000)")
    parser.add_argument("--strace", action="store_true", help="count mmap/munmap calls per read with strace")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        state, size, n = args.child
        print(json.dumps(child(state, int(size), int(n))))
        return 0
    if args.n < 1:
        parser.error("-n must be positive")
    strace = shutil.which("strace") if args.strace else None
    if args.strace and strace is None:
        parser.error("--strace: strace is not installed")
    print(f"one send(1 KiB) + recv(N) on a socketpair, {args.n:,} times, fresh process per figure"
          + (" (timed without strace; syscalls counted in a second run under strace)" if strace else ""))
    header = f"{'recv(N)':>10}" + "".join(f"{state + ' state':>22}" for state in STATES)
    print(header)
    for size in SIZES:
        row = f"{size // 1024:>6} KiB"
        for state in STATES:
            doc, _ = run(state, size, args.n, None)
            cell = f"{doc['cpu_us']:.2f} us CPU"
            if strace:
                _, per_read = run(state, size, min(args.n, 20_000), strace)
                cell += f", {per_read:.2f} m(un)map/read" if per_read is not None else ""
            row += f"{cell:>22}" if not strace else f"  {cell}"
        print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
