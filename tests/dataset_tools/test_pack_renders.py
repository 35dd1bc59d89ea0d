"""pack_renders: a render root through a pack and back, pixel for pixel, with real PNG files."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_tools import pack_renders
from dataset_tools.pack_renders import PackError, pack, unpack


def _write_root(root: Path) -> None:
    rng = np.random.default_rng(0)
    for asset, clip in (("box_000001", "open_lid"), ("lamp_000002", "bend")):
        folder = root / asset / clip
        for view in range(2):
            (folder / f"view_{view:02d}").mkdir(parents=True)
            background = rng.integers(0, 255, (32, 32, 4), dtype=np.uint8)
            for t in range(14):
                frame = background.copy()
                frame[8:16, t : t + 8] = (250, 120, 10, 255)  # a part sliding right
                Image.fromarray(frame, "RGBA").save(folder / f"view_{view:02d}" / f"{t:04d}.png")
        (folder / "clip.json").write_text(json.dumps({"asset_id": asset, "clip": clip}))
        np.savez(folder / "tracks.npz", points=rng.normal(size=(14, 5, 3)))
    grey = root / "box_000001" / "open_lid" / "view_02"
    grey.mkdir()
    for t in range(3):
        Image.fromarray(np.full((16, 16), 40 * t, np.uint8), "L").save(grey / f"{t:04d}.png")
    (root / "box_000001" / "render.log").write_text("log\n")


def _files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_root_comes_back_pixel_for_pixel(tmp_path):
    root, out = tmp_path / "renders", tmp_path / "back"
    _write_root(root)
    counts = pack(root, tmp_path / "r.pmpack", workers=1, progress=False)
    assert counts == {"views": 5, "frames": 59, "files": 5}
    assert unpack(tmp_path / "r.pmpack", out, workers=1, progress=False) == counts
    before, after = _files(root), _files(out)
    assert sorted(before) == sorted(after)
    for rel, path in before.items():
        if rel.endswith(".png"):
            with Image.open(path) as a, Image.open(after[rel]) as b:
                assert a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b)), rel
        else:
            assert path.read_bytes() == after[rel].read_bytes(), rel


def test_skipped_files_are_left_out_and_moving_frames_pack_smaller_than_png(tmp_path):
    root = tmp_path / "renders"
    _write_root(root)
    pack(root, tmp_path / "r.pmpack", skip=["tracks.npz", "render.log"], workers=1, progress=False)
    unpack(tmp_path / "r.pmpack", tmp_path / "back", workers=1, progress=False)
    names = {p.name for p in (tmp_path / "back").rglob("*") if p.is_file()}
    assert "tracks.npz" not in names and "render.log" not in names and "clip.json" in names
    png_bytes = sum(p.stat().st_size for p in root.rglob("*.png"))
    assert (tmp_path / "r.pmpack").stat().st_size < png_bytes


def test_a_file_that_is_not_a_pack_is_named(tmp_path, capsys):
    bad = tmp_path / "broken.pmpack"
    bad.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(PackError, match=r"broken\.pmpack"):
        unpack(bad, tmp_path / "out", workers=1, progress=False)
    assert pack_renders.main(["unpack", str(bad), str(tmp_path / "out"), "--workers", "1"]) == 2
    assert "broken.pmpack" in capsys.readouterr().err
    with pytest.raises(PackError, match="no such render root"):
        pack(tmp_path / "missing", tmp_path / "x.pmpack", workers=1, progress=False)


def test_entries_that_would_escape_the_output_folder_are_refused(tmp_path):
    evil = tmp_path / "evil.pmpack"
    with tarfile.open(evil, "w") as tar:
        for name, data in (("format", b"puppet-master-renders-pack 1\n"), ("files/../../escaped.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(PackError, match="outside"):
        unpack(evil, tmp_path / "a" / "out", workers=1, progress=False)
    assert not (tmp_path / "escaped.txt").exists()
