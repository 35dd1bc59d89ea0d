"""Drag sampling on synthetic tracks written to disk in the render format."""

import json

import numpy as np
import pytest
from drag_checks import drag_reach, view_reach
from synthetic_clips import box_points, drawer, lid_box, static, translating, write_clip

from dataset_tools import render_plan
from dataset_tools.clip_folder import load_clip
from dataset_tools.drag_sampling import (
    SamplerSettings,
    choose_windows,
    deduplicate,
    sample_clip,
    window_frames,
)
from dataset_tools.drag_schema import read_drags_json, sample_array
from dataset_tools.sample_drags import main
from puppet_master import cameras
from puppet_master.drags import validate_drag_array
from puppet_master.outputs import DRAG_COLORS


def _clip(tmp_path, parts, **kw):
    return load_clip(write_clip(tmp_path / "asset" / "clip", parts, **kw))


def test_static_part_gets_no_drag_and_moving_part_one(tmp_path):
    clip = _clip(tmp_path, lid_box())
    samples, skipped = sample_clip(clip, SamplerSettings(), seed=0)
    assert len(samples) == 4 and not skipped  # every view sees the lid move
    lid = set(np.flatnonzero(clip.tracks.part_ids == 1))
    for sample in samples:
        assert [d["group"] for d in sample["drag_info"]] == ["part:lid"]
        assert sample["drag_info"][0]["point"] in lid
        assert sample["static_parts"] == ["base"]
        validate_drag_array(sample_array(sample), num_frames=14)


def test_fully_static_clip_has_no_samples(tmp_path):
    rng = np.random.default_rng(0)
    clip = _clip(tmp_path, {"a": static(box_points((0, 0, 0), (0.5, 0.5, 0.5), 200, rng), 16)})
    samples, skipped = sample_clip(clip, SamplerSettings(), seed=0)
    assert samples == []
    assert len(skipped) == 4 and all("static" in s["reason"] for s in skipped)


def test_drag_path_is_the_projected_part_motion(tmp_path):
    clip = _clip(tmp_path, drawer(t=27, travel=0.3))
    samples, _ = sample_clip(clip, SamplerSettings(), seed=3)
    front = next(s for s in samples if s["view"] == 0)
    arr = np.asarray(front["drags"])  # (14, 1, 4)
    # view 0 looks along +Y from -Y: world +X is image right; the drawer slides +X, so the drag goes right
    dx, dy = np.diff(arr[:, 0, 2]), np.diff(arr[:, 0, 3])
    assert (dx > 0).all() and np.abs(dy).max() < 0.2 * dx.sum()
    # the whole clip is covered: 27 frames -> stride 2, frames 0..26
    assert front["frames"] == list(range(0, 27, 2)) and front["stride"] == 2
    samples, _ = sample_clip(_clip(tmp_path / "short", drawer(t=20)), SamplerSettings(), seed=3)
    frames = samples[0]["frames"]  # 20 frames: steps of 1 or 2 from the first to the last
    assert frames[0] == 0 and frames[-1] == 19 and set(np.diff(frames)) == {1, 2}
    # and the path is the track of the sampled point, projected with the saved camera, over those frames
    point = front["drag_info"][0]["point"]
    intrinsics, w2c, (w, h) = cameras.load_camera_arrays(clip.cameras)
    px, _ = cameras.project(clip.tracks.points[front["frames"], point], intrinsics[0], w2c[0])
    np.testing.assert_allclose(arr[:, 0, 2:], px / [w, h], atol=1e-5)
    # about 0.3 world units at distance 2 with a 35/32 lens: ~0.16 of the width
    assert 0.1 < arr[-1, 0, 2] - arr[0, 0, 2] < 0.25


