"""Every benchmark in one command: ``python -m bench`` (from the repository root).

Runs, one after the other, each printing its own table with its ratios
measured in the same run:

1. ``bench.echo``: echo servers side by side (reactor, reactor-compiled,
   asyncio in both allocator states, and uvloop, Twisted where installed,
   plus the bare ``selectors`` floor), the full grid and the 5,000 idle
   connections (about 15 minutes on 2 cores, and ~30 s more to build the
   compiled reactor the first time);
2. ``bench.micro``: call_soon, call_later+cancel, call_soon_threadsafe, and
   the cost of instrument hooks (about 30 seconds);
3. ``bench.chat_fanout``: the chat server with 10, 100 and 1,000 clients in
   one room (about 1 minute);
4. ``bench.workers``: echo and chat fan-out alone and with ``--workers`` 1
   and 2 (the chat's workers through Redis; about 2 minutes);
5. ``bench.chat_redis``: one room on two servers through Redis against one
   server alone (about 1 minute). 4 and 5 need ``redis-server`` for their
   Redis rows.

``--quick`` passes ``--quick`` to each (a smoke run of about 30 seconds in
all); ``--json DIR`` writes ``echo.json``, ``micro.json`` and
``chat_fanout.json`` there. For other options, run a module alone
(``python -m bench.echo --help``). The exit status is the worst of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

from bench import chat_fanout, chat_redis, echo, micro, workers

BENCHES = (("echo", echo.main), ("micro", micro.main), ("chat_fanout", chat_fanout.main),
           ("workers", workers.main), ("chat_redis", chat_redis.main))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of each benchmark")
    parser.add_argument("--json", metavar="DIR", help="write each benchmark's results as JSON in DIR")
    args = parser.parse_args(argv)
    if args.json:
        os.makedirs(args.json, exist_ok=True)
    worst = 0
    for name, run in BENCHES:
        bench_argv = ["--quick"] if args.quick else []
        if args.json:
            bench_argv += ["--json", os.path.join(args.json, f"{name}.json")]
        print(f"==== python -m bench.{name} {' '.join(bench_argv)}".rstrip(), flush=True)
        started = time.monotonic()
        status = run(bench_argv)
        print(f"==== bench.{name}: exit status {status}, {time.monotonic() - started:.0f} s\n", flush=True)
        worst = max(worst, status)
    return worst


if __name__ == "__main__":
    sys.exit(main())
