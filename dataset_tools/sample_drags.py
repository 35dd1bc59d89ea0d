"""Sample training drags for every rendered clip under a render root: writes ``drags.json`` per clip.

    python -m dataset_tools.sample_drags RENDER_ROOT [--seed 0] [--dedup paper|released] [--visualize]

Resumable: clips that already have a ``drags.json`` made with the same settings are skipped. The
result of a clip depends only on the seed and the clip, not on the order, sharding or resumes. The
schema is in ``dataset_tools/drag_schema.py`` and ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from dataset_tools import render_plan, shard_status
from dataset_tools.clip_folder import Clip, ClipError, find_clips, load_clip
from dataset_tools.drag_sampling import DEDUP_PRESETS, SamplerSettings, sample_clip
from dataset_tools.drag_schema import (
    DRAGS_FILE,
    DragFileError,
    make_document,
    read_drags_json,
    sample_array,
    write_drags_json,
)
from dataset_tools.part_groups import GroupingSettings

PREVIEW_DIR = "drags_preview"


def settings_record(settings: SamplerSettings, seed: int) -> dict:
    return {"seed": seed, **settings.to_json()}


def preview_frames(clip: Clip, view: int, frames: list[int]) -> list:
    """The sample's frames as RGB images, RGBA renders composited on white."""
    from PIL import Image

    images = []
    for frame in frames:
        path = clip.frame_path(view, frame)
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        images.append(Image.alpha_composite(white, rgba).convert("RGB"))
    return images


def write_previews(clip: Clip, document: dict) -> list[Path]:
    """``drags_preview/view_XX_fTTTT.gif`` per sample: the frames with the drags drawn as arrows."""
    from puppet_master.outputs import save_preview_gif

    out = []
    for sample in document["samples"]:
        frames = preview_frames(clip, sample["view"], sample["frames"])
        path = clip.folder / PREVIEW_DIR / f"view_{sample['view']:02d}_f{sample['start_frame']:04d}.gif"
        path.parent.mkdir(parents=True, exist_ok=True)
        fps = float(clip.meta.get("fps", 24)) / max(1, sample["stride"])
        out.append(save_preview_gif(frames, sample_array(sample), path, fps=min(fps, 12.0)))
    return out


def process_clip(folder: Path, settings: SamplerSettings, seed: int, *, overwrite: bool, visualize: bool) -> dict:
    """Sample one clip (or skip it when done); returns a report record."""
    target = folder / DRAGS_FILE
    record = {"clip": str(folder)}
    wanted = json.loads(json.dumps(settings_record(settings, seed)))
    clip = load_clip(folder)
    if target.exists() and not overwrite:
        try:
            existing = read_drags_json(target)
        except DragFileError:
            existing = None  # torn or outdated: sample again
        if existing is not None and existing.get("settings") == wanted:
            if visualize and not (folder / PREVIEW_DIR).is_dir():
                write_previews(clip, existing)
            return {**record, "status": "done-before", "samples": len(existing["samples"])}
        if existing is not None:
            return {**record, "status": "skipped", "reason": "drags.json made with other settings (use --overwrite)"}
    samples, skipped = sample_clip(clip, settings, seed)
    document = make_document(clip.asset_id, clip.name, clip.image_size, wanted, samples, skipped)
    write_drags_json(target, document)
    if visualize:
        write_previews(clip, document)
    drags = [int(np.asarray(s["drags"]).shape[1]) for s in samples]
    return {**record, "status": "ok", "samples": len(samples), "drags": int(sum(drags)), "skipped_views": len(skipped)}


def parse_shard(text: str) -> tuple[int, int]:
    try:
        return render_plan.parse_shard(text)
    except render_plan.InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("root", type=Path, help="render root (or one clip folder)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples-per-view", type=int, default=1, help="windows per clip; each view gets one sample per window")
    p.add_argument("--stride", type=int, default=None, help="frame step in a window (default: span the clip)")
    p.add_argument("--dedup", choices=sorted(DEDUP_PRESETS), default="paper",
                   help="de-duplication preset: paper = 20 px/frame; released = 10 px/frame + length-based keep")
    p.add_argument("--dedup-px", type=float, default=None, help="override the preset's threshold (pixels per frame at 256x256)")
    p.add_argument("--length-keep", action=argparse.BooleanOptionalAction, default=None,
                   help="override the preset's length-based keep probability")
    p.add_argument("--min-drag-px", type=float, default=2.0, help="drop drags that move less (pixels at 256x256)")
    p.add_argument("--min-motion-fraction", type=float, default=SamplerSettings.min_motion_fraction,
                   help="drags start only where the 2D motion reaches this fraction of the view's largest")
    p.add_argument("--static-rel", type=float, default=GroupingSettings.static_rel,
                   help="a point moves when it travels this fraction of the bbox diagonal")
    p.add_argument("--overwrite", action="store_true", help="sample again even when drags.json exists")
    p.add_argument("--visualize", action="store_true", help=f"write GIFs with the drags into <clip>/{PREVIEW_DIR}/")
    p.add_argument("--shard", type=parse_shard, default=(0, 1),
                   help="i/n: this process takes the clips of the assets render.py --shard i/n renders")
    p.add_argument("--report", type=Path, default=None, help="append one JSON line per clip here")
    p.add_argument("--no-progress", action="store_true")
    return p


def settings_from_args(args: argparse.Namespace) -> SamplerSettings:
    px, keep = DEDUP_PRESETS[args.dedup]
    return SamplerSettings(
        samples_per_view=args.samples_per_view,
        stride=args.stride,
        dedup_px_per_frame=px if args.dedup_px is None else args.dedup_px,
        length_keep=keep if args.length_keep is None else args.length_keep,
        min_drag_px=args.min_drag_px,
        min_motion_fraction=args.min_motion_fraction,
        grouping=GroupingSettings(static_rel=args.static_rel),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        folders = list(find_clips(args.root))
    except (ValueError, ClipError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    index, count = args.shard
    folders = [f for f in folders if render_plan.in_shard(f.parent.name, index, count)]
    from tqdm import tqdm

    counts: dict[str, int] = {}
    failed: list[dict] = []
    report = args.report.open("a") if args.report else None
    try:
        bar = tqdm(folders, desc="sample drags", unit="clip", disable=args.no_progress)
        for folder in bar:
            start = time.monotonic()
            try:
                record = process_clip(folder, settings, args.seed, overwrite=args.overwrite, visualize=args.visualize)
            except (ClipError, DragFileError, ValueError, OSError) as exc:
                record = {"clip": str(folder), "status": "failed", "reason": str(exc)}
                failed.append({"id": f"{folder.parent.name}/{folder.name}", "reason": str(exc)})
                tqdm.write(f"failed: {folder}: {exc}", file=sys.stderr)
            record["seconds"] = round(time.monotonic() - start, 3)
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            bar.set_postfix(counts)
            if report:
                report.write(json.dumps(record) + "\n")
                report.flush()
    finally:
        if report:
            report.close()
    summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no clips found"
    print(f"{len(folders)} clips: {summary}")
    code = 1 if counts.get("failed") else 0
    if args.root.is_dir() and not (args.root / "clip.json").is_file():  # a render root, not one clip
        shard_status.write_status(args.root, "drags", index, count, exit_status=code, counts=counts, failed=failed)
    return code


if __name__ == "__main__":
    sys.exit(main())
