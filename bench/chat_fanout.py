"""Chat fan-out: N clients in one room of ``demos.chat_server``; deliveries per second and latency.

Run from the repository root::

    python -m bench.chat_fanout                 # N = 10, 100, 1000; 3 repeats (about 1-2 minutes)
    python -m bench.chat_fanout --quick         # N = 10, 50; short windows: a smoke run
    python -m bench.chat_fanout --clients 100 --senders 20 --json fanout.json

What runs
---------
``demos.chat_server``, unmodified, in its own process on 127.0.0.1 (started
through ``bench._child`` so that it dies with this script), with its flood
limits and per-client output cap raised out of the way (``--flood-rate``,
``--flood-burst``, ``--max-output``) and ``--max-clients`` above N. N
clients connect (in batches, so the listen backlog never overflows), choose
nicknames, and land in the default room, ``#lobby``.

Then ``--senders`` of them (default 10, at most N) send timestamped lines
``m SENDER SEQ T_NS``; the server relays each to the N - 1 other members.
Each sender keeps ``--window`` messages (default 1) in flight: it sends its
next line when every other member has received its previous one, so the
load follows the server's pace and queues stay bounded. A delivery is one
line received by one client; its latency is receive time minus ``T_NS``
(the same monotonic clock: one process). After ``--warmup`` seconds,
deliveries are counted for ``--duration`` seconds.

All N clients live in this process, on one ``selectors`` loop, pinned to a
core of their own (the server gets another), and kept cheap per delivery
(one regex pass per chunk received, no per-line Python). While busy they nap
``--coalesce-us`` (200 us) before each poll so that lines batch up per
``recv``: otherwise they read each line as it lands and use all the CPU
they are given whatever the server does (measured: the same deliveries/s
with and without the nap, at 40-80% instead of 99% of the clients' core).
Their CPU use is reported: at 90% or more of the core, the clients may be
the bottleneck and the table says so. The server's CPU is read from ``/proc/PID/stat`` over the window,
hence its CPU microseconds per delivery.
"""

from __future__ import annotations

import argparse
import platform
import re
import selectors
import socket
import statistics
import sys
import time
from array import array
from typing import Any, Optional

from bench._proc import (CLK_TCK, Child, ChildTimeout, cpu_ticks, hwm_kib, pin, raise_nofile, usable_cpus,
                         write_json)

SATURATED = 0.90
MAX_OUTPUT = 64 * 1024 * 1024
CONNECT_BATCH = 50  # below the chat server's listen backlog (100)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Client:
    __slots__ = ("idx", "sock", "nick", "join_line", "buf", "out", "registered", "want_write")

    def __init__(self, idx: int, sock: socket.socket) -> None:
        self.idx = idx
        self.sock = sock
        self.nick = f"c{idx}"
        self.join_line = f"*** {self.nick} joined #lobby".encode()
        self.buf = b""
        self.out = b""
        self.registered = False
        self.want_write = False


# A delivery as a client receives it: "<c3> m SENDER SEQ T_NS". One regex pass
# over a whole chunk (in C) finds every send time in it; join notices and
# other server lines do not match.
DELIVERY = re.compile(rb"> m \d+ \d+ (\d+)\r\n")


