"""Blender-side scene handling for render.py: import, animation clips, normalisation, cameras, light.

Runs inside Blender's Python (stdlib, numpy, bpy). The maths of cameras lives in
``puppet_master.cameras``; this module only turns it into Blender objects.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

from puppet_master import cameras

SUPPORTED_SUFFIXES = (".glb", ".gltf", ".fbx", ".blend")
#: collections the glTF importer fills with helper objects (bone shapes) that are never rendered
HELPER_COLLECTIONS = ("glTF_not_exported",)
#: object types whose evaluated geometry is rendered and tracked
GEOMETRY_TYPES = {"MESH", "CURVE", "SURFACE", "FONT", "META"}
NORMALIZE_EMPTY = "PM_normalize"
#: at most this many frames are evaluated for a clip's bounding box (evenly spread over long clips)
MAX_BBOX_FRAMES = 1000


class AssetError(RuntimeError):
    """An asset that cannot be rendered (import failure, nothing to render); the message says why."""


@dataclass
class Clip:
    """One animation clip: the NLA tracks (or active actions) that play together, and its frame range."""

    name: str
    frame_start: float
    frame_end: float
    #: (animation-data owner, NLA track name or None for an active action, action, slot or None)
    members: list[tuple] = field(default_factory=list)
    #: what the channels this clip does not animate hold (shared by the clips of one find_clips call)
    rest: RestState | None = None


@dataclass
class RestState:
    """The values of every animatable transform before any clip plays: object transforms and shape-key
    weights as imported, bones in their rest pose. Restored before each clip plays, so a channel the
    clip does not animate never keeps the value the previous clip left in it."""

    objects: dict[str, Matrix]
    shape_keys: dict[tuple[str, str], float]

    @classmethod
    def capture(cls) -> RestState:
        objects = {o.name: o.matrix_basis.copy() for o in bpy.data.objects}
        keys = {(k.name, b.name): b.value for k in bpy.data.shape_keys for b in k.key_blocks}
        return cls(objects, keys)

    def restore(self) -> None:
        for obj in bpy.data.objects:
            if obj.name in self.objects:
                obj.matrix_basis = self.objects[obj.name]
            if obj.type == "ARMATURE" and obj.pose is not None:
                for bone in obj.pose.bones:
                    bone.matrix_basis = Matrix.Identity(4)
        for key in bpy.data.shape_keys:
            for block in key.key_blocks:
                if (key.name, block.name) in self.shape_keys:
                    block.value = self.shape_keys[(key.name, block.name)]


def reset_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def import_asset(path: Path) -> None:
    """Load ``path`` (GLB/glTF/FBX/.blend) into the current, empty scene; AssetError when it fails."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise AssetError(f"file not found: {path}")
    if suffix not in SUPPORTED_SUFFIXES:
        raise AssetError(f"unsupported file type {suffix!r} (expected one of {', '.join(SUPPORTED_SUFFIXES)})")
    try:
        if suffix in (".glb", ".gltf"):
            result = bpy.ops.import_scene.gltf(filepath=str(path))
        elif suffix == ".fbx":
            result = bpy.ops.import_scene.fbx(filepath=str(path))
            _fbx_takes_to_nla()
        else:
            result = bpy.ops.wm.open_mainfile(filepath=str(path))
            for obj in list(bpy.context.scene.objects):  # our own lights and cameras replace the file's
                if obj.type in {"LIGHT", "CAMERA"}:
                    bpy.data.objects.remove(obj)
    except Exception as exc:  # the importers raise RuntimeError with their message
        message = " ".join(str(exc).split())
        raise AssetError(f"import failed: {message[:300]}") from exc
    if "FINISHED" not in result:
        raise AssetError(f"import failed: importer returned {sorted(result)}")


