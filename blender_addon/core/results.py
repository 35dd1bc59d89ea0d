"""Where generated frames go and how they are written (no bpy)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._light import light_module

#: frame file names: frame_0000.png, frame_0001.png, ... (Blender reads them as one sequence)
FRAME_PATTERN = light_module("protocol").FRAME_NAME
#: what a job ran with, beside its frames (so a result can be reproduced)
SETTINGS_FILE = "settings.json"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ResultError(RuntimeError):
    """Frames that cannot be saved; the message names the file or the problem."""


def result_folder(output_folder: str, blend_path: str, job_id: str) -> Path:
    """The folder for one job's frames.

    ``output_folder`` may be Blender-relative (``//puppet_master``): it is resolved beside the
    .blend, or inside the system temp folder when the file was never saved.
    """
    if not job_id or any(c in job_id for c in "/\\.:"):
        raise ResultError(f"job id {job_id!r} cannot be used as a folder name")
    folder = output_folder or "//puppet_master"
    if folder.startswith("//"):
        base = Path(blend_path).parent if blend_path else Path(tempfile.gettempdir()) / "puppet_master_unsaved"
        root = base / folder[2:]
    else:
        root = Path(folder).expanduser()
    return root / job_id


#: a several-variant result keeps each variant in its own folder under the job's
VARIANT_FOLDER = "variant_{:02d}"


def write_frames(folder: Path, frames: Sequence[bytes]) -> list[Path]:
    """Write PNG frames as ``frame_0000.png`` ... (each via a temp file, so a crash leaves no half file)."""
    if not frames:
        raise ResultError("the result has no frames")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(frames):
        if not bytes(data[:8]) == PNG_SIGNATURE:
            raise ResultError(f"frame {index} of the result is not a PNG image")
        path = folder / FRAME_PATTERN.format(index)
        write_atomic(path, bytes(data))
        paths.append(path)
    return paths


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file beside it, so a crash leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


PREVIEW_FILE = "preview.gif"


def write_preview(folder: Path, frames_rgb: Sequence[Any], fps: float = 8.0) -> Path:
    """``preview.gif`` beside the frames (``(H, W, 3)`` uint8 arrays), to look at without Blender."""
    from .preview_gif import encode_gif

    path = folder / PREVIEW_FILE
    write_atomic(path, encode_gif(frames_rgb, fps))
    return path


def write_settings(folder: Path, job_id: str, endpoint: str, settings: dict[str, Any], drags: Sequence[Any],
                   info: dict[str, Any]) -> Path:
    """``settings.json`` beside the frames: the job, the backend, the settings (seed, steps,
    guidance, ...), the drags as run and the model that ran them."""
    record = {"job_id": job_id, "endpoint": endpoint, "settings": settings, "drags": list(drags), "model": info}
    path = folder / SETTINGS_FILE
    write_atomic(path, (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode())
    return path


def existing_frames(folder: Path) -> list[Path]:
    """The frames already saved in ``folder`` (in order), e.g. to rebuild a plane without the backend."""
    paths = []
    index = 0
    while (folder / FRAME_PATTERN.format(index)).exists():
        paths.append(folder / FRAME_PATTERN.format(index))
        index += 1
    return paths
