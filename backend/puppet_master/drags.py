"""The drag convention shared by the pipeline, server, client, add-on, data tools and training.

NumPy and the standard library only: Blender's Python imports this module too.

- A drag array has shape ``(N, K, 4)`` (or ``(B, N, K, 4)`` for a batch); row ``[x0, y0, xn, yn]``
  holds the start point (repeated in every frame) and the point at frame ``n``.
- Coordinates are fractions of the square frame: x is the column (left to right), y the row (top
  to bottom), origin at the top-left corner.
- A slot that is all zeros means "no drag" (unused slots and the unconditional guidance branch).
- A user drag is a path of one point per frame (``Drag.path``, e.g. a curved stroke or a projected
  animation), or a start -> end pair that becomes one by linear interpolation: frame ``k`` is
  ``start + k / (N - 1) * (end - start)``, so frame 0 is the start and frame ``N - 1`` the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

NUM_FRAMES = 14
MAX_DRAGS = 5
#: how far outside [0, 1] a trajectory point may lie in data (parts can leave the crop)
DATA_MARGIN = 0.25


class DragError(ValueError):
    """A drag or drag array that cannot be used; the message names the drag and the problem."""


@dataclass(frozen=True)
class Drag:
    """One user drag in normalised frame coordinates: from ``start`` to ``end``, and optionally the
    ``path`` between them, one point per frame (``path[0] == start``, ``path[-1] == end``). Without
    a path the drag moves linearly (:func:`interpolate`)."""

    start: tuple[float, float]
    end: tuple[float, float]
    path: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def from_path(cls, points: Iterable[Sequence[float]]) -> Drag:
        """A drag along ``points`` (one per frame)."""
        path = tuple((float(p[0]), float(p[1])) for p in points)
        if len(path) < 2:
            raise DragError(f"a drag's path needs at least 2 points, got {len(path)}")
        return cls(path[0], path[-1], path)

    def trajectory(self, num_frames: int = NUM_FRAMES) -> np.ndarray:
        """The ``(num_frames, 2)`` positions: the path (resampled in time when its point count
        differs) or the linear interpolation from start to end."""
        if self.path is None:
            return interpolate(self.start, self.end, num_frames)
        path = np.asarray(self.path, dtype=np.float64)
        if len(path) == num_frames:
            return path.copy()
        src, dst = np.linspace(0.0, 1.0, len(path)), np.linspace(0.0, 1.0, num_frames)
        return np.stack([np.interp(dst, src, path[:, 0]), np.interp(dst, src, path[:, 1])], axis=1)

    def to_json(self) -> dict:
        data = {"start": list(self.start), "end": list(self.end)}
        if self.path is not None:
            data["path"] = [list(p) for p in self.path]
        return data

    @classmethod
    def from_json(cls, data: dict) -> Drag:
        """Read ``{"start": [x, y], "end": [x, y]}``, ``{"path": [[x, y], ...]}`` or both (the
        path's first and last points must then be the start and the end)."""
        try:
            if data.get("path") is not None:
                drag = cls.from_path(data["path"])
                for name in ("start", "end"):
                    if name in data and tuple(float(c) for c in data[name]) != getattr(drag, name):
                        raise DragError(f"a drag's {name} {data[name]!r} is not its path's {name} {getattr(drag, name)!r}")
                return drag
            start, end = data["start"], data["end"]
            return cls((float(start[0]), float(start[1])), (float(end[0]), float(end[1])))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            if isinstance(exc, DragError):
                raise
            raise DragError(f"a drag must be {{'start': [x, y], 'end': [x, y]}} or {{'path': [[x, y], ...]}}, "
                            f"got {data!r}") from exc


def parse_drag(text: str) -> Drag:
    """Parse ``"X0,Y0:X1,Y1"`` (the CLI's ``--drag`` syntax)."""
    try:
        start_text, end_text = text.split(":")
        x0, y0 = (float(v) for v in start_text.split(","))
        x1, y1 = (float(v) for v in end_text.split(","))
    except ValueError as exc:
        raise DragError(f"cannot parse drag {text!r}: expected X0,Y0:X1,Y1, e.g. 0.5,0.4:0.7,0.4") from exc
    return Drag((x0, y0), (x1, y1))


def pixels_to_normalized(drag: Drag, width: int, height: int) -> Drag:
    """Convert a drag given in pixels of a ``width x height`` image into fractions of it."""
    if width <= 0 or height <= 0:
        raise DragError(f"image size must be positive, got {width}x{height}")
    if drag.path is not None:
        return Drag.from_path((x / width, y / height) for x, y in drag.path)
    return Drag(
        (drag.start[0] / width, drag.start[1] / height),
        (drag.end[0] / width, drag.end[1] / height),
    )


def load_drags_file(path: str | os.PathLike) -> list[Drag]:
    """Drags from a JSON file in the drags layout: a list of ``{"start": [x, y], "end": [x, y]}``
    and/or ``{"path": [[x, y], ...]}`` (one point per frame), or ``{"drags": [...]}`` around it (so
    a result's ``settings.json`` can be read back)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DragError(f"cannot read the drags file {path}: {exc}") from exc
    items = data.get("drags") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise DragError(f"the drags file {path} must hold a list of drags (or {{\"drags\": [...]}})")
    drags = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DragError(f"{path}: drag {index + 1} must be an object with start/end or a path")
        try:
            drags.append(Drag.from_json(item))
        except DragError as exc:
            raise DragError(f"{path}: drag {index + 1}: {exc}") from None
    return drags


def validate_drags(
    drags: Sequence[Drag], *, max_drags: int = MAX_DRAGS, low: float = 0.0, high: float = 1.0,
    path_points: Sequence[int] = (NUM_FRAMES,),
) -> None:
    """Check user drags: at most ``max_drags``, finite, every point (of the path too) inside
    ``[low, high]``, a path of :data:`NUM_FRAMES` points (or another count of ``path_points``: a
    longer clip's) from the start to the end, and each drag with some motion (one that never
    leaves its start would be read as "no drag")."""
    if len(drags) > max_drags:
        raise DragError(f"{len(drags)} drags given but the model takes at most {max_drags}")
    for index, drag in enumerate(drags):
        path = drag.path or ()
        if drag.path is not None:
            if len(path) not in path_points:
                counts = " or ".join(str(n) for n in sorted(set(path_points)))
                raise DragError(f"drag {index + 1}: its path has {len(path)} points, one per frame means {counts}")
            if tuple(path[0]) != tuple(drag.start) or tuple(path[-1]) != tuple(drag.end):
                raise DragError(f"drag {index + 1}: its path must begin at its start and finish at its end")
        named = [("start", drag.start), ("end", drag.end)] + [(f"path point {i}", p) for i, p in enumerate(path)]
        for name, point in named:
            if len(point) != 2:
                raise DragError(f"drag {index + 1}: {name} point must have 2 coordinates, got {point!r}")
            if not all(np.isfinite(point)):
                raise DragError(f"drag {index + 1}: {name} point {point} is not finite")
            if not all(low <= c <= high for c in point):
                raise DragError(
                    f"drag {index + 1}: {name} point ({point[0]:.4g}, {point[1]:.4g}) lies outside the "
                    f"image (coordinates must be within [{low}, {high}])"
                )
        if all(tuple(p) == tuple(drag.start) for p in (drag.end, *path)):
            raise DragError(
                f"drag {index + 1} has no length (it starts and ends at ({drag.start[0]:.4g}, {drag.start[1]:.4g})): "
                "a drag goes from a point on the part to where that point should move"
            )


def interpolate(start: Sequence[float], end: Sequence[float], num_frames: int = NUM_FRAMES) -> np.ndarray:
    """The ``(num_frames, 2)`` linear trajectory from ``start`` (frame 0) to ``end`` (last frame)."""
    if num_frames < 2:
        raise DragError(f"a trajectory needs at least 2 frames, got {num_frames}")
    t = np.arange(num_frames, dtype=np.float64)[:, None] / (num_frames - 1)
    start_arr = np.asarray(start, dtype=np.float64)
    return start_arr + t * (np.asarray(end, dtype=np.float64) - start_arr)


def trajectories_to_array(
    trajectories: Iterable[np.ndarray], *, num_frames: int = NUM_FRAMES, max_drags: int = MAX_DRAGS
) -> np.ndarray:
    """Pack per-frame trajectories (each ``(num_frames, 2)``) into the ``(N, K, 4)`` drag array."""
    trajectories = [np.asarray(t, dtype=np.float64) for t in trajectories]
    if len(trajectories) > max_drags:
        raise DragError(f"{len(trajectories)} drags given but the model takes at most {max_drags}")
    out = np.zeros((num_frames, max_drags, 4), dtype=np.float32)
    for k, traj in enumerate(trajectories):
        if traj.shape != (num_frames, 2):
            raise DragError(f"drag {k + 1}: trajectory must have shape ({num_frames}, 2), got {traj.shape}")
        if not np.isfinite(traj).all():
            raise DragError(f"drag {k + 1}: trajectory has NaN or infinite coordinates")
        out[:, k, 0:2] = traj[0]
        out[:, k, 2:4] = traj
    return out


def drags_to_array(
    drags: Sequence[Drag], *, num_frames: int = NUM_FRAMES, max_drags: int = MAX_DRAGS
) -> np.ndarray:
    """Validate drags and turn their trajectories into the ``(N, K, 4)`` float32 drag array (a path
    of 14 points is resampled in time to ``num_frames``)."""
    validate_drags(drags, max_drags=max_drags, path_points=(NUM_FRAMES, num_frames))
    return trajectories_to_array((d.trajectory(num_frames) for d in drags), num_frames=num_frames,
                                 max_drags=max_drags)


def validate_drag_array(
    array: np.ndarray, *, max_drags: int = MAX_DRAGS, num_frames: int | None = None, margin: float = DATA_MARGIN
) -> np.ndarray:
    """Check a ``(N, K, 4)`` or ``(B, N, K, 4)`` drag array and return it as float32.

    Used slots must be finite, keep the same start point in every frame, start at the start point
    in frame 0, and stay within ``[-margin, 1 + margin]``.
    """
    arr = np.asarray(array)
    if arr.ndim not in (3, 4) or arr.shape[-1] != 4:
        raise DragError(f"drag array must have shape (N, K, 4) or (B, N, K, 4), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DragError(f"drag array must hold floats, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise DragError("drag array has NaN or infinite values")
    batched = arr if arr.ndim == 4 else arr[None]
    _, n, k, _ = batched.shape
    if k > max_drags:
        raise DragError(f"drag array has {k} drag slots but the model takes at most {max_drags}")
    if num_frames is not None and n != num_frames:
        raise DragError(f"drag array has {n} frames, expected {num_frames}")
    used = active_mask(batched)  # (B, K)
    if used.any():
        values = batched.transpose(0, 2, 1, 3)[used]  # (M, N, 4)
        if (values < -margin).any() or (values > 1 + margin).any():
            raise DragError(f"drag coordinates must lie within [{-margin}, {1 + margin}]")
        if not np.allclose(values[:, :, 0:2], values[:, :1, 0:2], atol=1e-6):
            raise DragError("a drag's start point (columns 0-1) must be the same in every frame")
        if not np.allclose(values[:, 0, 0:2], values[:, 0, 2:4], atol=1e-4):
            raise DragError("a drag must be at its start point in frame 0 (columns 2-3 equal columns 0-1)")
    return arr.astype(np.float32, copy=False)


def active_mask(array: np.ndarray) -> np.ndarray:
    """Which drag slots are used: ``(..., K)`` booleans for a ``(..., N, K, 4)`` array."""
    arr = np.asarray(array)
    return np.any(arr != 0, axis=(-3, -1))


def array_to_drags(array: np.ndarray) -> list[Drag]:
    """The start -> end drags of the used slots of a ``(N, K, 4)`` array (for display and settings)."""
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise DragError(f"expected a (N, K, 4) drag array, got shape {arr.shape}")
    return [
        Drag((float(arr[0, k, 0]), float(arr[0, k, 1])), (float(arr[-1, k, 2]), float(arr[-1, k, 3])))
        for k in np.flatnonzero(active_mask(arr))
    ]
