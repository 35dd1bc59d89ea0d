"""The result: a camera-parented plane showing the frames as an image sequence (thin bpy code)."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..core import camera_frame
from ..core.clip_timing import ClipTiming, held_frames, scene_range
from .reference import RESULT_PLANE_KEY, camera_frame_corners, check_camera

PLANE_PREFIX = "PM Result"
#: distance of the plane in front of the camera, as a multiple of the camera's clip start
CLIP_START_FACTOR = 1.5
#: at least this far in front of the camera, metres (when clip start is tiny)
MIN_DEPTH = 0.1
#: each further result of one camera sits this much nearer (a fraction of the depth), newest in front
VARIANT_STEP = 0.02


def camera_planes(scene: bpy.types.Scene, camera: bpy.types.Object) -> list[bpy.types.Object]:
    """The result planes that belong to ``camera`` (its children marked as results), oldest first."""
    planes = [o for o in scene.objects if o.get(RESULT_PLANE_KEY) and o.parent == camera]
    return sorted(planes, key=lambda o: o.get("puppet_master_order", 0))


def plane_depth(camera: bpy.types.Object) -> float:
    clip_start = camera.data.clip_start
    return max(MIN_DEPTH, clip_start * CLIP_START_FACTOR)


def _material(name: str, image: bpy.types.Image, frames: int, start_frame: int) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    tree = material.node_tree
    tree.nodes.clear()
    output = tree.nodes.new("ShaderNodeOutputMaterial")
    emission = tree.nodes.new("ShaderNodeEmission")
    texture = tree.nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.interpolation = "Closest"
    user = texture.image_user
    user.frame_duration = frames
    user.frame_start = start_frame
    user.frame_offset = -1  # scene frame `start_frame` shows frame_0000.png
    user.use_auto_refresh = True
    user.use_cyclic = False
    tree.links.new(texture.outputs["Color"], emission.inputs["Color"])
    tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    texture.location, emission.location, output.location = (-400, 0), (-150, 0), (100, 0)
    return material


def build_plane(
    scene: bpy.types.Scene, frame_paths: list[Path], job_id: str, *, replace: bool = True,
    camera: bpy.types.Object | None = None, start: int | None = None, hold: int = 1,
) -> bpy.types.Object:
    """A plane exactly covering the model's square in ``camera``'s view (default: the scene's
    camera; a job's plane goes to the camera it was made from), textured with the frames from
    scene frame ``start`` (default: the scene's start), each held ``hold`` scene frames."""
    clip = ClipTiming(scene.frame_start if start is None else start, hold, len(frame_paths))
    camera = camera if camera is not None and camera.type == "CAMERA" else check_camera(scene)
    if min(abs(s) for s in camera.matrix_world.to_scale()) < 1e-6:
        raise ValueError(f"the camera {camera.name!r} is scaled to zero on one axis: set its scale to 1 "
                         "(a camera's scale does not change its render)")
    props = scene.puppet_master
    existing = camera_planes(scene, camera)
    if replace and existing:  # this camera's newest result: another camera's shot keeps its own
        remove_plane(existing.pop())
    played = held_frames(frame_paths, clip)
    image = bpy.data.images.load(str(played[0]), check_existing=False)
    image.name = f"{PLANE_PREFIX} {job_id[:8]}"
    image.source = "SEQUENCE"
    image.colorspace_settings.name = "sRGB"
    material = _material(f"{PLANE_PREFIX} {job_id[:8]}", image, clip.length, clip.start)

    # a variant sits in front of this camera's earlier results (each at its own depth, none hidden
    # inside another); its scale follows from the depth, so it still fills the square exactly
    order = max((o.get("puppet_master_order", 0) for o in existing), default=0) + 1
    depth_factor = 1.0 - VARIANT_STEP * min(len(existing), 10)
    mesh = bpy.data.meshes.new(f"{PLANE_PREFIX} {job_id[:8]}")
    mesh.from_pydata([(-0.5, -0.5, 0), (0.5, -0.5, 0), (0.5, 0.5, 0), (-0.5, 0.5, 0)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    for loop, coords in zip(mesh.loops, ((0, 0), (1, 0), (1, 1), (0, 1)), strict=True):
        uv.data[loop.index].uv = coords
    mesh.materials.append(material)
    mesh.update()
    plane = bpy.data.objects.new(f"{PLANE_PREFIX} {job_id[:8]}", mesh)
    scene.collection.objects.link(plane)
    plane.parent = camera
    plane.matrix_parent_inverse.identity()
    plane[RESULT_PLANE_KEY] = job_id
    plane["puppet_master_order"] = order
    plane["puppet_master_depth_factor"] = depth_factor
    plane["puppet_master_start"], plane["puppet_master_hold"] = clip.start, clip.hold
    fit_plane(scene, plane)
    plane.visible_shadow = False
    # the clip must fit in the scene; a longer scene keeps its range and loops over the clip
    fitted = scene_range(scene.frame_start, scene.frame_end, clip, scene.use_preview_range)
    scene.frame_start, scene.frame_end = fitted.start, fitted.end
    if fitted.preview is not None:
        scene.use_preview_range = True
        scene.frame_preview_start, scene.frame_preview_end = fitted.preview
    props.result_object = plane
    bpy.context.view_layer.update()  # matrix_world is valid right away (scripts, tests, exporters)
    return plane


def show_variant(plane: bpy.types.Object, frame_paths: list[Path]) -> None:
    """Play another variant's frames on ``plane``: only the texture's image changes (its timing,
    place and material stay)."""
    clip = ClipTiming(int(plane.get("puppet_master_start", 1)), int(plane.get("puppet_master_hold", 1)),
                      len(frame_paths))
    node = next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
    old = node.image
    image = bpy.data.images.load(str(held_frames(frame_paths, clip)[0]), check_existing=False)
    image.name, image.source = old.name if old else f"{PLANE_PREFIX} variant", "SEQUENCE"
    image.colorspace_settings.name = "sRGB"
    node.image = image
    node.image_user.frame_duration = clip.length
    if old is not None and old.users == 0:
        bpy.data.images.remove(old)


def variant_thumbnail_name(job_id: str, index: int) -> str:
    return f"PM Variant {job_id[:8]} {index + 1}"


def variant_thumbnails(job_id: str, last_frames: list[Path]) -> list[bpy.types.Image]:
    """An image per variant (its last frame: where the motion ends, the first frames are all the
    reference) for the panel's strip to choose from."""
    images = []
    for index, path in enumerate(last_frames):
        old = bpy.data.images.get(variant_thumbnail_name(job_id, index))
        if old is not None:
            bpy.data.images.remove(old)
        image = bpy.data.images.load(str(path), check_existing=False)
        image.name = variant_thumbnail_name(job_id, index)
        images.append(image)
    return images


def fit_signature(scene: bpy.types.Scene, camera: bpy.types.Object) -> tuple:
    """Everything the plane's placement depends on: render size and aspect, lens, sensor, shift, scale."""
    r, c = scene.render, camera.data
    return (r.resolution_x, r.resolution_y, r.pixel_aspect_x, r.pixel_aspect_y, c.type, c.lens, c.sensor_width,
            c.sensor_height, c.sensor_fit, c.shift_x, c.shift_y, c.ortho_scale, c.clip_start,
            tuple(round(s, 9) for s in camera.matrix_world.to_scale()))


def fit_plane(scene: bpy.types.Scene, plane: bpy.types.Object) -> None:
    """Size and place ``plane`` so it covers its camera's square exactly (again, after the render
    resolution, the lens or the camera's scale changed)."""
    camera = plane.parent
    depth = plane_depth(camera) * float(plane.get("puppet_master_depth_factor", 1.0))
    placement = camera_frame.result_plane(
        camera_frame_corners(scene, camera), depth, perspective=camera.data.type == "PERSP"
    )
    half = placement.side / 2.0
    for vertex, (x, y) in zip(plane.data.vertices, ((-half, -half), (half, -half), (half, half), (-half, half)),
                              strict=True):
        vertex.co = (x, y, 0.0)
    plane.data.update()
    # a camera's object scale does not change its render, but a child inherits it: undo it so the
    # plane covers the square exactly whatever the camera's (or its parents') scale
    scale = camera.matrix_world.to_scale()
    plane.location = tuple(c / s for c, s in zip(placement.centre, scale, strict=True))
    plane.rotation_euler = (0.0, 0.0, 0.0)
    plane.scale = tuple(1.0 / s for s in scale)
    _fitted[plane.name] = fit_signature(scene, camera)


#: plane name -> the signature it was last fitted to (so the update handler only refits on a change)
_fitted: dict[str, tuple] = {}


def refit_planes(scene: bpy.types.Scene) -> int:
    """Refit every result plane of ``scene`` whose camera or render changed; how many were refitted."""
    count = 0
    for plane in [o for o in scene.objects if o.get(RESULT_PLANE_KEY) and o.parent is not None]:
        if plane.parent.type == "CAMERA" and _fitted.get(plane.name) != fit_signature(scene, plane.parent):
            fit_plane(scene, plane)
            count += 1
    return count


def remove_plane(plane: bpy.types.Object) -> None:
    """Delete a previous result plane with its mesh, material and image (the frames on disk stay)."""
    mesh = plane.data
    materials = [m for m in mesh.materials if m is not None]
    images = {n.image for m in materials if m.node_tree for n in m.node_tree.nodes if n.type == "TEX_IMAGE" and n.image}
    bpy.data.objects.remove(plane)
    if mesh.users == 0:
        bpy.data.meshes.remove(mesh)
    for material in materials:
        if material.users == 0:
            bpy.data.materials.remove(material)
    for image in images:
        if image.users == 0:
            bpy.data.images.remove(image)
