"""experiments.tiny_model.drag_response on synthetic videos whose true motion is known: a textured part that moves
20 px to the right and another that stays still, tracked by the real dense-flow fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from experiments.tiny_model import drag_response
from experiments.tiny_model.drag_response import DragResponseError, measure, read_generate_folder
from puppet_master.image_prep import SquareWindow
from puppet_master.outputs import write_result

SIZE, FRAMES, SHIFT = 128, 14, 20
MOVING_AT, STILL_AT, PART = (30, 50), (88, 88), 24


def video(shift: int = SHIFT) -> np.ndarray:
    rng = np.random.default_rng(0)
    moving = rng.integers(0, 200, (PART, PART, 3), dtype=np.uint8)
    still = rng.integers(0, 200, (PART, PART, 3), dtype=np.uint8)
    frames = np.full((FRAMES, SIZE, SIZE, 3), 255, np.uint8)
    for t in range(FRAMES):
        dx = round(shift * t / (FRAMES - 1))
        x, y = MOVING_AT
        frames[t, y:y + PART, x + dx:x + dx + PART] = moving
        x, y = STILL_AT
        frames[t, y:y + PART, x:x + PART] = still
    return frames


def drag(dx: float = SHIFT, dy: float = 0.0) -> np.ndarray:
    cx, cy = MOVING_AT[0] + PART / 2, MOVING_AT[1] + PART / 2
    return np.array([[[cx / SIZE, cy / SIZE], [(cx + dx) / SIZE, (cy + dy) / SIZE]]])


def test_followed_drag_passes():
    response = measure(video(), drag())
    (motion,) = response.drags
    assert motion.along == pytest.approx(SHIFT, abs=2.5)
    assert motion.fraction > 0.85 and motion.across < 2.0
    assert response.num_far_points > 10  # the still part's points; the white backdrop is excluded
    assert response.far_px < 0.5
    assert response.passes()


def test_static_video_and_backward_drag_fail():
    static = measure(video(shift=0), drag())
    assert abs(static.drags[0].along) < 0.5 and not static.passes()
    backwards = measure(video(), drag(dx=-SHIFT))
    assert backwards.drags[0].fraction < -0.8 and not backwards.passes()


def test_moving_far_region_fails():
    frames, rows = video(), slice(STILL_AT[1], STILL_AT[1] + PART)
    for t in range(FRAMES):  # the far part now moves as much as the dragged one
        frames[t, rows] = np.roll(frames[t, rows], round(SHIFT * t / (FRAMES - 1)), axis=1)
    response = measure(frames, drag())
    assert response.far_px > 0.5 * response.drags[0].along
    assert not response.passes()


def test_generate_folder_round_trip(tmp_path, capsys):
    # the source image was 2x wider than tall and cropped to a square window: drags are stored in source
    # coordinates and must come back in frame coordinates
    window = SquareWindow(left=100.0, top=0.0, size=200.0, source_width=400, source_height=200)
    source = window.to_source(drag()[0])
    frames = [Image.fromarray(f) for f in video()]
    write_result(tmp_path, frames, None, {"window": window.to_json(),
                                          "drags": [{"start": source[0].tolist(), "end": source[1].tolist()}]})
    read_frames, read_drags = read_generate_folder(tmp_path)
    assert read_frames.shape == (FRAMES, SIZE, SIZE, 3)
    np.testing.assert_allclose(read_drags, drag(), atol=1e-9)
    assert drag_response.main([str(tmp_path), "--check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)[str(tmp_path)]
    assert report["passes"] and report["drags"][0]["fraction"] > 0.85


def test_bad_inputs_are_named(tmp_path, capsys):
    with pytest.raises(DragResponseError, match=r"settings\.json not found"):
        read_generate_folder(tmp_path)
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(DragResponseError, match="not a generate settings file"):
        read_generate_folder(tmp_path)
    assert drag_response.main([str(tmp_path)]) == 2
    assert "not a generate settings file" in capsys.readouterr().err
    with pytest.raises(DragResponseError, match="frames must be"):
        measure(video()[:1], drag())
    with pytest.raises(DragResponseError, match="starts outside the frame"):
        measure(video(), np.array([[[1.5, 1.5], [1.6, 1.6]]]))
