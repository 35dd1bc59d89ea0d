"""export_example: an example input from a clip (synthetic tracks, the real drag sampler)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from dataset_tools import sample_drags
from tests.dataset_tools.synthetic_clips import lid_box, write_clip
from training import export_example


def test_the_example_holds_the_drag_and_points_that_stay_still(tmp_path):
    folder = write_clip(tmp_path / "box_1" / "open_lid", lid_box(t=14), num_views=2, size=64, write_frames=True)
    assert sample_drags.main([str(tmp_path), "--seed", "0", "--no-progress"]) == 0
    record = export_example.export(folder, 0, tmp_path / "ex.png", margin=10.0)

    with Image.open(tmp_path / "ex.png") as im:
        assert im.size == (256, 256) and im.mode == "RGB"
    assert json.loads((tmp_path / "ex.json").read_text()) == record
    assert record["source"] == {"asset_id": "box_1", "clip": "open_lid", "view": 0, "frame": 0}
    drags = np.array(record["drags"])
    assert drags.shape[1] == 4 and np.linalg.norm(drags[:, 2:] - drags[:, :2], axis=1).min() > 0
    still = np.array(record["still_points"])
    assert len(still) > 0
    assert np.linalg.norm(still[:, None] - drags[None, :, :2], axis=-1).min() * 256 >= 10.0

    # still points are base points (the lid moves): each lies near a projected base point of frame 0
    tracks = np.load(folder / "tracks.npz")
    k, w2c, _ = export_example.cameras.load_camera_arrays(json.loads((folder / "cameras.json").read_text()))
    base = tracks["part_ids"] == list(tracks["part_names"]).index("base")
    base_px = export_example.cameras.project(tracks["points"][0][base], k[0], w2c[0])[0] / 64
    assert np.linalg.norm(still[:, None] - base_px[None], axis=-1).min(axis=1).max() < 1e-3
