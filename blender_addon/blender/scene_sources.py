"""Drags from the scene's animation: an object, empty or pose bone, followed over a frame range and
projected through the camera into the model's square (thin: the maths is drag_paths and
camera_frame; this module asks Blender where things are)."""

from __future__ import annotations

import bpy
from bpy_extras.object_utils import world_to_camera_view

from ..core import camera_frame, drag_paths

Point = tuple[float, float]


class SourceError(ValueError):
    """A drag source that cannot be used; the message names it and the fix."""


def find_target(scene: bpy.types.Scene, text: str):
    """(object, bone name or None) for ``text`` (``Object`` or ``Armature:Bone``)."""
    try:
        name, bone = drag_paths.parse_target(text)
    except ValueError as exc:
        raise SourceError(str(exc)) from exc
    obj = scene.objects.get(name)
    if obj is None:
        raise SourceError(f"no object {name!r} in the scene {scene.name!r}")
    if bone is not None and (obj.type != "ARMATURE" or obj.pose is None or bone not in obj.pose.bones):
        raise SourceError(f"{name!r} has no pose bone {bone!r} (expected ARMATURE:BONE)")
    return obj, bone


def _world_position(obj, bone: str | None, depsgraph):
    evaluated = obj.evaluated_get(depsgraph)
    if bone is None:
        return evaluated.matrix_world.translation.copy()
    return evaluated.matrix_world @ evaluated.pose.bones[bone].head


def world_positions(scene: bpy.types.Scene, text: str, times: list[float]) -> list:
    """The target's world position at each (fractional) scene time; the current frame is restored."""
    obj, bone = find_target(scene, text)
    frame, subframe = scene.frame_current, scene.frame_subframe
    out = []
    try:
        for t in times:
            whole = int(t // 1)
            scene.frame_set(whole, subframe=t - whole)
            out.append(_world_position(obj, bone, bpy.context.evaluated_depsgraph_get()))
    finally:
        scene.frame_set(frame, subframe=subframe)
    return out


def project_to_square(scene: bpy.types.Scene, points: list) -> list[Point]:
    """World points -> the model square's coordinates (x right, y down) through the scene camera."""
    camera = scene.camera
    if camera is None:
        raise SourceError("the scene has no camera: set one (the drag is projected through it)")
    r = scene.render
    region = camera_frame.square_region(r.resolution_x, r.resolution_y, r.pixel_aspect_x, r.pixel_aspect_y)
    out = []
    for point in points:
        ndc = world_to_camera_view(scene, camera, point)
        if ndc.z <= 0:
            raise SourceError("the source goes behind the camera in its frame range")
        out.append(region.frame_to_square(ndc.x, 1.0 - ndc.y))
    return out


def source_trajectory(scene: bpy.types.Scene, item, samples: int = drag_paths.NUM_FRAMES) -> list[Point]:
    """The square positions of a drag's source over its frame range: 14, or ``samples`` (a longer
    clip's segments x 13 + 1)."""
    times = drag_paths.sample_times(item.source_start, item.source_frames, samples)
    return project_to_square(scene, world_positions(scene, item.source, times))


def apply_source(scene: bpy.types.Scene, item) -> list[Point]:
    """Take the drag's path from its source again: start, end and shape follow the animation."""
    path = source_trajectory(scene, item)
    item.start = tuple(min(1.0, max(0.0, c)) for c in path[0])
    item.end = tuple(min(1.0, max(0.0, c)) for c in path[-1])
    item.shape.clear()
    for point in path:
        item.shape.add().co = point
    return path
