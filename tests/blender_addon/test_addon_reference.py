"""Render Reference never sees a result plane, whichever camera it belongs to (real bpy renders)."""

from __future__ import annotations

import pytest
from addon_helpers import run_blender

pytestmark = pytest.mark.blender


def test_reference_render_hides_result_planes_of_every_camera(addon_zip, tmp_path):
    out = run_blender(
        """
        import numpy as np
        reference, result_plane = ext("blender.reference"), ext("blender.result_plane")
        scene, cam, cube = make_scene(resolution=(64, 64))
        props = scene.puppet_master
        props.reference_size = 64
        assert bpy.ops.puppet_master.render_reference() == {"FINISHED"}
        before = reference.image_array(props.reference_alpha).copy()
        # an opaque grey frame sequence on a plane in front of this camera, and one of a second camera
        frame = bpy.data.images.new("grey", 8, 8)
        frame.pixels[:] = [0.5, 0.5, 0.5, 1.0] * 64
        path = os.path.join(os.environ["PM_WORKDIR"], "frame_0000.png")
        frame.filepath_raw = path
        frame.file_format = "PNG"
        frame.save()
        plane = result_plane.build_plane(scene, [path], "a" * 32)
        other = bpy.data.objects.new("Cam2", bpy.data.cameras.new("Cam2"))
        scene.collection.objects.link(other)
        other.location, other.rotation_euler = (0.0, -3.0, 0.0), cam.rotation_euler
        scene.camera = other
        second = result_plane.build_plane(scene, [path], "b" * 32, replace=False)
        scene.camera = cam
        assert bpy.ops.puppet_master.render_reference() == {"FINISHED"}
        after = reference.image_array(props.reference_alpha)
        emit(max_diff=float(np.abs(after - before).max()), cube_pixels=int((before[..., 3] > 0.5).sum()),
             hidden=[plane.hide_render, second.hide_render], in_front=plane.parent.name)
        """,
        addon_zip, tmp_path,
    )
    assert out["cube_pixels"] > 100 and out["in_front"] == "Cam"
    assert out["max_diff"] == 0.0  # the same pixels as before any plane existed
    assert out["hidden"] == [False, False]  # the planes still render in the artist's own renders


def test_a_blank_reference_is_flagged_and_not_sent_and_new_drags_get_spots_of_their_own(addon_zip, tmp_path):
    out = run_blender(
        """
        scene, cam, cube = make_scene(resolution=(64, 64))
        bpy.data.objects.remove(cube)
        empty = bpy.data.objects.new("Rig", None)  # an asset of empties only renders nothing
        scene.collection.objects.link(empty)
        props = scene.puppet_master
        props.reference_size = 64
        assert bpy.ops.puppet_master.render_reference() == {"FINISHED"}
        warning = props.reference_warning
        for _ in range(3):
            bpy.ops.puppet_master.drag_add()
        starts = [tuple(d.start) for d in props.drags]
        prefs().endpoint = "tcp://127.0.0.1:9"
        try:
            bpy.ops.puppet_master.generate()
            refused = ""
        except RuntimeError as exc:
            refused = str(exc)
        # with something in front of the camera the warning goes away
        bpy.ops.mesh.primitive_cube_add(size=1.0)
        bpy.ops.puppet_master.render_reference()
        emit(warning=warning, refused=refused, starts=starts, after=props.reference_warning,
             jobs=len(ext("blender.runtime").STATE.controllers))
        """,
        addon_zip, tmp_path,
    )
    assert out["warning"].startswith("the reference is empty: nothing renders in front of the camera")
    assert "the reference is empty" in out["refused"] and out["jobs"] == 0
    assert len({tuple(s) for s in out["starts"]}) == 3
    assert out["after"] == ""
