"""Anchored drags: a drag drawn on the object remembers the surface point under its start (object
and local coordinates, from a ray cast through the camera); when the camera moves, the lens or the
render resolution changes, or the object moves, the drag is projected again from that point, its
end and path carried along. A drag whose anchor leaves the camera's square is flagged (thin bpy
code: the square maths is camera_frame, the path maths drag_paths)."""

from __future__ import annotations

import bpy
from mathutils import Vector

from ..core import camera_frame, drag_paths
from . import scene_sources
from .scene_drags import shot_indices

#: a start that moves less than this (square fractions) is left alone (no update loops)
MOVE_EPSILON = 1e-6


def square_ray(scene: bpy.types.Scene, camera: bpy.types.Object, point: tuple[float, float]) -> tuple[Vector, Vector]:
    """World origin and direction of the ray through square point ``point`` (x right, y down)."""
    r = scene.render
    region = camera_frame.square_region(r.resolution_x, r.resolution_y, r.pixel_aspect_x, r.pixel_aspect_y)
    u, v = region.square_to_frame(*point)
    frame = [Vector(c) for c in camera.data.view_frame(scene=scene)]  # top-right, bottom-right, bottom-left, top-left
    xs, ys = [c.x for c in frame], [c.y for c in frame]
    local = Vector((min(xs) + u * (max(xs) - min(xs)), max(ys) - v * (max(ys) - min(ys)), frame[0].z))
    matrix = camera.matrix_world.normalized()
    if camera.data.type == "ORTHO":
        return matrix @ Vector((local.x, local.y, 0.0)), (matrix.to_3x3() @ Vector((0.0, 0.0, -1.0))).normalized()
    origin = matrix.translation.copy()
    return origin, ((matrix @ local) - origin).normalized()


def anchor_drag(scene: bpy.types.Scene, item) -> bool:
    """Anchor ``item`` to the surface under its start (True), or clear its anchor when nothing is there."""
    camera = scene.camera
    if camera is None or camera.type != "CAMERA":
        return False
    origin, direction = square_ray(scene, camera, tuple(item.start))
    hit, location, _normal, _index, obj, _matrix = scene.ray_cast(bpy.context.evaluated_depsgraph_get(), origin,
                                                                  direction)
    if not hit or obj is None or obj.get("puppet_master_job"):
        item.anchor_object = None
        return False
    original = bpy.data.objects.get(obj.name, obj)
    item.anchor_object = original
    item.anchor_co = original.matrix_world.inverted() @ location
    return True


def reproject(scene: bpy.types.Scene) -> tuple[int, list[int]]:
    """Move every anchored drag to where its surface point is seen now; (drags moved, indices of
    drags whose anchor is outside the square)."""
    moved, outside = 0, []
    camera = scene.camera
    if camera is None or camera.type != "CAMERA":
        return 0, []
    drags = scene.puppet_master.drags
    for index, item in enumerate(drags[i] for i in shot_indices(scene)):  # index: the drag's place in the shot
        if item.anchor_object is None or item.source:
            continue
        world = item.anchor_object.matrix_world @ Vector(item.anchor_co)
        try:
            (x, y), = scene_sources.project_to_square(scene, [world])
        except scene_sources.SourceError:
            outside.append(index)
            continue
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            outside.append(index)
            continue
        start = tuple(item.start)
        if abs(x - start[0]) < MOVE_EPSILON and abs(y - start[1]) < MOVE_EPSILON:
            continue
        dx, dy = x - start[0], y - start[1]
        end = tuple(min(1.0, max(0.0, c + d)) for c, d in zip(item.end, (dx, dy), strict=True))
        stored = [tuple(p.co) for p in item.shape]
        if len(stored) > 2:
            shape = drag_paths.moved_shape(stored, (x, y), end)
            for point, co in zip(item.shape, shape, strict=True):
                point.co = co
        item.start, item.end = (x, y), end
        moved += 1
    return moved, outside


def outside_warning(indices: list[int]) -> str:
    if not indices:
        return ""
    names = ", ".join(str(i + 1) for i in indices)
    return (f"Drag {names} is anchored to a point outside the camera's view now: move the camera back or "
            "draw the drag again")