def _fbx_takes_to_nla() -> None:
    """FBX takes arrive as actions ``object|...|take`` (only one take assigned): one NLA track per take."""
    for action in list(bpy.data.actions):
        parts = action.name.split("|")
        obj = bpy.data.objects.get(parts[0]) if len(parts) >= 2 else None
        if obj is None:
            continue
        take = parts[-1]
        ad = obj.animation_data or obj.animation_data_create()
        track = ad.nla_tracks.get(take) or ad.nla_tracks.new()
        track.name = take
        track.strips.new(take, int(action.frame_range[0]), action)
    for obj in bpy.data.objects:
        if obj.animation_data is not None and len(obj.animation_data.nla_tracks):
            obj.animation_data.action = None


def geometry_objects() -> list[bpy.types.Object]:
    """Objects that are rendered: geometry in the view layer, visible, not importer helpers."""
    scene = bpy.context.scene
    layer_objects = set(bpy.context.view_layer.objects)
    result = []
    for obj in scene.objects:
        helper = any(c.name.startswith(HELPER_COLLECTIONS) for c in obj.users_collection)
        if helper:
            obj.hide_render = True
            continue
        if obj.type in GEOMETRY_TYPES and not obj.hide_render and obj in layer_objects:
            result.append(obj)
    return sorted(result, key=lambda o: o.name)


def find_clips() -> list[Clip]:
    """Every animation clip: NLA tracks grouped by name across owners; active actions form one more.

    Owners without NLA tracks play their active actions together, as the scene does (a .blend
    file, an FBX take): that is one clip, named after the take (the text after the last ``|`` of
    FBX action names ``object|take``) when the actions agree on it, else after the first action.
    """
    owners = [o for o in bpy.data.objects if o.animation_data] + [
        k for k in bpy.data.shape_keys if k.animation_data
    ]
    clips: dict[str, Clip] = {}
    actions: list[tuple] = []

    def add(name, start, end, member):
        clip = clips.setdefault(name, Clip(name, start, end))
        clip.frame_start = min(clip.frame_start, start)
        clip.frame_end = max(clip.frame_end, end)
        clip.members.append(member)

    for owner in owners:
        ad = owner.animation_data
        tracks = [t for t in ad.nla_tracks if len(t.strips)]
        if tracks:
            for track in tracks:
                start = min(s.frame_start for s in track.strips)
                end = max(s.frame_end for s in track.strips)
                add(track.name, start, end, (owner, track.name, None, None))
        elif ad.action is not None:
            actions.append((owner, ad.action, getattr(ad, "action_slot", None)))
    if actions:
        takes = {action.name.rsplit("|", 1)[-1] for _, action, _ in actions}
        name = takes.pop() if len(takes) == 1 else sorted(a.name for _, a, _ in actions)[0]
        while name in clips:
            name += "_"
        for owner, action, slot in actions:
            start, end = action.frame_range
            add(name, start, end, (owner, None, action, slot))
    rest = RestState.capture()
    for clip in clips.values():
        clip.rest = rest
    return [clips[name] for name in sorted(clips)]


def activate_clip(clip: Clip, all_clips: list[Clip]) -> None:
    """Make ``clip`` the only animation that plays: other tracks muted, other actions unassigned, and
    every transform back at its rest value (see :class:`RestState`)."""
    owners = {m[0] for c in all_clips for m in c.members}
    for owner in owners:
        ad = owner.animation_data
        ad.action = None
        ad.use_nla = True
        for track in ad.nla_tracks:
            track.mute = True
            track.is_solo = False
    for owner, track_name, action, slot in clip.members:
        ad = owner.animation_data
        if track_name is not None:
            ad.nla_tracks[track_name].mute = False
        else:
            ad.action = action
            if slot is not None and hasattr(ad, "action_slot"):
                ad.action_slot = slot
    if clip.rest is not None:
        clip.rest.restore()


def set_frame(frame: float) -> None:
    whole = math.floor(frame)
    bpy.context.scene.frame_set(int(whole), subframe=float(frame - whole))


