"""Cabinets: a static carcass with hinged doors and sliding drawers (rigid parts, object animation).

The front faces -Y. Layouts: a column of drawers, one or two doors, or drawers above doors, in one
or two columns. Each door or drawer is its own object (handle included) with its origin on its
hinge or at its closed position. Clips open one part, or two at once; the carcass and every part
not in the clip stay still.
"""

from __future__ import annotations

import math
import random

from dataset_tools.corpus.meshes import MeshBuilder, hollow_box, make_material, random_colour
from dataset_tools.corpus.motion import ClipSpec, Motion, object_channel, pick_profile, random_timing

FAMILY = "cabinet"


def _carcass(rng, w, d, h, t, legs, cells, columns, colour) -> None:
    builder = MeshBuilder()
    z0 = legs
    hollow_box(builder, (-w / 2, -d / 2, z0), (w / 2, d / 2, z0 + h), t, open_side="front")
    for (x0, x1, z_lo, _z_hi) in cells:  # shelves between rows
        if z_lo > z0 + t + 1e-6:
            builder.box((x0, -d / 2, z_lo - t / 2), (x1, d / 2 - t, z_lo + t / 2))
    if columns == 2:
        builder.box((-t / 2, -d / 2, z0 + t), (t / 2, d / 2 - t, z0 + h - t))
    if rng.random() < 0.5:  # a worktop overhanging the front and sides
        over = rng.uniform(0.01, 0.05)
        builder.box((-w / 2 - over, -d / 2 - over - t, z0 + h), (w / 2 + over, d / 2, z0 + h + rng.uniform(0.02, 0.05)))
    if legs > 0:
        r = min(w, d) * 0.05
        for sx in (-1, 1):
            for sy in (-1, 1):
                x, y = sx * (w / 2 - 2 * r), sy * (d / 2 - 2 * r)
                builder.cylinder((x, y, 0.0), (x, y, legs), r, segments=8)
    builder.build("carcass", [make_material("carcass_material", rng, colour)])


def _handle(builder: MeshBuilder, rng, x, z, y_front, size, vertical: bool) -> None:
    if rng.random() < 0.5:  # bar handle
        lx, lz = (0.012, size) if vertical else (size, 0.012)
        builder.box((x - lx, y_front - 0.035, z - lz), (x + lx, y_front, z + lz), material=1)
    else:  # knob
        builder.cylinder((x, y_front, z), (x, y_front - 0.035, z), 0.02, material=1, segments=10)


