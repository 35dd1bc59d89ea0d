"""Simple four-legged creatures: one skinned mesh on an armature whose tail, legs or neck bend.

The head faces -X. Bones: ``root`` (the body, never keyed away from rest), ``neck`` -> ``head``,
``tail_1`` .. ``tail_n``, and two per leg (``leg_<fl|fr|bl|br>_upper``/``_lower``). The body, legs,
neck/head and tail are shells of one mesh, weighted to their bones by distance (blended at the
joints, so the tail bends smoothly). The eyes are rigid objects parented to the head bone; a flat
stand under the feet is a separate, static object. Clips wag, curl or raise the tail, nod, lift one
leg, or walk in place; the body and the stand never move.
"""

from __future__ import annotations

import math
import random

import bpy
import numpy as np
from mathutils import Matrix

from dataset_tools.corpus.meshes import MeshBuilder, make_material, random_colour
from dataset_tools.corpus.motion import (
    ClipSpec,
    Motion,
    bone_channel,
    bone_rotation,
    pick_profile,
    random_timing,
    scaled_quaternion,
)

FAMILY = "creature"
CLIP_CHOICES = ("wag_tail", "curl_tail", "nod_head", "lift_leg", "walk")
LEGS = ("fl", "fr", "bl", "br")


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _weights(points: np.ndarray, bones: dict[str, tuple], power: float = 4.0) -> dict[str, np.ndarray]:
    """Normalised inverse-distance weights of each point to each bone segment (two strongest kept)."""
    names = list(bones)
    dist = np.stack([_segment_distance(points, np.asarray(bones[n][0]), np.asarray(bones[n][1])) for n in names])
    w = 1.0 / (dist + 1e-3) ** power
    if len(names) > 2:
        cutoff = np.sort(w, axis=0)[-2]
        w = np.where(w >= cutoff, w, 0.0)
    w /= w.sum(axis=0, keepdims=True)
    return {n: w[i] for i, n in enumerate(names)}


