"""The pictures of docs/blender.md, made from the add-on's own code with Blender (bpy).

    python docs/pictures/make_pictures.py [--out docs/pictures]

1. ``overlay.png``: a shot's reference render with the drag overlay on it, drawn from
   ``core.overlay_geometry`` (the shapes the viewport draws): a curved, eased drag with a tick per
   frame and its bend handle, and a straight one;
2. ``result_plane.png``: the same shot rendered with a result plane in front of the camera (the
   plane ``blender.result_plane`` builds, showing a frame striped so its edges show), which fills
   the camera's square exactly; the render is not square, so the margins stay visible.

Blender draws its overlay with the GPU, which background mode has not; the overlay here is the same
geometry, drawn into the picture with NumPy.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "backend"))

from blender_addon.core import drag_paths, overlay_geometry  # noqa: E402

SIZE = 256
ORANGE, YELLOW, CYAN = (1.0, 0.55, 0.05), (1.0, 0.9, 0.2), (0.1, 0.8, 1.0)


def shot(resolution: tuple[int, int]) -> tuple[bpy.types.Scene, bpy.types.Object]:
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "OBJECT"
    bpy.ops.mesh.primitive_cube_add(size=1.0)
    cube = bpy.context.active_object
    cube.color = (0.55, 0.6, 0.7, 1.0)
    cube.rotation_euler = (0.0, 0.0, math.radians(30))
    bpy.ops.mesh.primitive_cylinder_add(radius=0.12, depth=0.7, location=(0.0, -0.3, 0.75))
    bpy.context.active_object.color = (0.8, 0.45, 0.3, 1.0)  # a handle to drag
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(camera)
    camera.location, camera.rotation_euler = (0.0, -4.0, 0.8), (math.radians(85), 0.0, 0.0)
    scene.camera = camera
    return scene, camera


def render(scene: bpy.types.Scene) -> np.ndarray:
    """The scene's render as a top-down float RGB array."""
    path = Path(tempfile.mkdtemp()) / "render.png"
    scene.render.filepath = str(path)
    scene.render.image_settings.file_format = "PNG"
    bpy.ops.render.render(write_still=True)
    image = bpy.data.images.load(str(path))
    w, h = image.size
    pixels = np.array(image.pixels[:], dtype=np.float32).reshape(h, w, 4)[::-1, :, :3]
    bpy.data.images.remove(image)
    return pixels.copy()


def save(rgb: np.ndarray, path: Path) -> None:
    h, w = rgb.shape[:2]
    image = bpy.data.images.new(path.stem, w, h)
    rgba = np.concatenate([np.clip(rgb, 0, 1), np.ones((h, w, 1), np.float32)], axis=2)[::-1]
    image.pixels[:] = rgba.ravel()
    image.filepath_raw, image.file_format = str(path), "PNG"
    image.save()
    bpy.data.images.remove(image)


def _disc(rgb: np.ndarray, centre: tuple[float, float], radius: float, colour) -> None:
    h = rgb.shape[0]
    rows, cols = np.ogrid[: rgb.shape[0], : rgb.shape[1]]
    cx, cy = centre[0], h - centre[1]  # region pixels have y up
    rgb[(cols - cx) ** 2 + (rows - cy) ** 2 <= radius**2] = colour


def _line(rgb: np.ndarray, a, b, colour, width: float = 1.2) -> None:
    steps = max(2, int(math.dist(a, b) * 2))
    for t in np.linspace(0.0, 1.0, steps):
        _disc(rgb, (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])), width, colour)


def draw_overlay(rgb: np.ndarray, drags, shapes, trajectories) -> None:
    h, w = rgb.shape[:2]
    mapping = overlay_geometry.SquareMapping((0.0, float(h)), (float(w), float(h)), (0.0, 0.0))
    for index, shape in enumerate(overlay_geometry.arrow_shapes(mapping, drags, shapes, trajectories)):
        colour = YELLOW if index == 0 else ORANGE
        path = shape.path or (shape.start, shape.end)
        for a, b in itertools.pairwise(path):
            _line(rgb, a, b, colour)
        for a, b in shape.ticks:
            _line(rgb, a, b, colour, 0.8)
        tip, left, right = shape.head
        for a, b in ((tip, left), (left, right), (right, tip)):
            _line(rgb, a, b, colour)
        _disc(rgb, shape.start, overlay_geometry.HANDLE_RADIUS_PX * 0.7, CYAN)
        _disc(rgb, shape.end, overlay_geometry.HANDLE_RADIUS_PX * 0.7, colour)
        if shape.middle:
            _disc(rgb, shape.middle, overlay_geometry.HANDLE_RADIUS_PX * 0.6, colour)


def overlay_picture(out: Path) -> Path:
    scene, _ = shot((SIZE, SIZE))
    rgb = render(scene)
    # a quarter circle from the top of the handle, out and up to the right
    arc = [(0.5 + 0.25 * math.sin(a), 0.45 - 0.25 * (1 - math.cos(a)) - 0.1 * math.sin(a)) for a in np.linspace(0, 1.4, 40)]
    curved = drag_paths.stroke_shape(arc, tolerance=0.005)
    drags = [(curved[0], curved[-1]), ((0.42, 0.62), (0.62, 0.7))]
    shapes = [curved, [(0.42, 0.62), (0.62, 0.7)]]
    trajectories = [drag_paths.trajectory(curved, "EASE_IN_OUT"), drag_paths.trajectory(shapes[1])]
    draw_overlay(rgb, drags, shapes, trajectories)
    path = out / "overlay.png"
    save(rgb, path)
    return path


def result_plane_picture(out: Path) -> Path:
    import blender_addon  # registered from the checkout: its scene properties and result_plane

    scene, _ = shot((int(SIZE * 1.6), SIZE))
    blender_addon.register()
    try:
        from blender_addon.blender import result_plane

        frame = bpy.data.images.new("frame", 64, 64)
        stripes = np.zeros((64, 64, 4), np.float32)
        stripes[..., 3] = 1.0
        stripes[:, :, 1] = 0.35 + 0.3 * ((np.arange(64)[None, :] // 8) % 2)
        stripes[:4, :, 0] = stripes[-4:, :, 0] = stripes[:, :4, 0] = stripes[:, -4:, 0] = 1.0
        frame.pixels[:] = stripes.ravel()
        path = Path(tempfile.mkdtemp()) / "frame_0000.png"
        frame.filepath_raw, frame.file_format = str(path), "PNG"
        frame.save()
        result_plane.build_plane(scene, [path], "0" * 32)
        scene.display.shading.color_type = "TEXTURE"
        rgb = render(scene)
    finally:
        blender_addon.unregister()
    picture = out / "result_plane.png"
    save(rgb, picture)
    return picture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for made in (overlay_picture(args.out), result_plane_picture(args.out)):
        print(f"wrote {made}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
