"""Procedural animated test assets, exported as animated GLB (inside Blender: stdlib, numpy, bpy).

``make_asset(kind, seed, path)`` builds one asset in a fresh scene and exports it:

- ``hinged_box``: a static base and a lid rotating open about its back edge (object rotation),
- ``drawer``: a static cabinet and a drawer sliding out of it (object translation),
- ``morph_blob``: a static pedestal and a blob that bulges with a shape key (morph target).

Proportions, colours and motion amplitudes come from ``seed``. Each asset has one clip (glTF
animation) named after its motion. Run as a script to write a few of them::

    python -m dataset_tools.procedural --out assets/ --kinds hinged_box drawer --seeds 0 1
"""

from __future__ import annotations

import argparse
import colorsys
import math
import random
import sys
from pathlib import Path

import bpy
import numpy as np

KINDS = ("hinged_box", "drawer", "morph_blob")
CLIP_NAMES = {"hinged_box": "open_lid", "drawer": "slide_out", "morph_blob": "bulge"}
DEFAULT_FRAMES = 24

_CUBE_FACES = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def _box_data(lo, hi) -> tuple[list, list]:
    verts = [(x, y, z) for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    return verts, _CUBE_FACES


def _mesh_object(name: str, parts: list[tuple], color, location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    """An object made of axis-aligned boxes ``(lo, hi)`` in its local frame, with one colour."""
    verts, faces = [], []
    for lo, hi in parts:
        v, f = _box_data(lo, hi)
        faces += [tuple(i + len(verts) for i in face) for face in f]
        verts += v
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    mesh.materials.append(_material(name, color))
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _material(name: str, color) -> bpy.types.Material:
    material = bpy.data.materials.new(f"{name}_material")
    material.diffuse_color = (*color, 1.0)
    material.use_nodes = True
    bsdf = next(n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.8
    return material


def _color(rng: random.Random) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.4, 0.8), rng.uniform(0.4, 0.9))


def _sphere(name: str, radius: float, center, color, rings: int = 12, segments: int = 24) -> bpy.types.Object:
    verts = [(0.0, 0.0, radius)]
    for r in range(1, rings):
        theta = math.pi * r / rings
        for s in range(segments):
            phi = 2 * math.pi * s / segments
            verts.append((radius * math.sin(theta) * math.cos(phi), radius * math.sin(theta) * math.sin(phi),
                          radius * math.cos(theta)))
    verts.append((0.0, 0.0, -radius))
    faces = [(0, 1 + s, 1 + (s + 1) % segments) for s in range(segments)]
    for r in range(rings - 2):
        a, b = 1 + r * segments, 1 + (r + 1) * segments
        faces += [(a + s, b + s, b + (s + 1) % segments, a + (s + 1) % segments) for s in range(segments)]
    last = len(verts) - 1
    base = 1 + (rings - 2) * segments
    faces += [(base + (s + 1) % segments, base + s, last) for s in range(segments)]
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, [], faces)
    mesh.update()
    mesh.materials.append(_material(name, color))
    obj = bpy.data.objects.new(name, mesh)
    obj.location = center
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _keyframes(owner, path: str, values: list[tuple[int, object]], action_name: str, index: int = -1) -> None:
    for frame, value in values:
        if index >= 0:
            getattr(owner, path)[index] = value
        else:
            setattr(owner, path, value)
        owner.keyframe_insert(data_path=path, index=index, frame=frame)
    owner.id_data.animation_data.action.name = action_name


def _hinged_box(rng: random.Random, frames: int, animated: bool) -> dict:
    w, d, h = rng.uniform(0.8, 1.4), rng.uniform(0.6, 1.0), rng.uniform(0.4, 0.8)
    t = rng.uniform(0.06, 0.12)
    _mesh_object("base", [((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h))], _color(rng))
    # the lid's origin is on the hinge (the base's top back edge), so rotating it opens the lid
    lid = _mesh_object("lid", [((-w / 2, -d, 0.0), (w / 2, 0.0, t))], _color(rng), location=(0.0, d / 2, h))
    angle = math.radians(rng.uniform(70.0, 110.0))
    if animated:
        _keyframes(lid, "rotation_euler", [(1, 0.0), (frames, -angle)], CLIP_NAMES["hinged_box"], index=0)
    return {"static_parts": ["base"], "moving_parts": ["lid"], "motion": "rotation", "amplitude": angle}


