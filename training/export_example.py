"""Write an example input (image + drags + still points) from one view of a rendered clip.

    python -m training.export_example --clip corpus/renders/heldout/box_900000/open_lid --view 0 \
        --out backend/puppet_master/assets/examples/box_lid.png

The image is the clip's first frame composited on white at 256x256 (as training saw it). The JSON
beside it holds the view's drag sample (start -> end of every drag, normalised x, y) and
``still_points``: visible surface points of the first frame, away from every drag start, that move
less than ``--still-px`` over the true clip. Tests use them to check that a model leaves still parts
still; the README's main command uses the image and drag.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dataset_tools import clip_folder, drag_schema
from puppet_master import cameras
from training.cache_latents import composite_on_white

SIZE = 256


def still_points(clip: clip_folder.Clip, view: int, starts: np.ndarray, *, still_px: float, margin: float,
                 count: int, seed: int = 0) -> np.ndarray:
    """Up to ``count`` normalised (x, y) points of the view that stay still and lie ``margin`` px
    (at 256x256) from every drag start."""
    tracks = clip.tracks
    k_matrices, world_to_camera, (width, height) = cameras.load_camera_arrays(clip.cameras)
    pixels = np.stack([cameras.project(frame, k_matrices[view], world_to_camera[view])[0]
                       for frame in tracks.points])  # (T, P, 2)
    scale = np.array([SIZE / width, SIZE / height])
    motion = np.linalg.norm(pixels - pixels[:1], axis=-1).max(axis=0) * scale.max()
    visible = tracks.visibility[view].all(axis=0)
    first = pixels[0] * scale
    far = np.linalg.norm(first[:, None] - starts[None] * SIZE, axis=-1).min(axis=1) >= margin
    keep = np.flatnonzero(visible & far & (motion < still_px))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(keep, size=min(count, len(keep)), replace=False) if len(keep) else keep
    return first[chosen] / SIZE


def export(folder: str | Path, view: int, out: str | Path, *, sample: int = 0, still_px: float = 0.5,
           margin: float = 48.0, count: int = 12) -> dict:
    clip, out = clip_folder.load_clip(folder), Path(out)
    doc = drag_schema.read_drags_json(clip.folder / drag_schema.DRAGS_FILE)
    samples = [s for s in doc["samples"] if s["view"] == view]
    if not samples:
        raise ValueError(f"{clip.folder}: no drag sample for view {view}")
    drags = np.asarray(samples[sample]["drags"], dtype=float)  # (T, K, 4)
    pairs = np.concatenate([drags[0, :, :2], drags[-1, :, 2:]], axis=1)
    still = still_points(clip, view, pairs[:, :2], still_px=still_px, margin=margin, count=count)
    if len(still) == 0:
        raise ValueError(f"{clip.folder} view {view}: no still point {margin} px away from the drags")
    with Image.open(clip.frame_path(view, 0)) as im:
        composite_on_white(im, SIZE).save(out)
    record = {
        "source": {"asset_id": clip.asset_id, "clip": clip.name, "view": view, "frame": 0},
        "drags": np.round(pairs, 4).tolist(),
        "still_points": np.round(still, 4).tolist(),
        "still_px": still_px,
        "margin_px": margin,
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", required=True, help="a rendered clip folder (with tracks.npz and drags.json)")
    parser.add_argument("--view", type=int, default=0)
    parser.add_argument("--sample", type=int, default=0, help="which of the view's drag samples")
    parser.add_argument("--out", required=True, help="the PNG to write (the JSON goes beside it)")
    parser.add_argument("--still-px", type=float, default=0.5)
    parser.add_argument("--margin", type=float, default=48.0)
    args = parser.parse_args(argv)
    try:
        record = export(args.clip, args.view, args.out, sample=args.sample, still_px=args.still_px,
                        margin=args.margin)
    except (ValueError, OSError, drag_schema.DragFileError) as exc:  # ClipError is a ValueError
        parser.exit(2, f"error: {exc}\n")
    print(json.dumps(record["drags"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
