"""The result plane covers the camera's square whatever the camera's object scale (real bpy)."""

from __future__ import annotations

import pytest
from addon_helpers import run_blender

pytestmark = pytest.mark.blender


def test_a_non_uniformly_scaled_camera_gets_an_unstretched_plane(addon_zip, tmp_path):
    out = run_blender(
        """
        result_plane = ext("result_plane")
        scene, cam, cube = make_scene(resolution=(96, 64))
        frame = bpy.data.images.new("grey", 8, 8)
        path = os.path.join(os.environ["PM_WORKDIR"], "frame_0000.png")
        frame.filepath_raw, frame.file_format = path, "PNG"
        frame.save()
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
        addon_zip, tmp_path,
    )
    plain = out["plain"]
    for scale, corners in out["results"].items():
        for got, want in zip(corners, plain, strict=True):
            assert got == pytest.approx(want, abs=1e-5), scale
    assert "scaled to zero" in out["zero"] and "set its scale to 1" in out["zero"]
