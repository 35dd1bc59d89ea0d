"""Part-level motion check: training.evaluate's Table-1 metrics plus Motion Error on the parts that
should stay still, for the model and the "static" and "whole image follows the drag" baselines.

    python -m training.evaluate_parts --data eval/heldout --model backend/puppet_master/weights --out eval/result
    python -m training.evaluate_parts ... --methods model static shift autoencoder   # + the VAE's ceiling
    python -m training.evaluate_parts --data eval/heldout --out eval/vae --methods autoencoder static shift \
        --vae runs/components/vae            # a VAE alone, before any U-Net is trained on its latents
    python -m training.evaluate_parts --data eval/heldout --out eval/grids --methods static shift resample16 resample32

For every clip and method the video is made once and measured with ``training.evaluate`` (PSNR,
SSIM, LPIPS when available, Motion Error at the drag origins and over all foreground points), and
also over the *still foreground*: foreground grid points of the first true frame whose true track
moves less than ``--still-px`` pixels over the clip and that lie at least ``--margin`` pixels away
from every drag start (the parts nobody dragged). Writes ``results.json`` and ``table.md``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from puppet_master.loading import ModelLoadError
from puppet_master.outputs import write_json_atomic
from training import dragamove, evaluate, metrics

logger = logging.getLogger(__name__)

SIZE = evaluate.SIZE
COLUMNS = (("me_drag", "ME drag origins ↓"), ("me_fg", "ME all foreground ↓"), ("me_still", "ME still foreground ↓"),
           ("psnr", "PSNR ↑"), ("ssim", "SSIM ↑"))


def _relative(value: float, baseline: float) -> str:
    """'25% lower' / '12% higher': ``value`` against ``baseline``."""
    if not baseline:
        return "n/a (baseline 0)"
    change = value / baseline - 1
    return f"{abs(change):.0%} {'lower' if change < 0 else 'higher'}"


def still_points(true: np.ndarray, drags: np.ndarray, tracker, *, still_px: float, margin: float) -> np.ndarray:
    """Foreground points of the first true frame that stay within ``still_px`` over the true video and
    lie ``margin`` pixels or more from every drag start."""
    points = metrics.foreground_points(true[0])
    if len(points) == 0:
        return points
    tracks = tracker.track(true, points)
    moved = np.linalg.norm(tracks - tracks[:1], axis=-1).max(axis=0)
    starts = metrics.drag_origins(drags, SIZE)
    far = np.ones(len(points), bool)
    if len(starts):
        far = np.linalg.norm(points[:, None] - starts[None], axis=-1).min(axis=1) >= margin
    return points[(moved < still_px) & far]


def evaluate_method(clip_paths: Sequence[Path], method: Callable, nets: evaluate.MetricNetworks, *,
                    still_px: float, margin: float, save_dir: Path | None) -> dict:
    videos: list[np.ndarray] = []

    def keep(first: np.ndarray, drags: np.ndarray) -> np.ndarray:
        videos.append(method(first, drags))
        return videos[-1]

    keep.sees_true_video = getattr(method, "sees_true_video", False)

    result = evaluate.evaluate_clips(clip_paths, keep, nets, save_dir=save_dir, progress=False)
    for row, path, fake in zip(result["clips"], clip_paths, videos, strict=True):
        clip = dragamove.load_clip(path)
        true = dragamove.read_gif_frames(clip.gif_path, SIZE)
        points = still_points(true, clip.drags.numpy(), nets.tracker, still_px=still_px, margin=margin)
        row["still_points"] = len(points)
        row["me_still"] = metrics.motion_error(nets.tracker.track(fake, points), nets.tracker.track(true, points))
    values = [r["me_still"] for r in result["clips"] if np.isfinite(r["me_still"])]
    result["mean"]["me_still"] = float(np.mean(values)) if values else None
    return result


def markdown(results: dict[str, dict], tracker: str, num_clips: int) -> str:
    lines = ["| Method | " + " | ".join(c[1] for c in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 1)]
    for name, r in results.items():
        cells = ["–" if r["mean"].get(k) is None else f"{r['mean'][k]:.3f}" if k == "ssim" else f"{r['mean'][k]:.2f}"
                 for k, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"{num_clips} held-out clips at 256x256; Motion Error in pixels, tracks by {tracker}."]
    if "autoencoder" in results:
        lines.append("autoencoder: the true video encoded and decoded by the model's VAE, the best any U-Net "
                     "working in its latent space can reach.")
    if any(name.startswith(evaluate.RESAMPLE_PREFIX) for name in results):
        lines.append(f"{evaluate.RESAMPLE_PREFIX}N: the true video area-averaged to N x N and interpolated back, "
                     "what any latent grid of that size can carry.")
    if "model" in results:
        m, s, h = (results[k]["mean"] for k in ("model", "static", "shift")) if {"static", "shift"} <= set(results) \
            else (results["model"]["mean"], None, None)
        if s and h and m["me_drag"] is not None:
            lines.append(f"ME at drag origins, model vs static: {_relative(m['me_drag'], s['me_drag'])}; "
                         f"vs whole-image shift: {_relative(m['me_drag'], h['me_drag'])}. "
                         f"Still-foreground / drag-origin ME of the model: {m['me_still'] / m['me_drag']:.2f}.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Drag-a-Move-format clips (training.export_dragamove)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", help="pipeline folder (default: load_pipeline's default model)")
    parser.add_argument("--methods", nargs="+", default=["model", "static", "shift"], type=evaluate.method_arg,
                        help=f"{', '.join(evaluate.METHODS)} or {evaluate.RESAMPLE_PREFIX}N (the true video "
                        "through an N x N grid: what any latent grid that size can carry)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--still-px", type=float, default=1.5)
    parser.add_argument("--margin", type=float, default=24.0)
    parser.add_argument("--metrics-dir", type=Path, default=None, help="LPIPS/I3D/CoTracker (training.evaluate)")
    parser.add_argument("--fallback-tracker", choices=evaluate.FALLBACK_TRACKERS, default=evaluate.DEFAULT_FALLBACK_TRACKER,
                        help="tracker when CoTracker is not on disk (benchmarks/tracker_accuracy.py compares them)")
    parser.add_argument("--gifs", action="store_true", help="save the videos with the drags drawn")
    parser.add_argument("--vae", help="VAE folder for the autoencoder method (default: the --model pipeline's)")
    parser.add_argument("--guidance", type=float, nargs=2, metavar=("FIRST", "LAST"),
                        help="guidance weights of the first and last frame (default: the pipeline's)")
    parser.add_argument("--device", default="cpu", help="where the model runs (float32 everywhere, so a GPU "
                        "gives the CPU's figures up to rounding)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    out = Path(args.out)
    try:
        clip_paths = dragamove.find_clips(args.data)[: args.limit]
        metrics_dir = args.metrics_dir or (out / "no-metric-networks")
        nets = evaluate.load_metric_networks(metrics_dir, fallback_tracker=args.fallback_tracker)
        results, pipe = {}, None
        for name in args.methods:
            if (name == "model" or (name == "autoencoder" and not args.vae)) and pipe is None:
                from puppet_master.loading import load_pipeline

                pipe = load_pipeline(args.model, device=args.device, dtype=torch.float32)
            if name == "autoencoder":
                from puppet_master.models.vae import load_vae

                vae = load_vae(args.vae).eval().to(args.device) if args.vae else pipe.vae
                method = evaluate.autoencoder_method(vae)
            elif name == "model":
                method = evaluate.model_method(pipe, num_inference_steps=args.steps, seed=args.seed,
                                               guidance=tuple(args.guidance) if args.guidance else None)
            else:
                method = evaluate.baseline_method(name)
            logger.info("%s: %d clips", name, len(clip_paths))
            results[name] = evaluate_method(clip_paths, method, nets, still_px=args.still_px, margin=args.margin,
                                            save_dir=out / "gifs" / name if args.gifs else None)
    except (dragamove.ClipFormatError, ModelLoadError, ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    write_json_atomic(out / "results.json", {
        "data": str(args.data), "num_clips": len(clip_paths), "tracker": nets.tracker.name, "steps": args.steps,
        "guidance": args.guidance or "pipeline default",
        "seed": args.seed, "still_px": args.still_px, "margin": args.margin, "notes": nets.notes, "methods": results,
    })
    table = markdown(results, nets.tracker.name, len(clip_paths))
    (out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
