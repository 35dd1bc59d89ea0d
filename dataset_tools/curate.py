"""Curation of rendered clips (paper Sec. 4): metrics, the random-forest filter, the VLM review.

    python -m dataset_tools.curate metrics ROOT [--out metrics.csv]
    python -m dataset_tools.curate train   ROOT --labels labels.csv --model filter.joblib
    python -m dataset_tools.curate apply   ROOT --model filter.joblib --out-list animation.json
    python -m dataset_tools.curate review  ROOT --base-url URL --vlm-model NAME --out-list animation-HQ.json

Lists are written in the released id-list format (a JSON array of asset ids on one line); with
``--clip-list`` also one of ``<asset_id>/<clip>`` ids, which ``--clips`` of the next step reads.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from dataset_tools.clip_folder import Clip, ClipError, find_clips, load_clip
from dataset_tools.clip_metrics import clip_metrics
from dataset_tools.id_lists import (
    ListError,
    asset_ids_of,
    label_for,
    read_id_list,
    read_labels,
    write_id_list,
)
from dataset_tools.rf_filter import (
    DEFAULT_TREES,
    FilterError,
    keep_probability,
    load_filter,
    save_filter,
    train_filter,
    write_metrics_csv,
)
from dataset_tools.vlm_review import REVIEW_IMAGES, ReviewCache, VLMConfig, VLMError, review_images

#: render.py --review-strip writes the front view at the quarters of the clip as review/0.png .. 3.png
REVIEW_DIR = "review"
#: without a review strip, view 0 (azimuth 0: the front) at the quarters of the clip is used
FRONT_VIEW = 0


class CurateError(RuntimeError):
    """A user error: the message says what to fix."""


def _progress(items: list, desc: str, enabled: bool) -> Iterable:
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="clip", disable=not enabled)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def load_clips(root: Path, only: set[str] | None = None) -> list[Clip]:
    """The clip folders under ``root`` (those named in ``only`` when given); unreadable ones are reported."""
    clips = []
    for folder in find_clips(root):
        try:
            clips.append(load_clip(folder))
        except ClipError as exc:
            _warn(f"skipped: {exc}")
    if only is not None:
        missing = only - {c.clip_id for c in clips}
        if missing:
            _warn(f"{len(missing)} listed clips are not under {root}, e.g. {sorted(missing)[0]}")
        clips = [c for c in clips if c.clip_id in only]
    if not clips:
        raise CurateError(f"no readable clip folders (with clip.json and tracks.npz) under {root}")
    return clips


def metrics_of(clips: list[Clip], progress: bool) -> list[tuple[str, dict[str, float]]]:
    """Metrics of every clip whose tracks can be read (the others are reported and left out)."""
    rows = []
    for clip in _progress(clips, "metrics", progress):
        try:
            rows.append((clip.clip_id, clip_metrics(clip.tracks.points, clip.tracks.part_ids)))
        except ClipError as exc:
            _warn(f"skipped: {exc}")
        clip.unload()  # free the arrays; metrics are all we need
    return rows


def review_strip_paths(clip: Clip) -> list[Path]:
    """The four review images of a clip: render.py's review strip, else front-view frames at the quarters."""
    strip = [clip.folder / REVIEW_DIR / f"{i}.png" for i in range(REVIEW_IMAGES)]
    if all(p.is_file() for p in strip):
        return strip
    frames = sorted((clip.folder / f"view_{FRONT_VIEW:02d}").glob("*.png"))
    if len(frames) < REVIEW_IMAGES:
        raise ClipError(f"{clip.folder}: no review strip ({REVIEW_DIR}/0-3.png) and fewer than {REVIEW_IMAGES} front-view frames")
    last = len(frames) - 1
    return [frames[round(last * q / REVIEW_IMAGES)] for q in range(1, REVIEW_IMAGES + 1)]


