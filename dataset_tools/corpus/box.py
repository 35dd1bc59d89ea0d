"""Boxes with lids: a static hollow base and a lid that opens (rigid parts, object animation).

Variants: a lid hinged at the back (flat or a rounded chest lid), two flaps hinged at the sides, a
lid that lifts off, a lid that slides out of a groove. Clips open one lid or both flaps.
"""

from __future__ import annotations

import math
import random

import numpy as np

from dataset_tools.corpus.meshes import MeshBuilder, hollow_box, make_material, random_colour
from dataset_tools.corpus.motion import ClipSpec, Motion, object_channel, pick_profile, random_timing

FAMILY = "box"
VARIANTS = ("hinged", "chest", "flaps", "lift", "slide")


def _chest_lid(builder: MeshBuilder, w: float, d: float, t: float, rise: float) -> None:
    """A half-cylinder-like lid along X over y in [-d, 0] (origin on the back hinge)."""
    n = 10
    angles = np.linspace(0.0, math.pi, n)
    ys = -d / 2 - (d / 2) * np.cos(angles)
    zs = rise * np.sin(angles)
    for i in range(n - 1):  # slabs approximating the arch, closed at both ends by stepped gables
        lo_y, hi_y = sorted((ys[i], ys[i + 1]))
        z = (zs[i] + zs[i + 1]) / 2
        builder.box((-w / 2, lo_y, z), (w / 2, hi_y, z + t))
        builder.box((-w / 2 - t, lo_y, 0.0), (-w / 2, hi_y, z + t))
        builder.box((w / 2, lo_y, 0.0), (w / 2 + t, hi_y, z + t))


def build(rng: random.Random, frames: int, max_clips: int) -> dict:
    w, d, h = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.9), rng.uniform(0.25, 0.7)
    t = rng.uniform(0.02, 0.05)
    variant = rng.choice(VARIANTS)
    feet = rng.uniform(0.03, 0.08) if rng.random() < 0.3 else 0.0
    base_colour = random_colour(rng)
    lid_colour = base_colour if rng.random() < 0.5 else random_colour(rng)
    base_material = make_material("base_material", rng, base_colour)
    lid_material = make_material("lid_material", rng, lid_colour)
    trim_material = make_material("trim_material", rng, random_colour(rng), metallic=rng.choice((0.0, 0.8)))

    base = MeshBuilder()
    hollow_box(base, (-w / 2, -d / 2, feet), (w / 2, d / 2, feet + h), t)
    if rng.random() < 0.5:  # a contrasting band or inner lining
        base.box((-w / 2 - 0.005, -d / 2 - 0.005, feet + h * 0.45), (w / 2 + 0.005, d / 2 + 0.005, feet + h * 0.55),
                 material=1)
    if feet > 0:
        for sx in (-1, 1):
            for sy in (-1, 1):
                x, y = sx * (w / 2 - 0.05), sy * (d / 2 - 0.05)
                base.box((x - 0.03, y - 0.03, 0.0), (x + 0.03, y + 0.03, feet), material=1)
    base.build("base", [base_material, trim_material])
    top = feet + h
    lid_t = rng.uniform(0.03, 0.08)
    movers = []
    if variant in ("hinged", "chest"):
        lid = MeshBuilder()
        if variant == "chest":
            _chest_lid(lid, w, d, t, rng.uniform(0.1, 0.3) * d + 0.05)
        else:
            over = rng.uniform(0.0, 0.03)
            lid.box((-w / 2 - over, -d - over, 0.0), (w / 2 + over, 0.0, lid_t))
        lid.box((-0.04, -d - 0.02, -0.05), (0.04, -d, 0.02), material=1)  # latch
        obj = lid.build("lid", [lid_material, trim_material], location=(0.0, d / 2, top))
        channel = object_channel(obj, "rotation_euler", 0)
        movers.append(("lid", [(channel, -math.radians(rng.uniform(60.0, 115.0)))]))
    elif variant == "flaps":
        for side, sign in (("left", -1), ("right", 1)):
            flap = MeshBuilder()
            lo_x, hi_x = (0.0, w / 2) if side == "left" else (-w / 2, 0.0)
            flap.box((lo_x, -d / 2, 0.0), (hi_x, d / 2, lid_t * 0.6))
            obj = flap.build(f"flap_{side}", [lid_material], location=(sign * w / 2, 0.0, top))
            channel = object_channel(obj, "rotation_euler", 1)
            # the left flap (hinge on -X) rises when turned negatively about Y, the right one positively
            movers.append((f"flap_{side}", [(channel, sign * math.radians(rng.uniform(70.0, 150.0)))]))
    elif variant == "lift":
        lid = MeshBuilder()
        lid.box((-w / 2 - 0.02, -d / 2 - 0.02, 0.0), (w / 2 + 0.02, d / 2 + 0.02, lid_t))
        lid.box((-w / 2 + t, -d / 2 + t, -0.04), (w / 2 - t, d / 2 - t, 0.0))  # plug into the opening
        knob_r = min(w, d) * 0.08
        lid.cylinder((0.0, 0.0, lid_t), (0.0, 0.0, lid_t + knob_r * 1.5), knob_r, material=1, segments=12)
        obj = lid.build("lid", [lid_material, trim_material], location=(0.0, 0.0, top))
        up = object_channel(obj, "location", 2)
        aside = object_channel(obj, "location", rng.choice((0, 1)))
        tilt = object_channel(obj, "rotation_euler", rng.choice((0, 1)))
        movers.append(("lid", [(up, rng.uniform(0.25, 0.5) * h + 0.08),
                               (aside, rng.uniform(-0.5, 0.5) * w), (tilt, math.radians(rng.uniform(-25.0, 25.0)))]))
    else:  # slide
        lid = MeshBuilder()
        lid.box((-w / 2 + t / 2, -d / 2, 0.0), (w / 2 - t / 2, d / 2, lid_t * 0.6))
        lid.box((-0.05, -d / 2 + 0.03, lid_t * 0.6), (0.05, -d / 2 + 0.07, lid_t * 1.4), material=1)  # grip
        obj = lid.build("lid", [lid_material, trim_material], location=(0.0, 0.0, top))
        channel = object_channel(obj, "location", 1)
        movers.append(("lid", [(channel, -rng.uniform(0.45, 0.8) * d)]))

    clips = []
    if len(movers) == 1:
        clips.append(_clip(rng, "open_lid", movers[0][1]))
    else:
        names = ["open_left", "open_right", "open_both"]
        chosen = rng.sample(names, min(max_clips, 3))
        for name in sorted(chosen):
            targets = {"open_left": movers[0][1], "open_right": movers[1][1],
                       "open_both": movers[0][1] + movers[1][1]}[name]
            clips.append(_clip(rng, name, targets))
    channels = [ch for _, targets in movers for ch, _ in targets]
    return {
        "parameters": {"width": w, "depth": d, "height": h, "wall": t, "feet": feet, "variant": variant,
                       "lid_thickness": lid_t},
        "clips": clips, "channels": channels, "static_parts": ["base"],
    }


def _clip(rng: random.Random, name: str, targets: list) -> ClipSpec:
    profile = pick_profile(rng)
    motions = [Motion(ch, (lambda p, ch=ch, full=full: ch.rest + p * full)) for ch, full in targets]
    return ClipSpec(name, motions, profile, random_timing(rng, profile))
