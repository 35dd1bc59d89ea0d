"""docs/pictures/make_pictures.py still makes the pictures of docs/blender.md from the add-on's code."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from addon_helpers import ROOT
from PIL import Image

pytestmark = pytest.mark.blender


def test_the_docs_pictures_are_made_from_the_addons_code(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "pictures" / "make_pictures.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    overlay = np.asarray(Image.open(tmp_path / "overlay.png").convert("RGB")).astype(int)
    plane = np.asarray(Image.open(tmp_path / "result_plane.png").convert("RGB")).astype(int)
    assert overlay.shape == (256, 256, 3) and plane.shape == (256, 409, 3)
    yellow = (overlay[..., 0] > 230) & (overlay[..., 1] > 200) & (overlay[..., 2] < 90)
    assert yellow.sum() > 100  # the active drag's path, ticks and handles
    # the plane fills the camera's square (the centred 256 columns) and leaves the margins alone
    assert plane[:, 80:329].mean() > 3 * plane[:, :70].mean() + 10
    for name in ("overlay.png", "result_plane.png"):
        assert (ROOT / "docs" / "pictures" / name).is_file()  # the committed copies docs/blender.md shows