def build(rng: random.Random, frames: int, max_clips: int) -> dict:
    w, d, h = rng.uniform(0.5, 1.3), rng.uniform(0.35, 0.7), rng.uniform(0.5, 1.5)
    t = rng.uniform(0.025, 0.045)
    legs = rng.uniform(0.05, 0.18) if rng.random() < 0.4 else 0.0
    layout = rng.choice(("drawers", "doors", "mixed"))
    columns = 2 if (w > 0.8 and rng.random() < 0.5) else 1
    wood = rng.random() < 0.4
    body_colour = random_colour(rng, hue=rng.uniform(0.05, 0.11), saturation=(0.4, 0.7)) if wood else random_colour(rng)
    front_colour = body_colour if rng.random() < 0.4 else random_colour(rng)
    front_material = make_material("front_material", rng, front_colour)
    handle_material = make_material("handle_material", rng, random_colour(rng, value=(0.1, 0.9)),
                                    metallic=rng.choice((0.0, 0.8)))
    inner_h = h - 2 * t
    gap = 0.006
    parts = []  # (kind, name, x0, x1, z0, z1)
    column_edges = [(-w / 2 + t, w / 2 - t)] if columns == 1 else [(-w / 2 + t, -t / 2), (t / 2, w / 2 - t)]
    z_base = legs + t
    if layout == "drawers":
        rows = rng.randint(2, 5) if h > 0.8 else rng.randint(1, 3)
        splits = [inner_h * i / rows for i in range(rows + 1)]
        bands = [("drawer", splits[i], splits[i + 1]) for i in range(rows)]
    elif layout == "doors":
        bands = [("door", 0.0, inner_h)]
    else:
        top = inner_h * rng.uniform(0.2, 0.35)
        bands = [("door", 0.0, inner_h - top), ("drawer", inner_h - top, inner_h)]
    doors_per_band = 2 if (columns == 1 and w > 0.7 and rng.random() < 0.5) else 1
    counter = {"drawer": 0, "door": 0}
    cells = []
    for kind, lo, hi in bands:
        for x0, x1 in column_edges:
            cells.append((x0, x1, z_base + lo, z_base + hi))
            if kind == "door" and doors_per_band == 2:
                xm = (x0 + x1) / 2
                spans = [(x0, xm, "left"), (xm, x1, "right")]
            elif kind == "door":
                spans = [(x0, x1, rng.choice(("left", "right")))]
            else:
                spans = [(x0, x1, None)]
            for a, b, hinge in spans:
                name = f"{kind}_{counter[kind]}"
                counter[kind] += 1
                parts.append((kind, name, a, b, z_base + lo, z_base + hi, hinge))
    _carcass(rng, w, d, h, t, legs, cells, columns, body_colour)

    channels, movers = [], []
    for kind, name, x0, x1, z0, z1, hinge in parts:
        builder = MeshBuilder()
        x0g, x1g, z0g, z1g = x0 + gap, x1 - gap, z0 + gap, z1 - gap
        front = -d / 2
        if kind == "drawer":
            depth = d - 2 * t
            builder.box((x0g, front - t, z0g), (x1g, front, z1g))  # front panel
            hollow_box(builder, (x0g + t, front, z0g), (x1g - t, front + depth, z1g - t), t * 0.6)
            _handle(builder, rng, (x0 + x1) / 2, (z0 + z1) / 2 + (z1 - z0) * 0.15, front - t,
                    min(0.12, (x1 - x0) * 0.25), vertical=False)
            obj = builder.build(name, [front_material, handle_material])
            channel = object_channel(obj, "location", 1)
            travel = rng.uniform(0.45, 0.8) * depth
            movers.append((name, [(channel, -travel)]))
            channels.append(channel)
        else:
            hinge_x = x0g if hinge == "left" else x1g
            width = x1g - x0g
            lo_x, hi_x = (0.0, width) if hinge == "left" else (-width, 0.0)
            builder.box((lo_x, -t, z0g), (hi_x, 0.0, z1g))
            hx = hi_x - 0.06 if hinge == "left" else lo_x + 0.06
            _handle(builder, rng, hx, (z0 + z1) / 2, -t, min(0.12, (z1 - z0) * 0.2), vertical=True)
            obj = builder.build(name, [front_material, handle_material], location=(hinge_x, front, 0.0))
            channel = object_channel(obj, "rotation_euler", 2)
            angle = math.radians(rng.uniform(60.0, 110.0)) * (-1 if hinge == "left" else 1)
            movers.append((name, [(channel, angle)]))
            channels.append(channel)

    clips = _clips(rng, movers, max_clips)
    return {
        "parameters": {"width": w, "depth": d, "height": h, "thickness": t, "legs": legs, "layout": layout,
                       "columns": columns, "drawers": counter["drawer"], "doors": counter["door"]},
        "clips": clips, "channels": channels, "static_parts": ["carcass"],
    }


def _clips(rng: random.Random, movers: list, max_clips: int) -> list[ClipSpec]:
    """One clip per part (a random subset), plus one with two parts at once when there is room."""
    order = rng.sample(movers, len(movers))
    combined = len(movers) >= 2 and max_clips >= 2 and rng.random() < 0.5
    singles = order[: max(1, max_clips - int(combined))]
    clips = []
    for name, targets in singles:
        clips.append(_clip(rng, f"open_{name}", targets))
    if combined:
        pair = rng.sample(movers, 2)
        clips.append(_clip(rng, "open_two", pair[0][1] + pair[1][1]))
    return clips


def _clip(rng: random.Random, name: str, targets: list) -> ClipSpec:
    profile = pick_profile(rng)
    motions = [Motion(ch, (lambda p, ch=ch, full=full: ch.rest + p * full)) for ch, full in targets]
    return ClipSpec(name, motions, profile, random_timing(rng, profile))
