"""Render speed: our default settings against the authors' settings, and clips per hour per core.

1. Seconds per 256x256 frame, same asset, clip, frames and camera, in one Blender process:
   - ours: render.py's defaults (Cycles, 256x256, 8 samples, fast OpenImageDenoise),
   - the authors': Cycles 512x512, 128 samples, denoising at high quality, downscaled to 256x256;
   the ratio and the mean absolute difference of the two 256x256 images (RGB on white, 0..1).
2. End to end: render.py (one clip, default views/frames) then sample_drags.py when it exists;
   clips per hour per core from the CPU seconds of the processes.

    python benchmarks/render_speed.py [--asset RobotExpressive.glb --clip Wave --frames 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ASSET = ROOT.parent / "shared" / "assets" / "RobotExpressive.glb"

INNER = r"""
import json, sys, time
from pathlib import Path
import numpy as np
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/backend"]
from dataset_tools import blender_render, blender_scene
from puppet_master import cameras
asset, clip_name, n_frames, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
blender_scene.reset_scene()
blender_scene.import_asset(Path(asset))
objects = blender_scene.geometry_objects()
clips = blender_scene.find_clips()
clip = next(c for c in clips if c.name == clip_name)
blender_scene.activate_clip(clip, clips)
frames = [clip.frame_start + (clip.frame_end - clip.frame_start) * i / max(1, n_frames - 1) for i in range(n_frames)]
_, _, lo, hi = blender_scene.normalize_clip(objects, blender_scene.bbox_frames(clip, frames))
k = cameras.intrinsics(256, 256)
view = cameras.fit_distance(cameras.View(30.0, 20.0, 1.8), blender_scene.box_corners(lo, hi), k, 256, 256)
cam = blender_scene.make_camera("bench", cameras.view_world_to_camera(view), 35.0, 32.0)
settings = {
    "ours": blender_render.RenderSettings(),
    "authors": blender_render.RenderSettings(samples=128, denoise_quality="HIGH", supersample=2),
}
result = {}
for name, s in settings.items():
    blender_render.configure(s)
    blender_scene.set_frame(frames[0])
    blender_render.render_to(out / f"warmup_{name}.png", cam, s)  # kernels, BVH, denoiser start-up
    started = time.perf_counter()
    for t, frame in enumerate(frames):
        blender_scene.set_frame(frame)
        blender_render.render_to(out / f"{name}_{t}.png", cam, s)
    result[name] = (time.perf_counter() - started) / len(frames)
diffs, fg = [], []
for t in range(len(frames)):
    a, b = blender_render.read_png(out / f"ours_{t}.png"), blender_render.read_png(out / f"authors_{t}.png")
    d = np.abs(a[..., :3] - b[..., :3]).mean(axis=2)
    diffs.append(d.mean())
    fg.append(d[(a[..., 3] > 0) | (b[..., 3] > 0)].mean())
result["mad"], result["mad_foreground"] = float(np.mean(diffs)), float(np.mean(fg))
print("RESULT " + json.dumps(result))
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def per_frame(args, work: Path) -> dict:
    script = work / "inner.py"
    script.write_text(INNER)
    out = subprocess.run(
        [sys.executable, str(script), str(ROOT), str(args.asset), args.clip, str(args.frames), str(work)],
        capture_output=True, text=True, timeout=3600,
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"per-frame benchmark failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return json.loads(line[len("RESULT "):])


def end_to_end(args, work: Path) -> dict:
    renders = work / "renders"
    cpu0, wall0 = children_cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "dataset_tools" / "render.py"), str(args.asset), "--out", str(renders),
         "--clips", args.clip, "--views", str(args.views), "--workers", "1"],
        check=True, capture_output=True, timeout=3600,
    )
    render_cpu, render_wall = children_cpu() - cpu0, time.perf_counter() - wall0
    drags_cpu = 0.0
    if (ROOT / "dataset_tools" / "sample_drags.py").is_file():
        cpu0 = children_cpu()
        subprocess.run(
            [sys.executable, "-m", "dataset_tools.sample_drags", str(renders), "--no-progress"],
            check=True, capture_output=True, timeout=3600, cwd=ROOT,
        )
        drags_cpu = children_cpu() - cpu0
    cpu = render_cpu + drags_cpu
    return {"render_cpu_s": render_cpu, "render_wall_s": render_wall, "drags_cpu_s": drags_cpu,
            "clips_per_hour_per_core": 3600.0 / cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--asset", type=Path, default=DEFAULT_ASSET)
    parser.add_argument("--clip", default="Wave")
    parser.add_argument("--frames", type=int, default=3, help="timed frames per setting")
    parser.add_argument("--views", type=int, default=12, help="views for the end-to-end run")
    parser.add_argument("--skip-end-to-end", action="store_true")
    args = parser.parse_args()
    print(f"device: CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared), "
          f"asset {args.asset.name} clip {args.clip}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pm_bench_") as tmp:
        work = Path(tmp)
        speed = per_frame(args, work)
        print(f"ours    (256px, 8 spp, fast denoise):           {speed['ours']:.3f} s/frame")
        print(f"authors (512px, 128 spp, HQ denoise, -> 256px): {speed['authors']:.3f} s/frame")
        print(f"speed-up: {speed['authors'] / speed['ours']:.1f}x (target >= 10x); "
              f"mean |difference| of the 256x256 images: {speed['mad']:.4f} "
              f"(on the object's pixels: {speed['mad_foreground']:.4f}; RGB in 0..1)", flush=True)
        if not args.skip_end_to_end:
            e2e = end_to_end(args, work)
            print(f"end to end, 1 clip x {args.views} views x 14 frames: render {e2e['render_cpu_s']:.1f} CPU s "
                  f"({e2e['render_wall_s']:.1f} s wall), drags {e2e['drags_cpu_s']:.1f} CPU s -> "
                  f"{e2e['clips_per_hour_per_core']:.1f} clips/hour/core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
