"""Training-step speed and peak memory: samples/s and peak memory of the real training loop
(training.train.Trainer on the shared Drag-a-Move clips), each variant in a fresh process, reported
as ratios against a baseline variant measured in the same run.

    python benchmarks/train_step.py                       # tiny config, CPU: checkpointing on vs off
    python benchmarks/train_step.py --full --batch 8      # GPU: full SVD-size U-Net (random weights), bf16
    python benchmarks/train_step.py --config experiments/tiny_model/configs/tiny_trained.toml --batch 2 --threads 1
                                                          # a recipe on its own data: fp32 vs bf16 autocast
    python benchmarks/train_step.py --config experiments/tiny_model/configs/tiny_trained.toml --batch 2 --threads 1 --crop 16
                                                          # ... and bf16 on 16x16 latent windows (training/crops.py)

CPU peak memory is the process's maximum resident set size; GPU peak memory is
``torch.cuda.max_memory_allocated``. The first measured step is a warm-up and is dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "drag-a-move-test"
TINY = ROOT / "training" / "configs" / "tiny.toml"


def child(spec: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from training.config import load_config
    from training.tracking import read_metrics
    from training.train import Trainer

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"output_dir={json.dumps(out)}"]
        if not spec.get("config"):
            overrides.append(
                f"data.sources=[{{name = 'dam', kind = 'drag_a_move', path = {json.dumps(str(DATA))}, weight = 1.0}}]")
        overrides += [
            f"data.batch_size={spec['batch']}",
            f"train.global_batch_size={spec['batch']}",
            f"train.max_steps={spec['steps']}",
            f"optim.lr_warmup_steps={min(spec['steps'], 1)}",
            f"train.checkpoint_every={spec['steps'] + 1}",
            "train.log_every=1",
            f"train.mixed_precision={json.dumps(spec['precision'])}",
            f"model.gradient_checkpointing={str(spec['checkpointing']).lower()}",
            "validation.every=0",
        ]
        if spec.get("crop"):
            overrides += [f"train.crop_size={spec['crop']}", "train.crop_probability=1.0"]
        if spec["full"]:
            overrides.append("model.unet_config={num_frames = 14}")  # the SVD-size architecture, random weights
        config = load_config(spec.get("config") or TINY, overrides)
        config.train.checkpoint_every = 10**9
        trainer = Trainer(config)
        cuda = trainer.accelerator.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.monotonic()
        trainer.train()
        wall = time.monotonic() - start
        rows = read_metrics(Path(out) / "logs" / "metrics.csv")
    rates = [r["samples_per_s"] for r in rows[1:]]  # drop the warm-up step
    return {
        "samples_per_s": statistics.median(rates),
        "peak_memory_mib": (torch.cuda.max_memory_allocated() / 2**20 if cuda
                            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_mib": rss_before / 1024,
        "wall_s": wall,
        "device": torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
    }


def run_variant(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"variant {spec['name']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full SVD-size U-Net (needs a GPU)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--config", type=Path, default=None,
                        help="a training recipe (TOML) run on its own data sources: compares fp32 with bf16 autocast")
    parser.add_argument("--crop", type=int, default=0,
                        help="with --config: also bf16 with every step on CROP x CROP latent windows")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    precision = "bf16" if args.full else "no"
    base = {"full": args.full, "batch": args.batch, "steps": args.steps, "precision": precision,
            "threads": args.threads}
    if args.config is not None:
        if not args.config.is_file():
            raise SystemExit(f"error: no recipe at {args.config}")
        base["config"] = str(args.config.resolve())
    variants = [
        {**base, "name": "baseline: no gradient checkpointing", "checkpointing": False},
        {**base, "name": "gradient checkpointing", "checkpointing": True},
    ]
    if args.config is not None:
        variants = [{**base, "name": "baseline: fp32", "checkpointing": False},
                    {**base, "name": "bf16 autocast", "checkpointing": False, "precision": "bf16"}]
        if args.crop:
            variants.append({**base, "name": f"bf16 autocast, {args.crop}x{args.crop} crops", "checkpointing": False,
                             "precision": "bf16", "crop": args.crop})
    elif not args.full:
        variants.append({**base, "name": "gradient checkpointing + bf16 autocast", "checkpointing": True,
                         "precision": "bf16"})
    results = [(v, run_variant(v)) for v in variants]
    for _, r in results:  # on the CPU count what training adds to the process (imports excluded)
        r["memory"] = r["peak_memory_mib"] if args.full else r["peak_memory_mib"] - r["rss_before_mib"]
    ref = results[0][1]
    model = args.config or ('full SVD-size' if args.full else 'tiny')
    print(f"device: {ref['device']}; model: {model} U-Net; "
          f"batch {args.batch}; {args.steps} steps (first dropped)")
    label = "peak MiB" if args.full else "+peak MiB"
    print(f"{'variant':42s} {'samples/s':>10s} {'x base':>7s} {label:>9s} {'x base':>7s}")
    for spec, r in results:
        print(f"{spec['name']:42s} {r['samples_per_s']:10.3f} {r['samples_per_s'] / ref['samples_per_s']:7.2f} "
              f"{r['memory']:9.0f} {r['memory'] / ref['memory']:7.2f}")
    if not args.full:
        print("+peak MiB: peak resident memory minus the resident memory before training started")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
