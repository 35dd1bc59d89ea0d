"""Where a training step's time goes: the data loader, the noise draws, forward + backward, the
optimiser + EMA, against the whole step of the real loop, on a latent cache (training.cache_latents).

    python benchmarks/train_breakdown.py --cache corpus_data/cache2/train --batch 8
    python benchmarks/train_breakdown.py --cache /tmp/w/cache/train --batch 128 --precision bf16 --workers 12

Written after a GPU run whose samples/s barely grew with batch size and precision (240 at batch 64
fp32, 300 at batch 128 bf16 on an H100): the parts are timed one by one (synchronised on a GPU), so
the part that bounds the step shows as the largest share. The baseline is the whole step of
``Trainer.train`` measured in the same run; each part is reported as its share of it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "backend"))


def timed(fn, repeats: int, sync) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def latent_channels(cache: Path) -> int:
    """Channels of the latents in a cache (4 for SVD's VAE, 16 for the tiny model's)."""
    from safetensors import safe_open

    from training.export_dragamove import cache_entries

    shard, entry = cache_entries(cache)[0]
    with safe_open(shard, framework="pt") as f:
        return int(f.get_slice(f"{entry['key']}.mean").get_shape()[1])


def main() -> int:
    import torch

    from training import objective
    from training.config import load_config
    from training.tracking import read_metrics
    from training.train import Trainer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "tiny_model" / "configs" / "tiny_trained.toml"))
    parser.add_argument("--cache", required=True, help="a latent cache folder (training.cache_latents --out)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed repeats of each part")
    parser.add_argument("--workers", type=int, default=2, help="data loader worker processes")
    parser.add_argument("--precision", default="no", choices=("no", "bf16", "fp16"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        source = {"name": "bench", "kind": "cached", "path": str(Path(args.cache).resolve()), "weight": 1.0}
        overrides = [
            f"output_dir={json.dumps(out)}",
            "data.sources=[{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in source.items()) + "}]",
            f"data.batch_size={args.batch}", f"train.global_batch_size={args.batch}",
            f"data.num_workers={args.workers}", f"train.mixed_precision={json.dumps(args.precision)}",
            f"train.max_steps={args.steps + 1}", "train.max_minutes=0", "train.log_every=1",
            f"train.checkpoint_every={10**9}", "optim.lr_warmup_steps=0", "validation.every=0",
        ]
        channels = latent_channels(Path(args.cache))
        overrides += [f"model.unet_config.in_channels={2 * channels}", f"model.unet_config.out_channels={channels}"]
        trainer = Trainer(load_config(args.config, overrides))
        acc, t = trainer.accelerator, trainer.config.train
        cuda = acc.device.type == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)

        # 1. the whole step of the real loop (the first step, a warm-up, dropped)
        trainer.train()
        rows = read_metrics(Path(out) / "logs" / "metrics.csv")
        whole = statistics.median(args.batch / r["samples_per_s"] for r in rows[1:])

        # 2. the parts, one by one
        from torch.utils.data import default_collate

        numbers = iter(range(10**9))
        build = timed(lambda: default_collate([trainer.dataset[next(numbers)] for _ in range(args.batch)]),
                      args.steps, sync)
        batch = default_collate([trainer.dataset[i] for i in range(args.batch)])
        shape = tuple(batch["latents"].shape[1:])
        draws = timed(lambda: objective.draw(batch["index"], shape, seed=0, p_mean=t.p_mean, p_std=t.p_std,
                                             drag_dropout=t.drag_dropout, cond_dropout=t.cond_dropout),
                      args.steps, sync)

        def forward_backward():
            loss = trainer._micro_step(batch)
            acc.backward(loss)

        fwd_bwd = timed(forward_backward, args.steps, sync)

        def optimiser_and_ema():
            trainer.optimizer.step()
            trainer.ema.update(acc.unwrap_model(trainer.model))

        optim = timed(optimiser_and_ema, args.steps, sync)

    device = torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {device}; batch {args.batch}; precision {args.precision}; {args.workers} loader workers")
    print(f"{'part':40s} {'ms/step':>9s} {'share of step':>14s}")
    parts = [("whole step (Trainer.train, baseline)", whole),
             ("one batch built in one process", build),
             (f"  the same spread over {args.workers} loader workers", build / max(1, args.workers)),
             ("noise draws (objective.draw, CPU)", draws),
             ("forward + backward (incl. host->device)", fwd_bwd),
             ("optimiser step + EMA update", optim)]
    for name, seconds in parts:
        print(f"{name:40s} {seconds * 1000:9.1f} {seconds / whole:14.2f}")
    print(f"samples/s of the whole step: {args.batch / whole:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
