"""Drawing the drag overlay in the 3D viewport with the gpu module (thin: geometry is in overlay_geometry)."""

from __future__ import annotations

import itertools

import bpy

from ..core import camera_frame, overlay_geometry
from . import scene_drags

DRAG_COLOUR = (1.0, 0.55, 0.05, 1.0)
ACTIVE_COLOUR = (1.0, 0.9, 0.2, 1.0)
START_COLOUR = (0.1, 0.8, 1.0, 1.0)
FRAME_COLOUR = (1.0, 1.0, 1.0, 0.35)

_handle = None


def view_mapping(context) -> overlay_geometry.SquareMapping | None:
    """The square <-> region pixel mapping of the current 3D view, or None when not in camera view."""
    rv3d = getattr(context, "region_data", None)
    region = getattr(context, "region", None)
    scene = context.scene
    camera = scene.camera if scene else None
    if rv3d is None or region is None or camera is None or camera.type != "CAMERA" or rv3d.view_perspective != "CAMERA":
        return None
    box = camera_frame.FrameBox.from_corners([tuple(v) for v in camera.data.view_frame(scene=scene)])
    try:
        return overlay_geometry.camera_square_mapping(
            [list(row) for row in rv3d.perspective_matrix],
            [list(row) for row in camera.matrix_world],
            box.centred_square().corners(),
            region.width,
            region.height,
        )
    except ValueError:
        return None


def scene_shapes(scene, mapping) -> list[overlay_geometry.ArrowShape]:
    return overlay_geometry.arrow_shapes(mapping, *scene_drags.overlay_data(scene))


def _xyz(points) -> list[tuple[float, float, float]]:
    return [(float(x), float(y), 0.0) for x, y in points]


def _draw() -> None:
    import blf
    import gpu
    from gpu_extras.batch import batch_for_shader

    context = bpy.context
    scene = context.scene
    if scene is None or not hasattr(scene, "puppet_master"):
        return
    mapping = view_mapping(context)
    if mapping is None:
        return
    props = scene.puppet_master
    # wide lines need the polyline shader (plain line width is not supported on every GPU backend)
    lines = gpu.shader.from_builtin("POLYLINE_UNIFORM_COLOR")
    lines.uniform_float("viewportSize", gpu.state.viewport_get()[2:])
    lines.uniform_float("lineWidth", 2.0)
    fill = gpu.shader.from_builtin("UNIFORM_COLOR")
    gpu.state.blend_set("ALPHA")

    def draw_lines(points, colour):
        lines.uniform_float("color", colour)
        batch_for_shader(lines, "LINES", {"pos": _xyz(points)}).draw(lines)

    def draw_tris(points, colour):
        fill.uniform_float("color", colour)
        batch_for_shader(fill, "TRIS", {"pos": _xyz(points)}).draw(fill)

    if props.reference_note:  # non-square render: outline the square the model sees
        square = [mapping.to_region(x, y) for x, y in ((0, 0), (1, 0), (1, 1), (0, 1))]
        draw_lines([p for i in range(4) for p in (square[i], square[(i + 1) % 4])], FRAME_COLOUR)
    for shape in scene_shapes(scene, mapping):
        colour = ACTIVE_COLOUR if shape.index == props.active_drag else DRAG_COLOUR
        path = shape.path or (shape.start, shape.end)
        draw_lines([p for a, b in itertools.pairwise(path) for p in (a, b)], colour)
        if shape.ticks:
            draw_lines([p for tick in shape.ticks for p in tick], colour)
        draw_tris(shape.head, colour)
        handles = [(shape.start, START_COLOUR), (shape.end, colour)] + ([(shape.middle, colour)] if shape.middle else [])
        for centre, handle_colour in handles:
            ring = overlay_geometry.circle_points(centre)
            draw_tris([p for i in range(len(ring)) for p in (centre, ring[i], ring[(i + 1) % len(ring)])], handle_colour)
        blf.size(0, 14)
        blf.color(0, *colour)
        blf.position(0, shape.label_position[0], shape.label_position[1], 0)
        blf.draw(0, shape.label)
    gpu.state.blend_set("NONE")


def register() -> None:
    global _handle
    if _handle is None:
        _handle = bpy.types.SpaceView3D.draw_handler_add(_draw, (), "WINDOW", "POST_PIXEL")


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.types.SpaceView3D.draw_handler_remove(_handle, "WINDOW")
        _handle = None
