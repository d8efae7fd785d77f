"""The network benchmarks run end to end and report figures; speed itself is never asserted.

Each benchmark runs as a subprocess (``python -m bench.echo --quick``,
``python -m bench.chat_fanout --quick``) in its own session, so that on a
timeout the whole process group (its servers and load generators too) is
killed; the benchmarks also reap their own children on every path. uvloop
and Twisted are optional: without them their rows say "not installed".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(args: list[str], json_path: Path, timeout: float) -> tuple[dict[str, Any], str]:
    cmd = [sys.executable, "-m", *args, "--json", str(json_path)]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise AssertionError(f"{' '.join(args)} did not finish in {timeout}s:\n{out.decode()}\n{err.decode()}")
        finally:
            try:  # nothing of the benchmark's may outlive it
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    text = out.decode()
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{text}\n{err.decode()}"
    return json.loads(json_path.read_text()), text


def test_echo_quick_reports_reactor_and_asyncio_with_ratios(tmp_path):
    doc, text = run_bench(["bench.echo", "--quick"], tmp_path / "echo.json", timeout=60)
    assert doc["servers"]["reactor"] == doc["servers"]["asyncio"] == doc["servers"]["asyncio-mmap"] == "ok"
    assert doc["servers"]["selectors"] == "ok"
    for optional in ("uvloop", "twisted"):
        assert doc["servers"][optional] == "ok" or doc["servers"][optional].startswith("not installed")
    # --quick builds nothing: an earlier build of these sources, or a reason.
    assert doc["servers"]["reactor-compiled"] == "ok" or doc["servers"]["reactor-compiled"].startswith("not built: ")
    by_server: dict[str, list[dict[str, Any]]] = {}
    for entry in doc["summary"]:
        by_server.setdefault(entry["server"], []).append(entry)
    for kind in ("reactor", "asyncio", "asyncio-mmap", "selectors"):
        assert by_server[kind], kind
        for entry in by_server[kind]:
            for key in ("rps", "cpu_us_per_req", "p50_us", "p99_us", "peak_rss_kib", "ratio_rps", "ratio_cpu",
                        "cpu_x_floor"):
                assert entry[key] > 0, (kind, key, entry)
    for entry in by_server["reactor"]:
        # Every ratio is to the faster asyncio row of its cell: less CPU per request.
        cell = [e for e in doc["summary"] if e["size"] == entry["size"] and e["concurrency"] == entry["concurrency"]]
        fast = min((e for e in cell if e["server"] in ("asyncio", "asyncio-mmap")), key=lambda e: e["cpu_us_per_req"])
        assert entry["base"] == fast["server"] and fast["ratio_rps"] == 1.0
        assert entry["ratio_rps"] == entry["rps"] / fast["rps"]
        floor = next(e for e in cell if e["server"] == "selectors")
        assert entry["cpu_x_floor"] == entry["cpu_us_per_req"] / floor["cpu_us_per_req"]
    idle = {e["server"]: e for e in doc["idle_summary"]}
    assert idle["reactor"]["rss_after_kib"] > 0 and idle["reactor"]["kib_per_conn"] is not None
    assert "x asyncio" in text and "idle connections" in text and "Targets" in text
    for kind in ("uvloop", "twisted"):
        if doc["servers"][kind] != "ok":
            assert any(line.split()[:3] == [kind, "not", "installed"] for line in text.splitlines())
    compiled = doc["servers"]["reactor-compiled"]
    assert any(line.startswith("reactor-compiled ") and (compiled == "ok" or compiled in line)
               for line in text.splitlines())


def test_echo_python_load_generator(tmp_path):
    doc, text = run_bench(["bench.echo", "--quick", "--client", "python", "--servers", "reactor,asyncio",
                           "--concurrency", "4", "--no-idle"], tmp_path / "echo_py.json", timeout=30)
    assert doc["meta"]["client"] == "python"
    entries = {e["server"]: e for e in doc["summary"]}
    assert entries["reactor"]["rps"] > 0 and entries["asyncio"]["rps"] > 0
    assert doc["servers"]["asyncio-mmap"] == "not selected (--servers)"
    assert entries["reactor"]["ratio_rps"] > 0
    assert "skipped (--no-idle)" in text


def test_chat_fanout_quick_reports_deliveries_and_latency(tmp_path):
    doc, text = run_bench(["bench.chat_fanout", "--quick"], tmp_path / "fanout.json", timeout=30)
    entries = {e["clients"]: e for e in doc["summary"]}
    assert sorted(entries) == [10, 50]
    for n, entry in entries.items():
        assert entry["deliveries_per_s"] > 0 and entry["messages_per_s"] > 0, entry
        assert entry["p99_ms"] >= entry["p50_ms"] > 0, entry
        assert entry["client_cpu_frac"] > 0, entry
    assert "deliveries/s" in text


def test_one_command_runs_every_benchmark(tmp_path):
    """``python -m bench --quick``, the command README gives, runs all three and writes their figures."""
    cmd = [sys.executable, "-m", "bench", "--quick", "--json", str(tmp_path)]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=150)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()
    for name in ("echo", "micro", "chat_fanout"):
        assert f"==== bench.{name}: exit status 0" in text
        assert json.loads((tmp_path / f"{name}.json").read_text())
    assert "reactor/asyncio" in text and "x asyncio" in text


def test_the_tls_rows_run():
    """python -m bench.echo --tls: the TLS echo (bench/tls_echo.py), tiny."""
    pytest.importorskip("trustme", reason="trustme is in the test extra")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "bench.echo", "--tls", "--quick", "--sizes", "1024",
                             "--seconds", "0.3", "--conns", "2"], cwd=root, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()[:1] in (["reactor"], ["asyncio"])}
    assert set(rows) == {"reactor", "asyncio"} and all("failed" not in r for r in rows.values()), result.stdout
