"""training.evaluate on the shared Drag-a-Move clips: baselines, a tiny model, JSON and Markdown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from puppet_master.models.unet import PuppetMasterUNet
from tests.training.conftest import DRAG_A_MOVE, TEST_UNET_CONFIG, needs_drag_a_move
from training import evaluate
from training.trackers import LucasKanadeTracker


def test_baseline_videos():
    first = np.full((256, 256, 3), 255, np.uint8)
    first[100:140, 100:140] = 0
    drags = np.zeros((14, 5, 4), np.float32)
    drags[:, 0, :2] = [0.5, 0.5]
    drags[:, 0, 2] = 0.5 + np.arange(14) * 2 / 256  # 2 px per frame to the right
    drags[:, 0, 3] = 0.5
    static = evaluate.static_video(first, drags)
    assert static.shape == (14, 256, 256, 3) and (static == first).all()
    shift = evaluate.shift_video(first, drags)
    cols = np.flatnonzero((shift[13] == 0).all(axis=-1).any(axis=0))
    assert (cols.min(), cols.max()) == (126, 165)  # the square moved 26 px right, white filled in behind


def test_resample_ceiling_keeps_what_its_grid_can_hold():
    rng = np.random.default_rng(0)
    video = np.full((14, 256, 256, 3), 255, np.uint8)
    texture = rng.integers(0, 200, (5, 5, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)  # 8 px cells
    for t in range(14):
        video[t, 100:140, 90 + 2 * t : 130 + 2 * t] = texture  # a textured square moving 2 px per frame
    drags = np.zeros((14, 5, 4), np.float32)
    full, coarse = evaluate.resample_method(256), evaluate.resample_method(8)
    assert full.sees_true_video and (full(video, drags) == video).all()
    blurred = coarse(video, drags)
    assert blurred.shape == video.shape and np.abs(blurred.astype(float) - video)[:, 100:140, 90:150].mean() > 20
    # a 64 grid still carries the motion for the tracker; it follows the square, not a white pixel
    tracker = LucasKanadeTracker()
    start = np.array([[110.0, 120.0]])
    moved = tracker.track(evaluate.resample_method(64)(video, drags), start)[-1, 0] - start[0]
    assert abs(moved[0] - 26) < 3 and abs(moved[1]) < 2
    assert evaluate.method_name("resample16") == "resample16"
    for bad in ("resample", "resample0", "resample999", "resize16", "modle"):
        with pytest.raises(ValueError, match="resampleN"):
            evaluate.method_name(bad)
    with pytest.raises(SystemExit):
        evaluate.main(["--data", ".", "--out", ".", "--method", "resample0"])


@needs_drag_a_move
def test_evaluate_writes_table_one_for_baselines_and_a_model(tmp_path):
    unet_dir = tmp_path / "unet"
    PuppetMasterUNet(**TEST_UNET_CONFIG).save_pretrained(unet_dir)
    out = tmp_path / "results"
    code = evaluate.main([
        "--data", str(DRAG_A_MOVE), "--out", str(out), "--limit", "2", "--metrics-dir", str(tmp_path / "none"),
        "--method", "static", "--method", "shift", "--method", "resample256",
    ])
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    assert report["num_clips"] == 2 and report["tracker"].startswith("dense flow (dis")
    assert report["tracker_is_fallback"] is True and report["model"] is None  # baselines need no model
    assert report["metric_networks"] == {"lpips": None, "i3d": None, "tracker": None}
    assert "lpips" in report["notes"] and str(tmp_path / "none" / "lpips") in report["notes"]["lpips"]
    static, shift = report["methods"]["static"], report["methods"]["shift"]
    assert [r["clip"] for r in static["clips"]] == ["00000", "00010"]
    for result in (static, shift):
        mean = result["mean"]
        assert 5 < mean["psnr"] < 100 and 0 < mean["ssim"] < 1
        assert mean["lpips"] is None and mean["fvd"] is None  # no networks on disk: not computed
        assert mean["me_drag"] > 0 and mean["me_fg"] > 0
    # the true parts move along the drags: following them beats standing still at the drag origins
    assert shift["mean"]["me_drag"] < static["mean"]["me_drag"]
    # through a full-resolution grid the true video comes back whole: no motion error at all
    assert report["methods"]["resample256"]["mean"]["me_drag"] == 0
    table = (out / "table.md").read_text()
    assert "| static |" in table and "| shift |" in table and "24.41" in table
    assert (out / "gifs" / "shift" / "00000.gif").is_file()

    # another fallback tracker by name: the report and the note say which one measured
    assert evaluate.main(["--data", str(DRAG_A_MOVE), "--out", str(out / "lk"), "--limit", "1", "--no-gifs",
                          "--metrics-dir", str(tmp_path / "none"), "--method", "shift",
                          "--fallback-tracker", "lucas-kanade"]) == 0
    lk = json.loads((out / "lk" / "results.json").read_text())
    assert lk["tracker"].startswith("lucas-kanade") and "lucas-kanade" in lk["notes"]["tracker"]
    assert lk["methods"]["shift"]["mean"]["me_drag"] != shift["clips"][0]["me_drag"]

    code = evaluate.main([
        "--data", str(DRAG_A_MOVE), "--out", str(out / "model"), "--limit", "1", "--no-gifs",
        "--metrics-dir", str(tmp_path / "none"), "--unet", str(unet_dir), "--tiny", "--steps", "1",
        "--method", "model", "--method", "autoencoder",
    ])
    assert code == 0
    model_report = json.loads((out / "model" / "results.json").read_text())
    assert model_report["model"] == {"kind": "unet", "unet": str(unet_dir.resolve()), "training_step": None,
                                     "components": "tiny (random, untrained)"}
    methods = model_report["methods"]
    for name in ("model", "autoencoder"):
        mean = methods[name]["mean"]
        assert np.isfinite([mean["psnr"], mean["ssim"], mean["me_drag"], mean["me_fg"]]).all()
    assert methods["autoencoder"]["mean"]["psnr"] != methods["model"]["mean"]["psnr"]


def test_missing_networks_fail_with_require_all(tmp_path):
    with pytest.raises(evaluate.metrics.MetricUnavailableError, match="lpips"):
        evaluate.load_metric_networks(tmp_path, require_all=True)


def test_outliers_are_the_clips_far_from_the_others():
    rows = [{"clip": f"{i:05d}", "psnr": 20.0 + 0.1 * i, "me_drag": 10.0 + 0.2 * (i % 3), "me_fg": 2.0} for i in range(9)]
    rows.append({"clip": "00009", "psnr": 8.0, "me_drag": 60.0, "me_fg": 2.0})
    found = evaluate.outliers(rows)
    assert {(o["clip"], o["metric"]) for o in found} == {("00009", "psnr"), ("00009", "me_drag")}
    assert all(abs(o["robust_z"]) > evaluate.OUTLIER_Z for o in found)  # me_fg agrees everywhere: none
    assert evaluate.outliers(rows[:2]) == []  # too few clips to tell


def test_a_model_folder_is_recorded_with_its_manifest(tmp_path):
    from puppet_master.tiny import build_tiny_pipeline

    folder = tmp_path / "pm-model"
    build_tiny_pipeline().save_pretrained(folder)
    manifest = {"sources": {"checkpoint": "rayli/Puppet-Master ckpts/model.safetensors"}, "licences": ["CC-BY-NC-SA-4.0"]}
    (folder / evaluate.MODEL_MANIFEST).write_text(json.dumps(manifest))
    out = tmp_path / "results"
    assert evaluate.main(["--data", str(DRAG_A_MOVE), "--out", str(out), "--limit", "1", "--no-gifs", "--steps", "1",
                          "--metrics-dir", str(tmp_path / "none"), "--model", str(folder)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["model"] == {"kind": "folder", "path": str(folder.resolve()), "manifest": manifest}
    assert report["methods"]["model"]["outliers"] == []
