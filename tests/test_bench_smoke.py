"""The micro-benchmark runs and reports; speed itself is read from its table, not asserted."""

from __future__ import annotations

import json

import pytest

from bench import micro


def test_micro_bench_reports_every_benchmark(tmp_path, capsys):
    out = tmp_path / "micro.json"
    assert micro.main(["--quick", "--repeat", "1", "-n", "2000", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    names = [entry["benchmark"] for entry in doc["benchmarks"]]
    assert names == [name for name, _ in micro.BENCHMARKS]
    for entry in doc["benchmarks"]:
        assert entry["reactor_ops_per_s"] > 0 and entry["asyncio_ops_per_s"] > 0
        assert entry["ratio"] == entry["reactor_ops_per_s"] / entry["asyncio_ops_per_s"]
    churn = next(e for e in doc["benchmarks"] if e["benchmark"] == "call_later+cancel")
    assert churn["reactor_heap_after"] <= 101  # cancelled timers were compacted away
    table = capsys.readouterr().out
    assert "reactor/asyncio" in table and "call_soon_threadsafe" in table
    overhead = doc["instrument_overhead"]
    assert list(overhead) == [name for name, _, _ in micro.OVERHEAD_WORKLOADS]
    assert all(min(e["ops_per_s"].values()) > 0 for e in overhead.values())
    assert "transport ping-pong" in table


def test_stream_throughput_runs_and_checks_every_byte(capsys):
    from bench import stream_throughput

    assert stream_throughput.main(["--mib", "5"]) == 0
    assert "MiB/s each way" in capsys.readouterr().out


def test_allocator_bench_reports_each_read_size_in_both_states(capsys):
    """bench.allocator: a figure per recv size and allocator state (PERFORMANCE.md, "The allocator")."""
    from bench import allocator

    assert allocator.main(["-n", "2000"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "KiB" in line and "us CPU" in line]
    assert [row[0] for row in rows] == ["64", "120", "256"]
    for row in rows:
        figures = [float(row[i - 1]) for i, word in enumerate(row) if word == "us"]
        assert len(figures) == 2 and min(figures) > 0  # raised and mmap


def test_hotpath_bench_reports_reactor_against_the_floor(capsys):
    from bench import hotpath

    assert hotpath.main(["--concurrency", "10", "--trials", "1", "--requests", "2000"]) == 0
    out = capsys.readouterr().out
    floor = next(line for line in out.splitlines() if line.startswith("selectors (floor)"))
    reactor = next(line for line in out.splitlines() if line.startswith("reactor "))
    assert floor.split()[-1] == "1.00x"
    assert float(reactor.split()[-2]) > 0 and reactor.split()[-1].endswith("x")


def test_socketcost_reports_user_and_kernel_time_of_a_send_and_a_recv(capsys):
    """bench.socketcost: the floor under any loop over the socket module (PERFORMANCE.md, targets)."""
    from bench import socketcost

    # (getrusage splits user from system time by sampling: enough calls for both to be seen)
    user, kernel = socketcost.send_recv_cost(size=1024, n=50_000, repeat=1)
    assert kernel > 0 and user + kernel > 0
    assert socketcost.main(["-n", "20000"]) == 0
    out = capsys.readouterr().out
    assert "us user" in out and "us kernel" in out


def test_socketcost_refuses_a_bad_count(capsys):
    from bench import socketcost

    with pytest.raises(SystemExit) as exit_info:
        socketcost.main(["-n", "0"])
    assert exit_info.value.code == 2
    assert "-n must be >= 1" in capsys.readouterr().err
