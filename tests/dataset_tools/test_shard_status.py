"""Shard status files and their merge (no Slurm needed: the files are what the tasks write)."""

import json
import subprocess
import sys
from pathlib import Path

from dataset_tools import shard_status

ROOT = Path(__file__).resolve().parents[2]


def test_merge_sums_the_shards_and_lists_failures(tmp_path):
    shard_status.write_status(tmp_path, "render", 0, 2, exit_status=0, counts={"ok": 3, "skipped": 1}, failed=[])
    shard_status.write_status(tmp_path, "render", 1, 2, exit_status=1, counts={"ok": 2, "failed": 1},
                              failed=[{"id": "broken", "reason": "import failed: not a glTF"}])
    report = shard_status.merge(tmp_path, "render", 2)
    assert report["finished"] == 2 and report["unfinished"] == []
    assert report["counts"] == {"ok": 5, "skipped": 1, "failed": 1}
    assert report["failed"] == [{"id": "broken", "reason": "import failed: not a glTF", "shard": 1}]
    assert report["exit_status"] == shard_status.EXIT_FAILED
    assert "failed in shard 1: broken" in shard_status.summary(report)


def test_missing_cancelled_and_stale_shards_are_unfinished(tmp_path):
    shard_status.write_status(tmp_path, "drags", 0, 3, exit_status=0, counts={"ok": 1}, failed=[])
    shard_status.write_status(tmp_path, "drags", 1, 3, exit_status=130, counts={}, failed=[], cancelled=True)
    shard_status.write_status(tmp_path, "drags", 2, 4, exit_status=0, counts={}, failed=[])  # another n: not shard 2/3
    report = shard_status.merge(tmp_path, "drags", 3)
    assert [u["shard"] for u in report["unfinished"]] == [1, 2]
    assert "cancelled" in report["unfinished"][0]["reason"] and "did not finish" in report["unfinished"][1]["reason"]
    assert report["exit_status"] == shard_status.EXIT_UNFINISHED
    text = shard_status.summary(report)
    assert "shard 2/3 did not finish" in text and "--shard 2/3" in text
    (tmp_path / "shards" / "drags_0-of-3.json").write_text("{truncated")  # a damaged file counts as missing
    assert [u["shard"] for u in shard_status.merge(tmp_path, "drags", 3)["unfinished"]] == [0, 1, 2]


def test_cli_writes_one_report_and_exits_with_the_outcome(tmp_path):
    for i in range(2):
        shard_status.write_status(tmp_path, "cache", i, 2, exit_status=0, counts={"items": 4}, failed=[])
    done = subprocess.run([sys.executable, "-m", "dataset_tools.shard_status", str(tmp_path), "--stage", "cache",
                           "--shards", "2"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "2/2 shards finished; 8 items" in done.stdout
    assert json.loads((tmp_path / "shards" / "cache_merged.json").read_text())["counts"] == {"items": 8}
    done = subprocess.run([sys.executable, "-m", "dataset_tools.shard_status", str(tmp_path), "--stage", "cache",
                           "--shards", "3"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == shard_status.EXIT_UNFINISHED and "shard 0/3 did not finish" in done.stdout
