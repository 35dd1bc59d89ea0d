"""benchmarks/server_faults.py at its smallest: every fault happens, and no job is lost or ends twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_fault_benchmark_loses_and_duplicates_no_job(tmp_path):
    out = tmp_path / "faults.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "server_faults.py"), "--clients", "2", "--jobs",
                           "3", "--kill-every", "2", "--unread-fetches", "100", "--time-limit", "400", "--json",
                           str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["submitted"] == 6 and figures["ended_exactly_once"] == 6
    assert figures["lost"] == figures["duplicated"] == figures["unindexed_folders"] == 0
    assert figures["worker_kills"] >= 1 and figures["broker_restarts"] == 1
    assert sum(figures["endings"].values()) == 6
    assert figures["rss_after_unread_mb"] > 0 and figures["submit_p99_ms"] >= figures["submit_p50_ms"] > 0
