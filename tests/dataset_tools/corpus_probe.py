"""Run in a subprocess by test_corpus.py: generate corpus assets, re-import each GLB in a fresh
scene and report what came back (objects, bones, animations and how far each object moves in each).

    python corpus_probe.py OUT_DIR family:seed [family:seed ...]   -> JSON on the last stdout line
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import numpy as np  # noqa: E402

from dataset_tools.corpus.generate import _world_vertices, generate_asset  # noqa: E402


def reimport(path: Path) -> dict:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(path))
    scene = bpy.context.scene
    helpers = {o.name for c in bpy.data.collections if c.name.startswith("glTF_not_exported") for o in c.all_objects}
    meshes = sorted((o for o in scene.objects if o.type == "MESH" and o.name not in helpers), key=lambda o: o.name)
    armatures = [o for o in scene.objects if o.type == "ARMATURE"]
    owners = [o for o in scene.objects if o.animation_data and len(o.animation_data.nla_tracks)]
    clips = sorted({t.name for o in owners for t in o.animation_data.nla_tracks})
    motion = {}
    for clip in clips:
        start, end = None, None
        for owner in owners:
            owner.animation_data.action = None
            for track in owner.animation_data.nla_tracks:
                track.mute = track.name != clip
                if track.name == clip:
                    for strip in track.strips:
                        start = strip.frame_start if start is None else min(start, strip.frame_start)
                        end = strip.frame_end if end is None else max(end, strip.frame_end)
        first, disp = {}, {o.name: 0.0 for o in meshes}
        for frame in np.linspace(start, end, 7):
            scene.frame_set(round(float(frame)))
            depsgraph = bpy.context.evaluated_depsgraph_get()
            for obj in meshes:
                co = _world_vertices(obj, depsgraph)
                first.setdefault(obj.name, co)
                disp[obj.name] = max(disp[obj.name], float(np.linalg.norm(co - first[obj.name], axis=1).max()))
        motion[clip] = disp
    skinned = [o.name for o in meshes if any(m.type == "ARMATURE" for m in o.modifiers)]
    return {"objects": [o.name for o in meshes], "bones": [b.name for a in armatures for b in a.data.bones],
            "clips": clips, "motion": motion, "skinned": skinned, "textures": base_colour_textures(meshes)}


def base_colour_textures(meshes) -> dict:
    """Material name -> mean RGB and spread of the image feeding its Base Color, and whether the
    mesh has UVs (absent: no texture linked)."""
    found = {}
    for obj in meshes:
        for slot in obj.material_slots:
            material = slot.material
            if material is None or not material.use_nodes:
                continue
            bsdf = next((n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
            links = bsdf.inputs["Base Color"].links if bsdf else []
            if not links or links[0].from_node.type != "TEX_IMAGE":
                continue
            image = links[0].from_node.image
            pixels = np.empty(len(image.pixels), np.float32)
            image.pixels.foreach_get(pixels)
            rgb = pixels.reshape(-1, 4)[:, :3]
            found[material.name] = {"mean": rgb.mean(axis=0).tolist(), "std": float(rgb.std(axis=0).mean()),
                                    "uvs": len(obj.data.uv_layers) > 0}
    return found


def main() -> None:
    out = Path(sys.argv[1])
    result = []
    for item in sys.argv[2:]:
        family, seed = item.split(":")
        path = out / f"{family}_{seed}.glb"
        record = generate_asset(family, int(seed), path, frames=12)
        result.append({"record": record, "path": str(path), "reimport": reimport(path)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
