"""The camera convention shared by the renderer, the drag sampler and the Blender add-on.

NumPy and the standard library only: Blender's Python imports this module too.

- **Camera axes (OpenCV):** x to the right of the image, y down the image, z forward (the viewing
  direction). ``world_to_camera`` is a 4x4 matrix mapping homogeneous world points to these axes.
- **World:** Blender's world, Z up, metres (after the renderer's normalisation, the animated object
  fits the cube ``[-0.5, 0.5]^3``). Azimuth 0 looks at the object's front: the camera sits on the
  -Y axis (glTF's +Z "front" imports as Blender's -Y); azimuth grows counter-clockwise seen from
  above (towards +X); elevation is measured up from the XY plane.
- **Pixels:** ``(0, 0)`` is the top-left corner of the top-left pixel; the centre of pixel
  ``(col, row)`` is ``(col + 0.5, row + 0.5)``. Normalised coordinates are ``pixel / size`` (x by the
  width, y by the height), the convention of ``puppet_master.drags``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: the lens of the released renderer: 35 mm focal length on a 32 mm sensor
DEFAULT_FOCAL_MM = 35.0
DEFAULT_SENSOR_MM = 32.0
#: camera distance range for an object normalised into the unit cube (the released renderer's)
DEFAULT_DISTANCE_RANGE = (1.5, 2.2)
#: elevation range in degrees (northern hemisphere: cameras above the object's equator)
DEFAULT_ELEVATION_RANGE = (5.0, 35.0)

CONVENTION_TEXT = (
    "OpenCV camera axes: x right, y down, z forward (viewing direction); world_to_camera maps "
    "homogeneous world points to camera axes. World: Blender world, Z up, after normalisation "
    "(p_norm = scale * p + offset, the whole clip fits [-0.5, 0.5]^3). Azimuth 0 = camera on -Y "
    "(front), counter-clockwise seen from above; elevation up from the XY plane. Pixel (0, 0) is the "
    "top-left corner of the top-left pixel (pixel centres at +0.5); normalised = pixel / [W, H]."
)

# Blender camera axes (x right, y up, z backwards) -> OpenCV camera axes (x right, y down, z forward)
_BLENDER_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class View:
    """One camera on the sphere around the origin."""

    azimuth_deg: float
    elevation_deg: float
    distance: float


def fov_deg(focal_mm: float = DEFAULT_FOCAL_MM, sensor_mm: float = DEFAULT_SENSOR_MM) -> float:
    """Field of view (degrees) across the sensor width."""
    return math.degrees(2.0 * math.atan(sensor_mm / (2.0 * focal_mm)))


def intrinsics(
    width: int,
    height: int,
    focal_mm: float = DEFAULT_FOCAL_MM,
    sensor_mm: float = DEFAULT_SENSOR_MM,
) -> np.ndarray:
    """The 3x3 pinhole matrix of a Blender camera with sensor fit AUTO (square pixels).

    AUTO fit puts the sensor width along the larger image side; the principal point is the image
    centre, ``(W / 2, H / 2)`` with pixel (0, 0) at the top-left corner of the top-left pixel.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if focal_mm <= 0 or sensor_mm <= 0:
        raise ValueError(f"focal length and sensor size must be positive, got {focal_mm}, {sensor_mm}")
    f = focal_mm / sensor_mm * max(width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def view_position(view: View, target: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """World position of the camera of ``view`` (see the module docstring for the angles)."""
    az, el = math.radians(view.azimuth_deg), math.radians(view.elevation_deg)
    direction = np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])
    return np.asarray(target, dtype=np.float64) + view.distance * direction


def look_at(
    eye: Sequence[float], target: Sequence[float] = (0.0, 0.0, 0.0), up: Sequence[float] = (0.0, 0.0, 1.0)
) -> np.ndarray:
    """4x4 world-to-camera (OpenCV axes) of a camera at ``eye`` looking at ``target``, roll-free."""
    eye_arr = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye_arr
    norm = np.linalg.norm(forward)
    if norm == 0:
        raise ValueError("camera position and target coincide")
    forward /= norm
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight up or down: any right vector will do
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # rows: camera axes in world coordinates
    w2c = np.eye(4)
    w2c[:3, :3] = rotation
    w2c[:3, 3] = -rotation @ eye_arr
    return w2c


