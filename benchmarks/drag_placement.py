"""Where sampled drags land: on the parts that move most, or on near-still ones.

Renders clips of a skinned character (RobotExpressive: Wave, Punch, Dance, Walking; Workbench,
4 views, 14 frames, 128x128) and samples drags twice in the same run: with the default
``min_motion_fraction`` and with 0 (the paper's rule alone: every moving part, the start point drawn
by displacement). Per setting, it counts the drags whose 2D reach is under 25% of the view's largest
reach (computed from the tracks, independently of the sampler) and the drags under 10 px at 256x256.

    python benchmarks/drag_placement.py [--asset RobotExpressive.glb] [--clips Wave,Punch,Dance,Walking]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "backend"))

from dataset_tools.clip_folder import load_clip  # noqa: E402
from dataset_tools.drag_sampling import SamplerSettings, sample_clip  # noqa: E402
from dataset_tools.drag_schema import sample_array  # noqa: E402
from puppet_master import cameras  # noqa: E402

DEFAULT_ASSET = ROOT.parent / "shared" / "assets" / "RobotExpressive.glb"


def measure(clip, settings: SamplerSettings) -> dict:
    samples, _ = sample_clip(clip, settings, seed=0)
    k, w2c, (w, _h) = cameras.load_camera_arrays(clip.cameras)
    drags, under_share, under_10px = 0, 0, 0
    for sample in samples:
        frames, view = sample["frames"], sample["view"]
        seen = clip.tracks.visibility[view, frames[0]]
        px, _ = cameras.project(clip.tracks.points[frames][:, seen], k[view], w2c[view])
        largest = float(np.linalg.norm(px - px[:1], axis=-1).max()) / w * 256
        arr = sample_array(sample)[:, : len(sample["drag_info"])]
        reach = np.linalg.norm(arr[..., 2:] - arr[:1, :, 2:], axis=-1).max(axis=0) * 256
        drags += len(reach)
        under_share += int((reach < 0.25 * largest).sum())
        under_10px += int((reach <= 10).sum())
    return {"views": len(samples), "drags": drags, "under_25pct_of_largest": under_share, "under_10px": under_10px}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asset", type=Path, default=DEFAULT_ASSET)
    parser.add_argument("--clips", default="Wave,Punch,Dance,Walking")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(ROOT / "dataset_tools" / "render.py"), str(args.asset), "--out", tmp,
                        "--clips", args.clips, "--engine", "workbench", "--resolution", "128", "--views", "4",
                        "--points", "2048", "--workers", "0"], check=True, capture_output=True, timeout=3600)
        result = {}
        for name in args.clips.split(","):
            clip = load_clip(Path(tmp) / args.asset.stem / name)
            result[name] = {"default": measure(clip, SamplerSettings()),
                            "paper_rule_alone": measure(clip, SamplerSettings(min_motion_fraction=0.0))}
    totals = {key: {m: sum(r[key][m] for r in result.values()) for m in next(iter(result.values()))[key]}
              for key in ("default", "paper_rule_alone")}
    print(json.dumps({"clips": result, "total": totals}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
