"""build_corpus.py end to end: generate -> manifest (split by seed range, shards, resume) -> render.py
-> drags.json -> id lists, with tiny sizes; drags land on the parts that move, never on static ones."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_tools.clip_folder import load_clip
from dataset_tools.drag_schema import read_drags_json
from dataset_tools.id_lists import read_id_list
from tests.shared_data import SHARED

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.blender


def _build(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "dataset_tools.build_corpus", *args, "--no-progress"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    if check:
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def test_manifest_split_shards_and_resume(tmp_path):
    pytest.importorskip("bpy")
    common = ["--families", "lamp", "box", "--train", "2", "--heldout", "1", "--train-seed-start", "5",
              "--heldout-seed-start", "100", "--frames", "8"]
    first = _build(str(tmp_path), *common, "--shard", "0/2")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    built_first = {r["id"] for r in manifest["assets"]}
    assert built_first and manifest["missing"], first.stdout  # shard 0 builds only part of the 6 assets
    _build(str(tmp_path), *common, "--shard", "1/2")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["format"] == "puppet-master/procedural-corpus" and manifest["missing"] == []
    assert manifest["splits"] == {"train": {"seed_range": [5, 7]}, "heldout": {"seed_range": [100, 101]}}
    ids = {(r["family"], r["seed"]): r for r in manifest["assets"]}
    assert set(ids) == {(f, s) for f in ("lamp", "box") for s in (5, 6, 100)}
    for (family, seed), record in ids.items():
        assert record["split"] == ("train" if seed < 100 else "heldout")
        assert record["id"] == f"{family}_{seed:06d}"
        assert record["glb"] == f"glb/{record['split']}/{record['id']}.glb"
        assert (tmp_path / record["glb"]).is_file()
    # resume: nothing is built again, files untouched
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "glb").rglob("*.glb")}
    again = _build(str(tmp_path), *common)
    assert "6 of 6 assets done before, 0 to build" in again.stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "glb").rglob("*.glb")}
    # overlapping seed ranges are refused before anything is built
    bad = _build(str(tmp_path / "bad"), "--train", "5", "--heldout", "5", "--heldout-seed-start", "3", check=False)
    assert bad.returncode == 2 and "overlap the held-out seeds" in bad.stderr
    assert not (tmp_path / "bad" / "manifest.json").exists()


def _moved_bones(record: dict, animated: list[str]) -> set[str]:
    """The animated bones and every bone below them."""
    parents = record["bone_parents"]
    moved = set()
    for bone in parents:
        b = bone
        while b is not None and b not in animated:
            b = parents[b]
        if b is not None:
            moved.add(bone)
    return moved


def test_end_to_end_build_drags_land_on_moving_parts(tmp_path):
    pytest.importorskip("bpy")
    _build(str(tmp_path), "--families", "cabinet", "creature", "--train", "1", "--heldout", "0",
           "--frames", "12", "--max-clips", "1", "--render", "--engine", "workbench", "--resolution", "64",
           "--views", "2", "--render-frames", "8", "--points", "768", "--azimuth-offset", "40")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [r["id"] for r in manifest["assets"]] == ["cabinet_000000", "creature_000000"]
    drags_checked = 0
    for record in manifest["assets"]:
        (clip_record,) = record["clips"]
        clip = load_clip(tmp_path / "renders" / "train" / record["id"] / clip_record["name"])
        doc = read_drags_json(clip.folder / "drags.json")
        tracks = clip.tracks
        names = list(tracks.part_names)
        static = set(clip_record["static_parts"])
        with_points = {names[i] for i in np.unique(tracks.part_ids)}
        moved_bones = _moved_bones(record, clip_record["animated"]) if record["bones"] else set()
        assert doc["samples"], (record["id"], doc.get("skipped_views"))
        for sample in doc["samples"]:
            assert static & with_points <= set(sample["static_parts"]), (sample["static_parts"], static)
            for info in sample["drag_info"]:
                part = names[tracks.part_ids[info["point"]]]
                assert part in clip_record["moving_parts"] and part not in static, (record["id"], info, part)
                if moved_bones:
                    assert tracks.bone_names[tracks.bone_ids[info["point"]]] in moved_bones, info
                drags_checked += 1
        # the static parts really stand still in the tracks, the moving ones really move
        disp = np.linalg.norm(tracks.points - tracks.points[0], axis=-1).max(axis=0)
        for name in static & with_points:
            assert disp[tracks.part_ids == names.index(name)].max() < 1e-4
        assert max(disp[tracks.part_ids == names.index(n)].max() for n in clip_record["moving_parts"]) > 0.05
    assert drags_checked >= 2
    assert read_id_list(tmp_path / "lists" / "train.json") == ["cabinet_000000", "creature_000000"]
    assert read_id_list(tmp_path / "lists" / "heldout.json") == []
    assert len(read_id_list(tmp_path / "lists" / "train_clips.json")) == 2
    assert json.loads((tmp_path / "categories.json").read_text()) == {
        "cabinet_000000": "cabinet", "creature_000000": "creature"}
    # a second run resumes every stage
    again = _build(str(tmp_path), "--families", "cabinet", "creature", "--train", "1", "--heldout", "0",
                   "--frames", "12", "--max-clips", "1", "--render", "--engine", "workbench", "--resolution", "64",
                   "--views", "2", "--render-frames", "8", "--points", "768", "--azimuth-offset", "40")
    assert "2 of 2 assets done before" in again.stdout and "'done-before': 2" in again.stdout


ROBOT = SHARED / "assets" / "RobotExpressive.glb"


def test_extra_assets_join_the_training_split(tmp_path):
    """--extra: the shared RobotExpressive.glb rendered, drag-sampled and listed with the procedural assets."""
    pytest.importorskip("bpy")
    out = tmp_path / "corpus"
    args = [str(out), "--families", "box", "--train", "0", "--heldout", "0", "--extra", str(ROBOT), "--render",
            "--engine", "workbench", "--resolution", "64", "--views", "2", "--render-frames", "8", "--points", "768",
            "--render-arg=--clips=Wave,Yes"]
    _build(*args)
    (record,) = json.loads((out / "manifest.json").read_text())["assets"]
    assert record["id"] == "RobotExpressive" and record["family"] == "external" and record["split"] == "train"
    assert (out / "glb" / "train" / "RobotExpressive.glb").read_bytes() == ROBOT.read_bytes()
    rendered = sorted(p.parent.name for p in (out / "renders" / "train" / "RobotExpressive").glob("*/clip.json"))
    assert rendered == ["Wave", "Yes"]
    samples = [read_drags_json(out / "renders" / "train" / "RobotExpressive" / c / "drags.json")["samples"]
               for c in rendered]
    assert any(samples)
    assert read_id_list(out / "lists" / "train.json") == ["RobotExpressive"]
    assert json.loads((out / "categories.json").read_text()) == {"RobotExpressive": "external"}
    frame = out / "renders" / "train" / "RobotExpressive" / "Wave" / "view_00" / "0000.png"
    stamp = frame.stat().st_mtime_ns
    _build(*args)  # unchanged source: nothing copied or rendered again
    assert frame.stat().st_mtime_ns == stamp

    bad = _build(str(out), "--extra", str(tmp_path / "missing.glb"), "--extra", str(ROBOT.with_suffix(".fbx")),
                 check=False)
    assert bad.returncode == 2 and "missing.glb: no such file" in bad.stderr and "only .glb files" in bad.stderr
