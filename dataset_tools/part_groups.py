"""Which tracked points move together: the "independently moving parts" that each get one drag.

- Separate objects (``part_ids``) are separate parts.
- Inside skinned meshes, points are grouped by the bone that drives them most (``bone_ids``); a
  bone's group spans every mesh it drives (characters are often several meshes on one armature).
- Inside a mesh without bones, a part that moves rigidly is one group; one that deforms (shape keys,
  vertex animation) is split by clustering the points' motion (k-means on their displacement
  trajectories, k chosen by silhouette). When no clear clustering exists the part is "ungrouped":
  the sampler then draws a random number of drags from it, as the paper does.
- A group whose points barely move is static and gets no drag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataset_tools.clip_metrics import rigid_residuals

GROUP_PART = "part"
GROUP_BONE = "bone"
GROUP_CLUSTER = "cluster"
GROUP_UNGROUPED = "ungrouped"


@dataclass(frozen=True)
class GroupingSettings:
    #: a point is moving when it gets this far from its window-start position (fraction of the bbox diagonal)
    static_rel: float = 0.01
    #: groups with fewer moving points are ignored (stray points on seams)
    min_group_points: int = 8
    #: a part is rigid when the rigid-fit residual is below this fraction of its mean displacement
    rigid_tol: float = 0.05
    #: clusters are accepted when their silhouette score reaches this
    min_silhouette: float = 0.7
    #: largest k tried when clustering a deforming part
    max_clusters: int = 5
    #: points the clustering is fitted and scored on (a random subset; the score is quadratic in it)
    silhouette_points: int = 1000


@dataclass
class PointGroup:
    kind: str  # GROUP_PART, GROUP_BONE, GROUP_CLUSTER or GROUP_UNGROUPED
    label: str  # e.g. "part:lid", "bone:Arm.L", "cluster:blob/1"
    indices: np.ndarray  # indices of the group's moving points


@dataclass
class Grouping:
    groups: list[PointGroup]
    static_parts: list[str]  # names of parts none of whose points move
    scale: float  # bbox diagonal at the window start


def _name(names: list[str], index: int, prefix: str) -> str:
    return names[index] if 0 <= index < len(names) else f"{prefix}{index}"


def _cluster_motion(
    window: np.ndarray, idx: np.ndarray, settings: GroupingSettings, rng: np.random.Generator
) -> list[np.ndarray] | None:
    """Split the points ``idx`` by their displacement trajectories, or None when no k fits well."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from threadpoolctl import threadpool_limits

    if len(idx) < 2 * settings.min_group_points:
        return None
    features = (window[:, idx] - window[0, idx]).transpose(1, 0, 2).reshape(len(idx), -1)
    # fit and score on a subset (the cost grows with the points), then label every point
    subset = rng.choice(len(idx), min(settings.silhouette_points, len(idx)), replace=False)
    best: tuple[float, KMeans] | None = None
    for k in range(2, settings.max_clusters + 1):
        if len(subset) < k * settings.min_group_points:
            break
        with threadpool_limits(1):  # tiny problems: threads only oversubscribe the machine
            model = KMeans(n_clusters=k, n_init=3, random_state=int(rng.integers(2**31))).fit(features[subset])
        if len(np.unique(model.labels_)) < k:
            continue
        score = float(silhouette_score(features[subset], model.labels_))
        if best is None or score > best[0]:
            best = (score, model)
    if best is None or best[0] < settings.min_silhouette:
        return None
    with threadpool_limits(1):
        labels = best[1].predict(features)
    return [idx[labels == c] for c in np.unique(labels)]


def group_points(
    window: np.ndarray,
    part_ids: np.ndarray,
    part_names: list[str],
    bone_ids: np.ndarray,
    bone_names: list[str],
    *,
    settings: GroupingSettings = GroupingSettings(),
    rng: np.random.Generator | None = None,
) -> Grouping:
    """Group the points of a ``(N, S, 3)`` window of tracked positions into moving parts."""
    rng = np.random.default_rng(0) if rng is None else rng
    first = window[0]
    scale = float(np.linalg.norm(first.max(axis=0) - first.min(axis=0))) or 1.0
    excursion = np.linalg.norm(window - first, axis=-1).max(axis=0)  # (S,)
    moving = excursion > settings.static_rel * scale
    groups: list[PointGroup] = []
    static_parts: list[str] = []
    skinned: list[np.ndarray] = []
    for part in np.unique(part_ids):
        part_name = _name(part_names, int(part), "part")
        members = np.flatnonzero(part_ids == part)
        idx = members[moving[members]]
        if len(idx) == 0:
            static_parts.append(part_name)
            continue
        if len(idx) < settings.min_group_points and (bone_ids[idx] < 0).all():
            continue  # too few points to tell (a tiny part); skinned points still join their bone
        if (bone_ids[idx] >= 0).mean() > 0.5:
            skinned.append(idx[bone_ids[idx] >= 0])
            continue
        motion = float(np.linalg.norm(window[:, idx] - window[0, idx], axis=-1).mean())
        residual = float(rigid_residuals(window[:, idx]).mean())
        if residual <= settings.rigid_tol * motion:
            groups.append(PointGroup(GROUP_PART, f"part:{part_name}", idx))
            continue
        clusters = _cluster_motion(window, idx, settings, rng)
        if clusters is None:
            groups.append(PointGroup(GROUP_UNGROUPED, f"ungrouped:{part_name}", idx))
        else:
            groups += [
                PointGroup(GROUP_CLUSTER, f"cluster:{part_name}/{i}", c)
                for i, c in enumerate(clusters)
                if len(c) >= settings.min_group_points
            ]
    # one bone moves every mesh it drives the same way: bone groups span the skinned parts
    if skinned:
        idx = np.concatenate(skinned)
        for bone in np.unique(bone_ids[idx]):
            sub = idx[bone_ids[idx] == bone]
            if len(sub) >= settings.min_group_points:
                groups.append(PointGroup(GROUP_BONE, f"bone:{_name(bone_names, int(bone), 'bone')}", sub))
    return Grouping(groups, static_parts, scale)
