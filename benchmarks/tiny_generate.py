"""Seconds for one 14-frame 256x256 video with the tiny trained model on this CPU (target: <= 30 s).

    python benchmarks/tiny_generate.py --model backend/puppet_master/weights/tiny --steps 50
    python benchmarks/tiny_generate.py --model runs/tiny_pipeline --steps 25 --threads 2

Baseline in the same run: puppet_master.tiny's random-weight pipeline (the ``--tiny`` model the
project had before) with the same steps, so the ratio says what the trained configuration costs
against it. One warm-up call each, then the median of ``--repeats`` calls: wall seconds and CPU
seconds of this process (all threads), and the share of the wall time spent outside the U-Net.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import torch
from PIL import Image


def example_image() -> Image.Image:
    """A grey block with an orange lid on white: the kind of object the tiny model was trained on."""
    arr = np.full((256, 256, 3), 255, np.uint8)
    arr[120:200, 70:190] = (110, 110, 170)
    arr[100:120, 70:190] = (230, 140, 40)
    return Image.fromarray(arr)


def time_pipeline(pipe, steps: int, repeats: int) -> dict:
    from puppet_master.drags import Drag

    drags = [Drag((0.5, 0.42), (0.5, 0.25))]
    image = example_image()
    pipe(image, drags, num_inference_steps=steps, output_type="np", generator=torch.Generator().manual_seed(0))
    walls, cpus = [], []
    for i in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = pipe(image, drags, num_inference_steps=steps, output_type="np",
                   generator=torch.Generator().manual_seed(i))
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    assert np.asarray(out.frames).shape == (1, 14, 256, 256, 3)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="pipeline folder (default: the bundled/default model)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from puppet_master.loading import load_pipeline

    pipe = load_pipeline(args.model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    result = {"model": str(args.model or "default"), "steps": args.steps, "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "tiny_trained": time_pipeline(pipe, args.steps, args.repeats)}
    if not args.no_baseline:
        base = load_pipeline(tiny=True, device="cpu")
        base.set_progress_bar_config(disable=True)
        result["random_tiny_baseline"] = time_pipeline(base, args.steps, args.repeats)
        result["ratio_wall"] = result["tiny_trained"]["wall_s"] / result["random_tiny_baseline"]["wall_s"]
    result["target_met"] = result["tiny_trained"]["wall_s"] <= 30.0
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