def test_start_points_are_visible_at_the_start_frame(tmp_path):
    parts = lid_box(t=14)
    s_base, s_lid = parts["base"].shape[1], parts["lid"].shape[1]
    vis = np.ones((4, 14, s_base + s_lid), bool)
    vis[1, :, s_base:] = False  # lid hidden in view 1
    rng = np.random.default_rng(0)
    hidden = rng.random(s_lid) < 0.7
    vis[2, 0, s_base:][hidden] = False  # most of the lid hidden at the start frame in view 2
    clip = _clip(tmp_path, parts, visibility=vis)
    for seed in range(5):
        samples, skipped = sample_clip(clip, SamplerSettings(), seed=seed)
        assert {s["view"] for s in samples} == {0, 2, 3}
        assert [s["view"] for s in skipped] == [1]
        view2 = next(s for s in samples if s["view"] == 2)
        assert not hidden[view2["drag_info"][0]["point"] - s_base]


def test_start_point_probability_follows_displacement(tmp_path):
    # points near the hinge barely move: starts should come from the far edge of the lid
    clip = _clip(tmp_path, lid_box(t=14, n=600))
    lid = clip.tracks.points[:, clip.tracks.part_ids == 1]
    travel = np.linalg.norm(lid[-1] - lid[0], axis=-1)
    chosen = []
    for seed in range(40):
        samples, _ = sample_clip(clip, SamplerSettings(), seed=seed)
        chosen += [s["drag_info"][0]["point"] - 600 for s in samples]
    assert np.mean(travel[chosen]) > np.mean(travel) * 1.1


def test_dedup_thresholds_paper_and_released():
    base = np.stack([np.linspace(0.2, 0.6, 14), np.full(14, 0.5)], axis=1)
    near = base + np.array([0, 15 / 256])  # 15 px apart in every frame
    far = base + np.array([0, 25 / 256])
    rng = np.random.default_rng(0)
    assert len(deduplicate([base, near], rng, threshold_px_per_frame=20)) == 1
    assert len(deduplicate([base, near], rng, threshold_px_per_frame=10)) == 2
    assert len(deduplicate([base, far], rng, threshold_px_per_frame=20)) == 2
    # which of the two goes is random
    survivors = {deduplicate([base, near], np.random.default_rng(s), threshold_px_per_frame=20)[0] for s in range(20)}
    assert survivors == {0, 1}


def test_released_length_keep_probability():
    long = np.stack([np.linspace(0.1, 0.9, 14), np.full(14, 0.2)], axis=1)
    short = np.stack([np.linspace(0.1, 0.18, 14), np.full(14, 0.8)], axis=1)  # 1/10 of the length
    kept = [
        len(deduplicate([long, short], np.random.default_rng(s), threshold_px_per_frame=10, length_keep=True))
        for s in range(400)
    ]
    share = (np.array(kept) == 2).mean()
    assert 0.12 < share < 0.28  # keep probability min(1, 2 * 0.1) = 0.2; the longest always stays
    assert min(kept) == 1


def test_parts_moving_together_are_deduplicated(tmp_path):
    rng = np.random.default_rng(0)
    a = box_points((0, 0, 0.1), (0.05, 0.05, 0.05), 150, rng)  # small: start points lie close together
    b = a + np.array([0.02, 0, 0.0])  # a second object glued to the first
    parts = {"a": translating(a, 14, (0.3, 0, 0)), "b": translating(b, 14, (0.3, 0, 0))}
    samples, _ = sample_clip(_clip(tmp_path, parts), SamplerSettings(), seed=0)
    assert all(len(s["drag_info"]) == 1 for s in samples)
    samples, _ = sample_clip(_clip(tmp_path, parts), SamplerSettings(dedup_px_per_frame=0.0), seed=0)
    assert all(len(s["drag_info"]) == 2 for s in samples)


