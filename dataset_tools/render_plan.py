"""What render.py renders: inputs -> assets, shards, resume state, frame selection (stdlib + numpy).

No bpy here, so the orchestrating process (and the tests) can use it without Blender.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUPPORTED_SUFFIXES = (".glb", ".gltf", ".fbx", ".blend")
#: files that sit beside glTF assets (buffers, textures): neither assets nor worth a report line
COMPANION_SUFFIXES = (".bin", ".png", ".jpg", ".jpeg", ".webp", ".ktx2", ".dds", ".tga", ".bmp", ".tif", ".tiff")
#: the longest step between rendered frames (Blender frames) when --frames are spread over a clip:
#: 4 frames at glTF's 24 fps is 1/6 s, so a clip longer than 13 x 4 + 1 = 53 frames renders a
#: window of consecutive steps where it moves most instead of aliasing its motion
DEFAULT_MAX_STEP = 4.0
ASSET_FILE = "asset.json"
CLIP_FILE = "clip.json"
#: the render settings of an output root, checked before any asset of a later run renders into it
SETTINGS_FILE = "render_settings.json"
#: job fields that name what is rendered or where, not how: they may change between runs of one root
NOT_SETTINGS = ("asset_id", "source", "out_root", "clips")
#: render settings that change speed, not the data (Cycles renders the same scene on CPU or GPU)
NOT_RENDER_SETTINGS = ("device",)


class InputError(ValueError):
    """An input path or list file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Asset:
    asset_id: str
    source: Path


