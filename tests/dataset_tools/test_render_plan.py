"""render.py's planning (no Blender): inputs, shards, frame selection, resume state, CLI checks."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset_tools import render_plan

ROOT = Path(__file__).resolve().parents[2]
RENDER = ROOT / "dataset_tools" / "render.py"


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"glTF")
    return path


def test_collect_assets_from_folder_file_and_list(tmp_path):
    a = _touch(tmp_path / "in" / "a.glb")
    _touch(tmp_path / "in" / "sub" / "b.FBX")
    _touch(tmp_path / "in" / "notes.txt")
    other = _touch(tmp_path / "other" / "a.glb")  # same stem: gets a unique id
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"uid1": str(a), "uid2": "relative/c.glb"}))
    assets = render_plan.collect_assets([tmp_path / "in", other, listing])
    assert [x.asset_id for x in assets] == ["a", "b", "a_2", "uid1", "uid2"]
    assert assets[4].source == tmp_path / "relative" / "c.glb"
    with pytest.raises(render_plan.InputError, match="no such file"):
        render_plan.collect_assets([tmp_path / "missing_folder"])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(render_plan.InputError, match=r"bad\.json"):
        render_plan.collect_assets([bad])


def test_shards_partition_the_assets():
    ids = [f"{i:032x}" for i in range(200)]
    shards = [[i for i in ids if render_plan.in_shard(i, k, 3)] for k in range(3)]
    assert sorted(i for s in shards for i in s) == sorted(ids)
    assert all(30 < len(s) < 110 for s in shards)
    assert render_plan.parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(render_plan.InputError):
            render_plan.parse_shard(bad)


def test_select_frames():
    frames = render_plan.select_frames(1, 41, 14, 0)
    assert len(frames) == 14 and frames[0] == 1 and frames[-1] == 41
    assert render_plan.select_frames(1, 6, 14, 0) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # short clip: every frame
    assert render_plan.select_frames(1, 20, 5, 2) == [1, 3, 5, 7, 9]
    assert render_plan.select_frames(1, 8, 0, 3) == [1, 4, 7]
    assert render_plan.select_frames(5, 5, 14, 0) == [5.0]
    with pytest.raises(ValueError):
        render_plan.select_frames(10, 2, 14, 0)


def test_finished_asset_needs_every_clip(tmp_path):
    asset = tmp_path / "x"
    render_plan.write_json_atomic(asset / "asset.json", {"status": "ok", "clip_folders": ["A", "B"]})
    (asset / "A").mkdir()
    (asset / "A" / "clip.json").write_text("{}")
    assert render_plan.finished_asset(asset) is None
    (asset / "B").mkdir()
    (asset / "B" / "clip.json").write_text("{}")
    assert render_plan.finished_asset(asset)["status"] == "ok"
    # a record made for some clips does not cover a run that asks for others (or for all)
    render_plan.write_json_atomic(
        asset / "asset.json", {"status": "ok", "clip_folders": ["A", "B"], "requested_clips": ["A", "B"]}
    )
    assert render_plan.finished_asset(asset, ["A"]) is not None
    assert render_plan.finished_asset(asset, ["A", "C"]) is None
    assert render_plan.finished_asset(asset, None) is None
    render_plan.write_json_atomic(asset / "asset.json", {"status": "skipped", "reason": "no animation"})
    assert render_plan.finished_asset(asset)["reason"] == "no animation"
    assert render_plan.finished_asset(tmp_path / "missing") is None


def test_cli_list_respects_shards(tmp_path):
    for i in range(12):
        _touch(tmp_path / "in" / f"asset{i:02d}.glb")
    listed = []
    for k in range(2):
        out = subprocess.run(
            [sys.executable, str(RENDER), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--shard", f"{k}/2", "--list"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
        listed.append({line.split("\t")[0] for line in out.splitlines() if line.strip()})
    assert listed[0].isdisjoint(listed[1])
    assert listed[0] | listed[1] == {f"asset{i:02d}" for i in range(12)}


def test_cli_rejects_bad_arguments(tmp_path):
    result = subprocess.run(
        [sys.executable, str(RENDER), str(tmp_path), "--out", str(tmp_path / "o"), "--views", "0", "--distance", "2", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--views must be at least 1" in result.stderr and "--distance" in result.stderr


def test_unsupported_files_in_folders_are_listed(tmp_path):
    _touch(tmp_path / "in" / "a.glb")
    _touch(tmp_path / "in" / "scene.gltf")
    _touch(tmp_path / "in" / "scene.bin")  # glTF companions are neither assets nor reported
    _touch(tmp_path / "in" / "textures" / "wood.png")
    _touch(tmp_path / "in" / "chair.obj")
    _touch(tmp_path / "in" / "README")
    assets, unsupported = render_plan.collect_inputs([tmp_path / "in"])
    assert [a.asset_id for a in assets] == ["a", "scene"]
    assert [p.name for p in unsupported] == ["README", "chair.obj"]
    record = render_plan.unsupported_record(unsupported[1])
    assert record["status"] == "skipped" and "'.obj'" in record["reason"] and ".glb" in record["reason"]


def test_root_settings_are_recorded_and_compared(tmp_path):
    settings = render_plan.job_settings({"asset_id": "x", "source": "s", "out_root": "o", "clips": None, "views": 4,
                                         "distance_range": (1.5, 2.0), "render": {"resolution": 256, "device": "GPU"}})
    assert settings == {"views": 4, "distance_range": [1.5, 2.0], "render": {"resolution": 256}}
    assert render_plan.check_root_settings(tmp_path, settings, overwrite=False) == []  # a new root
    assert render_plan.check_root_settings(tmp_path, settings, overwrite=False) == []  # the same settings
    other = {**settings, "views": 12, "render": {"resolution": 512}}
    assert render_plan.check_root_settings(tmp_path, other, overwrite=False) == [
        "render.resolution: 256 -> 512", "views: 4 -> 12"]
    assert json.loads((tmp_path / render_plan.SETTINGS_FILE).read_text()) == settings  # unchanged
    assert render_plan.check_root_settings(tmp_path, other, overwrite=True) == []
    assert json.loads((tmp_path / render_plan.SETTINGS_FILE).read_text()) == other
    # a root rendered before settings were recorded cannot be told apart from this run: refused
    legacy = tmp_path / "legacy"
    render_plan.write_json_atomic(legacy / "a" / "clip" / "clip.json", {"views": 4})
    assert render_plan.check_root_settings(legacy, settings, overwrite=False)[0].startswith("no settings recorded")
    # resume of one asset needs its recorded settings to agree
    asset = tmp_path / "asset"
    render_plan.write_json_atomic(asset / "A" / "clip.json", {"settings": settings})
    render_plan.write_json_atomic(asset / "asset.json", {"status": "ok", "clip_folders": ["A"], "settings": settings})
    assert render_plan.finished_asset(asset, None, settings) is not None
    assert render_plan.finished_asset(asset, None, other) is None
    assert render_plan.clip_done(asset / "A", settings) and not render_plan.clip_done(asset / "A", other)


def test_long_clips_render_their_most_moving_window():
    # 14 frames over 166 frames would step 12.6 frames: capped at 4, a window of 53 frames
    assert render_plan.needs_window(1, 166, 14, 0.0, 4.0)
    assert not render_plan.needs_window(1, 45, 14, 0.0, 4.0)  # 3.4-frame steps: spread as before
    assert not render_plan.needs_window(1, 166, 14, 2.0, 4.0)  # a given stride is used as it is
    assert not render_plan.needs_window(1, 166, 14, 0.0, 0.0)  # no cap
    times = [float(t) for t in range(1, 167)]
    motion = [0.0] * 165
    for i in range(120, 150):  # the clip moves only between frames 121 and 151
        motion[i] = 1.0
    frames = render_plan.motion_window(times, motion, 14, 4.0)
    assert len(frames) == 14 and np.allclose(np.diff(frames), 4.0)
    assert frames[0] <= 121 and frames[-1] >= 151 and frames[-1] <= 166
    # equal motion everywhere: the earliest window; a clip barely longer than the window starts at its start
    assert render_plan.motion_window(times, [1.0] * 165, 14, 4.0)[0] == 1.0
    assert render_plan.motion_window(times[:54], [1.0] * 53, 14, 4.0) == [1.0 + 4 * i for i in range(14)]
    # sampled (not every whole frame) times: the motion is interpolated between them
    sparse = [1.0, 41.0, 81.0, 121.0, 161.0]
    assert render_plan.motion_window(sparse, [0.0, 0.0, 5.0, 0.0], 14, 4.0)[0] == 81.0
    with pytest.raises(ValueError, match="one motion value"):
        render_plan.motion_window(times, [1.0], 14, 4.0)
