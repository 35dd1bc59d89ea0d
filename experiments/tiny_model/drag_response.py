"""Does a generated video move what was dragged, the way it was dragged, and leave the rest still?

Issue 9's acceptance check for bundled weights, on one video (no ground truth needed): points in a
small disk around each drag's start are tracked through the frames (the dense-flow fallback of
``training.trackers`` by default); their mean displacement at the last frame is split into the part
*along* the drag and the part *across* it. Foreground points far from every drag (at least
``far_frac`` of the frame from each drag's segment) measure what should stay still.

``python -m experiments.tiny_model.drag_response out/example [--check]`` reads a ``puppet-master generate``
folder (``frame_*.png`` and ``settings.json``, whose drags are mapped into the frame through the
recorded crop window) and prints the figures; ``--check`` exits 1 unless every drag moves at least
``--min-fraction`` of its length forwards and the far region moves at most ``--max-far-ratio`` of
the dragged regions.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.trackers import DEFAULT_FALLBACK_TRACKER, make_tracker

#: a pixel belongs to the foreground when its colour is this far (0-255, max over RGB) from the border's
BACKGROUND_TOLERANCE = 24


class DragResponseError(ValueError):
    """Input that cannot be measured; the message names the file or the problem."""


@dataclass(frozen=True)
class DragMotion:
    """How the region at one drag's start moved by the last frame, in pixels."""

    start: tuple[float, float]
    drag: tuple[float, float]
    moved: tuple[float, float]
    num_points: int

    @property
    def length(self) -> float:
        return float(np.hypot(*self.drag))

    @property
    def along(self) -> float:
        """Displacement along the drag (negative: backwards)."""
        return float(np.dot(self.moved, self.drag) / max(self.length, 1e-9))

    @property
    def across(self) -> float:
        """Displacement perpendicular to the drag (its absolute value)."""
        return float(abs(np.cross(self.drag, self.moved)) / max(self.length, 1e-9))

    @property
    def fraction(self) -> float:
        """``along`` as a fraction of the drag's length (1: the region followed the drag)."""
        return self.along / max(self.length, 1e-9)


@dataclass(frozen=True)
class DragResponse:
    drags: list[DragMotion]
    far_px: float
    num_far_points: int

    def passes(self, min_fraction: float = 0.25, max_far_ratio: float = 0.5) -> bool:
        """Every dragged region moved forwards by ``min_fraction`` of its drag, and the far region
        moved at most ``max_far_ratio`` of the mean forward motion."""
        if not self.drags or self.num_far_points == 0:
            return False
        forward = float(np.mean([d.along for d in self.drags]))
        return all(d.fraction >= min_fraction for d in self.drags) and self.far_px <= max_far_ratio * forward

    def to_json(self) -> dict:
        return {
            "drags": [{"start_px": list(d.start), "drag_px": list(d.drag), "moved_px": list(d.moved),
                       "along_px": d.along, "across_px": d.across, "fraction": d.fraction,
                       "num_points": d.num_points} for d in self.drags],
            "far_px": self.far_px,
            "num_far_points": self.num_far_points,
        }


def disk_points(center: Sequence[float], radius: float, width: int, height: int, step: float = 2.0) -> np.ndarray:
    """Grid points (x, y) within ``radius`` pixels of ``center`` and inside the frame."""
    offsets = np.arange(-radius, radius + 1e-6, step)
    gx, gy = np.meshgrid(offsets, offsets)
    keep = gx**2 + gy**2 <= radius**2
    points = np.stack([gx[keep] + center[0], gy[keep] + center[1]], axis=1)
    inside = (points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1)
    return points[inside].astype(np.float32)


def foreground_mask(frame: np.ndarray, tolerance: float = BACKGROUND_TOLERANCE) -> np.ndarray:
    """Pixels whose colour differs from the median colour of the frame's border (a flat backdrop)."""
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]]).astype(np.float32)
    backdrop = np.median(border, axis=0)
    return np.abs(frame.astype(np.float32) - backdrop).max(axis=-1) > tolerance


