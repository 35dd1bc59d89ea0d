"""Where the drag overlay goes in the 3D viewport, in region pixels (no bpy, no gpu).

The thin drawing code (``overlay_draw.py``) asks this module for arrow shafts, arrow heads and
numbered handles; the modal drag tool uses the same mapping to turn mouse positions back into
normalised square coordinates and to pick the handle under the mouse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from . import drag_paths

Pixel = tuple[float, float]

#: handle radius and pick radius, region pixels
HANDLE_RADIUS_PX = 7.0
PICK_RADIUS_PX = 12.0
TICK_HALF_LENGTH_PX = 4.0  # half the length of the mark across a drag at each frame
#: arrow head length and half-width, region pixels
HEAD_LENGTH_PX = 14.0
HEAD_HALF_WIDTH_PX = 6.0


def project_to_region(
    perspective_matrix: Sequence[Sequence[float]], point: Sequence[float], region_width: int, region_height: int
) -> Pixel | None:
    """World point -> region pixel (origin bottom-left), as ``view3d_utils.location_3d_to_region_2d``.

    Returns None for a point behind the view.
    """
    x, y, z = (float(c) for c in point)
    row = [float(m[0]) * x + float(m[1]) * y + float(m[2]) * z + float(m[3]) for m in perspective_matrix]
    w = row[3]
    if w <= 0.0:
        return None
    return (region_width / 2.0) * (1.0 + row[0] / w), (region_height / 2.0) * (1.0 + row[1] / w)


@dataclass(frozen=True)
class SquareMapping:
    """Affine map between normalised square coordinates (x right, y down) and region pixels (y up).

    Built from the region pixels of the square's top-left, top-right and bottom-left corners.
    """

    top_left: Pixel
    top_right: Pixel
    bottom_left: Pixel

    @classmethod
    def from_corners(cls, corners: Sequence[Pixel]) -> SquareMapping:
        """From the four corners in the order top-left, top-right, bottom-right, bottom-left."""
        if len(corners) != 4 or any(c is None for c in corners):
            raise ValueError("the camera frame is not (fully) in front of the view")
        tl, tr, _, bl = corners
        return cls(tuple(map(float, tl)), tuple(map(float, tr)), tuple(map(float, bl)))

    def to_region(self, x: float, y: float) -> Pixel:
        ox, oy = self.top_left
        return (
            ox + x * (self.top_right[0] - ox) + y * (self.bottom_left[0] - ox),
            oy + x * (self.top_right[1] - oy) + y * (self.bottom_left[1] - oy),
        )

    def from_region(self, px: float, py: float) -> tuple[float, float]:
        ox, oy = self.top_left
        ax, ay = self.top_right[0] - ox, self.top_right[1] - oy
        bx, by = self.bottom_left[0] - ox, self.bottom_left[1] - oy
        det = ax * by - ay * bx
        if abs(det) < 1e-12:
            raise ValueError("the camera frame has no area in this view")
        dx, dy = px - ox, py - oy
        return (dx * by - dy * bx) / det, (ax * dy - ay * dx) / det

    def contains(self, px: float, py: float) -> bool:
        x, y = self.from_region(px, py)
        return 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0


@dataclass(frozen=True)
class ArrowShape:
    """One drag as drawn: shaft (a polyline), head triangle, the handles, a tick per frame and the
    number's position. ``middle`` is the bend handle of a curved drag (None for a straight one)."""

    index: int
    start: Pixel
    end: Pixel
    head: tuple[Pixel, Pixel, Pixel]
    label: str
    label_position: Pixel
    path: tuple[Pixel, ...] = ()
    ticks: tuple[tuple[Pixel, Pixel], ...] = ()
    middle: Pixel | None = None


def arrow_head(start: Pixel, end: Pixel, length: float = HEAD_LENGTH_PX, half_width: float = HEAD_HALF_WIDTH_PX):
    """The head triangle (tip, left, right) of an arrow ending at ``end``; degenerate arrows point right."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    norm = math.hypot(dx, dy)
    ux, uy = (dx / norm, dy / norm) if norm > 1e-9 else (1.0, 0.0)
    length = min(length, norm) if norm > 1e-9 else length
    bx, by = end[0] - ux * length, end[1] - uy * length
    return (end, (bx - uy * half_width, by + ux * half_width), (bx + uy * half_width, by - ux * half_width))


def tick_marks(points: Sequence[Pixel], half_length: float = TICK_HALF_LENGTH_PX) -> list[tuple[Pixel, Pixel]]:
    """A short segment across the path at each frame's position (the spacing shows the timing)."""
    marks = []
    for i, (x, y) in enumerate(points):
        (ax, ay), (bx, by) = points[max(0, i - 1)], points[min(len(points) - 1, i + 1)]
        dx, dy = bx - ax, by - ay
        norm = math.hypot(dx, dy)
        nx, ny = (-dy / norm, dx / norm) if norm > 1e-9 else (0.0, 1.0)
        marks.append(((x - nx * half_length, y - ny * half_length), (x + nx * half_length, y + ny * half_length)))
    return marks