def build(rng: random.Random, frames: int, max_clips: int) -> dict:
    a, b, c = rng.uniform(0.25, 0.45), rng.uniform(0.12, 0.22), rng.uniform(0.11, 0.2)
    leg_len, leg_r = rng.uniform(0.14, 0.35), rng.uniform(0.025, 0.05)
    zc = leg_len + c * 0.75
    neck_len, head_r = rng.uniform(0.06, 0.2), rng.uniform(0.08, 0.15)
    neck_angle = math.radians(rng.uniform(20.0, 60.0))
    tail_len, tail_r = rng.uniform(0.25, 0.6), rng.uniform(0.02, 0.05)
    n_tail = rng.randint(3, 5)
    tail_lift = math.radians(rng.uniform(-10.0, 40.0))
    tail_droop = math.radians(rng.uniform(-15.0, 15.0))

    # joint positions (world = armature space)
    root = ((a * 0.6, 0.0, zc), (-a * 0.6, 0.0, zc))
    neck_base = np.array([-a * 0.75, 0.0, zc + c * 0.35])
    head_c = neck_base + (neck_len + head_r * 0.6) * np.array([-math.cos(neck_angle), 0.0, math.sin(neck_angle)])
    snout = head_c + np.array([-head_r * 1.6, 0.0, -head_r * 0.2])
    tail_pts = [np.array([a * 0.85, 0.0, zc + c * 0.2])]
    seg = tail_len / n_tail
    for i in range(n_tail):
        angle = tail_lift + tail_droop * i
        tail_pts.append(tail_pts[-1] + seg * np.array([math.cos(angle), 0.0, math.sin(angle)]))
    legs = {}
    for name in LEGS:
        x = (-1 if name[0] == "f" else 1) * a * 0.55
        y = (-1 if name[1] == "l" else 1) * b * 0.55
        top = np.array([x, y, zc - c * 0.35])
        knee = np.array([x + rng.uniform(-0.3, 0.3) * leg_r, y, (top[2]) * 0.5])
        legs[name] = (top, knee, np.array([x, y, 0.0]))

    bones = {"root": (np.array(root[0]), np.array(root[1]), None), "neck": (neck_base, head_c, "root"),
             "head": (head_c, snout, "neck")}
    for i in range(n_tail):
        bones[f"tail_{i + 1}"] = (tail_pts[i], tail_pts[i + 1], "root" if i == 0 else f"tail_{i}")
    for name, (top, knee, foot) in legs.items():
        bones[f"leg_{name}_upper"] = (top, knee, "root")
        bones[f"leg_{name}_lower"] = (knee, foot, f"leg_{name}_upper")

    rig = bpy.data.armatures.new("rig")
    armature = bpy.data.objects.new("rig", rig)
    bpy.context.scene.collection.objects.link(armature)
    bpy.context.view_layer.objects.active = armature
    bpy.ops.object.mode_set(mode="EDIT")
    for name, (head, tail, parent) in bones.items():
        bone = rig.edit_bones.new(name)
        bone.head, bone.tail = tuple(head), tuple(tail)
        if parent is not None:
            bone.parent = rig.edit_bones[parent]
            bone.use_connect = False
    bpy.ops.object.mode_set(mode="OBJECT")

    # the skinned mesh: shells, each weighted to its own bones
    skin_colour = random_colour(rng)
    body_material = make_material("skin_material", rng, skin_colour)
    accent_material = make_material("accent_material", rng, random_colour(rng))
    mesh = MeshBuilder()
    shells = [(mesh.ellipsoid((0.0, 0.0, zc), (a, b, c), rings=12, segments=20), ["root"])]
    neck_pts = np.linspace(neck_base, head_c, 6)
    shells.append((mesh.tube(neck_pts, np.linspace(c * 0.45, head_r * 0.6, 6), segments=12), ["root", "neck", "head"]))
    shells.append((mesh.ellipsoid(head_c + np.array([-head_r * 0.4, 0.0, 0.0]), (head_r * 1.25, head_r * 0.9, head_r * 0.85),
                                  rings=8, segments=14), ["neck", "head"]))
    ears = rng.choice(("none", "pointed", "round"))
    for side in (-1, 1):
        if ears == "none":
            break
        root_pt = head_c + np.array([-head_r * 0.2, side * head_r * 0.45, head_r * 0.6])
        tip = root_pt + head_r * np.array([0.1, side * 0.25, 0.8 if ears == "pointed" else 0.45])
        radii = [head_r * 0.28, head_r * 0.04] if ears == "pointed" else [head_r * 0.3, head_r * 0.22]
        shells.append((mesh.tube([root_pt, tip], radii, material=1, segments=8), ["head"]))
    tail_rings = np.concatenate([np.linspace(tail_pts[i], tail_pts[i + 1], 4, endpoint=False) for i in range(n_tail)]
                                + [tail_pts[-1][None]])
    tail_radii = np.linspace(tail_r, tail_r * 0.3, len(tail_rings))
    accent_tail = rng.random() < 0.5
    shells.append((mesh.tube(tail_rings, tail_radii, material=int(accent_tail), segments=10),
                   ["root"] + [f"tail_{i + 1}" for i in range(n_tail)]))
    for name, (top, knee, foot) in legs.items():
        pts = np.concatenate([np.linspace(top, knee, 4, endpoint=False), np.linspace(knee, foot, 5)])
        shells.append((mesh.tube(pts, np.linspace(leg_r, leg_r * 0.8, len(pts)), segments=10),
                       ["root", f"leg_{name}_upper", f"leg_{name}_lower"]))
    body = mesh.build("body", [body_material, accent_material], parent=armature)
    verts = np.asarray(mesh.verts)
    groups = {name: body.vertex_groups.new(name=name) for name in bones}
    for indices, names in shells:
        idx = list(indices)
        weights = _weights(verts[idx], {n: bones[n][:2] for n in names})
        for name, w in weights.items():
            for i, wi in zip(idx, w, strict=True):
                if wi > 1e-3:
                    groups[name].add([i], float(wi), "REPLACE")
    body.modifiers.new("Armature", "ARMATURE").object = armature

    eye_material = make_material("eye_material", rng, (0.02, 0.02, 0.02), metallic=0.0, pattern=False)
    bpy.context.view_layer.update()
    for side, sign in (("left", -1), ("right", 1)):
        eye = MeshBuilder()
        eye.ellipsoid((0.0, 0.0, 0.0), (head_r * 0.18,) * 3, rings=6, segments=10)
        obj = eye.build(f"eye_{side}", [eye_material])
        obj.parent = armature
        obj.parent_type = "BONE"
        obj.parent_bone = "head"
        spot = head_c + np.array([-head_r * 1.0, sign * head_r * 0.55, head_r * 0.35])
        bpy.context.view_layer.update()
        obj.matrix_world = Matrix.Translation(tuple(spot))

    feet = np.array([f for (_, _, f) in legs.values()])
    margin = leg_r * 2.5
    stand = MeshBuilder()
    lo, hi = feet.min(axis=0) - margin, feet.max(axis=0) + margin
    stand.box((lo[0], lo[1], -rng.uniform(0.02, 0.05)), (hi[0], hi[1], 0.0))
    stand.build("stand", [make_material("stand_material", rng)])

    channels = {name: bone_channel(armature, name) for name in bones if name != "root"}
    clips = []
    for name in sorted(rng.sample(CLIP_CHOICES, min(max_clips, len(CLIP_CHOICES)))):
        clips.append(_clip(rng, name, armature, channels, n_tail))
    return {
        "parameters": {"body_radii": [a, b, c], "leg_length": leg_len, "leg_radius": leg_r, "neck_length": neck_len,
                       "head_radius": head_r, "ears": ears, "tail_length": tail_len, "tail_radius": tail_r, "tail_bones": n_tail},
        "clips": clips, "channels": list(channels.values()), "static_parts": ["stand"],
    }