def view_world_to_camera(view: View, target: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """World-to-camera (OpenCV) of ``view`` looking at ``target``."""
    return look_at(view_position(view, target), target)


def opencv_to_blender_matrix_world(world_to_camera: np.ndarray) -> np.ndarray:
    """The ``matrix_world`` a Blender camera object needs to realise ``world_to_camera``."""
    return np.linalg.inv(np.asarray(world_to_camera, dtype=np.float64)) @ _BLENDER_TO_OPENCV


def blender_matrix_world_to_opencv(matrix_world: Sequence[Sequence[float]]) -> np.ndarray:
    """World-to-camera (OpenCV axes) of a Blender camera object with this ``matrix_world``.

    Scale in ``matrix_world`` is removed (Blender cameras ignore it).
    """
    m = np.array(matrix_world, dtype=np.float64)
    m[:3, :3] /= np.linalg.norm(m[:3, :3], axis=0, keepdims=True)
    return np.linalg.inv(m @ _BLENDER_TO_OPENCV)


def project(points: np.ndarray, k_matrix: np.ndarray, world_to_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points ``(..., 3)`` to pixels ``(..., 2)`` and camera depth ``(...)``.

    Depth is the z of the point in camera axes (positive in front of the camera); pixels of points
    at depth <= 0 are meaningless (NaN where the depth is exactly 0).
    """
    pts = np.asarray(points, dtype=np.float64)
    w2c = np.asarray(world_to_camera, dtype=np.float64)
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    depth = cam[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = cam @ np.asarray(k_matrix, dtype=np.float64).T
        pixels = uvw[..., :2] / uvw[..., 2:3]
    return pixels, depth


def pixels_to_normalized(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixels (origin at the top-left corner) -> fractions of the image, ``pixel / size``."""
    return np.asarray(pixels, dtype=np.float64) / np.array([width, height], dtype=np.float64)


def normalized_to_pixels(normalized: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fractions of the image -> pixels (origin at the top-left corner of the top-left pixel)."""
    return np.asarray(normalized, dtype=np.float64) * np.array([width, height], dtype=np.float64)


def inside_image(pixels: np.ndarray, width: int, height: int, margin: float = 0.0) -> np.ndarray:
    """Boolean mask of pixels inside ``[margin, size - margin]`` on both axes."""
    px = np.asarray(pixels, dtype=np.float64)
    ok = (px[..., 0] >= margin) & (px[..., 0] <= width - margin)
    return ok & (px[..., 1] >= margin) & (px[..., 1] <= height - margin)


def sample_views(
    num_views: int,
    seed: int = 0,
    distance_range: Sequence[float] = DEFAULT_DISTANCE_RANGE,
    elevation_range: Sequence[float] = DEFAULT_ELEVATION_RANGE,
    azimuth_offset: float | None = 0.0,
) -> list[View]:
    """``num_views`` cameras on the northern hemisphere at uniform azimuth.

    View ``i`` sits at azimuth ``offset + 360 * i / num_views`` (view 0 is the front view when the
    offset is 0; ``azimuth_offset=None`` draws the offset from the seed); elevation and distance are
    drawn uniformly from their ranges with a generator seeded by ``seed``.
    """
    if num_views < 1:
        raise ValueError(f"need at least one view, got {num_views}")
    lo_d, hi_d = (float(v) for v in distance_range)
    lo_e, hi_e = (float(v) for v in elevation_range)
    if not 0 < lo_d <= hi_d:
        raise ValueError(f"distance range must satisfy 0 < min <= max, got {distance_range}")
    if not -90 <= lo_e <= hi_e <= 90:
        raise ValueError(f"elevation range must lie in [-90, 90] with min <= max, got {elevation_range}")
    rng = np.random.default_rng(seed)
    offset = float(rng.uniform(0.0, 360.0)) if azimuth_offset is None else float(azimuth_offset)
    elevations = rng.uniform(lo_e, hi_e, size=num_views)
    distances = rng.uniform(lo_d, hi_d, size=num_views)
    return [
        View((offset + 360.0 * i / num_views) % 360.0, float(elevations[i]), float(distances[i]))
        for i in range(num_views)
    ]


def fit_distance(
    view: View,
    corners: np.ndarray,
    k_matrix: np.ndarray,
    width: int,
    height: int,
    margin_px: float = 1.0,
    step: float = 1.05,
    max_steps: int = 200,
) -> View:
    """``view`` moved back (same angles) until every point of ``corners`` projects inside the image.

    Used with the 8 corners of the whole clip's bounding box, it guarantees that the object stays
    in the frame for the entire clip (the projection of a box contains the projection of its content).
    """
    current = view
    for _ in range(max_steps):
        pixels, depth = project(corners, k_matrix, view_world_to_camera(current))
        if (depth > 0).all() and inside_image(pixels, width, height, margin_px).all():
            return current
        current = View(current.azimuth_deg, current.elevation_deg, current.distance * step)
    raise ValueError(f"cannot fit the bounding box into the image from view {view}")


def camera_record(index: int, view: View, k_matrix: np.ndarray, world_to_camera: np.ndarray, fov: float) -> dict:
    """One entry of ``cameras.json``'s ``views`` list."""
    return {
        "index": index,
        "K": np.asarray(k_matrix, dtype=np.float64).tolist(),
        "world_to_camera": np.asarray(world_to_camera, dtype=np.float64).tolist(),
        "azimuth_deg": view.azimuth_deg,
        "elevation_deg": view.elevation_deg,
        "distance": view.distance,
        "fov_deg": fov,
    }


def load_camera_arrays(cameras: dict) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """From a parsed ``cameras.json``: ``K (V, 3, 3)``, ``world_to_camera (V, 4, 4)``, ``(W, H)``."""
    views = sorted(cameras["views"], key=lambda v: v["index"])
    k_matrix = np.array([v["K"] for v in views], dtype=np.float64)
    w2c = np.array([v["world_to_camera"] for v in views], dtype=np.float64)
    width, height = (int(v) for v in cameras["image_size"])
    return k_matrix, w2c, (width, height)
