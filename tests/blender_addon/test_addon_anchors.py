"""Anchored drags: a drag drawn on the object follows its surface point when the camera moves or
turns, the lens or the render resolution changes; one that leaves the view is flagged (real bpy)."""

from __future__ import annotations

import pytest
from addon_helpers import run_blender

pytestmark = pytest.mark.blender


def test_an_anchored_drag_follows_its_surface_point(addon_zip, tmp_path):
    out = run_blender(
        """
        from mathutils import Vector
        scene_sources = ext("blender.scene_sources")
        scene, cam, cube = make_scene(resolution=(96, 64))
        props = scene.puppet_master
        assert bpy.ops.puppet_master.drag_add() == {"FINISHED"}  # at the frame's centre: on the cube
        item = props.drags[0]
        anchored = item.anchor_object.name if item.anchor_object else None
        surface = cube.matrix_world @ Vector(item.anchor_co)
        delta = (item.end[0] - item.start[0], item.end[1] - item.start[1])
        def seen():  # where the surface point is in the square now, and where the drag starts
            bpy.context.view_layer.update()
            (x, y), = scene_sources.project_to_square(scene, [surface])
            return [x, y], list(item.start), [item.end[0] - item.start[0], item.end[1] - item.start[1]]
        steps = {}
        cam.location = (0.3, -4.0, 0.2)
        steps["moved"] = seen()
        cam.rotation_euler = (1.5707963 + 0.05, 0.0, 0.08)
        steps["turned"] = seen()
        cam.data.lens = 70.0
        steps["lens"] = seen()
        scene.render.resolution_x, scene.render.resolution_y = 64, 96
        steps["resolution"] = seen()
        warning_inside = props.anchor_warning
        cam.rotation_euler = (1.5707963, 0.0, 0.9)  # the cube leaves the view
        bpy.context.view_layer.update()
        warning_outside = props.anchor_warning
        cam.rotation_euler = (1.5707963, 0.0, 0.0)
        bpy.context.view_layer.update()
        emit(anchored=anchored, surface=list(surface), steps=steps, delta=list(delta),
             warning_inside=warning_inside, warning_outside=warning_outside, warning_back=props.anchor_warning)
        """,
        addon_zip, tmp_path,
    )
    assert out["anchored"] == "Cube"
    assert out["surface"][1] == pytest.approx(-0.5, abs=1e-4)  # the cube's front face
    for name, (want, start, delta) in out["steps"].items():
        assert start == pytest.approx(want, abs=1e-4), name
        assert delta == pytest.approx(out["delta"], abs=1e-4), name  # the end moves along
    assert out["steps"]["moved"][1] != pytest.approx([0.5, 0.5], abs=1e-3)
    assert out["warning_inside"] == ""
    assert out["warning_outside"].startswith("Drag 1 is anchored to a point outside the camera's view")
    assert out["warning_back"] == ""
