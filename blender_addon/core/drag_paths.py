"""Drag paths in the add-on (no bpy): a stroke's shape, its timing, and the 14-point trajectory.

A drag has a *shape* (the polyline from its start to its end: two points for a straight drag, the
mouse path for a curved stroke) and a *timing* (where along the shape each of the 14 frames is).
The trajectory the model gets is the shape's points at the timing's fractions of its arc length.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

Point = tuple[float, float]

NUM_FRAMES = 14
#: timing profiles: the fraction of the path covered by frame k of n (t = k / (n - 1))
TIMINGS = ("LINEAR", "EASE_IN", "EASE_OUT", "EASE_IN_OUT", "CUSTOM")
#: a stroke whose points stay this close to its chord (region pixels) is straight
STRAIGHT_TOLERANCE_PX = 3.0
#: points a stored curved shape keeps (resampled by arc length; the timing picks 14 of its positions)
SHAPE_POINTS = 32


def _length(a: Point, b: Point) -> float:
    return math.hypot(b[0] - a[0], b[1] - a[1])


def arc_lengths(points: Sequence[Point]) -> list[float]:
    """Cumulative length along a polyline, from 0 at the first point."""
    total, out = 0.0, [0.0]
    for a, b in itertools.pairwise(points):
        total += _length(a, b)
        out.append(total)
    return out


def point_at(points: Sequence[Point], fraction: float) -> Point:
    """The point ``fraction`` (0-1) of the way along a polyline, by arc length."""
    if len(points) == 1:
        return tuple(points[0])
    lengths = arc_lengths(points)
    target = min(max(fraction, 0.0), 1.0) * lengths[-1]
    for i in range(1, len(points)):
        if lengths[i] >= target or i == len(points) - 1:
            span = lengths[i] - lengths[i - 1]
            u = 0.0 if span <= 0 else (target - lengths[i - 1]) / span
            (x0, y0), (x1, y1) = points[i - 1], points[i]
            return (x0 + u * (x1 - x0), y0 + u * (y1 - y0))
    return tuple(points[-1])


def resample(points: Sequence[Point], count: int) -> list[Point]:
    """``count`` points evenly spaced by arc length along a polyline (its ends kept exactly)."""
    if count < 2:
        raise ValueError(f"resampling needs at least 2 points, got {count}")
    out = [point_at(points, k / (count - 1)) for k in range(count)]
    out[0], out[-1] = tuple(points[0]), tuple(points[-1])
    return out


def is_straight(points: Sequence[Point], tolerance: float) -> bool:
    """True when every point lies within ``tolerance`` of the chord from the first to the last."""
    (x0, y0), (x1, y1) = points[0], points[-1]
    chord = _length(points[0], points[-1])
    if chord == 0:
        return all(_length(points[0], p) <= tolerance for p in points)
    return all(abs((x1 - x0) * (y0 - y) - (x0 - x) * (y1 - y0)) / chord <= tolerance for x, y in points)


def stroke_shape(points: Sequence[Point], tolerance: float = STRAIGHT_TOLERANCE_PX) -> list[Point]:
    """The shape a stroke leaves (points in the same units as ``tolerance``): its two ends when it
    is straight, else the stroke resampled to :data:`SHAPE_POINTS` points by arc length."""
    points = [tuple(p) for p in points]
    if len(points) < 2 or is_straight(points, tolerance):
        return [points[0], points[-1]]
    return resample(points, SHAPE_POINTS)


def timing_fractions(timing: str, count: int = NUM_FRAMES, custom: Sequence[float] | None = None) -> list[float]:
    """Fractions of the path covered at each of ``count`` frames: 0 first, 1 last, never going back.

    ``CUSTOM`` takes ``custom``: ``count`` samples of any curve (an F-curve), normalised so its
    first value is 0 and its last 1, and made monotonic (a dip would walk the drag backwards).
    """
    ts = [k / (count - 1) for k in range(count)]
    if timing == "LINEAR":
        return ts
    if timing == "EASE_IN":
        return [t * t for t in ts]
    if timing == "EASE_OUT":
        return [1 - (1 - t) ** 2 for t in ts]
    if timing == "EASE_IN_OUT":
        return [t * t * (3 - 2 * t) for t in ts]
    if timing == "CUSTOM":
        if custom is None or len(custom) != count:
            raise ValueError(f"a custom timing needs {count} samples, got {0 if custom is None else len(custom)}")
        low, high = custom[0], custom[-1]
        if not all(math.isfinite(v) for v in custom) or high == low:
            raise ValueError("a custom timing curve must end higher (or lower) than it starts")
        out, best = [], 0.0
        for v in custom:
            best = max(best, min(1.0, (v - low) / (high - low)))
            out.append(best)
        out[0], out[-1] = 0.0, 1.0
        return out
    raise ValueError(f"unknown timing {timing!r}; choose one of {', '.join(TIMINGS)}")


def trajectory(shape: Sequence[Point], timing: str = "LINEAR", custom: Sequence[float] | None = None,
               count: int = NUM_FRAMES) -> list[Point]:
    """The ``count`` positions of a drag: its shape at the timing's fractions of its arc length."""
    return [point_at(shape, f) for f in timing_fractions(timing, count, custom)]


def parse_target(text: str) -> tuple[str, str | None]:
    """``"Object"`` or ``"Armature:Bone"`` -> (object name, bone name or None)."""
    name, sep, bone = text.strip().partition(":")
    if not name or (sep and not bone):
        raise ValueError(f"target {text!r}: expected an object's name, or ARMATURE:BONE for a pose bone")
    return name, (bone if sep else None)


def sample_times(first: float, count: int, samples: int = NUM_FRAMES) -> list[float]:
    """``samples`` scene times evenly spread over the ``count`` frames from ``first`` (14 frames give
    the 14 frames themselves; other ranges are resampled, with subframes)."""
    if count < 2:
        raise ValueError(f"a frame range needs at least 2 frames, got {count}")
    return [first + k * (count - 1) / (samples - 1) for k in range(samples)]


def moved_shape(shape: Sequence[Point], start: Point, end: Point) -> list[Point]:
    """``shape`` carried along when its ends are moved to ``start`` and ``end``: the similarity
    (move, turn, scale) that maps its old ends onto the new ones, so a curve keeps its form."""
    (ax, ay), (bx, by) = shape[0], shape[-1]
    old = complex(bx - ax, by - ay)
    new = complex(end[0] - start[0], end[1] - start[1])
    if abs(old) < 1e-12:
        return [tuple(start), tuple(end)]
    factor = new / old
    out = []
    for x, y in shape:
        z = complex(x - ax, y - ay) * factor
        out.append((start[0] + z.real, start[1] + z.imag))
    out[0], out[-1] = tuple(start), tuple(end)
    return out


def bent_shape(shape: Sequence[Point], middle: Point) -> list[Point]:
    """``shape`` with its middle pulled to ``middle``, its ends kept: the offset fades linearly (by
    arc length) from the middle to each end."""
    shape = [tuple(p) for p in (shape if len(shape) > 2 else resample(shape, SHAPE_POINTS))]
    mx, my = point_at(shape, 0.5)
    dx, dy = middle[0] - mx, middle[1] - my
    lengths = arc_lengths(shape)
    total = lengths[-1] or 1.0
    out = []
    for (x, y), s in zip(shape, lengths, strict=True):
        weight = 1.0 - abs(s / total - 0.5) * 2.0
        out.append((x + weight * dx, y + weight * dy))
    out[0], out[-1] = shape[0], shape[-1]
    return out