def _rotations(armature, channels, spec: list[tuple[str, tuple, float]]) -> list[Motion]:
    motions = []
    for bone, axis, angle in spec:
        full = bone_rotation(armature, bone, axis, angle)
        motions.append(Motion(channels[bone], (lambda p, full=full: scaled_quaternion(full, p))))
    return motions


def _clip(rng: random.Random, name: str, armature, channels, n_tail: int) -> ClipSpec:
    profile = pick_profile(rng)
    tail = [f"tail_{i + 1}" for i in range(n_tail)]
    up = (0.0, 1.0, 0.0)  # about +Y: a bone along +X turns up, a leg swings back
    if name == "wag_tail":
        per = math.radians(rng.uniform(15.0, 30.0))
        spec = [(bone, (0.0, 0.0, 1.0), per) for bone in tail]
        profile = "swing"
    elif name == "curl_tail":
        per = math.radians(rng.uniform(15.0, 30.0)) * rng.choice((-1, 1))
        spec = [(bone, up, -per) for bone in tail]
    elif name == "nod_head":
        sign = rng.choice((-1, 1))  # negative: down
        spec = [("neck", up, sign * math.radians(rng.uniform(20.0, 40.0))),
                ("head", up, sign * math.radians(rng.uniform(10.0, 30.0)))]
    elif name == "lift_leg":
        leg = rng.choice(LEGS)
        swing = math.radians(rng.uniform(35.0, 65.0))
        sign = 1 if leg[0] == "f" else -1  # front legs reach forward (-X), hind legs back; the knee tucks
        spec = [(f"leg_{leg}_upper", up, sign * swing), (f"leg_{leg}_lower", up, -sign * swing * 1.5)]
        name = f"lift_leg_{leg}"
    else:  # walk in place: diagonal pairs swing in opposite phase
        swing = math.radians(rng.uniform(20.0, 35.0))
        spec = [(f"leg_{leg}_upper", up, swing * (1 if leg in ("fl", "br") else -1)) for leg in LEGS]
        profile = "swing"
    return ClipSpec(name, _rotations(armature, channels, spec), profile, random_timing(rng, profile))
