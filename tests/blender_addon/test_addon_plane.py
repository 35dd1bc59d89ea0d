"""The result plane covers the camera's square whatever the camera's object scale (real bpy)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from addon_helpers import run_blender

pytestmark = pytest.mark.blender

FRAME = """
def grey_frame():
    frame = bpy.data.images.new("grey", 8, 8)
    path = os.path.join(os.environ["PM_WORKDIR"], "frame_0000.png")
    frame.filepath_raw, frame.file_format = path, "PNG"
    frame.save()
    return path
"""


def test_a_non_uniformly_scaled_camera_gets_an_unstretched_plane(addon_zip, tmp_path):
    out = run_blender(
        """
        result_plane = ext("blender.result_plane")
        scene, cam, cube = make_scene(resolution=(96, 64))
        path = grey_frame()
        def world_corners(plane):
            return [list(plane.matrix_world @ v.co) for v in plane.data.vertices]
        plain = world_corners(result_plane.build_plane(scene, [path], "a" * 32))
        results = {}
        for scale in ((1.0, 2.0, 1.0), (0.5, 0.5, 3.0)):
            cam.scale = scale
            bpy.context.view_layer.update()
            results[str(scale)] = world_corners(result_plane.build_plane(scene, [path], "b" * 32))
        cam.scale = (1.0, 0.0, 1.0)
        bpy.context.view_layer.update()
        try:
            result_plane.build_plane(scene, [path], "c" * 32)
            zero = ""
        except ValueError as exc:
            zero = str(exc)
        emit(plain=plain, results=results, zero=zero)
        """,
        addon_zip, tmp_path, setup=FRAME,
    )
    plain = out["plain"]
    for scale, corners in out["results"].items():
        for got, want in zip(corners, plain, strict=True):
            assert got == pytest.approx(want, abs=1e-5), scale
    assert "scaled to zero" in out["zero"] and "set its scale to 1" in out["zero"]


def test_results_belong_to_their_camera_and_variants_stack_in_front(addon_zip, tmp_path):
    out = run_blender(
        """
        from bpy_extras.object_utils import world_to_camera_view
        result_plane = ext("blender.result_plane")
        scene, cam_a, cube = make_scene(resolution=(64, 64))
        path = grey_frame()
        cam_b = bpy.data.objects.new("CamB", bpy.data.cameras.new("CamB"))
        scene.collection.objects.link(cam_b)
        cam_b.location, cam_b.rotation_euler = (4.0, 0.0, 0.0), (1.5707963, 0.0, 1.5707963)
        def names(cam):
            return [p[ext("blender.reference").RESULT_PLANE_KEY] for p in result_plane.camera_planes(scene, cam)]
        result_plane.build_plane(scene, [path], "a" * 32)                 # camera A
        scene.camera = cam_b
        result_plane.build_plane(scene, [path], "b" * 32)                 # camera B: A's stays
        result_plane.build_plane(scene, [path], "c" * 32)                 # replaces B's only
        variant = result_plane.build_plane(scene, [path], "d" * 32, replace=False)  # a variant on B
        bpy.context.view_layer.update()
        planes = result_plane.camera_planes(scene, cam_b)
        depths = [(cam_b.matrix_world.inverted() @ p.matrix_world.translation).z for p in planes]
        # every plane of B still covers B's square exactly: its corners project to the frame's corners
        corners = [[list(world_to_camera_view(scene, cam_b, p.matrix_world @ v.co))[:2] for v in p.data.vertices]
                   for p in planes]
        emit(a=names(cam_a), b=names(cam_b), depths=depths, corners=corners, newest=variant.name)
        """,
        addon_zip, tmp_path, setup=FRAME,
    )
    assert out["a"] == ["a" * 32]
    assert out["b"] == ["c" * 32, "d" * 32]
    older, newer = out["depths"]
    assert newer > older  # nearer the camera (depths are negative): the newest result in front
    for plane in out["corners"]:
        assert sorted((round(x, 4), round(y, 4)) for x, y in plane) == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_a_plane_follows_a_change_of_render_resolution_and_lens(addon_zip, tmp_path):
    out = run_blender(
        """
        from bpy_extras.object_utils import world_to_camera_view
        result_plane, camera_frame = ext("blender.result_plane"), ext("core.camera_frame")
        scene, cam, cube = make_scene(resolution=(96, 64))
        path = grey_frame()
        plane = result_plane.build_plane(scene, [path], "a" * 32)
        def covered():
            bpy.context.view_layer.update()
            r = scene.render
            region = camera_frame.square_region(r.resolution_x, r.resolution_y)
            got = sorted((round(p.x, 4), round(1 - p.y, 4)) for p in
                         (world_to_camera_view(scene, cam, plane.matrix_world @ v.co) for v in plane.data.vertices))
            want = sorted((round(u, 4), round(v, 4)) for u in (region.u0, region.u1) for v in (region.v0, region.v1))
            return got, want
        before = covered()
        scene.render.resolution_x, scene.render.resolution_y = 64, 128  # portrait now
        after_resolution = covered()
        cam.data.lens = 85.0
        after_lens = covered()
        emit(before=before, after_resolution=after_resolution, after_lens=after_lens)
        """,
        addon_zip, tmp_path, setup=FRAME,
    )
    for name in ("before", "after_resolution", "after_lens"):
        got, want = out[name]
        assert got == want, name


def test_a_longer_scene_keeps_its_range_and_loops_over_the_clip(addon_zip, tmp_path):
    out = run_blender(
        """
        result_plane = ext("blender.result_plane")
        scene, cam, cube = make_scene(resolution=(64, 64))
        scene.frame_start, scene.frame_end = 1, 250
        result_plane.build_plane(scene, [grey_frame()] * 14, "a" * 32)
        longer = [scene.frame_start, scene.frame_end, scene.use_preview_range, scene.frame_preview_start,
                  scene.frame_preview_end]
        scene.use_preview_range = False
        scene.frame_start, scene.frame_end = 1, 5
        result_plane.build_plane(scene, [grey_frame()] * 14, "b" * 32)
        emit(longer=longer, shorter=[scene.frame_start, scene.frame_end, scene.use_preview_range])
        """,
        addon_zip, tmp_path, setup=FRAME,
    )
    assert out["longer"] == [1, 250, True, 1, 14]
    assert out["shorter"] == [1, 14, False]


def test_a_result_plays_from_its_start_frame_with_each_frame_held(addon_zip, tmp_path):
    out = run_blender(
        """
        result_plane = ext("blender.result_plane")
        scene, cam, cube = make_scene(resolution=(64, 64))
        scene.frame_start, scene.frame_end = 1, 20
        folder = os.path.join(os.environ["PM_WORKDIR"], "clip")
        os.makedirs(folder)
        paths = []
        for i in range(14):
            image = bpy.data.images.new(f"f{i}", 4, 4)
            path = os.path.join(folder, f"frame_{i:04d}.png")
            image.filepath_raw, image.file_format = path, "PNG"
            image.pixels = [i / 13.0, 0.0, 0.0, 1.0] * 16
            image.save()
            paths.append(path)
        plane = result_plane.build_plane(scene, [pathlib.Path(p) for p in paths], "a" * 32, start=10, hold=2)
        node = next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
        user = node.image_user
        scene.puppet_master.result_folder = folder
        scene.puppet_master.result_start, scene.puppet_master.result_hold = 10, 2
        assert bpy.ops.puppet_master.result_to_sequencer() == {"FINISHED"}
        strip = next(iter(scene.sequence_editor.strips_all))
        emit(range=[scene.frame_start, scene.frame_end], preview=scene.use_preview_range,
             user=[user.frame_start, user.frame_duration, user.frame_offset],
             image=bpy.path.abspath(node.image.filepath),
             strip=[int(strip.frame_final_start), int(strip.frame_final_duration),
                    [e.filename for e in strip.elements][:5]])
        """,
        addon_zip, tmp_path, setup="import pathlib\n",
    )
    assert out["range"] == [1, 37] and out["preview"] is True  # grown to the clip's end only
    assert out["user"] == [10, 28, -1]
    held = Path(out["image"])
    assert held.parent.name == "hold_2" and held.name == "frame_0000.png"
    # scene frame 10 + 2k and 11 + 2k show generated frame k: the held files are that frame
    for k in range(14):
        for position in (2 * k, 2 * k + 1):
            assert os.path.samefile(held.parent / f"frame_{position:04d}.png", held.parent.parent / f"frame_{k:04d}.png")
    assert out["strip"] == [10, 28, ["frame_0000.png", "frame_0000.png", "frame_0001.png", "frame_0001.png",
                                     "frame_0002.png"]]