def _drawer(rng: random.Random, frames: int, animated: bool) -> dict:
    w, d, h = rng.uniform(0.8, 1.2), rng.uniform(0.7, 1.0), rng.uniform(0.5, 0.9)
    t = 0.05
    shell = [
        ((-w / 2, -d / 2, 0.0), (w / 2, d / 2, t)),  # bottom
        ((-w / 2, -d / 2, h - t), (w / 2, d / 2, h)),  # top
        ((-w / 2, -d / 2, t), (-w / 2 + t, d / 2, h - t)),  # left
        ((w / 2 - t, -d / 2, t), (w / 2, d / 2, h - t)),  # right
        ((-w / 2 + t, d / 2 - t, t), (w / 2 - t, d / 2, h - t)),  # back
    ]
    _mesh_object("cabinet", shell, _color(rng))
    g = 0.01
    drawer = _mesh_object(
        "drawer", [((-w / 2 + t + g, -d / 2 - t, t + g), (w / 2 - t - g, d / 2 - t - g, h - t - g))], _color(rng)
    )
    travel = rng.uniform(0.4, 0.7) * d
    if animated:
        _keyframes(drawer, "location", [(1, 0.0), (frames, -travel)], CLIP_NAMES["drawer"], index=1)
    return {"static_parts": ["cabinet"], "moving_parts": ["drawer"], "motion": "translation", "amplitude": travel}


def _morph_blob(rng: random.Random, frames: int, animated: bool) -> dict:
    r = rng.uniform(0.3, 0.45)
    ph = rng.uniform(0.2, 0.4)
    _mesh_object("pedestal", [((-0.4, -0.4, 0.0), (0.4, 0.4, ph))], _color(rng))
    blob = _sphere("blob", r, (0.0, 0.0, ph + r), _color(rng))
    blob.shape_key_add(name="Basis")
    key = blob.shape_key_add(name="bulge", from_mix=False)
    lean = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), 0.0])
    stretch = rng.uniform(0.6, 1.0)
    co = np.array([v.co[:] for v in blob.data.vertices])
    up = np.clip(co[:, 2] / r, 0.0, None)[:, None]  # only the upper half moves: the bottom stays seated
    moved = co + up * (np.array([0.0, 0.0, stretch * r]) + 0.5 * r * lean)
    key.data.foreach_set("co", moved.ravel())
    if animated:
        _keyframes(key, "value", [(1, 0.0), (frames, 1.0)], CLIP_NAMES["morph_blob"])
    return {"static_parts": ["pedestal"], "moving_parts": ["blob"], "motion": "morph", "amplitude": stretch * r}


_BUILDERS = {"hinged_box": _hinged_box, "drawer": _drawer, "morph_blob": _morph_blob}


def make_asset(kind: str, seed: int, path: str | Path, *, animated: bool = True, frames: int = DEFAULT_FRAMES) -> dict:
    """Build asset ``kind`` from ``seed`` in a fresh scene and export it to ``path`` (GLB).

    Returns what the tests need to know: its clip name and frame range, static and moving parts.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown procedural asset kind {kind!r}; choose one of {', '.join(KINDS)}")
    if frames < 2:
        raise ValueError(f"an animation needs at least 2 frames, got {frames}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = 24
    scene.frame_start, scene.frame_end = 1, frames
    info = _BUILDERS[kind](random.Random(f"{kind}:{seed}"), frames, animated)
    bpy.ops.export_scene.gltf(
        filepath=str(path), export_format="GLB", export_animations=animated,
        export_animation_mode="ACTIONS", export_force_sampling=True, export_yup=True,
    )
    return {
        "kind": kind, "seed": seed, "path": str(path),
        "clip": CLIP_NAMES[kind] if animated else None, "frame_range": [1, frames] if animated else None,
        **info,
    }


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(prog="procedural.py", description="Write procedural animated GLB assets.")
    parser.add_argument("--out", type=Path, required=True, help="folder for <kind>_<seed>.glb files")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--static", action="store_true", help="export without animation")
    args = parser.parse_args(argv)
    for kind in args.kinds:
        for seed in args.seeds:
            info = make_asset(kind, seed, args.out / f"{kind}_{seed}.glb", animated=not args.static, frames=args.frames)
            print(f"wrote {info['path']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
