"""TLS echo: reactor, asyncio and uvloop serving 1 KiB and 16 KiB echoes over TLS.

``python -m bench.echo --tls`` (or ``python -m bench.tls_echo``). Each server
(``bench.servers --kind K --tls CERT,KEY``, glibc's threshold raised as in
the plain rows) runs in its own process; the load comes from one client
process on reactor's own TLS client (C connections in ping-pong, the same
for every server). What is compared is the *server's* CPU per request, from
/proc: the client is Python, so requests/s say as much about the client as
about the server (it is printed, with the client's CPU, so you can see which
side saturated). TLS work (AES-GCM in OpenSSL, the same library under all
three) is in every figure; the difference between rows is each loop's own
cost around it. Certificates: a throwaway CA from trustme (test extra), or
the openssl CLI.
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import sys
import tempfile
import time
from typing import Any, Optional

from ._proc import Child, cpu_ticks

TICK = os.sysconf("SC_CLK_TCK")
KINDS = ("reactor", "asyncio", "uvloop")


def make_cert(directory: str) -> tuple[str, str, str]:
    """(cert, key, ca) PEM files for localhost/127.0.0.1."""
    import trustme  # the test extra

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = [os.path.join(directory, name) for name in ("cert.pem", "key.pem", "ca.pem")]
    cert.cert_chain_pems[0].write_to_path(paths[0])
    cert.private_key_pem.write_to_path(paths[1])
    ca.cert_pem.write_to_path(paths[2])
    return paths[0], paths[1], paths[2]


def client(port: int, ca: str, size: int, conns: int, seconds: float) -> int:
    """Ping-pong on *conns* TLS connections for *seconds*; return the requests answered."""
    from reactor import Protocol, Reactor

    ctx = ssl.create_default_context(cafile=ca)
    payload = b"x" * size
    done = [0]
    measuring = [False]

    class Ping(Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport, self.got = transport, 0
            transport.write(payload)

        def data_received(self, data: bytes) -> None:
            self.got += len(data)
            while self.got >= size:
                self.got -= size
                if measuring[0]:
                    done[0] += 1
                self.transport.write(payload)

    with Reactor() as reactor:
        for _ in range(conns):
            reactor.connect_tcp(Ping, "127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        end = time.monotonic() + 0.5
        while time.monotonic() < end:  # warm-up: handshakes done, buffers warm
            reactor.run_once(0.05)
        measuring[0] = True
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            reactor.run_once(0.05)
        for t in reactor.connections():
            t.abort()
    return done[0]


def measure(kind: str, cert: str, key: str, ca: str, size: int, conns: int, seconds: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.servers", "--kind", kind, "--malloc", "raised", "--tls", f"{cert},{key}"]
    with Child(argv) as server:
        line = server.readline(30)
        if not line or not line.startswith("PORT "):
            return {"server": kind, "error": f"did not start: {line!r} {server.stderr_tail()}"}
        port = int(line.split()[1])
        before = cpu_ticks(server.pid) or 0
        me_before = os.times()
        t0 = time.monotonic()
        requests = client(port, ca, size, conns, seconds)
        elapsed = time.monotonic() - t0
        after = cpu_ticks(server.pid) or 0
        me = os.times()
    # The server's CPU counts warm-up too: charge it to the whole window.
    cpu = (after - before) / TICK
    client_cpu = (me.user + me.system) - (me_before.user + me_before.system)
    window = elapsed
    measured = max(requests, 1)
    return {"server": kind, "size": size, "conns": conns, "rps": requests / seconds,
            "cpu_us": cpu / window * seconds / measured * 1e6 if requests else None,
            "server_cpu": cpu / window, "client_cpu": client_cpu / window}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tls_echo", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, one repeat")
    parser.add_argument("--repeat", type=int, default=None, help="repeats, interleaved (default 3)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per run (default 2)")
    parser.add_argument("--conns", type=int, default=10, help="connections (default 10)")
    parser.add_argument("--sizes", default="1024,16384", help="message sizes (default 1024,16384)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)
    seconds = args.seconds or (0.5 if args.quick else 2.0)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k for k in KINDS if k != "uvloop" or _has("uvloop")]
    with tempfile.TemporaryDirectory() as tmp:
        cert, key, ca = make_cert(tmp)
        results: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for _ in range(repeat):
            for size in sizes:
                for kind in kinds:
                    results.setdefault((kind, size), []).append(
                        measure(kind, cert, key, ca, size, args.conns, seconds))
    print(f"TLS echo, {args.conns} connections, medians of {repeat} (python -m bench.tls_echo"
          f"{' --quick' if args.quick else ''}); server CPU per request is the figure to compare")
    print(f"{'server':10} {'size':>6} {'req/s':>9} {'srv CPU us/req':>15} {'x asyncio':>10} "
          f"{'srv CPU':>8} {'client CPU':>11}")
    for size in sizes:
        base = _median([r.get("cpu_us") for r in results.get(("asyncio", size), [])])
        for kind in kinds:
            runs = results[(kind, size)]
            errors = [r["error"] for r in runs if "error" in r]
            if errors:
                print(f"{kind:10} {size:>6} failed: {errors[0]}")
                continue
            cpu = _median([r["cpu_us"] for r in runs])
            print(f"{kind:10} {size:>6} {_median([r['rps'] for r in runs]):>9,.0f} {cpu:>15.1f} "
                  f"{(cpu / base if base and cpu else float('nan')):>9.2f}x "
                  f"{_median([r['server_cpu'] for r in runs]):>7.0%} {_median([r['client_cpu'] for r in runs]):>10.0%}")
    if "uvloop" not in kinds:
        print("uvloop: not installed (pip install -e '.[bench]')")
    return 0


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _median(values: list[Any]) -> Any:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