def _from_list_file(path: Path) -> list[Asset]:
    """An id -> path JSON object (what ``objaverse.load_objects`` returns) or a list of paths."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the list file ({exc})") from exc
    base = path.parent
    if isinstance(data, dict):
        items = [(str(k), Path(str(v))) for k, v in data.items()]
    elif isinstance(data, list) and all(isinstance(v, str) for v in data):
        items = [(Path(v).stem, Path(v)) for v in data]
    else:
        raise InputError(f"{path}: a list file must be a JSON object id -> path or a list of paths")
    return [Asset(i, p if p.is_absolute() else base / p) for i, p in items]


def collect_assets(inputs: list[str | Path]) -> list[Asset]:
    """Assets from files, folders (searched recursively) and list files, ids unique, input order."""
    return collect_inputs(inputs)[0]


def collect_inputs(inputs: list[str | Path]) -> tuple[list[Asset], list[Path]]:
    """``(assets, unsupported)``: the assets as ``collect_assets`` finds them, and the files inside
    input folders that are neither assets nor glTF companions (buffers, textures), so the report can
    list them as skipped instead of ignoring them silently."""
    assets: list[Asset] = []
    unsupported: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            assets.extend(Asset(p.stem, p) for p in files if p.suffix.lower() in SUPPORTED_SUFFIXES)
            unsupported.extend(
                p for p in files
                if p.suffix.lower() not in SUPPORTED_SUFFIXES + COMPANION_SUFFIXES and not _is_output(p)
            )
        elif path.suffix.lower() == ".json":
            assets.extend(_from_list_file(path))
        elif path.suffix.lower() in SUPPORTED_SUFFIXES:
            # a missing file still becomes an asset: the report then says it was not found
            assets.append(Asset(path.stem, path))
        elif not path.exists():
            raise InputError(f"{path}: no such file or folder")
        else:
            raise InputError(f"{path}: not a GLB/glTF/FBX/.blend file, a folder or a .json list file")
    seen: dict[str, int] = {}
    unique = []
    for asset in assets:
        asset = Asset(asset.asset_id.replace("/", "_").replace("\\", "_").strip(".") or "asset", asset.source)
        count = seen.get(asset.asset_id, 0)
        seen[asset.asset_id] = count + 1
        unique.append(asset if count == 0 else Asset(f"{asset.asset_id}_{count + 1}", asset.source))
    return unique, unsupported


def _is_output(path: Path) -> bool:
    """Files render.py itself writes (an output root inside an input folder), and hidden files."""
    return path.name.startswith(".") or path.name in (ASSET_FILE, CLIP_FILE, SETTINGS_FILE, "report.jsonl")


def unsupported_record(path: Path) -> dict:
    """The report line of a file in an input folder that render.py cannot read (status skipped)."""
    return {"asset_id": path.name, "source": str(path), "status": "skipped",
            "reason": f"unsupported file type {path.suffix or '(none)'!r}: render.py reads "
                      + ", ".join(SUPPORTED_SUFFIXES),
            "clips": [], "seconds": 0.0}


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError as exc:
        raise InputError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from exc
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {text}: need 0 <= i < n")
    return index, count


def in_shard(asset_id: str, index: int, count: int) -> bool:
    """Stable assignment by a hash of the id: independent of input order and of the other assets."""
    return zlib.crc32(asset_id.encode("utf-8")) % count == index


def select_frames(start: float, end: float, num_frames: int, stride: float) -> list[float]:
    """Blender frames to render for a clip spanning ``[start, end]``.

    - ``stride > 0``: ``start, start + stride, ...`` up to ``end``, at most ``num_frames`` of them
      (``num_frames <= 0``: no limit).
    - ``stride <= 0``: ``num_frames`` frames evenly spread from ``start`` to ``end`` inclusive
      (possibly fractional: Blender evaluates subframes); a clip with fewer whole frames than
      ``num_frames`` renders each of its whole frames once.
    """
    if end < start:
        raise ValueError(f"clip ends ({end}) before it starts ({start})")
    if stride > 0:
        count = math.floor((end - start) / stride + 1e-9) + 1
        if num_frames > 0:
            count = min(count, num_frames)
        return [round(start + i * stride, 4) for i in range(count)]
    if num_frames <= 0:
        return select_frames(start, end, 0, 1.0)
    if num_frames == 1 or end == start:
        return [float(start)]
    span = end - start
    if span + 1 < num_frames and float(start).is_integer() and float(end).is_integer():
        return [float(start + i) for i in range(int(span) + 1)]
    step = span / (num_frames - 1)
    return [round(start + i * step, 4) for i in range(num_frames)]


def job_settings(job: dict) -> dict:
    """The settings of a render job that shape its output (cameras, frames, images, points), as JSON
    values; two renders of one asset agree exactly when these agree."""
    settings = json.loads(json.dumps({k: v for k, v in job.items() if k not in NOT_SETTINGS}))
    for key in NOT_RENDER_SETTINGS:
        settings.get("render", {}).pop(key, None)
    return settings


def settings_differences(stored: dict | None, wanted: dict) -> list[str]:
    """``"name: stored -> wanted"`` for every setting that differs (all of them when none is stored)."""
    if stored is None:
        return ["no settings recorded (made by an older render.py)"]
    out = []
    for key in sorted(set(stored) | set(wanted)):
        if key == "render":
            out += [f"render.{d}" for d in settings_differences(stored.get(key) or {}, wanted.get(key) or {})]
        elif stored.get(key) != wanted.get(key):
            out.append(f"{key}: {stored.get(key)!r} -> {wanted.get(key)!r}")
    return out


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def needs_window(start: float, end: float, num_frames: int, stride: float, max_step: float) -> bool:
    """Whether spreading ``num_frames`` over ``[start, end]`` would step more than ``max_step`` frames
    (only for the default spread: a given ``stride`` is used as it is; ``max_step <= 0``: no cap)."""
    return stride <= 0 < max_step and num_frames > 1 and (end - start) / (num_frames - 1) > max_step


def motion_window(times: list[float], motion: list[float], num_frames: int, max_step: float) -> list[float]:
    """The ``num_frames`` frames ``s, s + max_step, ...`` whose window holds the most motion.

    ``times`` are increasing frames sampled over the clip (its whole frames), ``motion[i]`` how far
    the object moved between ``times[i]`` and ``times[i + 1]`` (any unit). The window start ``s``
    is one of ``times``; of equally moving windows the earliest wins. The motion inside a window is
    interpolated linearly between the sampled times.
    """
    times_arr = np.asarray(times, dtype=np.float64)
    if len(motion) != len(times_arr) - 1:
        raise ValueError(f"need one motion value between consecutive times: {len(times_arr)} times, {len(motion)} values")
    span = (num_frames - 1) * max_step
    if times_arr[-1] - times_arr[0] <= span:
        starts = times_arr[:1]
    else:
        starts = times_arr[times_arr <= times_arr[-1] - span + 1e-9]
    covered = np.concatenate([[0.0], np.cumsum(np.asarray(motion, dtype=np.float64))])
    inside = np.interp(starts + span, times_arr, covered) - np.interp(starts, times_arr, covered)
    start = float(starts[int(np.argmax(inside - 1e-12 * np.arange(len(starts))))])
    return [round(start + i * max_step, 4) for i in range(num_frames)]


def clip_done(clip_dir: Path, settings: dict | None = None) -> bool:
    """A clip is finished once its clip.json exists (render.py writes it last) and, when ``settings``
    are given, it was rendered with them."""
    if settings is None:
        return (clip_dir / CLIP_FILE).is_file()
    record = read_json(clip_dir / CLIP_FILE)
    return record is not None and record.get("settings") == settings


def finished_asset(asset_dir: Path, clips: list[str] | None = None, settings: dict | None = None) -> dict | None:
    """The stored result of an asset whose requested clips are all finished (for resume), else None.

    ``clips`` is this run's clip filter (None: every clip); a record made under a narrower filter
    does not count, nor (when ``settings`` are given) one made with other settings.
    """
    record = read_json(asset_dir / ASSET_FILE)
    if record is None or record.get("status") not in ("ok", "skipped"):
        return None
    if settings is not None and record.get("settings") != settings:
        return None
    requested = record.get("requested_clips")
    if requested is not None and (clips is None or not set(clips) <= set(requested)):
        return None
    if not all(clip_done(asset_dir / folder, settings) for folder in record.get("clip_folders", [])):
        return None
    return record


def check_root_settings(out: Path, settings: dict, overwrite: bool) -> list[str]:
    """Compare this run's settings with the ones recorded in the output root; record them.

    Returns the differences (empty when the root is new, agrees, or ``overwrite`` is set; the
    caller refuses to run otherwise). A root without a record but with rendered assets in it counts
    as different: its clips cannot be told apart from this run's.
    """
    stored = read_json(out / SETTINGS_FILE)
    if stored is None and not any(out.glob(f"*/{ASSET_FILE}")) and not any(out.glob(f"*/*/{CLIP_FILE}")):
        differences: list[str] = []
    else:
        differences = settings_differences(stored, settings)
    if differences and not overwrite:
        return differences
    if stored != settings:
        write_json_atomic(out / SETTINGS_FILE, settings)
    return []


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temporary file of this process, so concurrent writers (shards) never mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
