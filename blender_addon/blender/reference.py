"""Reference render and reference-image checks, the Blender side (thin; maths in plain modules)."""

from __future__ import annotations

import os
import tempfile

import bpy
import numpy as np

from ..core import camera_frame, reference_image
from .scene_drags import shot_drags

REFERENCE_NAME = "PM Reference"
#: the custom property that marks a result plane (set by result_plane.build_plane)
RESULT_PLANE_KEY = "puppet_master_job"
ALPHA_NAME = "PM Reference Alpha"


def camera_square_note(scene: bpy.types.Scene) -> str:
    """A note for the panel when the render is not square (the model uses the centred square)."""
    r = scene.render
    region = camera_frame.square_region(r.resolution_x, r.resolution_y, r.pixel_aspect_x, r.pixel_aspect_y)
    if region.is_full_frame:
        return ""
    return f"Render is {r.resolution_x}x{r.resolution_y}: the model sees the centred square of the camera frame"


def camera_frame_corners(scene: bpy.types.Scene, camera: bpy.types.Object) -> list[tuple[float, float, float]]:
    """The camera's frame corners in camera space, for the scene's resolution."""
    return [tuple(v) for v in camera.data.view_frame(scene=scene)]


def check_camera(scene: bpy.types.Scene) -> bpy.types.Object:
    camera = scene.camera
    if camera is None or camera.type != "CAMERA":
        raise camera_frame.CameraFrameError("the scene has no active camera: add one and make it active")
    if camera.data.type == "PANO":
        raise camera_frame.CameraFrameError("panoramic cameras are not supported: use a perspective or orthographic one")
    return camera


def _image_from_array(name: str, rgba: np.ndarray) -> bpy.types.Image:
    """A packed image datablock holding a top-down RGBA array (replacing one of the same name)."""
    h, w = rgba.shape[:2]
    old = bpy.data.images.get(name)
    if old is not None:
        bpy.data.images.remove(old)
    image = bpy.data.images.new(name, width=w, height=h, alpha=True)
    image.pixels.foreach_set(reference_image.to_blender_pixels(rgba))
    image.pack()
    image.use_fake_user = True
    return image


def image_array(image: bpy.types.Image) -> np.ndarray:
    """A Blender image as a top-down RGBA float array."""
    w, h = image.size
    if w == 0 or h == 0:
        raise reference_image.ReferenceImageError(f"image {image.name!r} has no pixels (missing file?)")
    channels = image.channels
    flat = np.empty(w * h * channels, dtype=np.float32)
    image.pixels.foreach_get(flat)
    return reference_image.ensure_rgba(reference_image.from_blender_pixels(flat, w, h, channels))


def render_reference(scene: bpy.types.Scene, size: int = reference_image.MODEL_SIZE) -> bpy.types.Image:
    """Render the active camera's centred square at ``size`` with transparent film; keep it on white.

    Result planes (objects a Generate made, of any camera) are hidden from the render: the model
    must see the scene, never a previous result. Every render, camera and visibility setting
    touched is restored afterwards, even when the render fails.
    """
    camera = check_camera(scene)
    cam = camera.data
    square = camera_frame.square_camera(
        camera_frame_corners(scene, camera), lens=cam.lens, perspective=cam.type == "PERSP"
    )
    render = scene.render
    saved_render = {k: getattr(render, k) for k in (
        "resolution_x", "resolution_y", "resolution_percentage", "pixel_aspect_x", "pixel_aspect_y",
        "film_transparent", "filepath", "use_border", "use_crop_to_border",
    )}  # fmt: skip
    saved_format = {k: getattr(render.image_settings, k) for k in ("file_format", "color_mode", "color_depth")}
    saved_cam = {k: getattr(cam, k) for k in ("sensor_fit", "sensor_width", "ortho_scale", "shift_x", "shift_y")}
    planes = [o for o in scene.objects if o.get(RESULT_PLANE_KEY) and not o.hide_render]
    fd, path = tempfile.mkstemp(prefix="puppet_master_reference_", suffix=".png")
    os.close(fd)
    try:
        for plane in planes:
            plane.hide_render = True
        render.resolution_x = render.resolution_y = size
        render.resolution_percentage = 100
        render.pixel_aspect_x = render.pixel_aspect_y = 1.0
        render.film_transparent = True
        render.use_border = False
        render.image_settings.file_format = "PNG"
        render.image_settings.color_mode = "RGBA"
        render.image_settings.color_depth = "8"
        render.filepath = path
        cam.sensor_fit = "HORIZONTAL"
        if square.sensor_width is not None:
            cam.sensor_width = square.sensor_width
        else:
            cam.ortho_scale = square.ortho_scale
        cam.shift_x, cam.shift_y = square.shift_x, square.shift_y
        bpy.ops.render.render(write_still=True, scene=scene.name)
        loaded = bpy.data.images.load(path, check_existing=False)
        try:
            rgba = image_array(loaded)
        finally:
            bpy.data.images.remove(loaded)
    finally:
        for key, value in saved_render.items():
            setattr(render, key, value)
        for key, value in saved_format.items():
            setattr(render.image_settings, key, value)
        for key, value in saved_cam.items():
            setattr(cam, key, value)
        for plane in planes:
            plane.hide_render = False
        if os.path.exists(path):
            os.remove(path)
    alpha_image = _image_from_array(ALPHA_NAME, rgba)
    on_white = reference_image.composite_on_white(rgba)
    opaque = np.concatenate([on_white, np.ones((*on_white.shape[:2], 1), dtype=np.float32)], axis=2)
    image = _image_from_array(REFERENCE_NAME, opaque)
    props = scene.puppet_master
    props.reference_image = image
    props.reference_alpha = alpha_image
    props.reference_note = camera_square_note(scene)
    props.reference_warning = reference_image.BLANK_MESSAGE if reference_image.is_blank(rgba[..., 3]) else ""
    return image


def reference_alpha(scene: bpy.types.Scene) -> np.ndarray | None:
    """The square alpha map behind the reference (None when the picked image has no transparency)."""
    props = scene.puppet_master
    source = props.reference_alpha or props.reference_image
    if source is None:
        return None
    rgba = reference_image.centre_square(image_array(source))
    alpha = rgba[..., 3]
    return None if bool((alpha >= 1.0).all()) else alpha


def reference_png(scene: bpy.types.Scene) -> bytes:
    """The PNG the backend receives: the reference's centred square, on white."""
    image = scene.puppet_master.reference_image
    if image is None:
        raise reference_image.ReferenceImageError("no reference image: press Render Reference or pick an image")
    alpha = reference_alpha(scene)
    if alpha is not None and reference_image.is_blank(alpha):
        raise reference_image.ReferenceImageError(reference_image.BLANK_MESSAGE)
    return reference_image.encode_png(reference_image.model_input(image_array(image)))


def off_object_drags(scene: bpy.types.Scene) -> list[int]:
    """Indices of drags that start where the reference is transparent."""
    alpha = reference_alpha(scene)
    if alpha is None:
        return []
    starts = [tuple(d.start) for d in shot_drags(scene)]
    return reference_image.drags_off_object(alpha, starts)


def drag_warning_text(indices: list[int]) -> str:
    if not indices:
        return ""
    names = ", ".join(str(i + 1) for i in indices)
    plural = "s" if len(indices) > 1 else ""
    return f"Drag{plural} {names} start{'' if plural else 's'} off the object (transparent in the reference)"