def arrow_shapes(
    mapping: SquareMapping, drags: Sequence[tuple[tuple[float, float], tuple[float, float]]],
    paths: Sequence[Sequence[tuple[float, float]] | None] | None = None,
    trajectories: Sequence[Sequence[tuple[float, float]] | None] | None = None,
) -> list[ArrowShape]:
    """Arrow shapes for normalised ``(start, end)`` drags; numbers are 1-based, placed beside the start
    handle. ``paths[i]`` (normalised points from start to end) makes drag ``i``'s shaft that curve,
    with a bend handle at its middle; ``trajectories[i]`` (one point per frame) adds its ticks."""
    shapes = []
    for index, (start, end) in enumerate(drags):
        s = mapping.to_region(*start)
        e = mapping.to_region(*end)
        shape = paths[index] if paths is not None and index < len(paths) else None
        curved = shape is not None and len(shape) > 2
        path = tuple(mapping.to_region(*p) for p in shape) if curved else (s, e)
        head = arrow_head(path[-2] if curved else s, e)
        frames = trajectories[index] if trajectories is not None and index < len(trajectories) else None
        ticks = tuple(tick_marks([mapping.to_region(*p) for p in frames])) if frames else ()
        middle = drag_paths.point_at(path, 0.5) if curved else None
        label_pos = (s[0] + HANDLE_RADIUS_PX + 3.0, s[1] + HANDLE_RADIUS_PX + 3.0)
        shapes.append(ArrowShape(index, s, e, head, str(index + 1), label_pos, path, ticks, middle))
    return shapes


def pick_handle(
    shapes: Sequence[ArrowShape], px: float, py: float, radius: float = PICK_RADIUS_PX
) -> tuple[int, str] | None:
    """The ``(drag index, "start" | "end" | "middle")`` whose handle is nearest to the mouse within
    ``radius``. End handles win ties, so a zero-length drag can be pulled out again.
    """
    best: tuple[float, int, int, str] | None = None
    for shape in shapes:
        handles = [("end", shape.end), ("start", shape.start)] + ([("middle", shape.middle)] if shape.middle else [])
        for rank, (which, point) in enumerate(handles):
            dist = math.hypot(point[0] - px, point[1] - py)
            candidate = (dist, rank, shape.index, which)
            if dist <= radius and (best is None or candidate[:2] < best[:2]):
                best = candidate
    return None if best is None else (best[2], best[3])


def circle_points(centre: Pixel, radius: float = HANDLE_RADIUS_PX, segments: int = 16) -> list[Pixel]:
    """A closed polygon approximating a handle circle (for a line loop or triangle fan)."""
    return [
        (centre[0] + radius * math.cos(2 * math.pi * i / segments), centre[1] + radius * math.sin(2 * math.pi * i / segments))
        for i in range(segments)
    ]


def clamp_unit(x: float, y: float) -> tuple[float, float]:
    """Keep a point inside the square (drags must stay within the image)."""
    return min(1.0, max(0.0, x)), min(1.0, max(0.0, y))


def _transform(matrix: Sequence[Sequence[float]], point: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(c) for c in point)
    return tuple(float(m[0]) * x + float(m[1]) * y + float(m[2]) * z + float(m[3]) for m in matrix[:3])


def camera_square_mapping(
    perspective_matrix: Sequence[Sequence[float]],
    camera_matrix: Sequence[Sequence[float]],
    square_corners: Sequence[Sequence[float]],
    region_width: int,
    region_height: int,
) -> SquareMapping:
    """The mapping for a view: the model square's corners (camera space, top-left first, as
    ``camera_frame.FrameBox.corners``) through the camera's world matrix and the view's projection."""
    pixels = [
        project_to_region(perspective_matrix, _transform(camera_matrix, c), region_width, region_height)
        for c in square_corners
    ]
    return SquareMapping.from_corners(pixels)