def review_png(path: Path) -> bytes:
    """The PNG the VLM sees: transparent renders are composited on white (as the paper's renders are)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("RGBA", "LA", "P"):
            return path.read_bytes()
        rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    buffer = io.BytesIO()
    Image.alpha_composite(white, rgba).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def write_lists(kept_clip_ids: list[str], out_list: Path | None, clip_list: Path | None) -> None:
    if out_list:
        ids = write_id_list(out_list, asset_ids_of(kept_clip_ids))
        print(f"{len(ids)} assets -> {out_list}")
    if clip_list:
        write_id_list(clip_list, kept_clip_ids)
        print(f"{len(kept_clip_ids)} clips -> {clip_list}")


# --- subcommands -----------------------------------------------------------------------------------


def cmd_metrics(args: argparse.Namespace) -> None:
    rows = metrics_of(load_clips(args.root), not args.no_progress)
    out = args.out or args.root / "metrics.csv"
    write_metrics_csv(out, rows)
    print(f"{len(rows)} clips -> {out}")


def cmd_train(args: argparse.Namespace) -> None:
    labels = read_labels(args.labels)
    clips = [c for c in load_clips(args.root) if label_for(c.clip_id, labels) is not None]
    if not clips:
        raise CurateError(f"no clip under {args.root} is named in {args.labels} (ids are <asset_id> or <asset_id>/<clip>)")
    rows = metrics_of(clips, not args.no_progress)
    y = [label_for(clip_id, labels) for clip_id, _ in rows]
    bundle = train_filter([m for _, m in rows], y, seed=args.seed, n_estimators=args.trees, threshold=args.threshold)
    save_filter(args.model, bundle)
    summary = bundle["train"]
    oob = summary["oob_accuracy"]
    print(
        f"trained on {summary['clips']} clips ({summary['keep']} keep, {summary['drop']} drop)"
        + (f", out-of-bag accuracy {oob:.3f}" if oob is not None else "")
        + f" -> {args.model}"
    )


def cmd_apply(args: argparse.Namespace) -> None:
    bundle = load_filter(args.model)
    threshold = bundle["threshold"] if args.threshold is None else args.threshold
    clips = load_clips(args.root)
    rows = metrics_of(clips, not args.no_progress)
    proba = keep_probability(bundle, [m for _, m in rows])
    kept = [clip_id for (clip_id, _), p in zip(rows, proba, strict=True) if p >= threshold]
    scores = args.scores or args.root / "filter_scores.csv"
    write_metrics_csv(
        scores,
        [(clip_id, {**m, "keep_probability": f"{p:.6f}", "keep": int(p >= threshold)}) for (clip_id, m), p in zip(rows, proba, strict=True)],
        extra=("keep_probability", "keep"),
    )
    print(f"kept {len(kept)} of {len(rows)} clips (threshold {threshold}); scores -> {scores}")
    write_lists(kept, args.out_list, args.clip_list)


def cmd_review(args: argparse.Namespace) -> None:
    config = VLMConfig(
        base_url=args.base_url or "",
        model=args.vlm_model or "",
        api_key_env=args.api_key_env,
        timeout_s=args.timeout,
        max_retries=args.retries,
        backoff_s=args.backoff,
    )
    only = set(read_id_list(args.clips)) if args.clips else None
    clips = load_clips(args.root, only)
    cache = ReviewCache(args.cache or args.root / "vlm_cache")
    kept, dropped, failed = [], 0, 0
    decisions = args.decisions or args.root / "vlm_decisions.jsonl"
    with decisions.open("w") as log:
        for clip in _progress(clips, "VLM review", not args.no_progress):
            try:
                images = [review_png(p) for p in review_strip_paths(clip)]
                decision = review_images(images, clip.clip_id, config, cache)
            except (VLMError, ClipError, OSError, ValueError) as exc:
                failed += 1
                log.write(json.dumps({"clip_id": clip.clip_id, "error": str(exc)}) + "\n")
                print(f"review failed: {clip.clip_id}: {exc}", file=sys.stderr)
                continue
            log.write(json.dumps({**decision.to_json(), "cached": decision.cached}) + "\n")
            if decision.drop:
                dropped += 1
            else:
                kept.append(clip.clip_id)
    print(f"kept {len(kept)}, dropped {dropped}, failed {failed} (rerun to retry); decisions -> {decisions}")
    write_lists(kept, args.out_list, args.clip_list)
    if failed:
        raise CurateError(f"{failed} clips could not be reviewed; they are left out of the lists")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("root", type=Path, help="render root (clip folders <asset_id>/<clip>/ below it)")
        p.add_argument("--no-progress", action="store_true")
        return p

    def lists(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out-list", type=Path, help="kept asset ids, released id-list format")
        p.add_argument("--clip-list", type=Path, help="kept <asset_id>/<clip> ids, same format")

    p = common(sub.add_parser("metrics", help="per-clip metrics to a CSV"))
    p.add_argument("--out", type=Path, help="CSV path (default ROOT/metrics.csv)")
    p.set_defaults(func=cmd_metrics)

    p = common(sub.add_parser("train", help="train the random-forest filter from a labels CSV"))
    p.add_argument("--labels", type=Path, required=True, help="CSV with columns id,label (1 keep / 0 drop)")
    p.add_argument("--model", type=Path, required=True, help="where to save the filter (.joblib)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trees", type=int, default=DEFAULT_TREES)
    p.add_argument("--threshold", type=float, default=0.5, help="keep-probability threshold stored with the filter")
    p.set_defaults(func=cmd_train)

    p = common(sub.add_parser("apply", help="apply a trained filter to a render folder"))
    p.add_argument("--model", type=Path, required=True, help="a filter saved by 'train' (a local pickle you made)")
    p.add_argument("--threshold", type=float, default=None, help="override the filter's threshold")
    p.add_argument("--scores", type=Path, help="CSV of metrics and scores (default ROOT/filter_scores.csv)")
    lists(p)
    p.set_defaults(func=cmd_apply)

    p = common(sub.add_parser("review", help="VLM review over an OpenAI-compatible endpoint"))
    p.add_argument("--base-url", help="endpoint base, e.g. http://localhost:8000/v1 (nothing is sent without it)")
    p.add_argument("--vlm-model", help="model name the endpoint serves")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key (sent when set)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--retries", type=int, default=3, help="retries of transient failures (429, 5xx, timeouts)")
    p.add_argument("--backoff", type=float, default=2.0, help="seconds before the first retry (doubling after)")
    p.add_argument("--cache", type=Path, help="decision cache folder (default ROOT/vlm_cache)")
    p.add_argument("--clips", type=Path, help="review only these clips (a --clip-list written by 'apply')")
    p.add_argument("--decisions", type=Path, help="JSONL of decisions (default ROOT/vlm_decisions.jsonl)")
    lists(p)
    p.set_defaults(func=cmd_review)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (CurateError, ClipError, ListError, FilterError, VLMError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
