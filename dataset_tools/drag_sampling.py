"""Drag samples from a clip's tracked points and cameras (paper Sec. 4, "drag sampling").

For each chosen window of N = 14 frames and each view:

1. group the points into independently moving parts (``part_groups``); static parts get no drag;
2. measure each point's motion in this view: its reach, the farthest its projected position gets
   from where it starts (pixels at ``reference_size``). Only points that reach at least
   ``min_motion_fraction`` of the view's largest reach can start a drag, so drags go to the parts
   that move most (the swinging arm, not the spine it hangs from; the legs, not the belly);
3. per group with such points, draw one start point among them (visible in this view at the
   window's first frame) with probability proportional to the point's 3D path length over the
   window (an "ungrouped" deforming part gets a random count of 1..K_max drags, as in the paper);
4. project the point's 3D trajectory with the saved camera (``puppet_master.cameras``);
5. de-duplicate: of two drags with ``sum_n ||v_i^n - v_j^n|| <= dedup_px_per_frame * N`` (pixels at
   ``reference_size``) the one on the part that moves less is removed (the paper removes one at
   random; visiting by motion keeps the most moving part's drag; released loader: 10 px, then it
   keeps each drag but the longest with probability ``min(1, 2 * length / longest)``);
6. keep at most K_max = 5, ranked by motion: each part's best drag first (parts by the largest
   reach of their points), then the parts' further drags.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from dataset_tools.clip_folder import Clip, Tracks
from dataset_tools.drag_schema import make_sample
from dataset_tools.part_groups import GROUP_UNGROUPED, GroupingSettings, group_points
from puppet_master import cameras
from puppet_master.drags import DATA_MARGIN, MAX_DRAGS, NUM_FRAMES, trajectories_to_array

#: de-duplication presets: (pixels per frame at 256x256, length-based keep probability)
DEDUP_PRESETS = {"paper": (20.0, False), "released": (10.0, True)}


@dataclass
class SamplerSettings:
    num_frames: int = NUM_FRAMES
    max_drags: int = MAX_DRAGS
    #: windows (start frame + stride) per clip, at most; every view gets one sample per window
    samples_per_view: int = 1
    #: frame step inside a window; None = (T - 1) / (N - 1), so the window spans the whole clip
    #: (frame indices are then rounded), with several windows only when a fixed stride leaves room
    stride: int | None = None
    #: further windows start where the window motion is at least this fraction of the best window's
    window_motion_fraction: float = 0.5
    dedup_px_per_frame: float = DEDUP_PRESETS["paper"][0]
    length_keep: bool = DEDUP_PRESETS["paper"][1]
    #: image size at which pixel thresholds are measured (the spec's 256x256)
    reference_size: int = 256
    #: drags whose 2D point never gets this far from its start (pixels at reference_size) are dropped
    min_drag_px: float = 2.0
    #: a drag starts only where the 2D reach is at least this fraction of the view's largest
    min_motion_fraction: float = 0.25
    #: drags must stay within [-margin, 1 + margin] of the image
    margin: float = DATA_MARGIN
    grouping: GroupingSettings = field(default_factory=GroupingSettings)

    def __post_init__(self) -> None:
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be at least 2, got {self.num_frames}")
        if not 1 <= self.max_drags <= MAX_DRAGS:
            raise ValueError(f"max_drags must be within 1..{MAX_DRAGS}, got {self.max_drags}")
        if self.samples_per_view < 1:
            raise ValueError(f"samples_per_view must be at least 1, got {self.samples_per_view}")
        if self.stride is not None and self.stride < 1:
            raise ValueError(f"stride must be at least 1, got {self.stride}")
        if self.dedup_px_per_frame < 0:
            raise ValueError(f"dedup threshold must be >= 0, got {self.dedup_px_per_frame}")
        if not 0 <= self.min_motion_fraction <= 1:
            raise ValueError(f"min_motion_fraction must be within 0..1, got {self.min_motion_fraction}")

    def to_json(self) -> dict:
        return asdict(self)


def clip_rng(seed: int, clip_id: str) -> np.random.Generator:
    """A generator that depends on the seed and the clip only (not on order or sharding)."""
    digest = hashlib.sha256(clip_id.encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


# --- windows ---------------------------------------------------------------------------------------


def window_frames(start: int, stride: float, num_frames: int, total: int) -> list[int]:
    """Frame indices of a window (rounded when the stride is fractional); past the end the last frame is held."""
    return [min(int(np.floor(start + n * stride + 0.5)), total - 1) for n in range(num_frames)]


def auto_stride(total: int, num_frames: int) -> float:
    """The step that spreads the window over the whole clip (1 for clips shorter than the window)."""
    return max(1.0, (total - 1) / (num_frames - 1))


def choose_windows(points: np.ndarray, settings: SamplerSettings, rng: np.random.Generator) -> list[tuple[int, float]]:
    """``(start, stride)`` of each window: the most moving window first, then random ones that move.

    With the automatic stride the single window spans the clip; with a fixed stride, windows start
    where the motion inside them is at least ``window_motion_fraction`` of the best window's.
    """
    total = points.shape[0]
    n = settings.num_frames
    stride = float(settings.stride) if settings.stride else auto_stride(total, n)
    last_start = max(0, int(np.floor(total - 1 - (n - 1) * stride + 1e-9)))
    starts = np.arange(last_start + 1)
    motion = np.array(
        [np.linalg.norm(np.diff(points[window_frames(s, stride, n, total)], axis=0), axis=-1).sum() for s in starts]
    )
    best = int(starts[np.argmax(motion)])
    windows = [(best, stride)]
    good = [int(s) for s in starts[motion >= settings.window_motion_fraction * motion.max()] if s != best]
    rng.shuffle(good)
    windows += [(s, stride) for s in good[: settings.samples_per_view - 1]]
    return windows


# --- de-duplication --------------------------------------------------------------------------------


def trajectory_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``sum_n ||a_n - b_n||`` of two ``(N, 2)`` trajectories."""
    return float(np.linalg.norm(a - b, axis=-1).sum())


