"""How well each fallback point tracker follows rendered parts, against Blender's exact tracks.

    python benchmarks/tracker_accuracy.py corpus/renders/heldout --points 200
    python benchmarks/tracker_accuracy.py corpus/renders/heldout --trackers lucas-kanade dis --views 0 1 2 3

Motion Error compares tracks of a generated video with tracks of the true one, so it can only be
as good as the tracker. Rendered clips carry the exact answer: ``tracks.npz`` holds the world
positions of surface points in every frame and their visibility per view, and ``cameras.json``
projects them. For every clip view this samples points visible in all 14 frames and reports, per
tracker, the mean end-point error (pixels at 256x256) over the points whose exact track moves more
than ``--moving-px`` ("moving") and over the others ("still"), and its *stability*: the Motion
Error between its tracks of the true video and of the true video through a 128 grid (resample128,
~45 dB PSNR: a near-perfect copy should score near 0). The baseline in the same run is
"stay put" (points never move: the error a tracker that sees nothing makes); ratios are against
Lucas-Kanade, the fallback the project had before.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "backend"))

from dataset_tools import clip_folder  # noqa: E402
from puppet_master import cameras  # noqa: E402
from training import evaluate, metrics  # noqa: E402
from training.cache_latents import composite_on_white  # noqa: E402
from training.trackers import FALLBACK_TRACKERS, make_tracker  # noqa: E402

SIZE = evaluate.SIZE


class StayPut:
    name = "stay put (baseline)"

    def track(self, video: np.ndarray, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, np.float32).reshape(-1, 2)
        return np.repeat(points[None], len(video), axis=0)


def clip_view(clip: clip_folder.Clip, view: int, num_points: int, rng: np.random.Generator):
    """The view's frames at SIZE (on white) and exact ``(T, P, 2)`` pixel tracks of visible points."""
    frames = sorted(int(p.stem) for p in (clip.folder / f"view_{view:02d}").glob("*.png"))
    video = []
    for frame in frames:
        with Image.open(clip.frame_path(view, frame)) as im:
            video.append(np.asarray(composite_on_white(im, SIZE)))
    k_matrix, w2c, (width, _) = cameras.load_camera_arrays(clip.cameras)
    tracks = clip.tracks
    pixels, _ = cameras.project(tracks.points, k_matrix[view], w2c[view])
    seen = tracks.visibility[view].all(axis=0)
    exact = (pixels[:, seen] * SIZE / width).astype(np.float32)
    if exact.shape[1] > num_points:
        exact = exact[:, rng.choice(exact.shape[1], num_points, replace=False)]
    return np.stack(video), exact


def measure(roots: list[str], trackers: dict, *, views: list[int], num_points: int, moving_px: float,
            limit: int | None) -> dict:
    rng = np.random.default_rng(0)
    copy = evaluate.resample_method(128)
    sums = {name: {"moving": [], "still": [], "stability": [], "seconds": 0.0} for name in trackers}
    folders = [f for root in roots for f in sorted(clip_folder.find_clips(root))][:limit]
    measured = 0
    for folder in tqdm(folders, desc="clips", unit="clip"):
        clip = clip_folder.load_clip(folder)
        for view in views:
            if view >= len(clip.views):
                continue
            video, exact = clip_view(clip, view, num_points, rng)
            if exact.shape[1] == 0 or len(video) != len(exact):
                continue
            measured += 1
            moving = np.linalg.norm(exact - exact[:1], axis=-1).max(axis=0) > moving_px
            near_copy = copy(video, None)
            for name, tracker in trackers.items():
                start = time.perf_counter()
                found = tracker.track(video, exact[0])
                sums[name]["seconds"] += time.perf_counter() - start
                error = np.linalg.norm(found - exact, axis=-1)[1:].mean(axis=0)  # per point, frames 1..
                if moving.any():
                    sums[name]["moving"].append(float(error[moving].mean()))
                if (~moving).any():
                    sums[name]["still"].append(float(error[~moving].mean()))
                chosen = moving if moving.any() else np.ones_like(moving)
                sums[name]["stability"].append(metrics.motion_error(tracker.track(near_copy, exact[0][chosen]),
                                                                    found[:, chosen]))
    return {"clip_views": measured, "trackers": {
        name: {"name": trackers[name].name, "moving_px": _mean(s["moving"]), "still_px": _mean(s["still"]),
               "stability_px": _mean(s["stability"]), "seconds_per_view": s["seconds"] / max(1, measured)}
        for name, s in sums.items()}}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("renders", nargs="+", help="render roots (clip folders with tracks.npz)")
    parser.add_argument("--trackers", nargs="+", default=list(FALLBACK_TRACKERS), choices=FALLBACK_TRACKERS)
    parser.add_argument("--views", type=int, nargs="+", default=[0])
    parser.add_argument("--points", type=int, default=200, help="sampled points per clip view")
    parser.add_argument("--moving-px", type=float, default=3.0)
    parser.add_argument("--limit", type=int, help="first N clips only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    trackers = {"stay-put": StayPut(), **{name: make_tracker(name) for name in args.trackers}}
    report = measure(args.renders, trackers, views=args.views, num_points=args.points, moving_px=args.moving_px,
                     limit=args.limit)
    if not report["clip_views"]:
        parser.exit(2, f"error: no clip views with tracks under {', '.join(args.renders)}\n")
    base = report["trackers"].get("lucas-kanade")
    print(f"{report['clip_views']} clip views; end-point error in pixels at {SIZE}x{SIZE} against Blender's exact tracks")
    print("| tracker | moving parts | still parts | stability (ME vs a 45 dB copy) | s per view | moving vs LK |")
    print("|---|---|---|---|---|---|")
    for figures in report["trackers"].values():
        ratio = f"{figures['moving_px'] / base['moving_px']:.2f}x" if base and figures["moving_px"] else "–"
        print(f"| {figures['name']} | {figures['moving_px']:.2f} | {figures['still_px']:.2f} | "
              f"{figures['stability_px']:.2f} | {figures['seconds_per_view']:.2f} | {ratio} |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
