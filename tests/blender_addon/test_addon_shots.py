"""Drags belong to their camera: each camera's shot keeps its own drags, and editing one shot with
the drag tool leaves the others (and each drag's timing) alone (real bpy)."""

from __future__ import annotations

import pytest
from addon_helpers import run_blender

pytestmark = pytest.mark.blender


def test_each_camera_keeps_its_own_drags(addon_zip, tmp_path):
    out = run_blender(
        """
        from types import SimpleNamespace
        dt, scene_drags = ext("blender.drag_tool"), ext("blender.scene_drags")
        scene, cam_a, cube = make_scene(resolution=(64, 64))
        cam_b = bpy.data.objects.new("CamB", cam_a.data.copy())
        scene.collection.objects.link(cam_b)
        cam_b.location, cam_b.rotation_euler = (0.0, -5.0, 0.5), cam_a.rotation_euler
        props = scene.puppet_master
        for _ in range(3):
            bpy.ops.puppet_master.drag_add()
        props.drags[0].timing, props.drags[2].timing = "EASE_IN", "EASE_OUT"
        scene.camera = cam_b
        shot_b_empty = len(scene_drags.shot_indices(scene))
        bpy.ops.puppet_master.drag_add()
        b_drags = [list(d.start) for d in scene_drags.scene_drag_list(scene)]
        scene.camera = cam_a
        a_drags = len(scene_drags.scene_drag_list(scene))
        # the drag tool deletes camera A's middle drag: B's drag and A's timings stay where they were
        editor = dt.editor_from_scene(scene)
        del editor.drags[1], editor.shapes[1], editor.keys[1]
        dt.editor_to_scene(editor, scene)
        a_timings = [d.timing for d in scene_drags.shot_drags(scene)]
        scene.camera = cam_b
        b_after = [list(d.start) for d in scene_drags.scene_drag_list(scene)]
        emit(shot_b_empty=shot_b_empty, b_drags=b_drags, a_drags=a_drags, a_timings=a_timings, b_after=b_after,
             total=len(props.drags), cameras=[d.camera.name for d in props.drags])
        """,
        addon_zip, tmp_path,
    )
    assert out["shot_b_empty"] == 0 and len(out["b_drags"]) == 1 and out["a_drags"] == 3
    assert out["a_timings"] == ["EASE_IN", "EASE_OUT"]
    assert out["b_after"] == out["b_drags"]
    assert out["total"] == 3 and sorted(out["cameras"]) == ["Cam", "Cam", "CamB"]
