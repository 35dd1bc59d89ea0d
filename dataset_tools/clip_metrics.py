"""Per-clip motion metrics from the tracked points, the features of the random-forest filter.

The paper (Sec. 4) uses the bounding box of the whole clip, the largest single-frame bounding box,
and the mean and max point displacement. We add scale-free versions and a few cues that separate
part-level motion from a static asset or a whole object moving rigidly. Every length is also given
relative to the diagonal of the first frame's bounding box (``*_rel``), so the features do not depend
on how the renderer scaled the asset.
"""

from __future__ import annotations

import numpy as np

#: the feature order of the random forest (a saved model records it and is checked against it)
FEATURES = (
    "num_frames",
    "num_parts",
    "clip_bbox_diag",
    "clip_bbox_volume",
    "max_frame_bbox_diag",
    "max_frame_bbox_volume",
    "first_frame_bbox_diag",
    "bbox_growth",
    "disp_mean",
    "disp_max",
    "disp_mean_rel",
    "disp_max_rel",
    "path_mean_rel",
    "path_max_rel",
    "moving_fraction",
    "moving_parts_fraction",
    "centroid_disp_rel",
    "nonrigid_disp_mean_rel",
    "nonrigid_fraction",
)

#: a point "moves" when it gets this far from its first position (relative to the first bbox diagonal)
MOVING_THRESHOLD_REL = 0.01
#: at most this many points enter the rigid fit (a random but fixed subset)
RIGID_FIT_POINTS = 1024
_EPS = 1e-12


def _bbox(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points.min(axis=-2), points.max(axis=-2)


def rigid_residuals(points: np.ndarray) -> np.ndarray:
    """Per frame and point, the distance left after the best rigid motion from frame 0 (Kabsch).

    ``points`` is ``(T, S, 3)``; the result ``(T, S)`` is zero for a static or rigidly moving set.
    """
    ref = points[0]
    ref_c = ref - ref.mean(axis=0)
    cur_c = points - points.mean(axis=1, keepdims=True)  # (T, S, 3)
    cov = np.einsum("si,tsj->tij", ref_c, cur_c)  # (T, 3, 3)
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(np.einsum("tij,tjk->tik", u, vt)))
    fix = np.ones((points.shape[0], 3))
    fix[:, 2] = d
    rot = np.einsum("tij,tj,tjk->tik", u, fix, vt)  # maps centred ref onto centred current: x @ rot
    aligned = np.einsum("si,tij->tsj", ref_c, rot)
    return np.linalg.norm(cur_c - aligned, axis=-1)


def clip_metrics(points: np.ndarray, part_ids: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of one clip from its ``(T, S, 3)`` tracked world positions (see ``FEATURES``)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[0] < 1 or points.shape[1] < 1:
        raise ValueError(f"points must have shape (T, S, 3) with T, S >= 1, got {points.shape}")
    t, s, _ = points.shape
    part_ids = np.zeros(s, dtype=np.int64) if part_ids is None else np.asarray(part_ids)

    lo, hi = _bbox(points.reshape(-1, 3))
    clip_ext = hi - lo
    f_lo, f_hi = _bbox(points)  # (T, 3) each
    frame_ext = f_hi - f_lo
    frame_diag = np.linalg.norm(frame_ext, axis=1)
    frame_vol = np.prod(frame_ext, axis=1)
    first_diag = float(frame_diag[0])
    scale = max(first_diag, _EPS)

    disp = np.linalg.norm(points - points[0], axis=-1)  # (T, S) distance from the first position
    max_disp = disp.max(axis=0)  # (S,)
    steps = np.linalg.norm(np.diff(points, axis=0), axis=-1) if t > 1 else np.zeros((1, s))
    path = steps.sum(axis=0)  # (S,)
    moving = max_disp > MOVING_THRESHOLD_REL * scale
    parts = np.unique(part_ids)
    moving_parts = sum(bool(moving[part_ids == p].any()) for p in parts)
    centroid = points.mean(axis=1)
    centroid_disp = float(np.linalg.norm(centroid - centroid[0], axis=1).max())

    if s > RIGID_FIT_POINTS:
        subset = np.random.default_rng(0).choice(s, RIGID_FIT_POINTS, replace=False)
        sub_points, sub_disp = points[:, subset], disp[:, subset]
    else:
        sub_points, sub_disp = points, disp
    residual = rigid_residuals(sub_points)  # (T, S')
    total_motion = float(sub_disp.mean())
    nonrigid = float(residual.mean())

    return {
        "num_frames": float(t),
        "num_parts": float(len(parts)),
        "clip_bbox_diag": float(np.linalg.norm(clip_ext)),
        "clip_bbox_volume": float(np.prod(clip_ext)),
        "max_frame_bbox_diag": float(frame_diag.max()),
        "max_frame_bbox_volume": float(frame_vol.max()),
        "first_frame_bbox_diag": first_diag,
        "bbox_growth": float(np.linalg.norm(clip_ext) / max(frame_diag.max(), _EPS)),
        "disp_mean": float(max_disp.mean()),
        "disp_max": float(max_disp.max()),
        "disp_mean_rel": float(max_disp.mean() / scale),
        "disp_max_rel": float(max_disp.max() / scale),
        "path_mean_rel": float(path.mean() / scale),
        "path_max_rel": float(path.max() / scale),
        "moving_fraction": float(moving.mean()),
        "moving_parts_fraction": float(moving_parts / len(parts)),
        "centroid_disp_rel": centroid_disp / scale,
        "nonrigid_disp_mean_rel": nonrigid / scale,
        "nonrigid_fraction": nonrigid / total_motion if total_motion > _EPS * scale else 0.0,
    }


def metrics_vector(metrics: dict[str, float], features: tuple[str, ...] = FEATURES) -> np.ndarray:
    """The metrics in feature order, as the random forest takes them."""
    missing = [name for name in features if name not in metrics]
    if missing:
        raise KeyError(f"metrics lack the features {missing}")
    return np.array([metrics[name] for name in features], dtype=np.float64)