def test_bones_group_points_and_cap_at_five(tmp_path):
    rng = np.random.default_rng(1)
    t, pieces, bones = 14, [], []
    for b in range(8):  # eight limbs moving in different directions, plus a static body
        pts = box_points((0.4 * np.cos(b), 0.4 * np.sin(b), 0), (0.1, 0.1, 0.1), 60, rng)
        direction = np.array([np.cos(b * 0.8), np.sin(b * 0.8), (-1) ** b]) * 0.3
        pieces.append(translating(pts, t, direction))
        bones.append(np.full(60, b + 1))
    pieces.append(static(box_points((0, 0, 0), (0.3, 0.3, 0.3), 200, rng), t))
    bones.append(np.zeros(200))
    body = np.concatenate(pieces, axis=1)
    names = ["torso"] + [f"limb{b}" for b in range(8)]
    clip = _clip(tmp_path, {"body": body}, bone_ids={"body": np.concatenate(bones)}, bone_names=names)
    samples, _ = sample_clip(clip, SamplerSettings(dedup_px_per_frame=2), seed=0)
    for sample in samples:
        groups = [d["group"] for d in sample["drag_info"]]
        assert len(groups) == 5 and len(set(groups)) == 5
        assert all(g.startswith("bone:limb") for g in groups)


def test_deforming_mesh_is_clustered_else_random_count(tmp_path):
    rng = np.random.default_rng(2)
    left = box_points((-0.3, 0, 0), (0.2, 0.2, 0.2), 200, rng)
    right = box_points((0.3, 0, 0), (0.2, 0.2, 0.2), 200, rng)
    blob = np.concatenate([translating(left, 14, (-0.2, 0, 0.1)), translating(right, 14, (0.25, 0, -0.1))], axis=1)
    samples, _ = sample_clip(_clip(tmp_path / "two", {"blob": blob}), SamplerSettings(), seed=0)
    for sample in samples:
        assert sorted(d["group"] for d in sample["drag_info"]) == ["cluster:blob/0", "cluster:blob/1"]
    # a smooth random deformation has no clusters: a random number of drags, 1..5
    pts = box_points((0, 0, 0), (0.6, 0.6, 0.6), 400, rng)
    phase = np.linspace(0, 1, 14)[:, None, None]
    wobble = pts[None] + 0.15 * np.sin(3 * pts[None, :, [1, 2, 0]] + 6 * phase)
    counts = set()
    for seed in range(6):
        samples, _ = sample_clip(_clip(tmp_path / "wobble", {"jelly": wobble}), SamplerSettings(dedup_px_per_frame=0), seed=seed)
        assert all(d["group"] == "ungrouped:jelly" for s in samples for d in s["drag_info"])
        counts |= {len(s["drag_info"]) for s in samples}
    assert len(counts) >= 3 and counts <= {1, 2, 3, 4, 5}


def test_windows_cover_the_clip():
    rng = np.random.default_rng(0)
    points = np.zeros((40, 5, 3))
    points[20:, :, 0] = 1.0  # the only motion happens at frame 20
    windows = choose_windows(points, SamplerSettings(samples_per_view=3), rng)
    assert windows == [(0, 3)]  # stride 39 / 13: one window spans the clip
    windows = choose_windows(points, SamplerSettings(stride=1, samples_per_view=3), rng)
    for start, stride in windows:
        assert stride == 1 and start <= 20 <= start + 13  # every window sees the motion
    assert window_frames(0, 1, 14, 10) == [*range(10), 9, 9, 9, 9]  # short clips hold the last frame


