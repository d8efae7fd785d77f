"""Micro-benchmarks: the reactor against asyncio's default event loop.

Run from the repository root::

    python -m bench.micro                 # 5 repeats, default sizes
    python -m bench.micro --quick         # small sizes, 2 repeats: a smoke run
    python -m bench.micro --repeat 9 --json results.json

Method
------
* **Same run, same code.** Both loops expose ``call_soon``, ``call_later``,
  ``call_soon_threadsafe`` and ``stop``, so one function per benchmark drives
  either; only "run until stopped" differs (``Reactor.run`` versus
  ``loop.run_forever``). The asyncio loop is ``asyncio.new_event_loop()``,
  i.e. the platform default. Loops are created and closed outside the timed
  region, and every one is closed (no ResourceWarning).
* **Interleaving.** Each repeat runs every benchmark once per implementation,
  alternating which goes first, so slow drift of the machine (CPU frequency,
  other processes, thermal throttling) hits both sides alike instead of
  biasing whichever ran later.
* **Medians.** Each measurement is repeated (``--repeat``, default 5) and the
  median rate is reported: one-off hiccups (a page fault, a scheduler
  preemption) move the mean but not the median. The cyclic GC is collected
  before and disabled during each timed region, as ``timeit`` does.
* **Timing** uses ``time.perf_counter``; the rate is operations per second.

Why the tests assert no timings
-------------------------------
``tests/test_bench_smoke.py`` only checks that this script runs and reports a
positive rate for every benchmark. Wall-clock thresholds in a test suite fail
on loaded CI machines, pass on fast ones whatever the code does, and so
measure the machine rather than the change. Speed is read from this table,
compared on one machine, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import threading
import time
from typing import Any, Callable

from reactor import Reactor


def _noop() -> None:
    pass


# name -> (new loop, run it until stop(), entries in its timer heap)
IMPLS = {
    "reactor": (Reactor, lambda loop: loop.run(), lambda loop: len(loop._timers)),
    "asyncio": (asyncio.new_event_loop, lambda loop: loop.run_forever(),
                lambda loop: len(loop._scheduled)),
}


# -- benchmarks ------------------------------------------------------------
# Each takes (loop, run, n, threads), runs n operations, returns the seconds.

def bench_call_soon_chain(loop: Any, run: Callable[[], None], n: int, threads: int) -> float:
    """Each callback schedules the next: one callback per loop iteration."""
    left = [n]

    def step() -> None:
        left[0] -= 1
        if left[0]:
            loop.call_soon(step)
        else:
            loop.stop()

    t0 = time.perf_counter()
    loop.call_soon(step)
    run()
    return time.perf_counter() - t0


def bench_call_soon_batch(loop: Any, run: Callable[[], None], n: int, threads: int) -> float:
    """Schedule n callbacks up front, then run them (one iteration)."""
    call_soon = loop.call_soon
    t0 = time.perf_counter()
    for _ in range(n):
        call_soon(_noop)
    call_soon(loop.stop)
    run()
    return time.perf_counter() - t0


STEP_EVERY = 1000


def bench_call_later_cancel(loop: Any, run: Callable[[], None], n: int, threads: int) -> float:
    """call_later(1.0) then cancel at once; one loop iteration every STEP_EVERY ops."""
    call_later, call_soon, stop = loop.call_later, loop.call_soon, loop.stop
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        call_later(1.0, _noop).cancel()
        if i % STEP_EVERY == 0:
            call_soon(stop)  # one iteration: asyncio compacts its heap only here
            run()
    call_soon(stop)
    run()
    return time.perf_counter() - t0


WATCHDOG = 60.0  # seconds: a lost wake-up fails the run instead of hanging it


def bench_threadsafe(loop: Any, run: Callable[[], None], n: int, threads: int) -> float:
    """*threads* producers each submit n // threads callbacks while the loop runs."""
    go, done, t = threading.Event(), [0], [0.0, 0.0]

    def produce() -> None:
        submit = loop.call_soon_threadsafe
        go.wait()
        for _ in range(n // threads):
            submit(tick)

    def tick() -> None:
        done[0] += 1
        if done[0] == n:
            t[1] = time.perf_counter()
            loop.stop()

    def start() -> None:
        t[0] = time.perf_counter()
        go.set()

    workers = [threading.Thread(target=produce, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    watchdog = loop.call_later(WATCHDOG, loop.stop)
    loop.call_soon(start)
    try:
        run()
    finally:
        watchdog.cancel()
        go.set()  # in case start() never ran
        for w in workers:
            w.join()
    if done[0] != n:
        raise RuntimeError(f"threadsafe: {done[0]} of {n} callbacks ran before the watchdog")
    return t[1] - t[0]


BENCHMARKS = [
    ("call_soon chain", bench_call_soon_chain),
    ("call_soon batch", bench_call_soon_batch),
    ("call_later+cancel", bench_call_later_cancel),
    ("call_soon_threadsafe", bench_threadsafe),
]


def measure(impl: str, func: Callable, n: int, threads: int) -> tuple[float, int]:
    """One timed run on a fresh loop: (ops/s, timer heap entries afterwards)."""
    factory, run_until_stopped, heap_size = IMPLS[impl]
    loop = factory()
    try:
        gc.collect()
        gc.disable()
        try:
            seconds = func(loop, lambda: run_until_stopped(loop), n, threads)
        finally:
            gc.enable()
        return n / seconds, heap_size(loop)
    finally:
        loop.close()


def run_all(n: int, threadsafe_n: int, threads: int, repeat: int) -> list[dict[str, Any]]:
    samples: dict[tuple[str, str], list[float]] = {(b, i): [] for b, _ in BENCHMARKS for i in IMPLS}
    heap_after: dict[str, int] = {}
    order = list(IMPLS)
    for name, func in BENCHMARKS:  # warm-up, untimed: imports, caches, allocator
        for impl in order:
            measure(impl, func, min(n, 2000) // threads * threads, threads)
    for r in range(repeat):
        for name, func in BENCHMARKS:
            size = threadsafe_n if func is bench_threadsafe else n
            for impl in (order if r % 2 == 0 else order[::-1]):
                rate, heap = measure(impl, func, size, threads)
                samples[name, impl].append(rate)
                if func is bench_call_later_cancel:
                    heap_after[impl] = heap
    results = []
    for name, func in BENCHMARKS:
        entry: dict[str, Any] = {"benchmark": name, "ops": threadsafe_n if func is bench_threadsafe else n}
        for impl in IMPLS:
            entry[f"{impl}_ops_per_s"] = statistics.median(samples[name, impl])
            entry[f"{impl}_samples"] = samples[name, impl]
            if func is bench_call_later_cancel:
                entry[f"{impl}_heap_after"] = heap_after[impl]
        entry["ratio"] = entry["reactor_ops_per_s"] / entry["asyncio_ops_per_s"]
        results.append(entry)
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    head = f"{'benchmark':<22} {'ops':>8} {'reactor ops/s':>14} {'asyncio ops/s':>14} {'reactor/asyncio':>16}"
    lines = [head, "-" * len(head)]
    for e in results:
        lines.append(f"{e['benchmark']:<22} {e['ops']:>8} {e['reactor_ops_per_s']:>14,.0f} "
                     f"{e['asyncio_ops_per_s']:>14,.0f} {e['ratio']:>15.2f}x")
        if "reactor_heap_after" in e:
            lines.append(f"{'':<4}timer heap entries after churn: reactor {e['reactor_heap_after']}, "
                         f"asyncio {e['asyncio_heap_after']}")
    lines.append("\nratio > 1 means the reactor is faster. Medians of the repeats (module docstring).")
    return "\n".join(lines)


def bench_transport_ping_pong(loop: Any, run: Callable[[], None], n: int, threads: int) -> float:
    """n round trips of 64 bytes between two StreamTransports on a socketpair (reactor only).

    The read and write path of a connection: recv_into, data_received,
    write's immediate send(), and the bytes_received/bytes_sent hook sites.
    """
    import socket

    from reactor import Protocol
    from reactor.streams import StreamTransport

    message = b"m" * 64

    class Echo(Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.transport.write(data)

    class Ping(Protocol):
        def __init__(self) -> None:
            self.received = 0

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.write(message)

        def data_received(self, data: bytes) -> None:
            self.received += len(data)
            if self.received == n * len(message):
                loop.stop()
            elif self.received % len(message) == 0:
                self.transport.write(message)

    a, b = socket.socketpair()
    echo, ping = StreamTransport(loop, a, Echo()), StreamTransport(loop, b, Ping())
    t0 = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    echo.abort()
    ping.abort()
    loop.run_once(0)  # connection_lost: both sockets closed
    return elapsed


OVERHEAD_WORKLOADS = [
    ("call_soon chain", bench_call_soon_chain, 1),
    ("call_later+cancel", bench_call_later_cancel, 1),
    ("transport ping-pong", bench_transport_ping_pong, 10),  # n // 10 round trips
]


def instrument_overhead(n: int, repeat: int) -> dict[str, Any]:
    """Hot paths on the reactor: no instrument, one with an unrelated hook, one per callback.

    Shows that hooks nobody implements cost nothing on the hot path: with an
    instrument that overrides only ``fd_registered`` (which none of these
    workloads fires), the ratio should be ~1.0 (within noise), for the
    scheduling paths and for the read/write path alike.
    """
    from reactor.instruments import Instrument

    class FdOnly(Instrument):
        def fd_registered(self, fd: int, events: int) -> None:
            pass

    class PerCallback(Instrument):
        def after_callback(self, handle: Any, elapsed: float) -> None:
            pass

    labels = ("none", "unrelated hook", "after_callback hook")
    results: dict[str, Any] = {}
    for workload, func, divisor in OVERHEAD_WORKLOADS:
        ops = max(n // divisor, 1)
        samples: dict[str, list[float]] = {label: [] for label in labels}
        for r in range(repeat):
            order = list(zip(labels, (None, FdOnly, PerCallback)))
            for label, kind in (order if r % 2 == 0 else order[::-1]):
                loop = Reactor()
                try:
                    if kind is not None:
                        loop.add_instrument(kind())
                    gc.collect()
                    gc.disable()
                    try:
                        seconds = func(loop, loop.run, ops, 1)
                    finally:
                        gc.enable()
                    samples[label].append(ops / seconds)
                finally:
                    loop.close()
        medians = {label: statistics.median(v) for label, v in samples.items()}
        results[workload] = {"ops": ops, "ops_per_s": medians,
                             "ratio_unrelated": medians["unrelated hook"] / medians["none"],
                             "ratio_after_callback": medians["after_callback hook"] / medians["none"]}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, help="runs per measurement (default 5; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("-n", type=int, help="operations per benchmark (default 200000; threadsafe: n/2)")
    parser.add_argument("--threads", type=int, default=2, help="producer threads for call_soon_threadsafe")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = parser.parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (2 if args.quick else 5)
    n = args.n if args.n is not None else (10_000 if args.quick else 200_000)
    if repeat < 1 or args.threads < 1 or n < 1:
        parser.error("--repeat, --threads and -n must be at least 1")

    loop = asyncio.new_event_loop()
    loop_name = type(loop).__name__
    loop.close()
    print(f"Python {platform.python_version()} ({platform.python_implementation()}) on {platform.platform()}\n"
          f"asyncio loop: {loop_name}; repeats: {repeat}; producer threads: {args.threads}\n", flush=True)
    results = run_all(n, max(n // 2 // args.threads, 1) * args.threads, args.threads, repeat)
    print(format_table(results))
    overhead = instrument_overhead(n, repeat)
    print("\ninstrument overhead (reactor only; x: rate relative to no instrument):")
    print(f"  {'workload':<22} {'ops':>8} {'none ops/s':>14} {'unrelated hook':>15} {'after_callback':>15}")
    for workload, entry in overhead.items():
        rates = entry["ops_per_s"]
        print(f"  {workload:<22} {entry['ops']:>8} {rates['none']:>14,.0f} "
              f"{entry['ratio_unrelated']:>14.2f}x {entry['ratio_after_callback']:>14.2f}x")
    if args.json:
        doc = {"instrument_overhead": overhead, "python": sys.version, "platform": platform.platform(), "asyncio_loop": loop_name,
               "repeat": repeat, "quick": args.quick, "threads": args.threads, "benchmarks": results}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