def _distance_to_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def far_points(first: np.ndarray, segments: np.ndarray, min_distance: float, step: int = 4) -> np.ndarray:
    """Foreground grid points of ``first`` at least ``min_distance`` pixels from every drag segment
    (``segments``: ``(K, 2, 2)`` start/end pixels)."""
    height, width = first.shape[:2]
    ys, xs = np.mgrid[step // 2:height:step, step // 2:width:step]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    keep = foreground_mask(first)[points[:, 1].astype(int), points[:, 0].astype(int)]
    for a, b in segments:
        keep &= _distance_to_segment(points, a, b) >= min_distance
    return points[keep]


def measure(frames: np.ndarray, drags: np.ndarray, *, tracker=None, radius_frac: float = 0.03,
            far_frac: float = 0.25) -> DragResponse:
    """The drag response of ``frames`` ``(T, H, W, 3)`` uint8 to ``drags`` ``(K, 2, 2)``: each drag's
    start and end as fractions of the frame (x, y)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 2 or frames.dtype != np.uint8:
        raise DragResponseError(f"frames must be (T >= 2, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    drags = np.asarray(drags, np.float64)
    if drags.ndim != 3 or drags.shape[1:] != (2, 2) or len(drags) == 0:
        raise DragResponseError(f"drags must be (K >= 1, 2, 2) start/end fractions, got shape {drags.shape}")
    height, width = frames.shape[1:3]
    scale = np.array([width, height], np.float64)
    segments = drags * scale
    tracker = tracker or make_tracker(DEFAULT_FALLBACK_TRACKER)
    radius = max(2.0, radius_frac * min(width, height))

    regions = [disk_points(start, radius, width, height) for start, _ in segments]
    for k, region in enumerate(regions):
        if len(region) == 0:
            raise DragResponseError(f"drag {k + 1} starts outside the frame ({drags[k, 0].tolist()})")
    far = far_points(frames[0], segments, far_frac * min(width, height))
    points = np.concatenate([*regions, far])
    tracks = np.asarray(tracker.track(frames, points), np.float64)
    moved = tracks[-1] - tracks[0]

    motions, offset = [], 0
    for (start, end), region in zip(segments, regions, strict=True):
        mean = moved[offset:offset + len(region)].mean(axis=0)
        motions.append(DragMotion(tuple(start.tolist()), tuple((end - start).tolist()), tuple(mean.tolist()),
                                  len(region)))
        offset += len(region)
    far_moved = np.linalg.norm(moved[offset:], axis=1)
    far_px = float(np.median(far_moved)) if len(far_moved) else float("nan")
    return DragResponse(motions, far_px, len(far_moved))


def read_generate_folder(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(T, H, W, 3)`` and frame-space drags ``(K, 2, 2)`` of a ``puppet-master generate`` folder."""
    from puppet_master.image_prep import SquareWindow

    folder = Path(folder)
    settings_path = folder / "settings.json"
    try:
        settings = json.loads(settings_path.read_text())
        window = settings["window"]
        window = SquareWindow(window["left"], window["top"], window["size"], *window["source_size"])
        drags = np.array([[d["start"], d["end"]] for d in settings["drags"]], np.float64)
    except FileNotFoundError as exc:
        raise DragResponseError(f"{settings_path} not found: not a puppet-master generate folder") from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DragResponseError(f"{settings_path} is not a generate settings file ({exc})") from exc
    paths = sorted(folder.glob("frame_*.png"))
    if len(paths) < 2:
        raise DragResponseError(f"{folder} holds {len(paths)} frame_*.png files; at least 2 are needed")
    try:
        frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    except (OSError, ValueError) as exc:
        raise DragResponseError(f"cannot read the frames of {folder}: {exc}") from exc
    if len(drags) == 0:
        raise DragResponseError(f"{settings_path} records no drags")
    return frames, window.to_frame(drags)


def format_response(name: str, response: DragResponse) -> str:
    lines = [f"{name}: far foreground moved {response.far_px:.2f} px (median of {response.num_far_points} points)"]
    for k, d in enumerate(response.drags):
        lines.append(f"  drag {k + 1}: {d.length:.1f} px long; region moved {d.along:+.2f} px along "
                     f"({d.fraction:+.0%}), {d.across:.2f} px across ({d.num_points} points)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="puppet-master generate output folders")
    parser.add_argument("--tracker", default=DEFAULT_FALLBACK_TRACKER)
    parser.add_argument("--min-fraction", type=float, default=0.25)
    parser.add_argument("--max-far-ratio", type=float, default=0.5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every folder passes")
    args = parser.parse_args(argv)
    tracker = make_tracker(args.tracker)
    ok, report = True, {}
    for folder in args.folders:
        try:
            frames, drags = read_generate_folder(folder)
        except DragResponseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        response = measure(frames, drags, tracker=tracker)
        passed = response.passes(args.min_fraction, args.max_far_ratio)
        ok &= passed
        report[folder] = {**response.to_json(), "passes": passed}
        if not args.json:
            print(format_response(folder, response) + ("\n  passes" if passed else "\n  does not pass"))
    if args.json:
        print(json.dumps(report, indent=2))
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