def test_cli_writes_schema_resumes_and_visualizes(tmp_path):
    root = tmp_path / "renders"
    write_clip(root / "box" / "open", lid_box(t=16), write_frames=True)
    write_clip(root / "cab" / "slide", drawer(t=16), write_frames=True)
    assert main([str(root), "--seed", "7", "--visualize", "--no-progress"]) == 0
    doc = read_drags_json(root / "box" / "open" / "drags.json")
    assert doc["version"] == 1 and doc["asset_id"] == "box" and doc["settings"]["seed"] == 7
    assert doc["image_size"] == [64, 64] and len(doc["samples"]) == 4
    gifs = sorted((root / "box" / "open" / "drags_preview").glob("*.gif"))
    assert len(gifs) == 4
    from PIL import Image

    with Image.open(gifs[0]) as gif:  # the GIF writer merges identical frames: at least start and end differ
        assert gif.n_frames >= 2
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("RGB")).reshape(-1, 3)
    assert (np.abs(last - DRAG_COLORS[0]).sum(axis=1) < 30).sum() > 5  # the arrow is drawn
    before = (root / "cab" / "slide" / "drags.json").read_bytes()
    mtime = (root / "cab" / "slide" / "drags.json").stat().st_mtime_ns
    report = tmp_path / "report.jsonl"
    assert main([str(root), "--seed", "7", "--no-progress", "--report", str(report)]) == 0
    assert {json.loads(line)["status"] for line in report.read_text().splitlines()} == {"done-before"}
    assert (root / "cab" / "slide" / "drags.json").stat().st_mtime_ns == mtime
    # same seed from scratch gives the same file; another seed or preset is a different setting
    (root / "cab" / "slide" / "drags.json").unlink()
    assert main([str(root), "--seed", "7", "--no-progress"]) == 0
    assert (root / "cab" / "slide" / "drags.json").read_bytes() == before
    assert main([str(root), "--seed", "7", "--dedup", "released", "--overwrite", "--no-progress"]) == 0
    settings = read_drags_json(root / "cab" / "slide" / "drags.json")["settings"]
    assert settings["dedup_px_per_frame"] == 10 and settings["length_keep"] is True


def test_cli_reports_a_corrupt_clip_and_goes_on(tmp_path, capsys):
    root = tmp_path / "renders"
    write_clip(root / "good" / "c", lid_box(t=14))
    bad = write_clip(root / "bad" / "c", lid_box(t=14))
    (bad / "tracks.npz").write_bytes(b"not a zip")
    assert main([str(root), "--no-progress"]) == 1
    assert "tracks.npz" in capsys.readouterr().err
    assert (root / "good" / "c" / "drags.json").exists()


@pytest.mark.parametrize("angle", [0.6, 1.4])
def test_lid_drag_moves_up_in_front_view(tmp_path, angle):
    # the lid opens upwards about its back edge: its front edge rises in the image (y decreases)
    clip = _clip(tmp_path, lid_box(angle=angle))
    rises = []
    for seed in range(5):
        samples, _ = sample_clip(clip, SamplerSettings(), seed=seed)
        y = np.asarray(next(s for s in samples if s["view"] == 0)["drags"])[:, 0, 3]
        assert (np.diff(y) < 1e-6).all()
        rises.append(y[0] - y[-1])
    # the front edge rises by 0.4 * sin(angle) world units, ~0.12 * sin(angle) of the image height
    # (camera 2 units away, 35 mm lens on 32 mm): start points lie mostly in the front half of the lid
    assert np.median(rises) > 0.05 * np.sin(angle)


def test_shards_split_the_clips(tmp_path):
    root = tmp_path / "renders"
    for name in ("a", "b", "d"):
        write_clip(root / name / "clip", lid_box(t=14), num_views=1)
    assert main([str(root), "--shard", "1/2", "--no-progress"]) == 0
    # the assets render.py's --shard 1/2 renders: one assignment for every stage
    mine = [a for a in "abd" if render_plan.in_shard(a, 1, 2)]
    assert 0 < len(mine) < 3
    assert [p.parent.parent.name for p in sorted(root.rglob("drags.json"))] == mine
    assert main([str(root), "--shard", "0/2", "--no-progress"]) == 0
    assert len(list(root.rglob("drags.json"))) == 3
    with pytest.raises(SystemExit):
        main([str(root), "--shard", "2/2"])