def path_length(traj: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(traj, axis=0), axis=-1).sum())


def deduplicate(
    trajectories: list[np.ndarray],
    rng: np.random.Generator,
    *,
    threshold_px_per_frame: float,
    length_keep: bool = False,
    reference_size: int = 256,
    order: list[int] | None = None,
) -> list[int]:
    """Indices of the drags kept (normalised ``(N, 2)`` trajectories measured at ``reference_size``).

    Drags are visited in ``order`` (default: random, the paper's "one is removed at random") and
    each is kept unless it is within the threshold of one already kept. With ``length_keep`` (the
    released loader) every kept drag but the longest survives with probability
    ``min(1, 2 * length / longest)``.
    """
    if not trajectories:
        return []
    px = [np.asarray(t, dtype=np.float64) * reference_size for t in trajectories]
    limit = threshold_px_per_frame * px[0].shape[0]
    kept: list[int] = []
    for i in rng.permutation(len(px)) if order is None else order:
        if all(trajectory_distance(px[i], px[j]) > limit for j in kept):
            kept.append(int(i))
    if length_keep and len(kept) > 1:
        lengths = {i: path_length(px[i]) for i in kept}
        longest = max(kept, key=lengths.__getitem__)
        top = lengths[longest]
        kept = [i for i in kept if i == longest or rng.random() < min(1.0, 2.0 * lengths[i] / top)]
    return kept


# --- sampling --------------------------------------------------------------------------------------


@dataclass
class Candidate:
    group: str
    point: int
    trajectory: np.ndarray  # (N, 2) normalised
    reach_px: float = 0.0  # farthest the 2D point gets from its start (pixels at reference_size)
    group_reach_px: float = 0.0  # the largest reach among the group's eligible points


