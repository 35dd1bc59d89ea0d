"""training.evaluate on the shared Drag-a-Move clips: baselines, a tiny model, JSON and Markdown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from puppet_master.models.unet import PuppetMasterUNet
from tests.training.conftest import DRAG_A_MOVE, TEST_UNET_CONFIG, needs_drag_a_move
from training import evaluate


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


@needs_drag_a_move
def test_evaluate_writes_table_one_for_baselines_and_a_model(tmp_path):
    unet_dir = tmp_path / "unet"
    PuppetMasterUNet(**TEST_UNET_CONFIG).save_pretrained(unet_dir)
    out = tmp_path / "results"
    code = evaluate.main([
        "--data", str(DRAG_A_MOVE), "--out", str(out), "--limit", "2", "--metrics-dir", str(tmp_path / "none"),
        "--method", "static", "--method", "shift",
    ])
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    assert report["num_clips"] == 2 and report["tracker"].startswith("lucas-kanade")
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
    table = (out / "table.md").read_text()
    assert "| static |" in table and "| shift |" in table and "24.41" in table
    assert (out / "gifs" / "shift" / "00000.gif").is_file()

    code = evaluate.main([
        "--data", str(DRAG_A_MOVE), "--out", str(out / "model"), "--limit", "1", "--no-gifs",
        "--metrics-dir", str(tmp_path / "none"), "--unet", str(unet_dir), "--tiny", "--steps", "1",
        "--method", "model", "--method", "autoencoder",
    ])
    assert code == 0
    methods = json.loads((out / "model" / "results.json").read_text())["methods"]
    for name in ("model", "autoencoder"):
        mean = methods[name]["mean"]
        assert np.isfinite([mean["psnr"], mean["ssim"], mean["me_drag"], mean["me_fg"]]).all()
    assert methods["autoencoder"]["mean"]["psnr"] != methods["model"]["mean"]["psnr"]


def test_missing_networks_fail_with_require_all(tmp_path):
    with pytest.raises(evaluate.metrics.MetricUnavailableError, match="lpips"):
        evaluate.load_metric_networks(tmp_path, require_all=True)
