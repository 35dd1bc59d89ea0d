"""benchmarks/device_check.sh, the one command for a lent GPU, runs here on the CPU at the tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _check(out: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), *args], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=ROOT)


def test_device_check_runs_every_step_and_writes_json_and_markdown(tmp_path):
    done = _check(tmp_path, "--tiny")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["ok"] and report["mode"].startswith("tiny")
    steps = report["steps"]
    assert {name: s["status"] for name, s in steps.items()} == {
        "pipeline_presets": "ok", "unet_forward_bf16": "ok", "unet_forward_fp32": "ok"}
    presets = steps["pipeline_presets"]["results"]
    assert list(presets) == ["high", "balanced", "low"]
    assert all(r["seconds"] > 0 and r["peak_rss_mb"] > 0 for r in presets.values())
    assert [r["memory_plan"]["name"] for r in presets.values()] == ["high", "balanced", "low"]
    # balanced computes what high computes; low's chunked decode is its documented trade
    diffs = steps["pipeline_presets"]["max_abs_frame_diff_vs_high"]
    assert diffs["high"] == 0 and diffs["balanced"] < 1e-3
    for dtype in ("bf16", "fp32"):
        parity = steps[f"unet_forward_{dtype}"]["parity"]
        assert parity["ok"] and parity["relative_max_diff"] <= parity["tolerance"]
    table = (tmp_path / "device_check.md").read_text()
    assert "| balanced |" in table and "| bf16 |" in table and "ok (<=" in table
    # what comes back from a lent machine: at most 8 files, plain names, one folder deep
    assert len(list(tmp_path.iterdir())) <= 8


def test_a_failing_step_is_recorded_and_the_others_still_run(tmp_path):
    done = _check(tmp_path, "--tiny", "--presets", "high,nonexistent")
    assert done.returncode == 1
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["steps"]["pipeline_presets"]["status"] == "failed"
    assert "nonexistent" in report["steps"]["pipeline_presets"]["error"]
    assert report["steps"]["unet_forward_fp32"]["status"] == "ok"
    assert "pipeline presets: failed" in (tmp_path / "device_check.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PUPPET_MASTER_FULL_CPU") != "1",
                    reason="opt-in: the full-size pipeline on the CPU takes minutes and ~12 GB (PUPPET_MASTER_FULL_CPU=1)")
def test_full_size_pipeline_runs_end_to_end_on_the_cpu(tmp_path):
    done = _check(tmp_path, "--full-cpu", "--step-timeout", "3000", timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["steps"]["pipeline_presets"]["results"]["high"]["peak_rss_mb"] > 0
