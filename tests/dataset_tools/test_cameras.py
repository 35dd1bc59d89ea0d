"""puppet_master.cameras: intrinsics, OpenCV extrinsics, projection, views; checked against Blender."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from puppet_master import cameras

ROOT = Path(__file__).resolve().parents[2]


def test_intrinsics_of_35mm_lens_on_32mm_sensor():
    k = cameras.intrinsics(256, 256)
    assert k[0, 0] == pytest.approx(35 / 32 * 256) and k[1, 1] == k[0, 0]
    assert (k[0, 2], k[1, 2]) == (128.0, 128.0)
    assert cameras.fov_deg() == pytest.approx(2 * np.degrees(np.arctan(16 / 35)))
    wide = cameras.intrinsics(64, 48)  # sensor fit AUTO: the sensor width spans the larger side
    assert wide[0, 0] == pytest.approx(35 / 32 * 64) and (wide[0, 2], wide[1, 2]) == (32.0, 24.0)
    with pytest.raises(ValueError, match="positive"):
        cameras.intrinsics(0, 10)


def test_look_at_axes_follow_opencv_convention():
    w2c = cameras.look_at((0.0, -2.0, 0.0))  # in front of the object, looking along +Y
    np.testing.assert_allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3), atol=1e-12)
    k = cameras.intrinsics(100, 100)
    pixels, depth = cameras.project(np.array([[0, 0, 0], [0.1, 0, 0], [0, 0, 0.1]]), k, w2c)
    np.testing.assert_allclose(depth, [2.0, 2.0, 2.0])
    np.testing.assert_allclose(pixels[0], [50, 50])
    assert pixels[1, 0] > 50 and pixels[1, 1] == pytest.approx(50), "world +X (right) -> image right"
    assert pixels[2, 1] < 50 and pixels[2, 0] == pytest.approx(50), "world +Z (up) -> image up (smaller row)"
    _, behind = cameras.project(np.array([[0.0, -3.0, 0.0]]), k, w2c)
    assert behind[0] < 0


def test_view_angles():
    front = cameras.view_position(cameras.View(0.0, 0.0, 2.0))
    np.testing.assert_allclose(front, [0, -2, 0], atol=1e-12)
    side = cameras.view_position(cameras.View(90.0, 0.0, 2.0))
    np.testing.assert_allclose(side, [2, 0, 0], atol=1e-12)
    high = cameras.view_position(cameras.View(0.0, 90.0, 1.5))
    np.testing.assert_allclose(high, [0, 0, 1.5], atol=1e-12)
    w2c = cameras.view_world_to_camera(cameras.View(0.0, 90.0, 1.5))  # straight down still works
    assert np.isfinite(w2c).all()


def test_blender_matrix_round_trip():
    w2c = cameras.view_world_to_camera(cameras.View(33.0, 21.0, 1.7))
    matrix_world = cameras.opencv_to_blender_matrix_world(w2c)
    # Blender cameras look down their local -Z with +Y up
    np.testing.assert_allclose(matrix_world[:3, :3] @ [0, 0, -1], w2c[2, :3], atol=1e-12)
    np.testing.assert_allclose(cameras.blender_matrix_world_to_opencv(matrix_world), w2c, atol=1e-12)
    scaled = matrix_world.copy()
    scaled[:3, :3] *= 3.0
    np.testing.assert_allclose(cameras.blender_matrix_world_to_opencv(scaled), w2c, atol=1e-12)


def test_normalised_coordinates_match_drag_convention():
    px = np.array([[0.0, 0.0], [256.0, 128.0], [12.5, 200.0]])
    norm = cameras.pixels_to_normalized(px, 256, 256)
    np.testing.assert_allclose(norm, [[0, 0], [1, 0.5], [12.5 / 256, 200 / 256]])
    np.testing.assert_allclose(cameras.normalized_to_pixels(norm, 256, 256), px)
    assert cameras.inside_image(px, 256, 256).all()
    assert not cameras.inside_image(np.array([[-0.1, 3.0]]), 256, 256).any()


def test_sample_views_uniform_azimuth_seeded_ranges():
    views = cameras.sample_views(12, seed=3)
    az = np.array([v.azimuth_deg for v in views])
    np.testing.assert_allclose(np.diff(az), 30.0)
    assert views[0].azimuth_deg == 0.0
    assert all(1.5 <= v.distance <= 2.2 and 5 <= v.elevation_deg <= 35 for v in views)
    assert views == cameras.sample_views(12, seed=3)
    assert views != cameras.sample_views(12, seed=4)
    offset = cameras.sample_views(4, seed=1, azimuth_offset=None)
    assert offset[0].azimuth_deg != 0.0 and np.allclose(np.diff([v.azimuth_deg for v in offset]) % 360, 90)
    with pytest.raises(ValueError, match="distance"):
        cameras.sample_views(2, distance_range=(2.0, 1.0))


def test_fit_distance_brings_the_box_into_the_image():
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    k = cameras.intrinsics(64, 64)
    close = cameras.View(45.0, 10.0, 1.0)
    pixels, _ = cameras.project(corners, k, cameras.view_world_to_camera(close))
    assert not cameras.inside_image(pixels, 64, 64).all()
    fitted = cameras.fit_distance(close, corners, k, 64, 64)
    assert fitted.distance > close.distance and fitted.azimuth_deg == close.azimuth_deg
    pixels, depth = cameras.project(corners, k, cameras.view_world_to_camera(fitted))
    assert cameras.inside_image(pixels, 64, 64, margin=1.0).all() and (depth > 0).all()
    far = cameras.View(45.0, 10.0, 5.0)
    assert cameras.fit_distance(far, corners, k, 64, 64) == far


def test_camera_record_round_trip():
    k = cameras.intrinsics(32, 32)
    views = cameras.sample_views(3, seed=0)
    records = [cameras.camera_record(i, v, k, cameras.view_world_to_camera(v), 49.0) for i, v in enumerate(views)]
    data = json.loads(json.dumps({"image_size": [32, 32], "views": records[::-1]}))
    ks, w2cs, size = cameras.load_camera_arrays(data)
    assert size == (32, 32) and ks.shape == (3, 3, 3) and w2cs.shape == (3, 4, 4)
    np.testing.assert_allclose(w2cs[1], cameras.view_world_to_camera(views[1]))


BLENDER_PROJECTION = textwrap.dedent(
    """
    import json, sys
    import bpy
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix, Vector
    sys.path.insert(0, sys.argv[1])
    from puppet_master import cameras
    width, height = 64, 48
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height
    data = bpy.data.cameras.new("cam")
    data.lens, data.sensor_width, data.sensor_fit = 35.0, 32.0, "AUTO"
    cam = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(cam)
    view = cameras.View(40.0, 25.0, 1.8)
    w2c = cameras.view_world_to_camera(view, target=(0.1, -0.05, 0.2))
    cam.matrix_world = Matrix(cameras.opencv_to_blender_matrix_world(w2c).tolist())
    bpy.context.view_layer.update()
    points = [(0.1, 0.2, 0.3), (-0.3, 0.1, 0.0), (0.25, -0.25, 0.45)]
    out = []
    for p in points:
        ndc = world_to_camera_view(scene, cam, Vector(p))  # x, y from the bottom-left, z = depth
        out.append([ndc.x * width, (1.0 - ndc.y) * height, ndc.z])
    recovered = cameras.blender_matrix_world_to_opencv([list(r) for r in cam.matrix_world])
    print(json.dumps({"blender": out, "points": points, "w2c": w2c.tolist(), "recovered": recovered.tolist()}))
    """
)


@pytest.mark.blender
def test_projection_matches_blender(tmp_path):
    pytest.importorskip("bpy")
    script = tmp_path / "project.py"
    script.write_text(BLENDER_PROJECTION)
    result = subprocess.run(
        [sys.executable, str(script), str(ROOT / "backend")], capture_output=True, text=True, timeout=120, check=True
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    blender = np.array(data["blender"])
    pixels, depth = cameras.project(np.array(data["points"]), cameras.intrinsics(64, 48), np.array(data["w2c"]))
    np.testing.assert_allclose(pixels, blender[:, :2], atol=1e-4)
    np.testing.assert_allclose(depth, blender[:, 2], atol=1e-5)
    np.testing.assert_allclose(np.array(data["recovered"]), np.array(data["w2c"]), atol=1e-5)
