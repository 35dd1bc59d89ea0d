"""Surface point tracks for render.py (inside Blender: stdlib, numpy, bpy, mathutils).

Points are sampled area-weighted on the evaluated (deformed) triangles at the clip's first frame and
followed by their barycentric coordinates on the same triangles at every rendered frame, so any
deformation Blender evaluates (armatures, shape keys, object animation, parenting, constraints) moves
them. Visibility is decided by casting a ray from the camera centre to the point through a BVH of
every rendered triangle at that frame: a hit closer than the point (by more than a small tolerance)
means the point is occluded.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Vector
from mathutils.bvhtree import BVHTree

from puppet_master import cameras

#: a ray hit this much (world units, object in the unit cube) before the point does not occlude it
OCCLUSION_TOLERANCE = 2e-3


class TrackingError(RuntimeError):
    """The surface cannot be tracked (no area, topology changing between frames)."""


@dataclass
class SurfaceSamples:
    part_ids: np.ndarray  # (S,) int32: index into part_names
    part_names: list[str]
    triangles: np.ndarray  # (S, 3) int: vertex indices of each point's triangle in its part
    barycentric: np.ndarray  # (S, 3) float64
    bone_ids: np.ndarray  # (S,) int32, -1 when no bone drives the point
    bone_names: list[str]
    vertex_counts: list[int]  # per part, to detect topology changes


def _evaluated_triangles(obj, depsgraph) -> tuple[np.ndarray, np.ndarray]:
    """World vertices ``(n, 3)`` and triangles ``(m, 3)`` of the evaluated ``obj``."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        mesh.calc_loop_triangles()
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        tris = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", tris)
        matrix = np.array(evaluated.matrix_world, dtype=np.float64)
    finally:
        evaluated.to_mesh_clear()
    verts = co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
    return verts, tris.reshape(-1, 3)


def _driving_armature_bone(obj) -> tuple[object | None, str | None]:
    """(armature, bone name) when ``obj`` or an ancestor is parented to a bone, else (None, None)."""
    node = obj
    while node is not None:
        if node.parent is not None and node.parent_type == "BONE" and node.parent.type == "ARMATURE":
            return node.parent, node.parent_bone
        node = node.parent
    return None, None


def _skinning_armature(obj):
    for modifier in getattr(obj, "modifiers", []):
        if modifier.type == "ARMATURE" and modifier.object is not None and modifier.show_render:
            return modifier.object
    return None


class _BoneTable:
    def __init__(self):
        self.names: list[str] = []
        self._index: dict[tuple[str, str], int] = {}

    def id(self, armature, bone: str) -> int:
        key = (armature.name, bone)
        if key not in self._index:
            clash = any(b == bone for _, b in self._index)
            self._index[key] = len(self.names)
            self.names.append(f"{armature.name}/{bone}" if clash else bone)
        return self._index[key]


def _bone_ids(obj, triangles: np.ndarray, bary: np.ndarray, n_eval: int, table: _BoneTable) -> np.ndarray:
    """The bone with the largest weight at each point (skinned meshes) or the parent bone."""
    out = np.full(len(triangles), -1, dtype=np.int32)
    armature = _skinning_armature(obj) if obj.type == "MESH" else None
    if armature is not None and len(obj.data.vertices) == n_eval:
        bones = {b.name for b in armature.data.bones if b.use_deform}
        groups = {g.index: g.name for g in obj.vertex_groups if g.name in bones}
        if groups:
            for s, (tri, weights) in enumerate(zip(triangles, bary, strict=True)):
                score: dict[str, float] = {}
                for v, w in zip(tri, weights, strict=True):
                    for g in obj.data.vertices[int(v)].groups:
                        name = groups.get(g.group)
                        if name is not None:
                            score[name] = score.get(name, 0.0) + w * g.weight
                if score:
                    out[s] = table.id(armature, max(score, key=score.get))
            if (out >= 0).any():
                return out
    parent_armature, bone = _driving_armature_bone(obj)
    if parent_armature is not None and bone:
        out[:] = table.id(parent_armature, bone)
    return out