class FanOut:
    """N clients on one selector; the whole measurement for one N.

    The clients must stay cheaper per delivery than the server, or they,
    not the server, would be measured. So once a client has joined, its
    bytes are never split into lines in Python: each chunk received is cut
    at its last line end, one regex pass collects the send times in it, and
    latencies go into an ``array`` (percentiles are exact, computed at the
    end). Pacing is by aggregate: with S senders and W messages in flight
    each, at most S * W * (N - 1) deliveries are outstanding; each time a
    message's worth (N - 1) has arrived, the next sender (round robin) sends.
    """

    def __init__(self, port: int, n: int, senders: int, window: int, nap: float = 0.0) -> None:
        self.port = port
        self.nap = nap
        self._busy = False
        self.n = n
        self.window = window
        self.sel = selectors.DefaultSelector()
        self.clients: list[Client] = []
        self.n_senders = senders
        self.sending = False
        self.outstanding = 0  # deliveries owed by the server
        self.quota = senders * window * (n - 1)
        self.next_sender = 0
        self.seq = 0
        self.measuring = False
        self.latencies = array("q")  # ns, deliveries received in the window
        self.sent_in_window = 0
        self.registered = 0
        self._view = memoryview(bytearray(262144))

    # -- plumbing --------------------------------------------------------------

    def close(self) -> None:
        self.sel.close()
        for c in self.clients:
            c.sock.close()

    def _send(self, c: Client, data: bytes) -> None:
        if c.out:
            c.out += data
            return
        try:
            n = c.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if n < len(data):
            c.out = data[n:]
            c.want_write = True
            self.sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)

    def _flush(self, c: Client) -> None:
        try:
            n = c.sock.send(c.out)
        except (BlockingIOError, InterruptedError):
            return
        c.out = c.out[n:]
        if not c.out and c.want_write:
            c.want_write = False
            self.sel.modify(c.sock, selectors.EVENT_READ, c)

    def connect_batch(self, count: int) -> list[Client]:
        batch = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            c = Client(len(self.clients), sock)
            self.clients.append(c)
            self.sel.register(sock, selectors.EVENT_READ, c)
            batch.append(c)
        return batch

    # -- the loop ----------------------------------------------------------------

    def send_next(self) -> None:
        s = self.next_sender
        self.next_sender = (s + 1) % self.n_senders
        self.seq += 1
        self.outstanding += self.n - 1
        if self.measuring:
            self.sent_in_window += 1
        self._send(self.clients[s], b"m %d %d %d\r\n" % (s, self.seq, time.monotonic_ns()))

    def poll(self, timeout: float) -> None:
        now_ns = time.monotonic_ns
        # recv_into one reused buffer: sock.recv(256 KiB) would allocate (and
        # shrink) a 256 KiB object per call, which costs more than the rest
        # of a delivery's handling.
        view = self._view
        findall = DELIVERY.findall
        if self.nap and self.sending and self._busy:
            # Read coalescing: while the server keeps us busy, let a few
            # lines pile up per socket before reading. Without this nap the
            # clients read every line as it lands (one recv per delivery) and
            # so use all the CPU they are given whatever the server does,
            # which would hide whether they are the bottleneck; with it their
            # CPU use shows their headroom (measured: same throughput either
            # way). It adds at most the nap to a delivery's latency.
            time.sleep(self.nap)
        events = self.sel.select(timeout)
        self._busy = bool(events)
        for key, mask in events:
            c: Client = key.data
            if mask & selectors.EVENT_WRITE:
                self._flush(c)
            if not mask & selectors.EVENT_READ:
                continue
            try:
                n = c.sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                continue
            if not n:
                raise RuntimeError(f"the server closed client {c.nick}'s connection")
            t = now_ns()
            data = c.buf + view[:n] if c.buf else view[:n].tobytes()
            if not c.registered:
                self._registering(c, data)
                continue
            cut = data.rfind(b"\n") + 1
            c.buf = data[cut:]
            sent = findall(data, 0, cut)
            if sent:
                self._delivered(t, sent)

    def _registering(self, c: Client, data: bytes) -> None:
        lines = data.split(b"\r\n")
        c.buf = lines.pop()
        for i, line in enumerate(lines):
            if c.registered:  # what follows our own join: back to the fast path
                rest = b"\r\n".join(lines[i:]) + b"\r\n"
                sent = DELIVERY.findall(rest)
                if sent:
                    self._delivered(time.monotonic_ns(), sent)
                return
            if line == b"Choose a nickname:":
                self._send(c, c.nick.encode() + b"\r\n")
            elif line == c.join_line:
                c.registered = True
                self.registered += 1
            elif line.startswith(b"!!!"):
                raise RuntimeError(f"the server refused {c.nick}: {line.decode(errors='replace')}")

    def _delivered(self, t: int, sent: list[bytes]) -> None:
        if self.measuring:
            self.latencies.extend([t - int(x) for x in sent])
        self.outstanding -= len(sent)
        if self.sending:
            step = self.n - 1
            while self.outstanding <= self.quota - step:
                self.send_next()

    def join_all(self, deadline: float) -> None:
        while len(self.clients) < self.n:
            batch = self.connect_batch(min(CONNECT_BATCH, self.n - len(self.clients)))
            while not all(c.registered for c in batch):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {self.registered} of {self.n} clients joined in time")
                self.poll(0.05)

    def run(self, server_pid: int, warmup: float, duration: float) -> dict[str, Any]:
        """Senders go; warm up; measure; stop sending and drain."""
        self.sending = True
        for _ in range(self.n_senders * self.window):
            self.send_next()
        t0 = time.monotonic()
        ws, we = t0 + warmup, t0 + warmup + duration
        marks: dict[str, tuple[float, float, Optional[int]]] = {}
        while True:
            now = time.monotonic()
            if not self.measuring and "start" not in marks and now >= ws:
                marks["start"] = (now, time.process_time(), cpu_ticks(server_pid))
                self.measuring = True
            if self.measuring and now >= we:
                marks["end"] = (now, time.process_time(), cpu_ticks(server_pid))
                self.measuring = False
                break
            self.poll(max(0.0, min(ws if "start" not in marks else we, now + 0.05) - now))
        self.sending = False
        drain_deadline = time.monotonic() + 10
        while self.outstanding > 0 and time.monotonic() < drain_deadline:
            self.poll(0.05)
        (a0, cpu0, s0), (a1, cpu1, s1) = marks["start"], marks["end"]
        window = a1 - a0
        server_cpu = (s1 - s0) / CLK_TCK if s0 is not None and s1 is not None else float("nan")
        client_cpu = cpu1 - cpu0
        lat = sorted(self.latencies)
        delivered = len(lat)

        def pct(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6 if lat else float("nan")

        return {
            "clients": self.n, "senders": self.n_senders, "window": self.window, "duration": window,
            "deliveries": delivered, "deliveries_per_s": delivered / window,
            "messages_per_s": self.sent_in_window / window,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] / 1e6 if lat else float("nan"),
            "server_cpu_frac": server_cpu / window,
            "server_us_per_delivery": server_cpu * 1e6 / delivered if delivered else float("nan"),
            "client_cpu_frac": client_cpu / window, "client_saturated": client_cpu / window >= SATURATED,
            "undelivered_after_drain": self.outstanding,
        }


