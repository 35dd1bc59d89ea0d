"""Desk lamps: a static base and a chain of jointed parts (swivel, lower arm, upper arm, head).

Each part is an object parented to the previous one with its origin on its joint, so turning one
joint carries everything above it (a hierarchy of rotating parts). Clips turn one joint, or the two
arm joints together; the base always stays still and parts below the turned joint too.
"""

from __future__ import annotations

import math
import random

import numpy as np

from dataset_tools.corpus.meshes import MeshBuilder, make_material, random_colour
from dataset_tools.corpus.motion import ClipSpec, Motion, object_channel, pick_profile, random_timing

FAMILY = "lamp"
CLIP_CHOICES = ("swivel", "raise_arm", "bend_elbow", "tilt_head", "reach")


def build(rng: random.Random, frames: int, max_clips: int) -> dict:
    base_r = rng.uniform(0.12, 0.22)
    base_h = rng.uniform(0.025, 0.06)
    l1, l2 = rng.uniform(0.3, 0.55), rng.uniform(0.25, 0.5)
    arm_r = rng.uniform(0.012, 0.025)
    shade_r, shade_l = rng.uniform(0.06, 0.13), rng.uniform(0.08, 0.16)
    a1 = math.radians(rng.uniform(-35.0, 5.0))  # lower arm leans back (rotation about X)
    a2 = math.radians(rng.uniform(70.0, 120.0))  # elbow bends forward
    a3 = math.radians(rng.uniform(30.0, 80.0))  # head points down-forward
    arm_colour = random_colour(rng)
    metal = make_material("arm_material", rng, arm_colour, metallic=rng.choice((0.0, 0.7)))
    base_material = make_material("base_material", rng, arm_colour if rng.random() < 0.5 else random_colour(rng))
    shade_material = make_material("shade_material", rng, random_colour(rng))
    bulb_material = make_material("bulb_material", rng, (1.0, 0.95, 0.75), metallic=0.0, pattern=False)
    joint_material = make_material("joint_material", rng, random_colour(rng, value=(0.1, 0.5)))

    base = MeshBuilder()
    if rng.random() < 0.6:
        base.cylinder((0.0, 0.0, 0.0), (0.0, 0.0, base_h), base_r, segments=24)
    else:
        base.box((-base_r, -base_r * 0.8, 0.0), (base_r, base_r * 0.8, base_h))
    base_obj = base.build("base", [base_material])

    turret_h = rng.uniform(0.04, 0.1)
    turret = MeshBuilder()
    turret.cylinder((0.0, 0.0, 0.0), (0.0, 0.0, turret_h), arm_r * 2.2, segments=12)
    turret_obj = turret.build("swivel", [joint_material], location=(0.0, 0.0, base_h), parent=base_obj)

    def arm(name: str, length: float, parent, location, angle: float):
        builder = MeshBuilder()
        builder.cylinder((-arm_r * 1.8, 0.0, 0.0), (arm_r * 1.8, 0.0, 0.0), arm_r * 1.6, material=1, segments=10)
        builder.cylinder((0.0, 0.0, 0.0), (0.0, 0.0, length), arm_r, segments=10)
        obj = builder.build(name, [metal, joint_material], location=location, parent=parent)
        obj.rotation_euler[0] = angle
        return obj

    lower = arm("lower_arm", l1, turret_obj, (0.0, 0.0, turret_h), a1)
    upper = arm("upper_arm", l2, lower, (0.0, 0.0, l1), a2)
    head = MeshBuilder()
    head.cylinder((-arm_r * 1.8, 0.0, 0.0), (arm_r * 1.8, 0.0, 0.0), arm_r * 1.6, material=2, segments=10)
    shade = rng.choice(("cone", "bell", "cylinder"))
    x = np.linspace(0.0, 1.0, 6)
    profile = {"cone": 0.35 + 0.65 * x, "bell": 0.3 + 0.7 * x**2.5, "cylinder": np.full_like(x, 0.7)}[shade]
    head.tube(np.outer(x * shade_l, (0.0, 0.0, 1.0)), shade_r * profile, segments=20)
    head.ellipsoid((0.0, 0.0, shade_l * 0.85), (shade_r * 0.45,) * 3, material=1, rings=6, segments=10)
    head_obj = head.build("head", [shade_material, bulb_material, joint_material], location=(0.0, 0.0, l2),
                          parent=upper)
    head_obj.rotation_euler[0] = a3

    joints = {
        "swivel": (object_channel(turret_obj, "rotation_euler", 2), math.radians(rng.uniform(35.0, 90.0))),
        "lower": (object_channel(lower, "rotation_euler", 0), math.radians(rng.uniform(20.0, 40.0))),
        "upper": (object_channel(upper, "rotation_euler", 0), math.radians(rng.uniform(25.0, 50.0))),
        "head": (object_channel(head_obj, "rotation_euler", 0), math.radians(rng.uniform(30.0, 60.0))),
    }
    signs = {k: rng.choice((-1, 1)) for k in joints}
    signs["lower"] = 1 if a1 < math.radians(-15) else rng.choice((-1, 1))  # a leaning-back arm comes forward
    # the upper arm must not fold onto the lower one nor point at the floor (into the base)
    worst = a2 + joints["upper"][1] + a1 + max(0.0, joints["lower"][1])
    if a2 + joints["upper"][1] > math.radians(130) or worst > math.radians(140):
        signs["upper"] = -1

    def targets(*names: str) -> list:
        return [(joints[n][0], signs[n] * joints[n][1]) for n in names]

    recipes = {"swivel": ("swivel",), "raise_arm": ("lower",), "bend_elbow": ("upper",), "tilt_head": ("head",),
               "reach": ("lower", "upper")}
    clips = []
    for name in sorted(rng.sample(CLIP_CHOICES, min(max_clips, len(CLIP_CHOICES)))):
        profile = pick_profile(rng)
        motions = [Motion(ch, (lambda p, ch=ch, full=full: ch.rest + p * full)) for ch, full in targets(*recipes[name])]
        clips.append(ClipSpec(name, motions, profile, random_timing(rng, profile)))
    return {
        "parameters": {"base_radius": base_r, "base_height": base_h, "lower_length": l1, "upper_length": l2,
                       "arm_radius": arm_r, "shade": shade, "shade_radius": shade_r, "shade_length": shade_l,
                       "rest_angles_deg": [math.degrees(a) for a in (a1, a2, a3)]},
        "clips": clips, "channels": [ch for ch, _ in joints.values()], "static_parts": ["base"],
    }
