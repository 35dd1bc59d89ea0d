"""Curation: clip metrics on known motions, the random-forest filter round trip, id lists."""

from pathlib import Path

import numpy as np
import pytest
from synthetic_clips import box_points, drawer, lid_box, rotate_about, static, translating, write_clip

from dataset_tools.clip_metrics import FEATURES, clip_metrics
from dataset_tools.curate import main
from dataset_tools.id_lists import ListError, read_id_list, read_labels, write_id_list
from dataset_tools.rf_filter import FilterError, load_filter
from tests.shared_data import SHARED


def test_metrics_of_a_translation():
    rng = np.random.default_rng(0)
    pts = box_points((0, 0, 0), (0.4, 0.2, 0.2), 500, rng)
    m = clip_metrics(translating(pts, 11, (0.3, 0, 0)))
    diag = np.linalg.norm(pts.max(0) - pts.min(0))
    assert m["disp_mean"] == pytest.approx(0.3) and m["disp_max"] == pytest.approx(0.3)
    assert m["disp_max_rel"] == pytest.approx(0.3 / diag)
    assert m["path_max_rel"] == pytest.approx(0.3 / diag)
    assert m["centroid_disp_rel"] == pytest.approx(0.3 / diag)
    assert m["nonrigid_fraction"] < 1e-6  # whole-object motion
    ext = pts.max(0) - pts.min(0)
    assert m["max_frame_bbox_diag"] == pytest.approx(diag)
    assert m["clip_bbox_diag"] == pytest.approx(np.linalg.norm(ext + np.array([0.3, 0, 0])))
    assert m["clip_bbox_volume"] == pytest.approx(np.prod(ext + np.array([0.3, 0, 0])))
    assert m["bbox_growth"] > 1.2 and m["moving_fraction"] == 1.0


def test_metrics_of_a_hinged_lid_and_a_static_asset():
    parts = lid_box(t=15, n=400, angle=np.pi / 2)
    points = np.concatenate([parts["base"], parts["lid"]], axis=1)
    part_ids = np.repeat([0, 1], [400, 200])
    m = clip_metrics(points, part_ids)
    # the farthest lid point from the hinge axis (x axis at y=0.2, z=0.1) moves by r * sqrt(2) for 90 degrees
    lid0 = parts["lid"][0]
    r = np.hypot(lid0[:, 1] - 0.2, lid0[:, 2] - 0.1).max()
    assert m["disp_max"] == pytest.approx(r * np.sqrt(2), rel=1e-6)
    assert m["moving_parts_fraction"] == 0.5 and m["num_parts"] == 2
    assert 0.2 < m["moving_fraction"] <= 1 / 3 + 1e-9  # only lid points move
    assert m["nonrigid_fraction"] > 0.2  # part-level motion: no single rigid motion explains it
    # the largest single-frame box is the open lid's; the clip box holds every frame
    assert m["clip_bbox_volume"] >= m["max_frame_bbox_volume"] - 1e-12
    still = clip_metrics(static(points[0], 15), part_ids)
    assert still["disp_max"] == 0 and still["moving_fraction"] == 0 and still["moving_parts_fraction"] == 0
    assert still["bbox_growth"] == pytest.approx(1.0)
    assert set(m) == set(FEATURES)


def _good(rng, t):
    kind = rng.integers(2)
    if kind == 0:
        return lid_box(t=t, n=200, seed=int(rng.integers(1e6)), angle=float(rng.uniform(0.6, 1.5)))
    return drawer(t=t, n=200, seed=int(rng.integers(1e6)), travel=float(rng.uniform(0.2, 0.4)))


def _bad(rng, t):
    pts = box_points((0, 0, 0), rng.uniform(0.3, 0.6, 3), 300, rng)
    kind = rng.integers(3)
    if kind == 0:
        return {"body": static(pts, t)}
    if kind == 1:
        return {"body": translating(pts, t, rng.uniform(-0.4, 0.4, 3))}
    axis = rng.normal(size=3)
    return {"body": np.stack([rotate_about(pts, (0, 0, 0), axis, a) for a in np.linspace(0, rng.uniform(1, 3), t)])}


