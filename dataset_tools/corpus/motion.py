"""Animation clips for corpus assets (inside Blender): channels, motion profiles, NLA tracks.

A *channel* is one animatable property of an object or pose bone (``rotation_euler[0]``,
``location[1]``, ``rotation_quaternion``) with its rest value. A clip moves some channels from rest
along a profile; every other channel of the asset is keyed constant at rest in that clip, so each
exported glTF animation fully sets every movable node and a player (or the renderer) never shows a
pose left over from another clip. Each clip becomes one NLA track per animated owner, all with the
clip's name, which the glTF exporter (``NLA_TRACKS`` mode) merges into one animation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import bpy
from mathutils import Matrix, Quaternion, Vector

PROFILES = ("ease", "ease_delayed", "open_close", "swing")


@dataclass
class Channel:
    owner: bpy.types.Object  # holder of the animation data (the armature for pose bones)
    target: object  # the object or pose bone whose property is keyed
    prop: str
    index: int  # -1: the whole vector / quaternion
    rest: object
    part: str  # the object (or bone) this channel moves, for the manifest

    def set(self, value) -> None:
        if self.index >= 0:
            getattr(self.target, self.prop)[self.index] = value
        else:
            setattr(self.target, self.prop, value)

    def key(self, frame: int) -> None:
        self.target.keyframe_insert(self.prop, index=self.index, frame=frame)


@dataclass
class Motion:
    channel: Channel
    value: Callable[[float], object]  # progress in [0, 1] (0 = rest) -> property value


@dataclass
class ClipSpec:
    name: str
    motions: list[Motion] = field(default_factory=list)
    profile: str = "ease"
    timing: tuple[float, float] = (0.0, 1.0)

    def moving_parts(self) -> list[str]:
        return sorted({m.channel.part for m in self.motions})


def smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def progress(profile: str, t: float, timing: tuple[float, float]) -> float:
    """How far the motion is (0 rest .. 1 full) at clip time ``t`` in [0, 1]."""
    start, end = timing
    x = (t - start) / max(end - start, 1e-6)
    if profile in ("ease", "ease_delayed"):
        return smoothstep(x)
    if profile == "open_close":  # out and most of the way back
        return smoothstep(2.0 * x) if x < 0.5 else 1.0 - 0.7 * smoothstep(2.0 * x - 1.0)
    if profile == "swing":  # a full oscillation, for wagging: -1 .. 1 (callers scale it)
        x = min(max(x, 0.0), 1.0)
        return math.sin(2.0 * math.pi * x) * smoothstep(4.0 * x) if x < 0.75 else math.sin(2.0 * math.pi * x)
    raise ValueError(f"unknown motion profile {profile!r}")


def random_timing(rng: random.Random, profile: str) -> tuple[float, float]:
    if profile == "ease_delayed":
        return rng.uniform(0.1, 0.3), rng.uniform(0.75, 1.0)
    if profile == "swing":
        return 0.0, 1.0
    return rng.uniform(0.0, 0.1), rng.uniform(0.85, 1.0)


def pick_profile(rng: random.Random) -> str:
    return rng.choices(("ease", "ease_delayed", "open_close"), weights=(0.55, 0.2, 0.25))[0]


def object_channel(obj: bpy.types.Object, prop: str, index: int) -> Channel:
    return Channel(obj, obj, prop, index, getattr(obj, prop)[index], obj.name)


def bone_channel(armature: bpy.types.Object, bone: str) -> Channel:
    pose_bone = armature.pose.bones[bone]
    pose_bone.rotation_mode = "QUATERNION"
    return Channel(armature, pose_bone, "rotation_quaternion", -1, Quaternion((1, 0, 0, 0)), bone)


def bone_rotation(armature: bpy.types.Object, bone: str, world_axis, angle: float) -> Quaternion:
    """The pose quaternion that turns ``bone`` by ``angle`` about a world axis (armature at identity)."""
    rest: Matrix = armature.data.bones[bone].matrix_local.to_3x3()
    axis = rest.transposed() @ Vector(world_axis)
    return Quaternion(axis.normalized(), angle)


def scaled_quaternion(q: Quaternion, amount: float) -> Quaternion:
    axis, angle = q.to_axis_angle()
    return Quaternion(axis, angle * amount)


def bake_clips(clips: list[ClipSpec], channels: list[Channel], frames: int) -> None:
    """Key every channel at every frame of every clip and push each clip to named NLA tracks."""
    owners: dict[str, list[Channel]] = {}
    for channel in channels:
        owners.setdefault(channel.owner.name, []).append(channel)
    for clip in clips:
        moving = {id(m.channel): m for m in clip.motions}
        for owner_name, owned in owners.items():
            owner = bpy.data.objects[owner_name]
            data = owner.animation_data or owner.animation_data_create()
            action = bpy.data.actions.new(f"{clip.name}_{owner_name}")
            data.action = action
            for frame in range(1, frames + 1):
                t = (frame - 1) / (frames - 1)
                p = progress(clip.profile, t, clip.timing)
                for channel in owned:
                    motion = moving.get(id(channel))
                    channel.set(channel.rest if motion is None else motion.value(p))
                    channel.key(frame)
            track = data.nla_tracks.new()
            track.name = clip.name
            track.strips.new(clip.name, 1, action)
            data.action = None
    for channel in channels:
        channel.set(channel.rest)
    bpy.context.view_layer.update()
