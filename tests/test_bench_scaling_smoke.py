"""bench.workers and bench.chat_redis run end to end and report figures; speed itself is never asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from .redis_server import need_redis

ROOT = Path(__file__).resolve().parent.parent


def run_bench(args: list[str], json_path: Path, timeout: float) -> tuple[dict[str, Any], str]:
    """Run ``python -m ARGS --json PATH`` in its own session (killed whole on a timeout)."""
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


def test_workers_bench_reports_echo_and_chat_with_and_without_workers(tmp_path):
    need_redis()
    doc, out = run_bench(["bench.workers", "--quick", "--workers", "2", "--clients", "10"], tmp_path / "w.json",
                         timeout=240)
    rows = {(e["bench"], e["workers"]): e for e in doc["summary"]}
    assert set(rows) == {("echo", 0), ("echo", 2), ("chat", 0), ("chat", 2)}
    assert rows[("echo", 2)]["rps"] > 0 and rows[("echo", 0)]["rps"] > 0
    assert rows[("chat", 2)]["deliveries_per_s"] > 0 and rows[("chat", 2)]["redis_cpu_frac"] is not None
    assert "--workers 2 --redis" in out


def test_chat_redis_bench_reports_three_setups(tmp_path):
    need_redis()
    doc, out = run_bench(["bench.chat_redis", "--quick", "--clients", "10"], tmp_path / "c.json", timeout=240)
    assert [e["setup"] for e in doc["summary"]] == ["alone", "one server + Redis", "two servers + Redis"]
    assert all(e["deliveries_per_s"] > 0 for e in doc["summary"])
    assert "two servers + Redis" in out
