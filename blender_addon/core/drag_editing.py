"""What the Draw Drags tool does with each mouse event (no bpy): add, grab, move and delete drags.

The modal operator (``drag_tool.py``) copies the scene's drags in, feeds mouse positions (region
pixels) through the view's :class:`~.overlay_geometry.SquareMapping`, and writes the drags back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import drag_paths
from .overlay_geometry import SquareMapping, arrow_shapes, clamp_unit, pick_handle

Point = tuple[float, float]

#: what a press did
GRABBED, ADDED, OUTSIDE, FULL = "grabbed", "added", "outside", "full"
#: a new drag shorter than this on screen (region pixels) when the button goes up was a click, not a drag
MIN_DRAG_PX = 4.0
#: what the tool tells the artist when a click made no drag
CLICK_MESSAGE = "a click makes no drag: press on the part and drag to where it should move"


#: where Add Drag puts drag 1, 2, ... (offsets of the start from the frame's centre): never on top of each other
_NEW_DRAG_OFFSETS = ((0.0, 0.0), (0.0, -0.15), (0.0, 0.15), (-0.15, 0.0), (0.15, 0.0))
_NEW_DRAG_LENGTH = 0.1


def new_drag_position(index: int) -> tuple[Point, Point]:
    """``(start, end)`` of the ``index``-th drag Add Drag creates: a short rightward arrow at a spot
    of its own around the frame's centre."""
    dx, dy = _NEW_DRAG_OFFSETS[index % len(_NEW_DRAG_OFFSETS)]
    start = (0.5 + dx, 0.5 + dy)
    return start, (start[0] + _NEW_DRAG_LENGTH, start[1])


@dataclass
class DragEditor:
    """Drags as ``(start, end)`` pairs in normalised square coordinates, each with its shape (the
    polyline from start to end: two points when straight), plus the handle being moved."""

    drags: list[tuple[Point, Point]] = field(default_factory=list)
    max_drags: int = 5
    active: int = 0
    grab: tuple[int, str] | None = None
    shapes: list[list[Point]] = field(default_factory=list)
    #: what each drag is to the caller (e.g. its index in the scene's list; None for one the tool added)
    keys: list = field(default_factory=list)
    #: True when the last release dropped a new drag that had no length (a click)
    discarded: bool = False
    _adding: bool = field(default=False, repr=False)
    _stroke: list[tuple[float, float]] = field(default_factory=list, repr=False)  # region pixels

    def __post_init__(self) -> None:
        shapes = list(self.shapes) + [None] * (len(self.drags) - len(self.shapes))
        self.shapes = [list(shape) if shape and len(shape) > 2 else [start, end]
                       for (start, end), shape in zip(self.drags, shapes, strict=False)]
        self.keys = list(self.keys) + [None] * (len(self.drags) - len(self.keys))

    def _shapes_for_picking(self, mapping: SquareMapping):
        return arrow_shapes(mapping, self.drags, self.shapes)

    def press(self, mapping: SquareMapping, px: float, py: float) -> str:
        """Left button down: grab the handle under the mouse, or start a new drag (a stroke) there."""
        hit = pick_handle(self._shapes_for_picking(mapping), px, py)
        self._adding = False
        if hit is not None:
            self.grab, self.active = hit, hit[0]
            return GRABBED
        if not mapping.contains(px, py):
            return OUTSIDE
        if len(self.drags) >= self.max_drags:
            return FULL
        point = clamp_unit(*mapping.from_region(px, py))
        self.drags.append((point, point))
        self.shapes.append([point, point])
        self.keys.append(None)
        self.active = len(self.drags) - 1
        self.grab = (self.active, "end")
        self._adding = True
        self._stroke = [(px, py)]
        return ADDED

    def move(self, mapping: SquareMapping, px: float, py: float) -> bool:
        """Mouse moved: the grabbed handle follows (kept inside the square), a new stroke grows, the
        bend handle pulls the middle of a curve. True if something moved."""
        if self.grab is None:
            return False
        index, which = self.grab
        point = clamp_unit(*mapping.from_region(px, py))
        start, end = self.drags[index]
        if self._adding:
            self._stroke.append((px, py))
            self.shapes[index] = [clamp_unit(*mapping.from_region(*p)) for p in self._stroke]
            self.drags[index] = (start, point)
        elif which == "middle":
            self.shapes[index] = [clamp_unit(*p) for p in drag_paths.bent_shape(self.shapes[index], point)]
        else:
            start, end = (point, end) if which == "start" else (start, point)
            self.drags[index] = (start, end)
            self.shapes[index] = [clamp_unit(*p) for p in drag_paths.moved_shape(self.shapes[index], start, end)]
        return True

    def release(self, mapping: SquareMapping | None = None) -> bool:
        """Left button up; True if a handle was being moved. A new stroke becomes the drag's shape
        (straight when it stays near its chord, else the stroke resampled by arc length). A drag this
        press added that is shorter than :data:`MIN_DRAG_PX` on screen is removed again
        (``discarded`` says so): a zero-length drag would be sent as "no drag" or refused."""
        was_grabbing, self.grab = self.grab is not None, None
        self.discarded = False
        if was_grabbing and self._adding and mapping is not None:
            index = self.active
            stroke = drag_paths.stroke_shape(self._stroke)
            start, end = self.drags[index]
            (x0, y0), (x1, y1) = mapping.to_region(*start), mapping.to_region(*end)
            if ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 < MIN_DRAG_PX:
                del self.drags[index]
                del self.shapes[index]
                del self.keys[index]
                self.active = max(0, min(self.active, len(self.drags) - 1))
                self.discarded = True
            else:
                shape = [clamp_unit(*mapping.from_region(*p)) for p in stroke]
                shape[0], shape[-1] = start, end
                self.shapes[index] = shape if len(shape) > 2 else [start, end]
        self._adding = False
        self._stroke = []
        return was_grabbing

    def delete_at(self, mapping: SquareMapping, px: float, py: float) -> int | None:
        """Right-click or X: delete the drag whose handle is under the mouse; its index, or None."""
        hit = pick_handle(self._shapes_for_picking(mapping), px, py)
        if hit is None:
            return None
        del self.drags[hit[0]]
        del self.shapes[hit[0]]
        del self.keys[hit[0]]
        self.grab = None
        self.active = max(0, min(self.active, len(self.drags) - 1))
        return hit[0]
