"""The Drag-a-Move clip format (the paper's test set and training batches).

A clip is a pickle ``NNNNN.pkl`` holding a dict: ``latents`` ``(1, 14, 4, 32, 32)`` (VAE latents of
the true video, already multiplied by 0.18215), ``cond_latent`` ``(1, 4, 32, 32)`` (the unscaled
latent of the first frame), ``embedding`` ``(1, 1, 1024)`` (its CLIP image embedding), ``drags``
``(1, 14, 5, 4)`` (the project's drag convention) and identifying fields (``category``,
``instance_idx``, ``subset_idx``, ``camera_idx``, ``start_motion_t``, ``end_motion_t``). Beside it,
``NNNNN.gif`` holds the true frames (512x512) and ``NNNNN.png`` the first frame with the drag drawn.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

#: the only globals a Drag-a-Move pickle may name; anything else is refused
_ALLOWED_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("collections", "OrderedDict"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy", "dtype"),
}
REQUIRED_KEYS = ("latents", "cond_latent", "embedding", "drags")


class ClipFormatError(ValueError):
    """A Drag-a-Move file that cannot be used; the message names the file and the problem."""


def _load_storage(data: bytes):
    # the pickles embed each tensor storage as a nested torch.save blob: load it with weights_only
    return torch.load(io.BytesIO(data), weights_only=True)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles tensors, lists, strings and numbers only.

    The Drag-a-Move files are trusted local data from the shared folder, but they are plain pickles
    (``torch.load(weights_only=True)`` cannot read their format), so every global they name is
    checked against an allow-list instead of trusting the file.
    """

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _load_storage
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a Drag-a-Move pickle")


@dataclass
class DragAMoveClip:
    """One clip, batch dimension removed: latents (14, 4, 32, 32), cond_latent (4, 32, 32),
    embedding (1, 1024), drags (14, 5, 4), all float32."""

    path: Path
    latents: torch.Tensor
    cond_latent: torch.Tensor
    embedding: torch.Tensor
    drags: torch.Tensor
    category: str
    key: str

    @property
    def gif_path(self) -> Path:
        return self.path.with_suffix(".gif")


def _first(value):
    if isinstance(value, (list, tuple)):
        return value[0] if value else ""
    if isinstance(value, torch.Tensor):
        return value.flatten()[0].item() if value.numel() else ""
    return value


def load_clip(path: str | Path) -> DragAMoveClip:
    """Read and check one Drag-a-Move pickle."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = _RestrictedUnpickler(f).load()
    except FileNotFoundError:
        raise ClipFormatError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, TypeError) as exc:
        raise ClipFormatError(f"{path}: not a readable Drag-a-Move pickle ({exc})") from exc
    if not isinstance(data, dict):
        raise ClipFormatError(f"{path}: expected a dict, got {type(data).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ClipFormatError(f"{path}: missing key(s) {', '.join(missing)}")
    tensors = {}
    for name in REQUIRED_KEYS:
        value = data[name]
        if not isinstance(value, torch.Tensor):
            raise ClipFormatError(f"{path}: {name} must be a tensor, got {type(value).__name__}")
        tensors[name] = value.float()[0] if value.shape[:1] == (1,) else value.float()
    lat, cond, emb, drags = (tensors[k] for k in REQUIRED_KEYS)
    if lat.ndim != 4:  # SVD's latents have 4 channels; the tiny trained model's VAE gives more
        raise ClipFormatError(f"{path}: latents must be (1, N, C, h, w), got {tuple(data['latents'].shape)}")
    if cond.shape != lat.shape[1:]:
        raise ClipFormatError(f"{path}: cond_latent {tuple(cond.shape)} does not match latents {tuple(lat.shape)}")
    if emb.ndim != 2 or emb.shape[0] != 1:
        raise ClipFormatError(f"{path}: embedding must be (1, 1, D), got {tuple(data['embedding'].shape)}")
    if drags.ndim != 3 or drags.shape[0] != lat.shape[0] or drags.shape[2] != 4:
        raise ClipFormatError(f"{path}: drags must be (1, {lat.shape[0]}, K, 4), got {tuple(data['drags'].shape)}")
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise ClipFormatError(f"{path}: NaN or infinite values")
    fields = ("category", "instance_idx", "subset_idx", "camera_idx", "start_motion_t", "end_motion_t")
    ident = [str(_first(data.get(f, ""))) for f in fields]
    key = "/".join(ident) if any(ident) else path.stem
    return DragAMoveClip(path, lat, cond, emb, drags, category=ident[0] or "other", key=key)


def find_clips(folder: str | Path) -> list[Path]:
    """The ``*.pkl`` files of a Drag-a-Move folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipFormatError(f"Drag-a-Move folder {folder} does not exist")
    paths = sorted(folder.glob("*.pkl"))
    if not paths:
        raise ClipFormatError(f"no *.pkl clips in {folder}")
    return paths


def read_gif_frames(path: str | Path, size: int | None = 256) -> np.ndarray:
    """The frames of a GIF as ``(T, H, W, 3)`` uint8 RGB, resized to ``size`` (Lanczos) unless None."""
    path = Path(path)
    if not path.is_file():
        raise ClipFormatError(f"{path}: no such file (the true frames of a Drag-a-Move clip)")
    frames = []
    with Image.open(path) as gif:
        for i in range(getattr(gif, "n_frames", 1)):
            gif.seek(i)
            frame = gif.convert("RGB")
            if size is not None and frame.size != (size, size):
                frame = frame.resize((size, size), Image.Resampling.LANCZOS)
            frames.append(np.asarray(frame))
    return np.stack(frames)
