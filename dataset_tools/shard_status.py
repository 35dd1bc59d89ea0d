"""Which shards of a sharded stage finished: one status file per shard, and their merge.

Rendering (``render.py``), drag sampling (``sample_drags.py``) and latent caching
(``training.cache_latents``) each take ``--shard i/n`` and assign assets to shards by the same
stable hash (``render_plan.in_shard``), so task ``i`` of a job array handles the same assets in every
stage. At its end each writes ``ROOT/shards/<stage>_<i>-of-<n>.json``:
``{"stage", "shard": [i, n], "status": "done" | "cancelled", "exit_status", "counts", "failed":
[{"id", "reason"}], "host", "time"}``. A shard whose task crashed, ran out of time or was killed
leaves no status file (or a stale one from an earlier run with another ``n``, which is ignored).

``python -m dataset_tools.shard_status ROOT --stage render --shards n [--out REPORT]`` checks that
every shard finished and writes one report. Exit status: 0 every shard done and nothing failed;
1 every shard done but some assets or clips failed (listed); 3 a shard did not finish (named, with
the command that redoes it). No bpy or torch here: render.py imports this inside Blender.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

from dataset_tools.render_plan import write_json_atomic

STAGES = ("render", "drags", "cache")
SHARDS_DIR = "shards"
EXIT_OK, EXIT_FAILED, EXIT_UNFINISHED = 0, 1, 3


def status_path(root: Path, stage: str, index: int, count: int) -> Path:
    return Path(root) / SHARDS_DIR / f"{stage}_{index}-of-{count}.json"


def write_status(
    root: Path, stage: str, index: int, count: int, *, exit_status: int, counts: dict, failed: list[dict],
    cancelled: bool = False,
) -> Path:
    """Record how shard ``index`` of ``count`` of ``stage`` ended (atomically; one writer per shard)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    path = status_path(root, stage, index, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "stage": stage, "shard": [index, count], "status": "cancelled" if cancelled else "done",
        "exit_status": int(exit_status), "counts": dict(counts), "failed": list(failed),
        "host": socket.gethostname(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(path, record)
    return path


def read_status(root: Path, stage: str, index: int, count: int) -> dict | None:
    try:
        record = json.loads(status_path(root, stage, index, count).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("shard") == [index, count] else None


def merge(root: Path, stage: str, count: int) -> dict:
    """One report over the ``count`` shards of ``stage`` under ``root``."""
    shards, unfinished, failed = [], [], []
    totals: dict[str, int] = {}
    for index in range(count):
        record = read_status(root, stage, index, count)
        if record is None or record.get("status") != "done":
            why = "no status: the task did not finish (crashed, timed out or was killed)" if record is None \
                else f"status {record.get('status')!r}"
            unfinished.append({"shard": index, "reason": why})
            shards.append({"shard": index, "status": "missing" if record is None else record.get("status")})
            continue
        shards.append({"shard": index, "status": "done", "exit_status": record.get("exit_status"),
                       "counts": record.get("counts", {}), "host": record.get("host"), "time": record.get("time")})
        for key, value in record.get("counts", {}).items():
            totals[key] = totals.get(key, 0) + int(value)
        failed += [{**item, "shard": index} for item in record.get("failed", [])]
    exit_status = EXIT_UNFINISHED if unfinished else EXIT_FAILED if failed else EXIT_OK
    return {"stage": stage, "root": str(root), "shards": count, "finished": count - len(unfinished),
            "unfinished": unfinished, "counts": totals, "failed": failed, "exit_status": exit_status,
            "per_shard": shards}


def summary(report: dict) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in sorted(report["counts"].items())) or "nothing counted"
    lines = [f"{report['stage']}: {report['finished']}/{report['shards']} shards finished; {counts}"]
    for item in report["unfinished"]:
        lines.append(f"  shard {item['shard']}/{report['shards']} did not finish: {item['reason']}; "
                     f"run the stage again with --shard {item['shard']}/{report['shards']} (it resumes)")
    for item in report["failed"][:50]:
        lines.append(f"  failed in shard {item['shard']}: {item.get('id')}: {item.get('reason', '')}"[:300])
    if len(report["failed"]) > 50:
        lines.append(f"  ... {len(report['failed']) - 50} more failures in the report")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset_tools.shard_status",
                                     description="Check that every shard of a stage finished; write one report.")
    parser.add_argument("root", type=Path, help="the stage's root: render output (render, drags) or cache folder (cache)")
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--shards", type=int, required=True, help="n of the --shard i/n the tasks ran with")
    parser.add_argument("--out", type=Path, default=None, help="report file (default ROOT/shards/<stage>_merged.json)")
    args = parser.parse_args(argv)
    if args.shards < 1:
        parser.error("--shards must be at least 1")
    report = merge(args.root, args.stage, args.shards)
    out = args.out or Path(args.root) / SHARDS_DIR / f"{args.stage}_merged.json"
    write_json_atomic(out, report)
    print(summary(report))
    print(f"report: {out}")
    return report["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
