"""Build one corpus asset in a fresh scene, check its clips and export it as an animated GLB (bpy).

``generate_asset(family, seed, path)`` returns the asset's manifest record. Every clip is checked
by evaluating it: at least one object must stay still and one must move at least
``MIN_MOTION_REL`` of the asset's size, else ``AssetCheckError``. As a worker process
(``python -m dataset_tools.corpus.generate JOBS.jsonl``) it builds every job of a JSON-lines file
(``{"family", "seed", "glb", "record"}``), writing the GLB and then its record (the record is the
"done" marker), and prints one JSON line per asset.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import bpy
import numpy as np

from dataset_tools.corpus.families import asset_id, family_module
from dataset_tools.corpus.meshes import material_record
from dataset_tools.corpus.motion import bake_clips

DEFAULT_FRAMES = 24
DEFAULT_MAX_CLIPS = 2
FPS = 24
#: a clip must move some object this far (fraction of the asset's bounding-box diagonal)
MIN_MOTION_REL = 0.03
#: objects moving less than this (fraction of the diagonal) are static in the clip
STATIC_REL = 1e-4
CHECK_FRAMES = 7


class AssetCheckError(RuntimeError):
    """A generated asset whose clips break the corpus rules (no static or no clearly moving part)."""


def _mesh_objects() -> list[bpy.types.Object]:
    return sorted((o for o in bpy.context.scene.objects if o.type == "MESH"), key=lambda o: o.name)


def _world_vertices(obj, depsgraph) -> np.ndarray:
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", co)
        m = np.array(evaluated.matrix_world)
        co = co.reshape(-1, 3)
        return co @ m[:3, :3].T + m[:3, 3]
    finally:
        evaluated.to_mesh_clear()


def _solo(clip_name: str | None) -> None:
    for obj in bpy.context.scene.objects:
        if obj.animation_data:
            for track in obj.animation_data.nla_tracks:
                track.mute = clip_name is not None and track.name != clip_name


def measure_clips(clip_names: list[str], frames: int) -> dict[str, dict[str, float]]:
    """Per clip, each mesh object's largest vertex displacement from the clip's first frame."""
    scene = bpy.context.scene
    objects = _mesh_objects()
    result = {}
    for name in clip_names:
        _solo(name)
        first, disp = {}, {o.name: 0.0 for o in objects}
        for frame in np.linspace(1, frames, CHECK_FRAMES).round().astype(int):
            scene.frame_set(int(frame))
            depsgraph = bpy.context.evaluated_depsgraph_get()
            for obj in objects:
                co = _world_vertices(obj, depsgraph)
                if obj.name not in first:
                    first[obj.name] = co
                disp[obj.name] = max(disp[obj.name], float(np.linalg.norm(co - first[obj.name], axis=1).max()))
        result[name] = disp
    _solo(None)
    scene.frame_set(1)
    return result


def _diagonal() -> float:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    co = np.concatenate([_world_vertices(o, depsgraph) for o in _mesh_objects()])
    return float(np.linalg.norm(co.max(axis=0) - co.min(axis=0)))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


def generate_asset(family: str, seed: int, path: str | Path, *, frames: int = DEFAULT_FRAMES,
                   max_clips: int = DEFAULT_MAX_CLIPS) -> dict:
    """Build ``family`` from ``seed`` and export it to ``path`` (GLB); returns its manifest record."""
    if frames < 4:
        raise ValueError(f"clips need at least 4 frames, got {frames}")
    if max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {max_clips}")
    module = family_module(family)
    started = time.monotonic()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.frame_start, scene.frame_end = 1, frames
    scene.frame_set(1)
    rng = random.Random(f"puppet-master-corpus:{family}:{seed}")
    built = module.build(rng, frames, max_clips)
    diagonal = _diagonal()
    bake_clips(built["clips"], built["channels"], frames)
    motion = measure_clips([c.name for c in built["clips"]], frames)

    clips = []
    for spec in built["clips"]:
        disp = motion[spec.name]
        moving = sorted(n for n, d in disp.items() if d >= MIN_MOTION_REL * diagonal)
        static = sorted(n for n, d in disp.items() if d <= STATIC_REL * diagonal)
        if not moving or not static:
            raise AssetCheckError(
                f"{asset_id(family, seed)} clip {spec.name!r}: {len(moving)} clearly moving and {len(static)} static "
                f"objects (largest motion {max(disp.values()) / diagonal:.3f} of the size)")
        clips.append({
            "name": spec.name, "profile": spec.profile, "timing": list(spec.timing),
            "animated": spec.moving_parts(),  # the objects or bones keyed away from rest
            "moving_parts": moving, "static_parts": static,
            "motion_rel": {n: d / diagonal for n, d in sorted(disp.items())},
        })

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pm_corpus_") as tmp:
        exported = Path(tmp) / path.name
        bpy.ops.export_scene.gltf(
            filepath=str(exported), export_format="GLB", export_animations=True, export_animation_mode="NLA_TRACKS",
            export_force_sampling=True, export_optimize_animation_size=False,
            export_optimize_animation_keep_anim_object=True, export_yup=True, export_apply=False,
        )
        partial = path.with_name(path.name + ".part")  # not a GLB name: render.py never picks it up
        shutil.copyfile(exported, partial)
        os.replace(partial, path)
    armatures = [o for o in scene.objects if o.type == "ARMATURE"]
    return _rounded({
        "id": asset_id(family, seed), "family": family, "seed": seed, "frames": frames, "fps": FPS,
        "parameters": built["parameters"],
        "materials": [material_record(m) for m in sorted(bpy.data.materials, key=lambda m: m.name)],
        "objects": [o.name for o in _mesh_objects()],
        "bones": [b.name for a in armatures for b in a.data.bones],
        "bone_parents": {b.name: b.parent.name if b.parent else None for a in armatures for b in a.data.bones},
        "clips": clips,
        "diagonal": diagonal,
        "seconds": time.monotonic() - started,
    })


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def run_jobs(jobs_file: str) -> int:
    """Build every job of a JSON-lines file; one printed JSON line per asset (ok or failed)."""
    failures = 0
    for line in Path(jobs_file).read_text().splitlines():
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            record = generate_asset(job["family"], int(job["seed"]), job["glb"], frames=int(job["frames"]),
                                    max_clips=int(job["max_clips"]))
            record.update(job.get("extra", {}))
            _write_json_atomic(Path(job["record"]), record)
            status = {"id": record["id"], "status": "ok", "seconds": record["seconds"]}
        except Exception as exc:  # one bad asset never stops the worker
            failures += 1
            status = {"id": asset_id(job["family"], int(job["seed"])), "status": "failed",
                      "reason": f"{type(exc).__name__}: {exc}",
                      "trace": traceback.format_exc(limit=3)[-800:]}
        print("CORPUS " + json.dumps(status), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_jobs(sys.argv[-1]))
