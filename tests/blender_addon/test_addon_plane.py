"""The result plane covers the camera's square whatever the camera's object scale (real bpy)."""

from __future__ import annotations

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
