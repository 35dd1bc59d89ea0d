"""Reading one rendered clip folder (``OUT/<asset_id>/<clip>/``) for curation and drag sampling.

The layout and every file's schema are described in ``docs/data.md``; render.py writes them. This
module only reads: it checks shapes and names the file and the field when something is wrong.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRACKS_FILE = "tracks.npz"
CAMERAS_FILE = "cameras.json"
CLIP_FILE = "clip.json"
FRAME_NAME = "view_{view:02d}/{frame:04d}.png"


class ClipError(ValueError):
    """A clip folder that cannot be used; the message names the folder, the file and the problem."""


@dataclass
class Tracks:
    """The tracked surface points of one clip (arrays as stored in ``tracks.npz``)."""

    points: np.ndarray  # (T, S, 3) float world positions
    part_ids: np.ndarray  # (S,) int, index into part_names
    part_names: list[str]
    bone_ids: np.ndarray  # (S,) int, -1 = no bone
    bone_names: list[str]
    visibility: np.ndarray  # (V, T, S) bool

    @property
    def num_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])


@dataclass
class Clip:
    """One rendered clip: its folder, metadata, cameras and (lazily loaded) tracks."""

    folder: Path
    meta: dict
    cameras: dict
    _tracks: Tracks | None = None

    @property
    def asset_id(self) -> str:
        return str(self.meta.get("asset_id", self.folder.parent.name))

    @property
    def name(self) -> str:
        return str(self.meta.get("clip", self.folder.name))

    @property
    def clip_id(self) -> str:
        """``<asset_id>/<clip folder>``: how clips are named in label files, caches and clip lists.

        The clip folder is the clip's name made safe for file systems by render.py.
        """
        return f"{self.asset_id}/{self.folder.name}"

    @property
    def image_size(self) -> tuple[int, int]:
        width, height = self.cameras["image_size"]
        return int(width), int(height)

    @property
    def views(self) -> list[dict]:
        return list(self.cameras["views"])

    @property
    def tracks(self) -> Tracks:
        if self._tracks is None:
            self._tracks = load_tracks(self.folder / TRACKS_FILE, num_views=len(self.views))
        return self._tracks

    def unload(self) -> None:
        """Forget the loaded tracks (they load again on next use)."""
        self._tracks = None

    def frame_path(self, view: int, frame: int) -> Path:
        return self.folder / FRAME_NAME.format(view=view, frame=frame)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ClipError(f"{path}: missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ClipError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_tracks(path: str | Path, *, num_views: int | None = None) -> Tracks:
    """Load and check ``tracks.npz``; ``num_views`` (from cameras.json) is checked when given."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except FileNotFoundError as exc:
        raise ClipError(f"{path}: missing") from exc
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ClipError(f"{path}: cannot be read as .npz ({exc})") from exc
    for key in ("points", "part_ids", "visibility"):
        if key not in arrays:
            raise ClipError(f"{path}: field {key!r} is missing (found {sorted(arrays)})")
    points = arrays["points"]
    if points.ndim != 3 or points.shape[2] != 3 or points.shape[0] < 1:
        raise ClipError(f"{path}: 'points' must have shape (T, S, 3), got {points.shape}")
    if not np.isfinite(points).all():
        raise ClipError(f"{path}: 'points' has NaN or infinite positions")
    t, s, _ = points.shape
    part_ids = arrays["part_ids"].astype(np.int64)
    if part_ids.shape != (s,):
        raise ClipError(f"{path}: 'part_ids' must have shape ({s},), got {part_ids.shape}")
    part_names = [str(n) for n in arrays.get("part_names", np.array([], dtype=str)).tolist()]
    if s and (part_ids.min() < 0 or (part_names and part_ids.max() >= len(part_names))):
        raise ClipError(f"{path}: 'part_ids' must index 'part_names' ({len(part_names)} names)")
    bone_ids = arrays.get("bone_ids", np.full(s, -1)).astype(np.int64)
    if bone_ids.shape != (s,):
        raise ClipError(f"{path}: 'bone_ids' must have shape ({s},), got {bone_ids.shape}")
    bone_names = [str(n) for n in arrays.get("bone_names", np.array([], dtype=str)).tolist()]
    visibility = arrays["visibility"].astype(bool)
    if visibility.ndim != 3 or visibility.shape[1:] != (t, s):
        raise ClipError(f"{path}: 'visibility' must have shape (V, {t}, {s}), got {visibility.shape}")
    if num_views is not None and visibility.shape[0] != num_views:
        raise ClipError(
            f"{path}: 'visibility' has {visibility.shape[0]} views but cameras.json has {num_views}"
        )
    return Tracks(points.astype(np.float64), part_ids, part_names, bone_ids, bone_names, visibility)


def load_clip(folder: str | Path) -> Clip:
    """Read ``clip.json`` and ``cameras.json`` of a clip folder (tracks load on first use)."""
    folder = Path(folder)
    meta = _read_json(folder / CLIP_FILE)
    cameras = _read_json(folder / CAMERAS_FILE)
    size = cameras.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise ClipError(f"{folder / CAMERAS_FILE}: 'image_size' must be [W, H] positive integers, got {size!r}")
    views = cameras.get("views")
    if not isinstance(views, list) or not views:
        raise ClipError(f"{folder / CAMERAS_FILE}: 'views' must be a non-empty list")
    for i, view in enumerate(views):
        if not isinstance(view, dict) or "K" not in view or "world_to_camera" not in view:
            raise ClipError(f"{folder / CAMERAS_FILE}: view {i} needs 'K' and 'world_to_camera'")
        if np.asarray(view["K"]).shape != (3, 3) or np.asarray(view["world_to_camera"]).shape != (4, 4):
            raise ClipError(f"{folder / CAMERAS_FILE}: view {i}: 'K' must be 3x3 and 'world_to_camera' 4x4")
    return Clip(folder, meta, cameras)


def is_clip_folder(folder: Path, *, need_tracks: bool = True) -> bool:
    return (folder / CLIP_FILE).is_file() and (not need_tracks or (folder / TRACKS_FILE).is_file())


def find_clips(root: str | Path, *, need_tracks: bool = True) -> Iterator[Path]:
    """Every clip folder under a render root (or the root itself when it is one), sorted.

    ``need_tracks=False`` also accepts clips without ``tracks.npz``: training reads only the frames,
    ``clip.json`` and ``drags.json`` (packs of dataset_tools/pack_renders.py may leave tracks out).
    """
    root = Path(root)
    if not root.is_dir():
        raise ClipError(f"{root}: not a folder")
    if is_clip_folder(root, need_tracks=need_tracks):
        yield root
        return
    for clip_file in sorted(root.rglob(CLIP_FILE)):
        if is_clip_folder(clip_file.parent, need_tracks=need_tracks):
            yield clip_file.parent
