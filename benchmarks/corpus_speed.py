"""Procedural corpus cost: seconds per generated asset and per rendered clip (with drags).

Builds ``--per-family`` training assets per family with build_corpus.py, then renders them twice in
the same run: with the corpus defaults (Cycles) and, as the baseline, with Workbench. Prints wall
seconds and CPU seconds (all child processes) per asset and per clip, and the Cycles / Workbench
ratio.

    python benchmarks/corpus_speed.py [--per-family 2] [--workers 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (children) of one build_corpus.py run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "dataset_tools.build_corpus", *args, "--no-progress"], check=True,
                   stdout=subprocess.DEVNULL, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return time.monotonic() - start, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it (default: a temp folder)")
    args = parser.parse_args()
    out = args.keep or Path(tempfile.mkdtemp(prefix="pm_corpus_bench_"))
    common = [str(out), "--train", str(args.per_family), "--heldout", "0"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    try:
        wall, cpu = _run(common)
        manifest = json.loads((out / "manifest.json").read_text())
        n_assets = len(manifest["assets"])
        inside = sum(r["seconds"] for r in manifest["assets"]) / n_assets
        print(f"generate: {n_assets} assets, {wall / n_assets:.2f} s/asset wall ({inside:.2f} s inside Blender), "
              f"{cpu / n_assets:.2f} s/asset CPU")
        n_clips = sum(len(r["clips"]) for r in manifest["assets"])
        results = {}
        for engine in ("cycles", "workbench"):
            renders = out / "renders"
            if renders.exists() and args.keep is None:
                shutil.rmtree(renders)
            wall, cpu = _run([*common, "--render", "--engine", engine, "--workers", str(args.workers)])
            if args.keep is not None:  # keep the Cycles renders; the baseline renders into a side folder
                os.replace(renders, out / f"renders_{engine}")
            results[engine] = (wall / n_clips, cpu / n_clips)
            print(f"render + drags ({engine}): {n_clips} clips, {wall / n_clips:.1f} s/clip wall, "
                  f"{cpu / n_clips:.1f} s/clip CPU")
        ratio_wall = results["cycles"][0] / results["workbench"][0]
        ratio_cpu = results["cycles"][1] / results["workbench"][1]
        print(f"cycles / workbench: {ratio_wall:.2f}x wall, {ratio_cpu:.2f}x CPU")
    finally:
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
