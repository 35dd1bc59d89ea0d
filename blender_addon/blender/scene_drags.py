"""The scene's drags as the model gets them: shapes, timing and trajectories (thin: the geometry is
in drag_paths; this module reads Blender data)."""

from __future__ import annotations

import bpy

from ..core import drag_paths
from ..core._light import light_module
from . import scene_sources

drags_mod = light_module("drags")

Point = tuple[float, float]


def shot_indices(scene: bpy.types.Scene) -> list[int]:
    """Indices (in the scene's drag list) of the drags of the active camera's shot: drags belong to
    the camera they were drawn for (a drag with no camera, drawn before that, belongs to every one)."""
    camera = scene.camera
    return [i for i, d in enumerate(scene.puppet_master.drags) if d.camera is None or d.camera == camera]


def shot_drags(scene: bpy.types.Scene) -> list:
    """The active camera's drag items, in order (drag 1, 2, ... of its shot)."""
    drags = scene.puppet_master.drags
    return [drags[i] for i in shot_indices(scene)]


def new_drag(scene: bpy.types.Scene):
    """A new drag item of the active camera's shot; returns its index in the scene's list."""
    drags = scene.puppet_master.drags
    drags.add().camera = scene.camera
    return len(drags) - 1


def drag_shape(item) -> list[Point]:
    """A drag's shape: its stored curve carried to its current start and end, or the straight line."""
    start, end = tuple(item.start), tuple(item.end)
    stored = [tuple(p.co) for p in item.shape]
    if len(stored) > 2:
        return drag_paths.moved_shape(stored, start, end)
    return [start, end]


def set_shape(item, shape: list[Point]) -> None:
    """Store ``shape`` on a drag item (a straight shape clears it)."""
    item.shape.clear()
    if len(shape) > 2:
        for point in shape:
            item.shape.add().co = point


def _fcurve(scene: bpy.types.Scene, data_path: str):
    """The scene's F-curve animating ``data_path``, or None (layered actions and older ones)."""
    anim = scene.animation_data
    if anim is None or anim.action is None:
        return None
    curves = []
    try:
        from bpy_extras import anim_utils

        bag = anim_utils.action_get_channelbag_for_slot(anim.action, anim.action_slot)
        curves = list(bag.fcurves) if bag is not None else []
    except (ImportError, AttributeError):
        curves = list(getattr(anim.action, "fcurves", []))
    return next((fc for fc in curves if fc.data_path == data_path), None)


def custom_samples(scene: bpy.types.Scene, index: int) -> list[float] | None:
    """Drag ``index``'s Progress F-curve at the 14 frames from the current one, or None when it is
    not animated."""
    curve = _fcurve(scene, f"puppet_master.drags[{index}].progress")
    if curve is None:
        return None
    first = scene.frame_current
    return [curve.evaluate(first + k) for k in range(drag_paths.NUM_FRAMES)]


def drag_trajectory(scene: bpy.types.Scene, index: int, number: int | None = None) -> list[Point] | None:
    """The 14 positions of the drag at ``index`` in the scene's list (``number``: its place in the
    shot, for messages); None for a straight, linear drag (sent as start -> end).

    Raises ValueError for a Custom timing without a usable Progress curve."""
    item = scene.puppet_master.drags[index]
    number = index + 1 if number is None else number
    if item.source:  # the animation is the path and the timing, taken again now
        try:
            path = scene_sources.apply_source(scene, item)
        except scene_sources.SourceError as exc:
            raise ValueError(f"drag {number} (from {item.source}): {exc}") from exc
        return [(min(1.0, max(0.0, x)), min(1.0, max(0.0, y))) for x, y in path]
    shape = drag_shape(item)
    if len(shape) == 2 and item.timing == "LINEAR":
        return None
    custom = None
    if item.timing == "CUSTOM":
        custom = custom_samples(scene, index)
        if custom is None:
            raise ValueError(f"drag {number} has a Custom timing but its Progress is not keyframed: keyframe "
                             "Progress over the 14 frames from the current frame, or pick another timing")
    return [(min(1.0, max(0.0, x)), min(1.0, max(0.0, y)))
            for x, y in drag_paths.trajectory(shape, item.timing, custom)]


def scene_drag_list(scene: bpy.types.Scene) -> list:
    """The active camera's drags as ``drags.Drag`` (with a path where curved or timed); ValueError
    names a drag that cannot be used. With several segments, a drag from an object follows its
    animation over all of them (segments x 13 + 1 samples of its frame range); other drags are
    stretched over the clip by the backend."""
    out = []
    segments = scene.puppet_master.segments
    for number, index in enumerate(shot_indices(scene), start=1):
        item = scene.puppet_master.drags[index]
        path = drag_trajectory(scene, index, number)
        if item.source and segments > 1:
            long = scene_sources.source_trajectory(scene, item, segments * (drag_paths.NUM_FRAMES - 1) + 1)
            path = [(min(1.0, max(0.0, x)), min(1.0, max(0.0, y))) for x, y in long]
        out.append(drags_mod.Drag(tuple(item.start), tuple(item.end)) if path is None
                   else drags_mod.Drag.from_path(path))
    return out


def overlay_data(scene: bpy.types.Scene) -> tuple[list, list, list]:
    """``(drags, shapes, trajectories)`` for the overlay: every drag's ends, shape and frame positions
    (a Custom timing without a curve shows linear ticks)."""
    drags, shapes, trajectories = [], [], []
    for index in shot_indices(scene):
        item = scene.puppet_master.drags[index]
        if item.source and len(item.shape) > 2:  # as last taken from its animation (draw code cannot move frames)
            stored = [tuple(p.co) for p in item.shape]
            drags.append((tuple(item.start), tuple(item.end)))
            shapes.append(stored)
            trajectories.append(stored)
            continue
        shape = drag_shape(item)
        custom = custom_samples(scene, index) if item.timing == "CUSTOM" else None
        timing = item.timing if item.timing != "CUSTOM" or custom is not None else "LINEAR"
        try:
            frames = drag_paths.trajectory(shape, timing, custom)
        except ValueError:
            frames = drag_paths.trajectory(shape)
        drags.append((tuple(item.start), tuple(item.end)))
        shapes.append(shape)
        trajectories.append(frames)
    return drags, shapes, trajectories