def _draw(indices: np.ndarray, weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    total = float(weights.sum())
    if total <= 0:
        return rng.choice(indices, size=min(count, len(indices)), replace=False)
    return rng.choice(indices, size=min(count, int(np.count_nonzero(weights))), replace=False, p=weights / total)


def sample_view(
    tracks: Tracks,
    groups: list,
    frames: list[int],
    view: int,
    intrinsics: np.ndarray,
    w2c: np.ndarray,
    image_size: tuple[int, int],
    settings: SamplerSettings,
    rng: np.random.Generator,
) -> tuple[list[Candidate], str]:
    """The drags of one view and window, and a reason when there are none."""
    width, height = image_size
    window = tracks.points[frames]  # (N, S, 3)
    path3d = np.linalg.norm(np.diff(window, axis=0), axis=-1).sum(axis=0)  # (S,)
    visible = tracks.visibility[view, frames[0]]
    # 1. every visible point's 2D path, whether it stays in the image, and its reach
    seen = np.flatnonzero(visible)
    if len(seen) == 0:
        return [], "no moving part visible in this view"
    pixels, depth = cameras.project(window[:, seen], intrinsics, w2c)  # (N, M, 2), (N, M)
    norm = cameras.pixels_to_normalized(pixels, width, height)
    inside = (depth > 0).all(axis=0) & ((norm >= -settings.margin) & (norm <= 1 + settings.margin)).all(axis=(0, 2))
    inside &= ((norm[0] >= 0) & (norm[0] <= 1)).all(axis=1)  # the start point must be in the image
    reach_px = np.linalg.norm(norm - norm[:1], axis=-1).max(axis=0) * settings.reference_size
    usable = inside & (reach_px >= settings.min_drag_px)
    if not usable.any():
        return [], "no moving part visible in this view"
    # 2. only points that move a meaningful share of the view's largest motion start drags
    threshold = max(settings.min_drag_px, settings.min_motion_fraction * float(reach_px[usable].max()))
    column = np.full(tracks.points.shape[1], -1)
    column[seen] = np.arange(len(seen))
    candidates: list[Candidate] = []
    for group in groups:
        cols = column[group.indices]
        cols = cols[cols >= 0]
        cols = cols[usable[cols] & (reach_px[cols] >= threshold)]
        if len(cols) == 0:
            continue
        count = int(rng.integers(1, settings.max_drags + 1)) if group.kind == GROUP_UNGROUPED else 1
        top = float(reach_px[cols].max())
        for j in _draw(cols, path3d[seen[cols]], count, rng):
            candidates.append(Candidate(group.label, int(seen[j]), norm[:, j], float(reach_px[j]), top))
    if not candidates:
        return [], "no moving part visible in this view"
    # 3. de-duplicate from the most moving part's drags down, then keep the best K_max by motion
    by_motion = rank_by_motion(candidates, list(range(len(candidates))))
    kept = deduplicate(
        [c.trajectory for c in candidates],
        rng,
        threshold_px_per_frame=settings.dedup_px_per_frame,
        length_keep=settings.length_keep,
        reference_size=settings.reference_size,
        order=by_motion,
    )
    return [candidates[i] for i in rank_by_motion([candidates[i] for i in kept], kept)[: settings.max_drags]], ""


def rank_by_motion(candidates: list[Candidate], indices: list[int]) -> list[int]:
    """``indices`` ordered: every group's most moving drag first (groups by how far their points
    reach), then the groups' second drags, and so on, so a cap keeps one drag on each of the most
    moving parts and the most moving part always keeps its drag."""
    rank_in_group: dict[str, int] = {}
    keys = []
    for candidate, index in sorted(zip(candidates, indices, strict=True), key=lambda ci: -ci[0].reach_px):
        rank = rank_in_group.get(candidate.group, 0)
        rank_in_group[candidate.group] = rank + 1
        keys.append((rank, -candidate.group_reach_px, -candidate.reach_px, index))
    return [key[-1] for key in sorted(keys)]


def sample_clip(clip: Clip, settings: SamplerSettings, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Samples (drags.json records) for every view and window of a clip, and the skipped views."""
    rng = clip_rng(seed, clip.clip_id)
    tracks = clip.tracks
    k_all, w2c_all, image_size = cameras.load_camera_arrays(clip.cameras)
    samples: list[dict] = []
    skipped: list[dict] = []
    for start, stride in choose_windows(tracks.points, settings, rng):
        frames = window_frames(start, stride, settings.num_frames, tracks.num_frames)
        grouping = group_points(
            tracks.points[frames],
            tracks.part_ids,
            tracks.part_names,
            tracks.bone_ids,
            tracks.bone_names,
            settings=settings.grouping,
            rng=rng,
        )
        for view in range(len(k_all)):
            drags, reason = sample_view(
                tracks, grouping.groups, frames, view, k_all[view], w2c_all[view], image_size, settings, rng
            )
            if not drags:
                reason = reason if grouping.groups else "no moving part (static clip)"
                skipped.append({"view": view, "start_frame": start, "reason": reason})
                continue
            arr = trajectories_to_array(
                [d.trajectory for d in drags], num_frames=settings.num_frames, max_drags=len(drags)
            )
            info = [
                {"group": d.group, "point": d.point, "path_px": round(path_length(d.trajectory) * settings.reference_size, 3)}
                for d in drags
            ]
            sample = make_sample(view, frames, stride, arr, info)
            sample["static_parts"] = grouping.static_parts
            samples.append(sample)
    return samples, skipped
