"""The micro-benchmark runs and reports; speed itself is read from its table, not asserted."""

from __future__ import annotations

import json

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