def sample_surface(objects: list, num_points: int, rng: np.random.Generator) -> SurfaceSamples:
    """Sample ``num_points`` points area-weighted on the evaluated surface at the current frame."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    per_part = [_evaluated_triangles(obj, depsgraph) for obj in objects]
    areas = []
    for verts, tris in per_part:
        if len(tris) == 0:
            areas.append(np.zeros(0))
            continue
        a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
        areas.append(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1))
    flat_area = np.concatenate(areas) if areas else np.zeros(0)
    total = flat_area.sum()
    if not total > 0:
        raise TrackingError("the rendered geometry has no surface area to sample points on")
    part_of = np.concatenate([np.full(len(a), i) for i, a in enumerate(areas)])
    local = np.concatenate([np.arange(len(a)) for a in areas])
    chosen = rng.choice(len(flat_area), size=num_points, p=flat_area / total)
    r1, r2 = rng.random(num_points), rng.random(num_points)
    sq = np.sqrt(r1)
    bary = np.stack([1 - sq, sq * (1 - r2), sq * r2], axis=1)
    part_ids = part_of[chosen].astype(np.int32)
    triangles = np.zeros((num_points, 3), dtype=np.int64)
    for p, (_, tris) in enumerate(per_part):
        mask = part_ids == p
        triangles[mask] = tris[local[chosen[mask]]]
    table = _BoneTable()
    bone_ids = np.full(num_points, -1, dtype=np.int32)
    for p, obj in enumerate(objects):
        mask = part_ids == p
        if mask.any():
            bone_ids[mask] = _bone_ids(obj, triangles[mask], bary[mask], len(per_part[p][0]), table)
    return SurfaceSamples(
        part_ids=part_ids,
        part_names=[o.name for o in objects],
        triangles=triangles,
        barycentric=bary,
        bone_ids=bone_ids,
        bone_names=table.names,
        vertex_counts=[len(v) for v, _ in per_part],
    )


def frame_geometry(objects: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """Evaluated world vertices and triangles of every part at the current frame."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return [_evaluated_triangles(obj, depsgraph) for obj in objects]


def track_points(samples: SurfaceSamples, geometry: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """World positions ``(S, 3)`` of the samples on this frame's geometry."""
    points = np.zeros((len(samples.part_ids), 3))
    for p, (verts, _) in enumerate(geometry):
        if len(verts) != samples.vertex_counts[p]:
            raise TrackingError(
                f"part {samples.part_names[p]!r} changes topology between frames "
                f"({samples.vertex_counts[p]} -> {len(verts)} vertices); its points cannot be followed"
            )
        mask = samples.part_ids == p
        if mask.any():
            corners = verts[samples.triangles[mask]]  # (s, 3 corners, 3)
            points[mask] = np.einsum("sc,scd->sd", samples.barycentric[mask], corners)
    return points


def build_bvh(geometry: list[tuple[np.ndarray, np.ndarray]]) -> BVHTree:
    verts, tris, offset = [], [], 0
    for v, t in geometry:
        verts.append(v)
        tris.append(t + offset)
        offset += len(v)
    all_verts = np.concatenate(verts) if verts else np.zeros((0, 3))
    all_tris = np.concatenate(tris) if tris else np.zeros((0, 3), dtype=np.int64)
    return BVHTree.FromPolygons(all_verts.tolist(), all_tris.tolist(), all_triangles=True)


def visibility(
    points: np.ndarray, bvh: BVHTree, k_matrix: np.ndarray, world_to_camera: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """``(S,)`` bool: in front of the camera, inside the image and not occluded (ray cast)."""
    pixels, depth = cameras.project(points, k_matrix, world_to_camera)
    candidate = (depth > 0) & cameras.inside_image(pixels, size[0], size[1])
    rotation = world_to_camera[:3, :3]
    centre = -rotation.T @ world_to_camera[:3, 3]
    origin = Vector(centre.tolist())
    offsets = points - centre
    distances = np.linalg.norm(offsets, axis=1)
    directions = offsets / np.maximum(distances[:, None], 1e-12)
    visible = np.zeros(len(points), dtype=bool)
    for s in np.flatnonzero(candidate):
        hit = bvh.ray_cast(origin, Vector(directions[s]), float(distances[s] - OCCLUSION_TOLERANCE))
        visible[s] = hit[0] is None
    return visible
