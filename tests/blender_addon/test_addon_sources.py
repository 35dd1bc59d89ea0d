"""Drag from Object: an animated empty or pose bone, projected through the camera, is the drag
(real bpy; the expected positions come from bpy_extras' world_to_camera_view, frame by frame)."""

from __future__ import annotations

import pytest
from addon_helpers import run_blender

pytestmark = pytest.mark.blender

EXPECTED = """
from bpy_extras.object_utils import world_to_camera_view
def expected(scene, position_at, frames):
    r = scene.render
    region = ext("core.camera_frame").square_region(r.resolution_x, r.resolution_y, r.pixel_aspect_x, r.pixel_aspect_y)
    out = []
    for f in frames:
        whole = int(f // 1)
        scene.frame_set(whole, subframe=f - whole)
        p = world_to_camera_view(scene, scene.camera, position_at())
        out.append(list(region.frame_to_square(p.x, 1.0 - p.y)))
    scene.frame_set(1)
    return out
"""


def test_a_keyframed_empty_and_a_pose_bone_become_drags_that_follow_their_animation(addon_zip, tmp_path):
    out = run_blender(
        """
        scene, cam, cube = make_scene(resolution=(96, 64))
        scene.frame_set(1)
        empty = bpy.data.objects.new("Handle", None)
        scene.collection.objects.link(empty)
        empty.location = (0.0, -0.5, 0.0)  # on the cube's front face
        empty.keyframe_insert("location", frame=1)
        empty.location = (0.35, -0.5, 0.3)
        empty.keyframe_insert("location", frame=14)  # Bezier keys: eased in and out
        props = scene.puppet_master
        props.reference_size = 64
        bpy.ops.puppet_master.render_reference()
        assert bpy.ops.puppet_master.drag_from_object(target="Handle") == {"FINISHED"}
        scene_drags = ext("blender.scene_drags")
        sent = [list(p) for p in scene_drags.scene_drag_list(scene)[0].path]
        want = expected(scene, lambda: empty.matrix_world.translation.copy(), range(1, 15))
        warning = props.drag_warning
        # the animation changes: the drag follows at the next Generate
        empty.location = (-0.35, -0.5, -0.3)
        empty.keyframe_insert("location", frame=14)
        changed = [list(p) for p in scene_drags.scene_drag_list(scene)[0].path]
        want_changed = expected(scene, lambda: empty.matrix_world.translation.copy(), range(1, 15))
        # 28 frames resampled to 14 (subframes), from a pose bone
        arm_data = bpy.data.armatures.new("Rig")
        arm = bpy.data.objects.new("Rig", arm_data)
        scene.collection.objects.link(arm)
        bpy.context.view_layer.objects.active = arm
        bpy.ops.object.mode_set(mode="EDIT")
        bone = arm_data.edit_bones.new("Hand")
        bone.head, bone.tail = (0.0, -0.5, 0.0), (0.0, -0.5, 0.2)
        bpy.ops.object.mode_set(mode="POSE")
        pb = arm.pose.bones["Hand"]
        pb.location = (0.0, 0.0, 0.0)
        pb.keyframe_insert("location", frame=1)
        pb.location = (0.3, 0.0, 0.0)
        pb.keyframe_insert("location", frame=28)
        bpy.ops.object.mode_set(mode="OBJECT")
        scene.frame_set(1)
        assert bpy.ops.puppet_master.drag_from_object(target="Rig:Hand", frame_count=28) == {"FINISHED"}
        bone_sent = [list(p) for p in scene_drags.scene_drag_list(scene)[1].path]
        times = [1 + k * 27 / 13 for k in range(14)]
        bone_want = expected(scene, lambda: arm.matrix_world @ arm.pose.bones["Hand"].head, times)
        errors = []
        for bad in ("Nope", "Rig:Nope", "Rig:"):
            try:
                bpy.ops.puppet_master.drag_from_object(target=bad)
            except RuntimeError as exc:
                errors.append(str(exc))
        emit(sent=sent, want=want, changed=changed, want_changed=want_changed, bone_sent=bone_sent,
             bone_want=bone_want, warning=warning, errors=errors, drags=len(props.drags), frame=scene.frame_current,
             source=props.drags[0].source)
        """,
        addon_zip, tmp_path, setup=EXPECTED,
    )
    for got, want in ((out["sent"], out["want"]), (out["changed"], out["want_changed"]),
                      (out["bone_sent"], out["bone_want"])):
        assert len(got) == 14 and len({tuple(p) for p in got}) == 14
        for g, w in zip(got, want, strict=True):
            assert g == pytest.approx(w, abs=1e-4)
    assert out["sent"] != out["changed"]
    gaps = [abs(b[0] - a[0]) for a, b in zip(out["sent"], out["sent"][1:], strict=False)]
    assert gaps[0] < gaps[6] > gaps[-1]  # the keys' easing is the drag's timing
    assert out["warning"] == ""  # it starts on the cube
    assert out["drags"] == 2 and out["frame"] == 1 and out["source"] == "Handle"
    assert "no object 'Nope'" in out["errors"][0] and "no pose bone 'Nope'" in out["errors"][1]
    assert "ARMATURE:BONE" in out["errors"][2]


def test_with_two_segments_a_drag_from_an_object_follows_its_animation_over_27_samples(addon_zip, tmp_path):
    out = run_blender(
        """
        scene, cam, cube = make_scene(resolution=(64, 64))
        scene.frame_set(1)
        empty = bpy.data.objects.new("Handle", None)
        scene.collection.objects.link(empty)
        for frame, location in ((1, (0.0, -0.5, 0.0)), (14, (0.3, -0.5, 0.3)), (27, (0.0, -0.5, 0.35))):
            empty.location = location
            empty.keyframe_insert("location", frame=frame)
        props = scene.puppet_master
        props.reference_size = 64
        bpy.ops.puppet_master.render_reference()
        assert bpy.ops.puppet_master.drag_from_object(target="Handle", frame_start=1, frame_count=27) == {"FINISHED"}
        scene_drags = ext("blender.scene_drags")
        one = [list(p) for p in scene_drags.scene_drag_list(scene)[0].path]
        props.segments = 2
        two = [list(p) for p in scene_drags.scene_drag_list(scene)[0].path]
        want = expected(scene, lambda: empty.matrix_world.translation.copy(), range(1, 28))
        emit(one=len(one), two=two, want=want)
        """,
        addon_zip, tmp_path, setup=EXPECTED,
    )
    assert out["one"] == 14 and len(out["two"]) == 27
    for got, want in zip(out["two"], out["want"], strict=True):  # one sample per scene frame: no resampling
        assert got == pytest.approx(want, abs=1e-4)
