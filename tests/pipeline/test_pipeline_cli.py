"""`puppet-master generate` end to end with the tiny model, and its input errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from puppet_master import paths
from puppet_master.cli import main


@pytest.fixture
def image_path(tmp_path, object_image):
    path = tmp_path / "object.png"
    object_image.save(path)
    return path


def test_generate_writes_frames_preview_and_settings(image_path, tmp_path, capsys):
    out = tmp_path / "result"
    argv = [
        "generate", "--tiny", "--image", str(image_path), "--out", str(out), "--crop", "object",
        "--pixels", "--drag", "151.5,91.5:167.5,91.5", "--steps", "1", "--seed", "7", "--device", "cpu",
    ]
    assert main(argv) == 0
    assert "untrained" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:04d}.png" for i in range(14)]
    assert Image.open(out / "frame_0013.png").size == (256, 256)
    assert Image.open(out / "preview.gif").n_frames == 14
    settings = json.loads((out / "settings.json").read_text())
    assert settings["seed"] == 7 and settings["num_inference_steps"] == 1 and settings["crop"] == "object"
    assert settings["drags"] == [{"start": [151.5 / 320, 91.5 / 200], "end": [167.5 / 320, 91.5 / 200]}]
    assert settings["model"] == {"tiny": True, "device": "cpu"}
    assert settings["window"]["size"] == pytest.approx(176.0)
    assert "untrained" in settings["note"]

    # a finished result is never overwritten by accident
    assert main(argv) == 1
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("drags", "message"),
    [
        (["0.1,0.1:0.2,0.2"] * 6, "at most 5"),
        (["0.5,0.5:1.5,0.5"], "outside the image"),
        (["nan,0.5:0.5,0.5"], "not finite"),
        (["0.5;0.5:0.6,0.6"], "cannot parse drag"),
        (["0.5,0.5:0.95,0.95"], "outside the cropped frame"),
    ],
)
def test_bad_drags_fail_before_loading_a_model(image_path, tmp_path, capsys, drags, message):
    argv = ["generate", "--image", str(image_path), "--out", str(tmp_path / "out"), "--crop", "object"]
    for drag in drags:
        argv += ["--drag", drag]
    # no model option: a model would be an error too, so reaching the drag error proves the order
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_model_options_are_checked(image_path, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PUPPET_MASTER_MODEL", raising=False)
    monkeypatch.setattr(paths, "BUNDLED_WEIGHTS_DIR", tmp_path / "no-bundled-weights")
    base = ["generate", "--image", str(image_path), "--out", str(tmp_path / "out"), "--drag", "0.5,0.5:0.6,0.5"]
    assert main(base) == 1
    assert "no model given" in capsys.readouterr().err
    assert main([*base, "--tiny", "--model", str(tmp_path)]) == 1
    assert "give one model source" in capsys.readouterr().err
    assert main([*base, "--svd", str(tmp_path)]) == 1
    assert "go together" in capsys.readouterr().err
    assert main(["generate", "--tiny", "--image", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_generate_takes_drag_paths_from_a_file_and_records_them(image_path, tmp_path):
    curve = [[0.45 + 0.01 * k, 0.45 + 0.002 * k * k] for k in range(14)]
    drags_file = tmp_path / "drags.json"
    drags_file.write_text(json.dumps([{"path": curve}, {"start": [0.5, 0.55], "end": [0.56, 0.55]}]))
    out = tmp_path / "result"
    argv = ["generate", "--tiny", "--image", str(image_path), "--out", str(out), "--drags-file", str(drags_file),
            "--steps", "1", "--seed", "3", "--device", "cpu"]
    assert main(argv) == 0
    recorded = json.loads((out / "settings.json").read_text())["drags"]
    assert recorded[0]["path"] == curve and recorded[0]["start"] == curve[0] and recorded[0]["end"] == curve[-1]
    assert "path" not in recorded[1]
    # a result's settings.json reads back as a drags file: the same drags run again
    again = tmp_path / "again"
    assert main([*argv[:5], str(again), "--drags-file", str(out / "settings.json"), *argv[8:]]) == 0
    assert json.loads((again / "settings.json").read_text())["drags"] == recorded
    frames = sorted(out.glob("frame_*.png"))
    assert [f.read_bytes() for f in frames] == [f.read_bytes() for f in sorted(again.glob("frame_*.png"))]


def test_a_bad_drags_file_is_named(image_path, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"path": [[0.5, 0.5]] * 14}]))
    argv = ["generate", "--tiny", "--image", str(image_path), "--out", str(tmp_path / "o"), "--drags-file", str(bad)]
    assert main(argv) == 1
    assert "drag 1 has no length" in capsys.readouterr().err
    bad.write_text("{not json")
    assert main(argv) == 1
    assert f"cannot read the drags file {bad}" in capsys.readouterr().err
