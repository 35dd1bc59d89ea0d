"""Camera-frame maths for the add-on (no bpy): the model's square inside the camera frame.

Blender's ``Camera.view_frame()`` gives the frame's four corners in camera space (x right, y up,
looking down -z). The model sees a square, so a non-square render uses the centred square of the
frame. Normalised coordinates follow ``drags.py``: x right, y down, 0..1 of that square.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Point3 = tuple[float, float, float]


class CameraFrameError(ValueError):
    """A camera or resolution the add-on cannot map onto the model's square frame."""


@dataclass(frozen=True)
class SquareRegion:
    """Where the model's square lies inside the camera frame, in fractions of the frame (x right, y down)."""

    u0: float
    v0: float
    u1: float
    v1: float

    @property
    def is_full_frame(self) -> bool:
        return abs(self.u0) < 1e-9 and abs(self.v0) < 1e-9

    def square_to_frame(self, x: float, y: float) -> tuple[float, float]:
        return self.u0 + x * (self.u1 - self.u0), self.v0 + y * (self.v1 - self.v0)

    def frame_to_square(self, u: float, v: float) -> tuple[float, float]:
        return (u - self.u0) / (self.u1 - self.u0), (v - self.v0) / (self.v1 - self.v0)


def square_region(width: int, height: int, pixel_aspect_x: float = 1.0, pixel_aspect_y: float = 1.0) -> SquareRegion:
    """The centred square of a ``width x height`` render (with its pixel aspect) in frame fractions."""
    if width <= 0 or height <= 0 or pixel_aspect_x <= 0 or pixel_aspect_y <= 0:
        raise CameraFrameError(
            f"render resolution {width}x{height} with pixel aspect {pixel_aspect_x}:{pixel_aspect_y} must be positive"
        )
    shown_w, shown_h = width * pixel_aspect_x, height * pixel_aspect_y
    if shown_w >= shown_h:
        margin = (1.0 - shown_h / shown_w) / 2.0
        return SquareRegion(margin, 0.0, 1.0 - margin, 1.0)
    margin = (1.0 - shown_w / shown_h) / 2.0
    return SquareRegion(0.0, margin, 1.0, 1.0 - margin)


@dataclass(frozen=True)
class FrameBox:
    """An axis-aligned rectangle in camera space at depth ``z`` (negative: in front of the camera)."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float
    z: float

    @classmethod
    def from_corners(cls, corners: Sequence[Sequence[float]]) -> FrameBox:
        if len(corners) != 4:
            raise CameraFrameError(f"a camera frame has 4 corners, got {len(corners)}")
        xs = [float(c[0]) for c in corners]
        ys = [float(c[1]) for c in corners]
        zs = [float(c[2]) for c in corners]
        if max(zs) - min(zs) > 1e-6 * max(1.0, abs(zs[0])):
            raise CameraFrameError("camera frame corners do not lie at one depth")
        box = cls(min(xs), max(xs), min(ys), max(ys), zs[0])
        if box.width <= 0 or box.height <= 0:
            raise CameraFrameError("camera frame has zero size")
        return box

    @property
    def width(self) -> float:
        return self.x_max - self.x_min

    @property
    def height(self) -> float:
        return self.y_max - self.y_min

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x_min + self.x_max) / 2.0, (self.y_min + self.y_max) / 2.0

    def centred_square(self) -> FrameBox:
        side = min(self.width, self.height)
        cx, cy = self.centre
        return FrameBox(cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2, self.z)

    def corners(self) -> list[Point3]:
        """Top-left, top-right, bottom-right, bottom-left (the order of normalised (0,0),(1,0),(1,1),(0,1))."""
        return [
            (self.x_min, self.y_max, self.z),
            (self.x_max, self.y_max, self.z),
            (self.x_max, self.y_min, self.z),
            (self.x_min, self.y_min, self.z),
        ]

    def at_depth(self, depth: float, *, perspective: bool) -> FrameBox:
        """The same view rectangle moved to ``depth`` in front of the camera (scaled if perspective)."""
        if depth <= 0:
            raise CameraFrameError(f"depth must be positive, got {depth}")
        scale = depth / abs(self.z) if perspective else 1.0
        return FrameBox(self.x_min * scale, self.x_max * scale, self.y_min * scale, self.y_max * scale, -depth)


@dataclass(frozen=True)
class PlanePlacement:
    """A square plane in camera space: centre (x, y, z) and side length."""

    centre: Point3
    side: float


def result_plane(frame_corners: Sequence[Sequence[float]], depth: float, *, perspective: bool) -> PlanePlacement:
    """The camera-parented plane that exactly covers the model's square at ``depth`` from the camera."""
    square = FrameBox.from_corners(frame_corners).centred_square().at_depth(depth, perspective=perspective)
    cx, cy = square.centre
    return PlanePlacement((cx, cy, square.z), square.width)


@dataclass(frozen=True)
class SquareCamera:
    """Camera settings whose square render shows exactly the centred square of the original frame.

    ``sensor_width`` is for perspective cameras (with sensor fit HORIZONTAL), ``ortho_scale`` for
    orthographic ones; ``shift_x``/``shift_y`` are in Blender's units (fractions of the frame side).
    """

    sensor_width: float | None
    ortho_scale: float | None
    shift_x: float
    shift_y: float


def square_camera(frame_corners: Sequence[Sequence[float]], *, lens: float, perspective: bool) -> SquareCamera:
    """Settings that turn a camera's (possibly non-square) frame into its centred square for a square render."""
    square = FrameBox.from_corners(frame_corners).centred_square()
    side = square.width
    cx, cy = square.centre
    if perspective:
        if lens <= 0:
            raise CameraFrameError(f"camera focal length must be positive, got {lens}")
        return SquareCamera(sensor_width=side / abs(square.z) * lens, ortho_scale=None, shift_x=cx / side, shift_y=cy / side)
    return SquareCamera(sensor_width=None, ortho_scale=side, shift_x=cx / side, shift_y=cy / side)
