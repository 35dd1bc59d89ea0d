"""The ``drags.json`` file of a clip: drag samples that training reads (schema version 1).

::

    {
      "schema": "puppet-master/drags", "version": 1,
      "asset_id": str, "clip": str, "image_size": [W, H], "num_frames": 14, "max_drags": 5,
      "settings": {...},                  # the sampler settings and seed that produced the file
      "samples": [{
          "view": int,                    # index into cameras.json "views" (frames in view_XX/)
          "start_frame": int, "stride": float,   # step between frames (fractional steps are rounded)
          "frames": [int] * 14,           # THE frames: indices along the clip's time axis (TTTT of
                                          # view_XX/TTTT.png); the last frame is held in short clips
          "drags": [[[x0, y0, xn, yn] * K] * 14],   # (14, K, 4), 1 <= K <= 5, normalised, no empty slot
          "drag_info": [{"group": str, "point": int, "path_px": float}] * K,
          "static_parts": [str]           # parts (objects) that do not move in this window
      }],
      "skipped_views": [{"view": int, "start_frame": int, "reason": str}]
    }

Coordinates follow ``puppet_master.drags``: fractions of the image, x right, y down, origin at the
top-left corner; every drag starts at its frame-0 position. ``sample_array`` pads a sample to the
model's ``(14, 5, 4)`` with all-zero (unused) slots.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from puppet_master.drags import MAX_DRAGS, NUM_FRAMES, DragError, validate_drag_array
from puppet_master.outputs import write_json_atomic

SCHEMA = "puppet-master/drags"
SCHEMA_VERSION = 1
DRAGS_FILE = "drags.json"
DECIMALS = 6


class DragFileError(ValueError):
    """A drags.json file that cannot be used; the message names the file and the sample."""


def make_sample(view: int, frames: list[int], stride: float, drags: np.ndarray, info: list[dict]) -> dict:
    """One sample record from a ``(N, K, 4)`` array of K used drags."""
    arr = np.asarray(drags, dtype=np.float64)
    return {
        "view": int(view),
        "start_frame": int(frames[0]),
        "stride": round(float(stride), DECIMALS),
        "frames": [int(f) for f in frames],
        "drags": np.round(arr, DECIMALS).tolist(),
        "drag_info": info,
    }


def make_document(
    asset_id: str,
    clip: str,
    image_size: tuple[int, int],
    settings: dict,
    samples: list[dict],
    skipped_views: list[dict],
) -> dict:
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "asset_id": asset_id,
        "clip": clip,
        "image_size": [int(image_size[0]), int(image_size[1])],
        "num_frames": NUM_FRAMES,
        "max_drags": MAX_DRAGS,
        "settings": settings,
        "samples": samples,
        "skipped_views": skipped_views,
    }


def write_drags_json(path: str | Path, document: dict) -> None:
    validate_document(document, where=str(path))
    write_json_atomic(path, document)


def sample_array(sample: dict, *, max_drags: int = MAX_DRAGS) -> np.ndarray:
    """The sample's drags as the model's ``(N, max_drags, 4)`` float32 array (unused slots zero)."""
    arr = np.asarray(sample["drags"], dtype=np.float32)
    n, k, _ = arr.shape
    out = np.zeros((n, max_drags, 4), dtype=np.float32)
    out[:, :k] = arr[:, :max_drags]
    return out


def validate_document(document: dict, *, where: str = "drags.json") -> dict:
    """Check a drags document against schema version 1; return it unchanged."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise DragFileError(f"{where}: not a drags file (schema {SCHEMA!r} expected)")
    if document.get("version") != SCHEMA_VERSION:
        raise DragFileError(f"{where}: drags schema version {document.get('version')!r}; this code reads {SCHEMA_VERSION}")
    for key in ("asset_id", "clip", "image_size", "samples", "num_frames", "max_drags"):
        if key not in document:
            raise DragFileError(f"{where}: field {key!r} is missing")
    n, max_k = document["num_frames"], document["max_drags"]
    for i, sample in enumerate(document["samples"]):
        label = f"{where}: sample {i}"
        for key in ("view", "frames", "drags", "stride", "start_frame"):
            if key not in sample:
                raise DragFileError(f"{label}: field {key!r} is missing")
        if len(sample["frames"]) != n:
            raise DragFileError(f"{label}: {len(sample['frames'])} frame indices, expected {n}")
        arr = np.asarray(sample["drags"], dtype=np.float64)
        if arr.ndim != 3 or arr.shape[0] != n or arr.shape[2] != 4 or not 1 <= arr.shape[1] <= max_k:
            raise DragFileError(f"{label}: drags must have shape ({n}, K, 4) with 1 <= K <= {max_k}, got {arr.shape}")
        try:
            validate_drag_array(arr, max_drags=max_k, num_frames=n)
        except DragError as exc:
            raise DragFileError(f"{label}: {exc}") from exc
        if "drag_info" in sample and len(sample["drag_info"]) != arr.shape[1]:
            raise DragFileError(f"{label}: {len(sample['drag_info'])} drag_info entries for {arr.shape[1]} drags")
    return document


def read_drags_json(path: str | Path) -> dict:
    """Load and check a ``drags.json``."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DragFileError(f"{path}: missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DragFileError(f"{path}: not valid JSON ({exc})") from exc
    return validate_document(document, where=str(path))