def test_drags_go_to_the_parts_that_move_most(tmp_path):
    """A character swinging two limbs far while torso, hips and neck bones sway a little: the five
    slots go to the limbs, never to the near-still bones, and the most moving limb always has one."""
    rng = np.random.default_rng(3)
    t, pieces, bones, names = 14, [], [], []
    sway = [("spine", (0.0, 0.0, 0.3), 0.025), ("hips", (0.0, 0.0, 0.0), 0.02), ("neck", (0.0, 0.0, 0.55), 0.03)]
    limbs = [("arm.L", (-0.35, 0.0, 0.3), 0.5), ("arm.R", (0.35, 0.0, 0.3), 0.35)]
    for b, (name, centre, amplitude) in enumerate(sway + limbs):
        pts = box_points(centre, (0.2, 0.2, 0.2), 300, rng)  # the still bones hold most of the points
        direction = np.array([np.cos(2.1 * b), np.sin(2.1 * b), 0.6]) * amplitude
        pieces.append(translating(pts, t, direction))
        bones.append(np.full(300, b))
        names.append(name)
    body = np.concatenate(pieces, axis=1)
    clip = _clip(tmp_path, {"body": body}, bone_ids={"body": np.concatenate(bones)}, bone_names=names)
    samples, _ = sample_clip(clip, SamplerSettings(), seed=0)
    assert len(samples) == 4
    for sample in samples:
        groups = {d["group"] for d in sample["drag_info"]}
        assert groups and groups <= {"bone:arm.L", "bone:arm.R"}, groups
        reach = view_reach(clip, sample)
        assert (drag_reach(sample) >= 0.25 * np.nanmax(reach)).all()
        top_bone = names[int(np.concatenate(bones)[np.nanargmax(reach)])]
        assert f"bone:{top_bone}" in groups
    # the paper's rule alone (every moving part, probability by displacement) fills the slots with the sway
    samples, _ = sample_clip(clip, SamplerSettings(min_motion_fraction=0.0), seed=0)
    assert any(d["group"] in {"bone:spine", "bone:hips", "bone:neck"} for s in samples for d in s["drag_info"])


def test_one_deforming_mesh_gets_drags_on_its_legs_not_its_belly(tmp_path):
    """A morph-target animal (one mesh, no bones): a big body breathing a little, four thin legs
    swinging. Drags start on the legs."""
    rng = np.random.default_rng(4)
    t = 14
    body = box_points((0, 0, 0.25), (0.7, 0.3, 0.3), 1600, rng)
    phase = np.linspace(0, 1, t)[:, None, None]
    breathing = body[None] + 0.08 * np.sin(np.pi * phase) * (body[None] - [0, 0, 0.25])
    legs = []
    for i, x in enumerate((-0.3, -0.1, 0.1, 0.3)):
        leg = box_points((x, 0.0, -0.1), (0.05, 0.05, 0.4), 60, rng)
        below_hip = 0.1 - leg[:, 2]  # swinging about the hip: the hoof moves most
        swing = np.sin(np.pi * phase + i)[..., 0] * 0.8 * below_hip  # (T, 60)
        legs.append(leg[None] + np.stack([swing, np.zeros_like(swing), np.zeros_like(swing)], axis=-1))
    mesh = np.concatenate([breathing, *legs], axis=1)
    leg_points = np.arange(1600, mesh.shape[1])
    clip = _clip(tmp_path, {"horse": mesh})
    samples, _ = sample_clip(clip, SamplerSettings(), seed=0)
    assert samples
    for sample in samples:
        assert all(d["point"] in leg_points for d in sample["drag_info"]), sample["drag_info"]
        assert (drag_reach(sample) >= 0.25 * np.nanmax(view_reach(clip, sample))).all()
    samples, _ = sample_clip(clip, SamplerSettings(min_motion_fraction=0.0), seed=0)
    assert any(d["point"] < 1600 for s in samples for d in s["drag_info"]), "without the rule the belly gets drags"
