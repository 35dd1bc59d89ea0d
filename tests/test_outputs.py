import json

import numpy as np
from PIL import Image

from puppet_master.drags import Drag, drags_to_array
from puppet_master.outputs import DRAG_COLORS, draw_drags, write_result


def _frames(n=14, size=64):
    return [Image.new("RGB", (size, size), (255, 255, 255)) for _ in range(n)]


def test_draw_drags_marks_start_and_path_in_the_drag_colour():
    arr = drags_to_array([Drag((0.25, 0.5), (0.75, 0.5))])
    img = np.asarray(draw_drags(Image.new("RGB", (64, 64), (255, 255, 255)), arr))
    assert tuple(img[32, 16]) == DRAG_COLORS[0]  # start point
    assert tuple(img[32, 36]) == DRAG_COLORS[0]  # on the path
    assert tuple(img[5, 5]) == (255, 255, 255)  # far away stays untouched
    # at frame 0 the path has not started yet: the middle of the drag stays white
    img0 = np.asarray(draw_drags(Image.new("RGB", (64, 64), (255, 255, 255)), arr, frame=0))
    assert tuple(img0[32, 40]) == (255, 255, 255)


def test_write_result_layout(tmp_path):
    arr = drags_to_array([Drag((0.25, 0.5), (0.75, 0.5))])
    paths = write_result(tmp_path, _frames(), arr, {"seed": 3}, untrained=True)
    assert [p.name for p in paths["frames"]] == [f"frame_{i:04d}.png" for i in range(14)]
    gif = Image.open(tmp_path / "preview.gif")
    assert gif.n_frames == 14
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["seed"] == 3 and "untrained" in settings["note"]
    assert not list(tmp_path.glob(".*.tmp"))
