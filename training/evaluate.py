"""Evaluate on Drag-a-Move-format clips like the paper's Table 1.

    python -m training.evaluate --data ../shared/data/drag-a-move-test --model DIR --out results/
    python -m training.evaluate --data ... --svd SVD_DIR --unet runs/paper/checkpoints/checkpoint-00012500/ema
    python -m training.evaluate --data ... --method static        # first frame repeated
    python -m training.evaluate --data ... --method shift         # the whole image follows the drags
    python -m training.evaluate --data ... --model DIR --method autoencoder  # the true video through the VAE

For every clip: the first true frame and the drags go to the method; the 14 generated frames are
compared with the true frames (the clip's GIF, resized to 256x256) by PSNR, SSIM and LPIPS per frame,
FVD over all clips, and Motion Error (pixels at 256x256) between point tracks of the generated and
the true video, at the drag origins and at foreground grid points of the first frame. Writes
``results.json`` (per clip and mean) and ``table.md`` (with the paper's row for reference).
Metric networks come from local paths (``--metrics-dir`` holds ``lpips/``, ``i3d_torchscript.pt``,
``co-tracker/`` and ``cotracker2.pth`` by default); a missing one is skipped with its path named,
or is an error with ``--require-all``. Without CoTracker, the DIS dense-flow tracker (labelled so;
``--fallback-tracker`` picks another, see ``training.trackers``).

``results.json`` also records what was measured and with what: the model (its folder and the
folder's ``manifest.json`` when it has one, the U-Net folder and its training step, SVD plus the
checkpoint, or ``tiny``: random, untrained), the tracker (CoTracker, or the fallback, labelled), the
metric networks found and where, and per method the clips whose PSNR or Motion Error lies far from
the others (robust z-score above ``OUTLIER_Z``: median and scaled median absolute deviation).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from puppet_master import paths
from puppet_master.loading import ModelLoadError
from puppet_master.outputs import write_json_atomic
from training import dragamove, metrics
from training.trackers import DEFAULT_FALLBACK_TRACKER, FALLBACK_TRACKERS, CoTrackerTracker, make_tracker

logger = logging.getLogger(__name__)

SIZE = 256
METHODS = ("model", "static", "shift", "autoencoder")
RESAMPLE_PREFIX = "resample"  # resampleN: the true video through an N x N grid (see resample_method)
PAPER_ROW = {"psnr": 24.41, "ssim": 0.927, "lpips": 0.085, "fvd": 246.99, "me_drag": 12.21, "me_fg": 3.53}
COLUMNS = (("psnr", "PSNR ↑", 2), ("ssim", "SSIM ↑", 3), ("lpips", "LPIPS ↓", 3), ("fvd", "FVD ↓", 2),
           ("me_drag", "ME drag ↓", 2), ("me_fg", "ME fg ↓", 2))


#: a clip is listed as an outlier when its robust z-score on a metric exceeds this
OUTLIER_Z = 3.5
OUTLIER_METRICS = ("psnr", "me_drag", "me_fg")
#: the provenance record a model folder may hold (sources, hashes, licences)
MODEL_MANIFEST = "manifest.json"


@dataclass
class MetricNetworks:
    lpips: metrics.LPIPS | None = None
    i3d: metrics.I3DFeatures | None = None
    tracker: object = field(default_factory=lambda: make_tracker(DEFAULT_FALLBACK_TRACKER))
    notes: dict[str, str] = field(default_factory=dict)
    #: where each network was loaded from (None: not found, see ``notes``)
    found: dict[str, str | None] = field(default_factory=dict)


def load_metric_networks(metrics_dir: Path, *, require_all: bool = False, device: str = "cpu",
                         fallback_tracker: str = DEFAULT_FALLBACK_TRACKER) -> MetricNetworks:
    """LPIPS, I3D and CoTracker from ``metrics_dir``; without CoTracker, ``fallback_tracker``
    (one of ``trackers.FALLBACK_TRACKERS``) tracks the points."""
    nets = MetricNetworks(tracker=make_tracker(fallback_tracker))
    where = {"lpips": metrics_dir / "lpips", "i3d": metrics_dir / "i3d_torchscript.pt",
             "tracker": metrics_dir / "cotracker2.pth"}
    loaders = {
        "lpips": lambda: metrics.LPIPS.from_folder(metrics_dir / "lpips").to(device),
        "i3d": lambda: metrics.I3DFeatures.from_file(metrics_dir / "i3d_torchscript.pt", device),
        "tracker": lambda: CoTrackerTracker.from_paths(metrics_dir / "co-tracker", metrics_dir / "cotracker2.pth",
                                                       device=device),
    }
    for name, load in loaders.items():
        try:
            setattr(nets, name, load())
            nets.found[name] = str(where[name])
        except metrics.MetricUnavailableError as exc:
            nets.found[name] = None
            if require_all:
                raise
            nets.notes[name] = f"{exc}; " + (f"{nets.tracker.name} used" if name == "tracker" else "not computed")
            logger.warning(nets.notes[name])
    return nets


# -- methods -------------------------------------------------------------------------------------------


def static_video(first: np.ndarray, drags: np.ndarray) -> np.ndarray:
    """Baseline: the first frame repeated."""
    return np.repeat(first[None], drags.shape[0], axis=0)


def shift_video(first: np.ndarray, drags: np.ndarray) -> np.ndarray:
    """Baseline: the whole image translated by the mean displacement of the used drags, white fill."""
    used = np.any(drags != 0, axis=(0, 2))
    frames = []
    for n in range(drags.shape[0]):
        d = (drags[n, used, 2:4] - drags[n, used, 0:2]).mean(axis=0) * SIZE if used.any() else np.zeros(2)
        m = np.float32([[1, 0, d[0]], [0, 1, d[1]]])
        frames.append(cv2.warpAffine(first, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255)))
    return np.stack(frames)


def autoencoder_method(vae) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Ceiling of a latent space: the *true* video encoded (latent means) and decoded by ``vae``.

    No generator working in that latent space can do better than its own autoencoder, so the
    metrics of this method bound what training the U-Net alone can reach."""
    device, dtype = vae.device, vae.dtype

    @torch.no_grad()
    def reconstruct(true: np.ndarray, drags: np.ndarray) -> np.ndarray:
        pixels = torch.from_numpy(true).permute(0, 3, 1, 2).to(device, dtype) / 127.5 - 1.0
        latents = torch.cat([vae.encode(chunk).latent_dist.mode() for chunk in pixels.split(7)])
        frames = vae.decode(latents, num_frames=len(latents)).sample.float().clamp(-1, 1)
        return ((frames + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    reconstruct.sees_true_video = True
    return reconstruct


def resample_method(size: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Ceiling of any ``size`` x ``size`` latent grid: the *true* video area-averaged down to that grid
    and brought back with bicubic interpolation.

    A latent of that grid with a few channels holds about what the RGB grid holds, so these figures
    say whether the tracker can follow motion at all through a grid that coarse, before a VAE is
    trained for it."""
    if not 1 <= size <= SIZE:
        raise ValueError(f"resample size must be 1..{SIZE}, got {size}")

    def resample(true: np.ndarray, drags: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA), (SIZE, SIZE),
                                    interpolation=cv2.INTER_CUBIC) for f in true])

    resample.sees_true_video = True
    return resample


def _resample_size(name: str) -> int | None:
    """N of a ``resampleN`` method name within 1..SIZE, else None."""
    size = name[len(RESAMPLE_PREFIX):]
    ok = name.startswith(RESAMPLE_PREFIX) and size.isdigit() and 1 <= int(size) <= SIZE
    return int(size) if ok else None


def method_name(name: str) -> str:
    """``name`` if it names a method (one of METHODS or ``resampleN``), else a ValueError naming them."""
    if name in METHODS or _resample_size(name) is not None:
        return name
    raise ValueError(f"unknown method {name!r}: choose from {', '.join(METHODS)} or {RESAMPLE_PREFIX}N "
                     f"(N = 1..{SIZE}, e.g. {RESAMPLE_PREFIX}16)")


def baseline_method(name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The methods that need no model: static, shift and resampleN."""
    if name == "static":
        return static_video
    if name == "shift":
        return shift_video
    if (size := _resample_size(name)) is not None:
        return resample_method(size)
    raise ValueError(f"{name!r} needs a model")


def model_method(pipe, *, num_inference_steps: int, seed: int,
                 guidance: tuple[float, float] | None = None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The pipeline as a method; ``guidance`` (first, last frame) overrides the pipeline's default."""
    scales = {} if guidance is None else {"min_guidance_scale": guidance[0], "max_guidance_scale": guidance[1]}

    def generate(first: np.ndarray, drags: np.ndarray) -> np.ndarray:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        out = pipe(Image.fromarray(first), drags, num_inference_steps=num_inference_steps, generator=generator,
                   output_type="np", **scales).frames[0]
        video = np.asarray(out)
        video = (np.clip(video, 0, 1) * 255).round().astype(np.uint8) if video.dtype != np.uint8 else video
        if video.shape[1:3] != (SIZE, SIZE):
            video = np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for f in video])
        return video

    return generate


# -- evaluation ----------------------------------------------------------------------------------------


def evaluate_clips(
    clip_paths: Sequence[Path], method: Callable[[np.ndarray, np.ndarray], np.ndarray], nets: MetricNetworks,
    *, save_dir: Path | None = None, progress: bool = True,
) -> dict:
    """Measure ``method`` on every clip. A method is called with the first true frame and the drags, or
    with the whole true video if it has ``sees_true_video`` set (the autoencoder ceiling)."""
    rows, real_videos, fake_videos = [], [], []
    for path in tqdm(clip_paths, desc="evaluating", unit="clip", disable=not progress):
        clip = dragamove.load_clip(path)
        true = dragamove.read_gif_frames(clip.gif_path, SIZE)
        drags = clip.drags.numpy()
        fake = method(true if getattr(method, "sees_true_video", False) else true[0], drags)
        if fake.shape != true.shape:
            raise ValueError(f"{path.name}: the method made {fake.shape}, the true video is {true.shape}")
        tracks = {}
        for name, points in (("drag", metrics.drag_origins(drags, SIZE)), ("fg", metrics.foreground_points(true[0]))):
            tracks[name] = metrics.motion_error(nets.tracker.track(fake, points), nets.tracker.track(true, points))
        row = {
            "clip": path.stem,
            "psnr": float(np.mean(np.minimum(metrics.psnr(fake, true), 100.0))),  # identical frames count as 100 dB
            "ssim": float(np.mean(metrics.ssim(fake, true))),
            "lpips": float(np.mean(nets.lpips.video(fake, true))) if nets.lpips is not None else None,
            "me_drag": tracks["drag"],
            "me_fg": tracks["fg"],
        }
        rows.append(row)
        real_videos.append(true)
        fake_videos.append(fake)
        if save_dir is not None:
            from puppet_master.outputs import save_preview_gif

            save_dir.mkdir(parents=True, exist_ok=True)
            save_preview_gif([Image.fromarray(f) for f in fake], drags, save_dir / f"{path.stem}.gif")
    fvd = None
    if nets.i3d is not None and len(rows) >= 2:
        fvd = metrics.frechet_distance(nets.i3d(real_videos), nets.i3d(fake_videos))
    mean = {k: _mean([r[k] for r in rows]) for k in ("psnr", "ssim", "lpips", "me_drag", "me_fg")}
    mean["fvd"] = fvd
    return {"clips": rows, "mean": mean, "outliers": outliers(rows)}


def outliers(rows: list[dict], names: Sequence[str] = OUTLIER_METRICS, z: float = OUTLIER_Z) -> list[dict]:
    """The clips far from the others on a metric: ``|value - median| / (1.4826 * MAD) > z``.

    The robust z-score ignores the outliers themselves when measuring the spread (a mean and
    standard deviation would be pulled towards them); metrics whose values all agree list none.
    """
    found = []
    for name in names:
        values = np.array([np.nan if r.get(name) is None else r[name] for r in rows], dtype=np.float64)
        ok = np.isfinite(values)
        if ok.sum() < 3:
            continue
        median = float(np.median(values[ok]))
        spread = 1.4826 * float(np.median(np.abs(values[ok] - median)))
        if spread <= 0:
            continue
        for row, value in zip(rows, values, strict=True):
            score = (value - median) / spread
            if np.isfinite(score) and abs(score) > z:
                found.append({"clip": row["clip"], "metric": name, "value": float(value), "median": median,
                              "robust_z": round(float(score), 2)})
    return sorted(found, key=lambda o: -abs(o["robust_z"]))


def describe_model(args) -> dict:
    """What ``build_model_pipeline`` loads, for results.json."""
    from puppet_master.loading import default_model, find_model_folder

    if args.unet:
        unet = Path(args.unet).resolve()
        state = unet.parent / "trainer_state.json"
        step = json.loads(state.read_text()).get("step") if state.is_file() else None
        return {"kind": "unet", "unet": str(unet), "training_step": step,
                "components": "tiny (random, untrained)" if args.tiny else str(Path(args.svd).resolve())}
    if args.tiny:
        return {"kind": "tiny", "note": "small random components, untrained: the frames are noise"}
    if args.svd:
        checkpoint = Path(args.checkpoint).resolve()
        return {"kind": "svd+checkpoint", "svd": str(Path(args.svd).resolve()), "checkpoint": str(checkpoint),
                "checkpoint_bytes": checkpoint.stat().st_size if checkpoint.is_file() else None}
    folder = find_model_folder(args.model) if args.model else default_model()
    manifest = None
    if folder is not None and (Path(folder) / MODEL_MANIFEST).is_file():
        try:
            manifest = json.loads((Path(folder) / MODEL_MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            manifest = {"error": f"unreadable {MODEL_MANIFEST}: {exc}"}
    return {"kind": "folder", "path": None if folder is None else str(Path(folder).resolve()), "manifest": manifest}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(values)) if values else None


def markdown_table(results: dict[str, dict], tracker_name: str, num_clips: int) -> str:
    head = "| Method | " + " | ".join(c[1] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    rows = {"Puppet-Master (paper, 100 clips, CoTracker)": PAPER_ROW}
    rows.update({name: r["mean"] for name, r in results.items()})
    for name, values in rows.items():
        cells = [("–" if values.get(k) is None else f"{values[k]:.{d}f}") for k, _, d in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{num_clips} Drag-a-Move clips at 256x256; Motion Error in pixels, tracks by {tracker_name}; "
                 "FVD needs I3D and is unreliable with few clips.")
    return "\n".join(lines) + "\n"


def build_model_pipeline(args, device: str):
    if args.unet:
        from puppet_master.models.unet import PuppetMasterUNet
        from training.checkpointing import trained_residual_scale
        from training.validation import build_pipeline

        unet = PuppetMasterUNet.from_pretrained(args.unet).to(device).eval()
        return build_pipeline(unet, svd_path=args.svd, tiny=args.tiny, device=device,
                              residual_scale=trained_residual_scale(args.unet))
    from puppet_master.loading import load_pipeline

    return load_pipeline(args.model, svd=args.svd, checkpoint=args.checkpoint, tiny=args.tiny, device=device,
                         dtype=args.dtype)


def method_arg(name: str) -> str:
    """argparse type of a method name (:func:`method_name`)."""
    try:
        return method_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Table-1 metrics on Drag-a-Move-format clips (see docs/training.md).")
    parser.add_argument("--data", required=True, help="folder of NNNNN.pkl + NNNNN.gif clips")
    parser.add_argument("--out", required=True, help="folder for results.json, table.md and the GIFs")
    parser.add_argument("--method", type=method_arg, action="append",
                        help=f"{', '.join(METHODS)} or {RESAMPLE_PREFIX}N; repeatable; default: model")
    parser.add_argument("--model", help="converted pipeline folder (puppet-master convert)")
    parser.add_argument("--svd", help="SVD img2vid folder (with --checkpoint or --unet)")
    parser.add_argument("--checkpoint", help="the released model.safetensors (with --svd)")
    parser.add_argument("--unet", help="a PuppetMasterUNet folder, e.g. a training checkpoint's ema/ (with --svd or --tiny)")
    parser.add_argument("--tiny", action="store_true", help="tiny random components (testing only)")
    parser.add_argument("--steps", type=int, default=50, help="sampling steps (the paper: 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="evaluate only the first N clips")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="pipeline dtype (default: bf16/fp16 on GPU, fp32 on CPU)")
    parser.add_argument("--metrics-dir", type=Path, default=paths.home_dir() / "metrics")
    parser.add_argument("--require-all", action="store_true", help="fail when a metric network is missing")
    parser.add_argument("--fallback-tracker", choices=FALLBACK_TRACKERS, default=DEFAULT_FALLBACK_TRACKER,
                        help="tracker when CoTracker is not on disk (benchmarks/tracker_accuracy.py compares them)")
    parser.add_argument("--no-gifs", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    methods = args.method or ["model"]
    out = Path(args.out)
    try:
        clip_paths = dragamove.find_clips(args.data)[: args.limit]
        nets = load_metric_networks(args.metrics_dir, require_all=args.require_all, device=args.device,
                                    fallback_tracker=args.fallback_tracker)
        results, pipe = {}, None
        for name in methods:
            if name in ("model", "autoencoder"):
                pipe = pipe or build_model_pipeline(args, args.device)
            if name == "model":
                method = model_method(pipe, num_inference_steps=args.steps, seed=args.seed)
            elif name == "autoencoder":
                method = autoencoder_method(pipe.vae)
            else:
                method = baseline_method(name)
            save = None if args.no_gifs else out / "gifs" / name
            results[name] = evaluate_clips(clip_paths, method, nets, save_dir=save)
    except (dragamove.ClipFormatError, metrics.MetricUnavailableError, ModelLoadError, ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    uses_model = any(name in ("model", "autoencoder") for name in methods)
    report = {"data": str(Path(args.data).resolve()), "num_clips": len(clip_paths),
              "model": describe_model(args) if uses_model else None,
              "tracker": nets.tracker.name, "tracker_is_fallback": not isinstance(nets.tracker, CoTrackerTracker),
              "metric_networks": nets.found, "steps": args.steps, "seed": args.seed, "notes": nets.notes,
              "paper": PAPER_ROW, "methods": results}
    write_json_atomic(out / "results.json", report)
    table = markdown_table(results, nets.tracker.name, len(clip_paths))
    (out / "table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