def world_vertices(obj: bpy.types.Object, depsgraph) -> np.ndarray:
    """World positions ``(n, 3)`` of the evaluated (deformed) vertices of ``obj``."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        matrix = np.array(evaluated.matrix_world, dtype=np.float64)
    finally:
        evaluated.to_mesh_clear()
    co = co.reshape(-1, 3)
    return co @ matrix[:3, :3].T + matrix[:3, 3]


def clip_bounds(objects: list, frames: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box ``(lo, hi)`` of the evaluated geometry over ``frames``, in current world space."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for frame in frames:
        set_frame(frame)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        for obj in objects:
            verts = world_vertices(obj, depsgraph)
            if len(verts):
                lo = np.minimum(lo, verts.min(axis=0))
                hi = np.maximum(hi, verts.max(axis=0))
    if not np.isfinite(lo).all():
        raise AssetError("no geometry to render (the meshes have no vertices)")
    return lo, hi


def bbox_frames(clip: Clip, rendered: list[float], window: list[float] | None = None) -> list[float]:
    """Every whole frame of the clip, or of ``window = [first, last]`` inside it (at most
    MAX_BBOX_FRAMES, evenly spread), plus the rendered ones."""
    start, end = window if window is not None else (clip.frame_start, clip.frame_end)
    first, last = math.ceil(start), math.floor(end)
    whole = np.arange(first, last + 1, dtype=np.float64)
    if len(whole) > MAX_BBOX_FRAMES:
        whole = np.linspace(first, last, MAX_BBOX_FRAMES)
    return sorted(set(whole.tolist()) | set(rendered))


def normalization_root() -> bpy.types.Object:
    """The empty every top-level object hangs from; its matrix is the clip's normalisation."""
    root = bpy.data.objects.get(NORMALIZE_EMPTY)
    if root is None:
        root = bpy.data.objects.new(NORMALIZE_EMPTY, None)
        bpy.context.scene.collection.objects.link(root)
        for obj in bpy.context.scene.objects:
            if obj.parent is None and obj is not root and obj.type != "CAMERA":
                obj.parent = root  # keeps matrix_basis: world = root @ old world for top-level objects
    return root


def normalize_clip(objects: list, frames: list[float]) -> tuple[float, list[float], np.ndarray, np.ndarray]:
    """Scale and move the scene so the clip's bounding box over ``frames`` is centred in the unit cube.

    Returns ``scale, offset`` (``p_norm = scale * p + offset``) and the normalised box ``lo, hi``.
    """
    root = normalization_root()
    root.matrix_world = Matrix.Identity(4)
    bpy.context.view_layer.update()
    lo, hi = clip_bounds(objects, frames)
    extent = float((hi - lo).max())
    if extent <= 1e-9:
        raise AssetError("the geometry has zero size")
    scale = 1.0 / extent
    offset = -scale * (lo + hi) / 2.0
    root.matrix_world = Matrix.Translation(offset.tolist()) @ Matrix.Scale(scale, 4)
    bpy.context.view_layer.update()
    return scale, offset.tolist(), scale * lo + offset, scale * hi + offset


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def make_camera(name: str, world_to_camera: np.ndarray, focal_mm: float, sensor_mm: float) -> bpy.types.Object:
    data = bpy.data.cameras.get(name) or bpy.data.cameras.new(name)
    data.lens = focal_mm
    data.sensor_width = sensor_mm
    data.sensor_fit = "AUTO"
    data.clip_start = 0.01
    data.clip_end = 1000.0
    obj = bpy.data.objects.get(name)
    if obj is None:
        obj = bpy.data.objects.new(name, data)
        bpy.context.scene.collection.objects.link(obj)
    matrix = cameras.opencv_to_blender_matrix_world(world_to_camera)
    obj.matrix_world = Matrix(matrix.tolist())
    return obj


def safe_name(name: str) -> str:
    """A clip or asset name usable as a folder name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    return cleaned or "clip"
