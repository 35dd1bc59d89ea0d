"""What the Draw Drags tool does with each mouse event (no bpy): add, grab, move and delete drags.

The modal operator (``drag_tool.py``) copies the scene's drags in, feeds mouse positions (region
pixels) through the view's :class:`~.overlay_geometry.SquareMapping`, and writes the drags back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .overlay_geometry import SquareMapping, arrow_shapes, clamp_unit, pick_handle

Point = tuple[float, float]

#: what a press did
GRABBED, ADDED, OUTSIDE, FULL = "grabbed", "added", "outside", "full"


@dataclass
class DragEditor:
    """Drags as ``(start, end)`` pairs in normalised square coordinates, plus the handle being moved."""

    drags: list[tuple[Point, Point]] = field(default_factory=list)
    max_drags: int = 5
    active: int = 0
    grab: tuple[int, str] | None = None

    def press(self, mapping: SquareMapping, px: float, py: float) -> str:
        """Left button down: grab the handle under the mouse, or start a new drag there."""
        hit = pick_handle(arrow_shapes(mapping, self.drags), px, py)
        if hit is not None:
            self.grab, self.active = hit, hit[0]
            return GRABBED
        if not mapping.contains(px, py):
            return OUTSIDE
        if len(self.drags) >= self.max_drags:
            return FULL
        point = clamp_unit(*mapping.from_region(px, py))
        self.drags.append((point, point))
        self.active = len(self.drags) - 1
        self.grab = (self.active, "end")
        return ADDED

    def move(self, mapping: SquareMapping, px: float, py: float) -> bool:
        """Mouse moved: the grabbed handle follows (kept inside the square). True if something moved."""
        if self.grab is None:
            return False
        index, which = self.grab
        point = clamp_unit(*mapping.from_region(px, py))
        start, end = self.drags[index]
        self.drags[index] = (point, end) if which == "start" else (start, point)
        return True

    def release(self) -> bool:
        """Left button up; True if a handle was being moved."""
        was_grabbing, self.grab = self.grab is not None, None
        return was_grabbing

    def delete_at(self, mapping: SquareMapping, px: float, py: float) -> int | None:
        """Right-click or X: delete the drag whose handle is under the mouse; its index, or None."""
        hit = pick_handle(arrow_shapes(mapping, self.drags), px, py)
        if hit is None:
            return None
        del self.drags[hit[0]]
        self.grab = None
        self.active = max(0, min(self.active, len(self.drags) - 1))
        return hit[0]