def _corpus(root: Path, seed: int, count: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    labels = {}
    for i in range(count):
        keep = i % 2
        parts = (_good if keep else _bad)(rng, int(rng.integers(10, 20)))
        asset = f"{seed:02d}{i:02d}" + "ab" * 14
        write_clip(root / asset / "Take 1", parts, num_views=2)
        labels[f"{asset}/Take 1"] = keep
    return labels


def test_random_forest_train_apply_round_trip(tmp_path):
    train_root, test_root = tmp_path / "train", tmp_path / "test"
    labels = _corpus(train_root, seed=1, count=16)
    csv = tmp_path / "labels.csv"
    # asset-level ids for half of the rows, clip-level for the rest; keep/drop words and 1/0
    rows = [
        (cid.split("/")[0] if i % 2 else cid, ("keep" if lab else "drop") if i % 3 else str(lab))
        for i, (cid, lab) in enumerate(labels.items())
    ]
    csv.write_text("id,label\n" + "".join(f"{a},{b}\n" for a, b in rows))
    model = tmp_path / "filter.joblib"
    assert main(["train", str(train_root), "--labels", str(csv), "--model", str(model), "--trees", "50", "--no-progress"]) == 0
    bundle = load_filter(model)
    assert bundle["train"]["clips"] == 16 and bundle["train"]["keep"] == 8 and bundle["features"] == list(FEATURES)
    truth = _corpus(test_root, seed=2, count=12)  # unseen clips
    out_list, clip_list = tmp_path / "animation.json", tmp_path / "animation_clips.json"
    assert main(["apply", str(test_root), "--model", str(model), "--out-list", str(out_list),
                 "--clip-list", str(clip_list), "--no-progress"]) == 0
    kept = set(read_id_list(clip_list))
    correct = sum((cid in kept) == bool(lab) for cid, lab in truth.items())
    assert correct >= 11
    assert read_id_list(out_list) == [c.split("/")[0] for c in read_id_list(clip_list)]
    scores = (test_root / "filter_scores.csv").read_text().splitlines()
    assert scores[0].startswith("clip_id,") and scores[0].endswith("keep_probability,keep") and len(scores) == 13
    # a threshold above every probability keeps nothing
    assert main(["apply", str(test_root), "--model", str(model), "--threshold", "1.01", "--out-list", str(out_list), "--no-progress"]) == 0
    assert read_id_list(out_list) == []


def test_metrics_command_writes_a_csv_and_reports_broken_clips(tmp_path, capsys):
    write_clip(tmp_path / "r" / "a" / "c", lid_box(t=10), num_views=1)
    bad = write_clip(tmp_path / "r" / "b" / "c", lid_box(t=10), num_views=1)
    (bad / "tracks.npz").write_bytes(b"\0" * 10)
    worse = write_clip(tmp_path / "r" / "d" / "c", lid_box(t=10), num_views=1)
    (worse / "cameras.json").write_text("{")
    assert main(["metrics", str(tmp_path / "r"), "--no-progress"]) == 0
    header, row = (tmp_path / "r" / "metrics.csv").read_text().splitlines()
    assert header.split(",") == ["clip_id", *FEATURES] and row.startswith("a/c,")
    err = capsys.readouterr().err
    assert "b/c/tracks.npz: cannot be read" in err and "d/c/cameras.json: not valid JSON" in err


def test_training_errors_are_clear(tmp_path, capsys):
    write_clip(tmp_path / "r" / "a" / "c", lid_box(t=10), num_views=1)
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\na,maybe\n")
    assert main(["train", str(tmp_path / "r"), "--labels", str(csv), "--model", str(tmp_path / "m")]) == 1
    assert "labels.csv:2" in capsys.readouterr().err
    csv.write_text("id,label\na,1\n")
    assert main(["train", str(tmp_path / "r"), "--labels", str(csv), "--model", str(tmp_path / "m")]) == 1
    assert "both labels" in capsys.readouterr().err
    csv.write_text("name,value\na,1\n")
    with pytest.raises(ListError, match="header"):
        read_labels(csv)
    (tmp_path / "m").write_bytes(b"garbage")
    with pytest.raises(FilterError, match="cannot be read"):
        load_filter(tmp_path / "m")


def test_id_lists_in_the_released_format(tmp_path):
    path = write_id_list(tmp_path / "l.json", ["b", "a", "b"])
    assert path == ["b", "a"]
    assert (tmp_path / "l.json").read_text() == '["b", "a"]'
    (tmp_path / "bad.json").write_text('{"ids": []}')
    with pytest.raises(ListError, match="JSON array"):
        read_id_list(tmp_path / "bad.json")


@pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data (the released id lists) is absent")
def test_writer_reproduces_the_released_lists_byte_for_byte(tmp_path):
    for name in ("objaverse-animation.json", "objaverse-animation-HQ.json"):
        released = SHARED / "data" / name
        ids = read_id_list(released)
        write_id_list(tmp_path / name, ids)
        assert (tmp_path / name).read_bytes() == released.read_bytes()
    assert len(read_id_list(SHARED / "data" / "objaverse-animation.json")) == 13227
