"""The procedural corpus: every family exports a valid animated GLB that re-imports with its clips,
objects and bones; seeds are deterministic; every clip has a static and a clearly moving part.

bpy runs in subprocesses (corpus_probe.py), twice, so determinism is checked across processes.
"""

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_tools.corpus.families import FAMILIES

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.blender
SEEDS = (1, 2)


def _probe(out: Path, items: list[str]) -> list[dict]:
    done = subprocess.run([sys.executable, str(HERE / "corpus_probe.py"), str(out), *items],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    pytest.importorskip("bpy")
    items = [f"{family}:{seed}" for family in FAMILIES for seed in SEEDS]
    first = _probe(tmp_path_factory.mktemp("corpus_a"), items)
    again = _probe(tmp_path_factory.mktemp("corpus_b"), [f"{family}:{SEEDS[0]}" for family in FAMILIES])
    return first, again


def _glb_json(path: str) -> dict:
    data = Path(path).read_bytes()
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF" and version == 2 and length == len(data)
    chunk_length, chunk_type = struct.unpack("<I4s", data[12:20])
    assert chunk_type == b"JSON"
    return json.loads(data[20:20 + chunk_length])


def _expected_objects(record: dict) -> set[str]:
    p = record["parameters"]
    family = record["family"]
    if family == "cabinet":
        return {"carcass"} | {f"drawer_{i}" for i in range(p["drawers"])} | {f"door_{i}" for i in range(p["doors"])}
    if family == "box":
        return {"base", "flap_left", "flap_right"} if p["variant"] == "flaps" else {"base", "lid"}
    if family == "lamp":
        return {"base", "swivel", "lower_arm", "upper_arm", "head"}
    return {"body", "eye_left", "eye_right", "stand"}


def test_every_family_reimports_with_its_clips_objects_and_bones(probed):
    first, _ = probed
    assert {r["record"]["family"] for r in first} == set(FAMILIES)
    for result in first:
        record, back = result["record"], result["reimport"]
        name = record["id"]
        gltf = _glb_json(result["path"])
        # animations: one glTF animation per clip, each with channels, and they come back as clips
        assert sorted(a["name"] for a in gltf["animations"]) == sorted(c["name"] for c in record["clips"]), name
        assert all(a["channels"] for a in gltf["animations"]), name
        assert back["clips"] == sorted(c["name"] for c in record["clips"]), name
        assert set(back["objects"]) == set(record["objects"]) == _expected_objects(record), name
        if record["family"] == "creature":
            n_tail = record["parameters"]["tail_bones"]
            assert len(back["bones"]) == len(record["bones"]) == 1 + 2 + n_tail + 8, name
            assert back["skinned"] == ["body"] and len(gltf["skins"]) == 1, name
        else:
            assert back["bones"] == [] and "skins" not in gltf, name


def test_every_clip_has_a_static_and_a_clearly_moving_part_after_reimport(probed):
    first, _ = probed
    for result in first:
        record, motion = result["record"], result["reimport"]["motion"]
        diagonal = record["diagonal"]
        for clip in record["clips"]:
            disp = motion[clip["name"]]
            assert clip["moving_parts"] and clip["static_parts"], (record["id"], clip)
            for part in clip["moving_parts"]:
                assert disp[part] > 0.03 * diagonal, (record["id"], clip["name"], part, disp)
            for part in clip["static_parts"]:
                assert disp[part] < 1e-3 * diagonal, (record["id"], clip["name"], part, disp)
        static_everywhere = {"cabinet": "carcass", "box": "base", "lamp": "base", "creature": "stand"}[record["family"]]
        assert all(static_everywhere in c["static_parts"] for c in record["clips"])


def test_patterned_materials_come_back_as_textures_around_their_colour(probed):
    first, _ = probed
    patterned = 0
    for result in first:
        record, textures = result["record"], result["reimport"]["textures"]
        for material in record["materials"]:
            if material["pattern"] is None:
                assert material["name"] not in textures, (record["id"], material)
                continue
            patterned += 1
            back = textures[material["name"]]  # the packed image survived the GLB round trip
            assert back["uvs"] and back["std"] > 0.01, (record["id"], material, back)
            # the pattern shades the material's colour: its mean hue stays that colour's
            mean, colour = np.array(back["mean"]), np.array(material["colour"])
            assert np.abs(mean - colour).max() < 0.2 and np.argmax(mean) == np.argmax(colour), (record["id"], back)
    assert patterned >= 3 * len(first)


def test_surface_patterns_tile_and_stay_in_range():
    meshes = pytest.importorskip("dataset_tools.corpus.meshes")
    for kind in meshes.PATTERNS:
        field = meshes.surface_pattern(kind, np.random.default_rng(0), 64)
        assert field.shape == (64, 64) and field.min() >= -1 and field.max() <= 1 and field.std() > 0.1, kind
        # tileable: the step across the wrap is no larger than the largest column step inside
        inside = np.abs(np.diff(field, axis=1)).mean(axis=0).max()
        assert np.abs(field[:, 0] - field[:, -1]).mean() <= inside + 1e-6, kind
    with pytest.raises(ValueError, match="noise"):
        meshes.surface_pattern("plaid", np.random.default_rng(0))
    uvs = meshes.box_projected_uvs(np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.0]]), [(0, 1, 2, 3)], tile=0.5)
    assert uvs.tolist() == [[0, 0], [2, 0], [2, 2], [0, 2]]  # a face in the xy plane maps x, y / tile


def test_same_seed_same_asset_other_seed_other_asset(probed):
    first, again = probed
    by_key = {(r["record"]["family"], r["record"]["seed"]): r for r in first}
    for result in again:
        family = result["record"]["family"]
        same = by_key[(family, SEEDS[0])]
        other = by_key[(family, SEEDS[1])]
        digest = hashlib.sha256(Path(result["path"]).read_bytes()).hexdigest()
        assert digest == hashlib.sha256(Path(same["path"]).read_bytes()).hexdigest(), family
        assert digest != hashlib.sha256(Path(other["path"]).read_bytes()).hexdigest(), family
        strip = lambda r: {k: v for k, v in r["record"].items() if k != "seconds"}  # noqa: E731
        assert strip(result) == strip(same), family
        assert same["record"]["parameters"] != other["record"]["parameters"], family


def test_generate_rejects_bad_requests(tmp_path):
    pytest.importorskip("bpy")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from dataset_tools.corpus.generate import generate_asset\n"
        "for kwargs in ({'family': 'teapot'}, {'family': 'box', 'frames': 2}):\n"
        "    try:\n"
        "        generate_asset(kwargs.pop('family'), 0, sys.argv[2], **kwargs)\n"
        "    except ValueError as exc:\n"
        "        print('ValueError:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(HERE.parents[1]), str(tmp_path / "x.glb")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unknown corpus family 'teapot'" in done.stdout and "at least 4 frames" in done.stdout
    assert not (tmp_path / "x.glb").exists()
