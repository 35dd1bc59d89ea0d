"""Synthetic clip folders in the render format (tracks.npz, cameras.json, clip.json) for tests.

Parts are point sets with known motions; cameras come from ``puppet_master.cameras`` exactly as
render.py builds them. Frames are written only when asked (flat grey squares: enough for previews).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from puppet_master import cameras


def box_points(center, size, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points uniformly on the surface of an axis-aligned box."""
    center, size = np.asarray(center, float), np.asarray(size, float)
    pts = rng.uniform(-0.5, 0.5, (n, 3))
    axis = rng.integers(0, 3, n)
    pts[np.arange(n), axis] = rng.choice([-0.5, 0.5], n)
    return center + pts * size


def rotate_about(points: np.ndarray, pivot, axis, angle: float) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
    return (points - pivot) @ rot.T + pivot


def static(points: np.ndarray, t: int) -> np.ndarray:
    return np.repeat(points[None], t, axis=0)


def translating(points: np.ndarray, t: int, offset) -> np.ndarray:
    s = np.linspace(0, 1, t)[:, None, None]
    return points[None] + s * np.asarray(offset, float)


def hinged(points: np.ndarray, t: int, pivot, axis, angle: float) -> np.ndarray:
    return np.stack([rotate_about(points, pivot, axis, a) for a in np.linspace(0, angle, t)])


def write_clip(
    folder: Path,
    parts: dict[str, np.ndarray],
    *,
    num_views: int = 4,
    size: int = 64,
    bone_ids: dict[str, np.ndarray] | None = None,
    bone_names: list[str] | None = None,
    visibility: np.ndarray | None = None,
    write_frames: bool = False,
    asset_id: str | None = None,
    clip: str | None = None,
) -> Path:
    """A clip folder from ``{part name: (T, S_p, 3) positions}``; every point visible unless given."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(parts)
    points = np.concatenate([parts[n] for n in names], axis=1).astype(np.float32)
    t, s, _ = points.shape
    part_ids = np.concatenate([np.full(parts[n].shape[1], i) for i, n in enumerate(names)]).astype(np.int32)
    bones = np.full(s, -1, np.int32)
    if bone_ids:
        bones = np.concatenate([bone_ids.get(n, np.full(parts[n].shape[1], -1)) for n in names]).astype(np.int32)
    if visibility is None:
        visibility = np.ones((num_views, t, s), bool)
    intrinsics = cameras.intrinsics(size, size)
    views = []
    for i, view in enumerate(cameras.sample_views(num_views, seed=1, distance_range=(2.0, 2.0))):
        views.append(cameras.camera_record(i, view, intrinsics, cameras.view_world_to_camera(view), cameras.fov_deg()))
    (folder / "cameras.json").write_text(
        json.dumps({"convention": cameras.CONVENTION_TEXT, "image_size": [size, size], "views": views})
    )
    (folder / "clip.json").write_text(
        json.dumps(
            {
                "asset_id": asset_id or folder.parent.name,
                "clip": clip or folder.name,
                "fps": 24,
                "frame_indices": list(range(1, t + 1)),
                "stride": 1,
                "num_frames": t,
            }
        )
    )
    np.savez(
        folder / "tracks.npz",
        points=points,
        part_ids=part_ids,
        part_names=np.array(names),
        bone_ids=bones,
        bone_names=np.array(bone_names or []),
        visibility=visibility,
    )
    if write_frames:
        from PIL import Image

        for v in range(num_views):
            (folder / f"view_{v:02d}").mkdir(exist_ok=True)
            for f in range(t):
                Image.new("RGBA", (size, size), (128, 128, 128, 255)).save(folder / f"view_{v:02d}" / f"{f:04d}.png")
    return folder


def lid_box(t: int = 20, n: int = 300, seed: int = 0, angle: float = 1.2) -> dict[str, np.ndarray]:
    """A static base with a lid opening upwards about its back edge (the x axis at y = 0.2, z = 0.1)."""
    rng = np.random.default_rng(seed)
    base = box_points((0, 0, -0.1), (0.6, 0.4, 0.2), n, rng)
    lid = box_points((0, 0, 0.12), (0.6, 0.4, 0.04), n // 2, rng)
    return {"base": static(base, t), "lid": hinged(lid, t, (0, 0.2, 0.1), (-1, 0, 0), angle)}


def drawer(t: int = 20, n: int = 300, seed: int = 0, travel: float = 0.3) -> dict[str, np.ndarray]:
    """A static cabinet with a drawer sliding along world +X (to the right in the front view 0)."""
    rng = np.random.default_rng(seed)
    cabinet = box_points((0, 0, 0), (0.5, 0.5, 0.5), n, rng)
    slide = box_points((0, -0.1, 0.3), (0.3, 0.3, 0.1), n // 2, rng)
    return {"cabinet": static(cabinet, t), "drawer": translating(slide, t, (travel, 0, 0))}