def measure(n: int, args: argparse.Namespace, server_cpus: Optional[list[int]]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench._child", "demos.chat_server", "--host", "127.0.0.1", "--port", "0",
            "--max-clients", str(n + 10), "--flood-rate", "1e9", "--flood-burst", str(10**9),
            "--max-output", str(MAX_OUTPUT), "--nick-timeout", "600"]
    row: dict[str, Any] = {"clients": n, "ok": False}
    with Child(argv, cpus=server_cpus) as server:
        try:
            line = server.readline(timeout=60)
        except ChildTimeout as exc:
            row["error"] = str(exc)
            return row
        if not line or not line.startswith("listening on "):
            row["error"] = f"chat server did not start: {line!r} {server.stderr_tail()}"
            return row
        port = int(line.rsplit(":", 1)[1])
        fan = FanOut(port, n, min(args.senders, n), args.window, args.coalesce_us / 1e6)
        try:
            t = time.monotonic()
            fan.join_all(deadline=t + 60 + n / 10)
            row["join_s"] = time.monotonic() - t
            row.update(fan.run(server.pid, args.warmup, args.duration))
            row["server_peak_rss_kib"] = hwm_kib(server.pid)
            row["ok"] = row["deliveries"] > 0
            if not row["ok"]:
                row["error"] = "nothing was delivered in the window"
        except (OSError, RuntimeError) as exc:
            alive = server.proc.poll() is None
            row["error"] = f"{exc}" + ("" if alive else f"; server died: {server.stderr_tail()}")
        finally:
            server.close()  # SIGTERM first: the server says goodbye and closes; then our sockets
            fan.close()
    return row


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError("a room needs at least 2 clients")
    return values


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_fanout", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 10, 50; short windows: a smoke run")
    parser.add_argument("--clients", type=int_list, help="room sizes N (default 10,100,1000)")
    parser.add_argument("--senders", type=int, default=10, help="clients that send (default 10, at most N)")
    parser.add_argument("--window", type=int, default=1, help="messages in flight per sender (default 1)")
    parser.add_argument("--coalesce-us", type=float, default=200.0,
                        help="clients' read-coalescing nap while busy, microseconds (default 200; 0: none)")
    parser.add_argument("--duration", type=float, help="measured seconds (default 3; 0.5 with --quick)")
    parser.add_argument("--warmup", type=float, help="seconds of sending before measuring (default 1; 0.2 with --quick)")
    parser.add_argument("--repeat", type=int, help="repeats, medians quoted (default 3; 1 with --quick)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and clients to separate cores")
    parser.add_argument("--json", metavar="FILE", help="write every run and the summary as JSON to FILE")
    args = parser.parse_args(argv)
    q = args.quick
    sizes = args.clients or ([10, 50] if q else [10, 100, 1000])
    args.duration = args.duration if args.duration is not None else (0.5 if q else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if q else 1.0)
    args.repeat = args.repeat if args.repeat is not None else (1 if q else 3)
    if args.coalesce_us < 0:
        parser.error("--coalesce-us must be at least 0")
    if args.senders < 1 or args.window < 1 or args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        parser.error("--senders, --window, --duration and --repeat must be positive, --warmup at least 0")
    soft, hard = raise_nofile()
    if soft < max(sizes) + 50:
        parser.error(f"{max(sizes) + 50} file descriptors needed, RLIMIT_NOFILE allows {soft} (hard {hard})")

    cpus = usable_cpus()
    server_cpus = client_cpus = None
    if len(cpus) >= 2 and not args.no_pin:
        server_cpus, client_cpus = [cpus[0]], [cpus[1]]
        pin(0, client_cpus)
    print(f"python -m bench.chat_fanout: Python {platform.python_version()} on {platform.platform()}\n"
          f"demos.chat_server, one room; clients: this process, one selectors loop; cpus: {len(cpus)}; "
          + (f"server pinned to cpu {server_cpus}, clients to cpu {client_cpus}" if server_cpus else "not pinned")
          + f"\nrooms of {', '.join(map(str, sizes))}; senders {args.senders} (at most N), {args.window} in flight "
          f"each; read coalescing {args.coalesce_us:g} us; warm-up {args.warmup:g} s, window {args.duration:g} s, "
          f"{args.repeat} repeat(s)\n", flush=True)
    runs: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        for rep in range(args.repeat):
            shift = rep % len(sizes)
            for n in sizes[shift:] + sizes[:shift]:
                row = measure(n, args, server_cpus)
                row["repeat"] = rep
                runs.append(row)
                if row["ok"]:
                    log(f"N={n}: {row['deliveries_per_s']:,.0f} deliveries/s, p99 {row['p99_ms']:.2f} ms, "
                        f"server CPU {row['server_cpu_frac']:.0%}, clients' CPU {row['client_cpu_frac']:.0%}")
                else:
                    log(f"N={n}: FAILED: {row.get('error')}")
    finally:
        pin(0, cpus)

    keys = ("deliveries_per_s", "messages_per_s", "p50_ms", "p99_ms", "server_cpu_frac",
            "server_us_per_delivery", "client_cpu_frac", "join_s", "server_peak_rss_kib")
    summary = []
    lines = [f"{'clients':>7} {'deliveries/s':>12} {'messages/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
             f"{'server CPU':>10} {'us/delivery':>11} {'clients CPU':>11}  (median of {args.repeat})"]
    for n in sizes:
        ok = [r for r in runs if r["clients"] == n and r["ok"]]
        if not ok:
            errors = [r.get("error") for r in runs if r["clients"] == n]
            summary.append({"clients": n, "runs": 0, "error": errors[0] if errors else "not run"})
            lines.append(f"{n:>7} failed: {summary[-1]['error']}")
            continue
        entry: dict[str, Any] = {"clients": n, "runs": len(ok), "senders": ok[0]["senders"]}
        for key in keys:
            vals = [r[key] for r in ok if r.get(key) is not None and r[key] == r[key]]
            entry[key] = statistics.median(vals) if vals else None
        entry["client_saturated_runs"] = sum(1 for r in ok if r["client_saturated"])
        summary.append(entry)
        sat = (f"  CLIENTS SATURATED ({entry['client_saturated_runs']}/{len(ok)} runs)"
               if entry["client_saturated_runs"] else "")
        us = entry["server_us_per_delivery"]
        lines.append(f"{n:>7} {entry['deliveries_per_s']:>12,.0f} {entry['messages_per_s']:>10,.0f} "
                     f"{entry['p50_ms']:>8.2f} {entry['p99_ms']:>8.2f} {entry['server_cpu_frac'] * 100:>9.0f}% "
                     f"{(f'{us:.1f}' if us is not None else '-'):>11} {entry['client_cpu_frac'] * 100:>10.0f}%{sat}")
    print("\n".join(lines))
    print(f"\n{len(runs)} runs in {(time.monotonic() - started) / 60:.1f} min. A delivery is one line received "
          "by one client; messages/s counts lines sent (each goes to N - 1 clients).")
    if args.json:
        doc = {"meta": {"python": sys.version, "platform": platform.platform(), "cpus": len(cpus),
                        "server_cpus": server_cpus, "client_cpus": client_cpus, "clients": sizes,
                        "senders": args.senders, "window": args.window, "duration": args.duration,
                        "coalesce_us": args.coalesce_us,
                        "warmup": args.warmup, "repeat": args.repeat, "quick": q,
                        "saturation_threshold": SATURATED},
               "summary": summary, "runs": runs}
        write_json(args.json, doc)
    return 0 if any(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
