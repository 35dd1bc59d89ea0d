"""The reference image the model sees (no bpy): compositing, square crop, alpha checks, PNG bytes.

Arrays here are top-down (row 0 is the top of the image), float in 0..1, ``(H, W, C)``. Blender
stores image pixels bottom-up; the thin layer flips them with ``from_blender_pixels``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

from ._light import light_module

#: the model's frame size (pixels)
MODEL_SIZE = light_module("protocol").FRAME_SIZE
#: alpha at or below this counts as "nothing there" for the drag-off-object warning
TRANSPARENT_ALPHA = 0.05


class ReferenceImageError(ValueError):
    """A reference image that cannot be used; the message says why."""


def from_blender_pixels(flat: Sequence[float] | np.ndarray, width: int, height: int, channels: int) -> np.ndarray:
    """Blender's flat bottom-up ``Image.pixels`` -> a top-down ``(H, W, C)`` float32 array."""
    arr = np.asarray(flat, dtype=np.float32)
    if arr.size != width * height * channels:
        raise ReferenceImageError(
            f"image has {arr.size} values, expected {width}x{height}x{channels} = {width * height * channels}"
        )
    return arr.reshape(height, width, channels)[::-1].copy()


def to_blender_pixels(image: np.ndarray) -> np.ndarray:
    """A top-down ``(H, W, 4)`` array -> Blender's flat bottom-up pixel buffer."""
    return np.ascontiguousarray(image[::-1], dtype=np.float32).ravel()


def ensure_rgba(image: np.ndarray) -> np.ndarray:
    """Grey, RGB or RGBA -> RGBA (missing alpha means fully opaque)."""
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ReferenceImageError(f"expected an image of shape (H, W, 1|3|4), got {image.shape}")
    if image.shape[2] == 4:
        return image.astype(np.float32, copy=False)
    rgb = np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image
    alpha = np.ones((*image.shape[:2], 1), dtype=np.float32)
    return np.concatenate([rgb.astype(np.float32), alpha], axis=2)


def centre_square(image: np.ndarray) -> np.ndarray:
    """The centred square crop of an image (the model's frame inside a non-square one)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha RGBA -> opaque RGB on a white background (what the model was trained on)."""
    rgba = ensure_rgba(rgba)
    alpha = np.clip(rgba[..., 3:4], 0.0, 1.0)
    return np.clip(rgba[..., :3], 0.0, 1.0) * alpha + (1.0 - alpha)


def alpha_at(alpha: np.ndarray, x: float, y: float) -> float:
    """Alpha of the pixel under normalised point ``(x, y)`` (x right, y down) of a top-down alpha map."""
    h, w = alpha.shape[:2]
    col = min(w - 1, max(0, int(x * w)))
    row = min(h - 1, max(0, int(y * h)))
    return float(alpha[row, col])


BLANK_MESSAGE = ("the reference is empty: nothing renders in front of the camera (an asset of empties or "
                 "bones only, or the object outside the view); frame an object and render the reference again")


def is_blank(alpha: np.ndarray, threshold: float = TRANSPARENT_ALPHA) -> bool:
    """True when no pixel of a top-down alpha map is more than ``threshold`` opaque."""
    return alpha.size == 0 or float(np.max(alpha)) <= threshold


def drags_off_object(
    alpha: np.ndarray, starts: Sequence[tuple[float, float]], threshold: float = TRANSPARENT_ALPHA
) -> list[int]:
    """Indices of drags whose start point lies on a transparent pixel (nothing there to move)."""
    return [i for i, (x, y) in enumerate(starts) if alpha_at(alpha, x, y) <= threshold]


def resize_nearest(image: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a square image to ``size x size`` (only used for odd picked images)."""
    h, w = image.shape[:2]
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(int)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(int)
    return image[rows][:, cols]


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` float (0..1) or uint8 image as an 8-bit RGB PNG (stdlib zlib only)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ReferenceImageError(f"expected an RGB image of shape (H, W, 3), got {rgb.shape}")
    data = rgb if rgb.dtype == np.uint8 else np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    h, w = data.shape[:2]
    raw = b"".join(b"\x00" + data[row].tobytes() for row in range(h))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def model_input(rgba: np.ndarray) -> np.ndarray:
    """Any reference image -> the model's square RGB-on-white frame (centre crop, white background)."""
    square = centre_square(ensure_rgba(rgba))
    if square.shape[0] < 16:
        raise ReferenceImageError(f"reference image is only {square.shape[1]}x{square.shape[0]} pixels")
    return composite_on_white(square)
