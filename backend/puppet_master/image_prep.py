"""Turning a user's image and drags into the model's 256x256 first frame and frame-space drags.

Pillow and NumPy only (no torch), so the server can validate a job before a model is loaded.

- RGBA (and other images with transparency) are composited on white, the background the model
  was trained with.
- The frame is a square window of the image, resized to ``FRAME_SIZE``: ``crop="none"`` takes the
  whole image (a non-square image is padded with white to a square, never stretched);
  ``crop="object"`` takes a square around the alpha bounding box, ``OBJECT_MARGIN`` times its
  longer side (the authors' demo uses 2.2).
- Drags come in fractions of the *original* image (x right, y down) and are mapped into the frame
  by the same window, so a drag on an object pixel lands on the same object pixel of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from puppet_master import protocol
from puppet_master.drags import DATA_MARGIN, DragError, active_mask

FRAME_SIZE = protocol.FRAME_SIZE
OBJECT_MARGIN = 2.2
CROP_MODES = ("none", "object")
WHITE = (255, 255, 255)


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file or the problem."""


def load_image(image: str | Path | Image.Image) -> Image.Image:
    """Open ``image`` (a path or a PIL image) fully into memory, upright as viewers show it (EXIF)."""
    if isinstance(image, Image.Image):
        return image
    if not isinstance(image, (str, Path)):
        raise ImageError(f"image must be a file path or a PIL image, got {type(image).__name__}")
    path = Path(image).expanduser()
    if not path.is_file():
        raise ImageError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def composite_on_white(image: Image.Image) -> Image.Image:
    """An RGB copy of ``image`` with any transparency composited over white."""
    if not has_alpha(image):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


@dataclass(frozen=True)
class SquareWindow:
    """A square window ``[left, left + size) x [top, top + size)`` in pixels of a source image.

    It may reach outside the image (the outside is white). Maps normalised source points to
    normalised frame points and back.
    """

    left: float
    top: float
    size: float
    source_width: int
    source_height: int

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` source fractions -> frame fractions."""
        pts = np.asarray(points, dtype=np.float64)
        x = (pts[..., 0] * self.source_width - self.left) / self.size
        y = (pts[..., 1] * self.source_height - self.top) / self.size
        return np.stack([x, y], axis=-1)

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """``(..., 2)`` frame fractions -> source fractions (the inverse of :meth:`to_frame`)."""
        pts = np.asarray(points, dtype=np.float64)
        x = (pts[..., 0] * self.size + self.left) / self.source_width
        y = (pts[..., 1] * self.size + self.top) / self.source_height
        return np.stack([x, y], axis=-1)

    def map_drag_array(self, drags: np.ndarray, *, margin: float = DATA_MARGIN) -> np.ndarray:
        """Map the used slots of a ``(..., N, K, 4)`` source-space drag array into the frame.

        Unused (all-zero) slots stay zero. Raises :class:`DragError` when a mapped point falls more
        than ``margin`` outside the frame.
        """
        arr = np.asarray(drags, dtype=np.float32)
        used = np.expand_dims(active_mask(arr), -2)[..., None]  # (..., 1, K, 1)
        mapped = np.concatenate([self.to_frame(arr[..., 0:2]), self.to_frame(arr[..., 2:4])], axis=-1)
        out = np.where(used, mapped, 0.0).astype(np.float32)
        if ((out < -margin) | (out > 1 + margin)).any():
            raise DragError(
                "a drag reaches outside the cropped frame (more than "
                f"{margin:g} of its size): keep drags near the object, or use crop='none'"
            )
        return out

    def to_json(self) -> dict:
        return {
            "left": self.left,
            "top": self.top,
            "size": self.size,
            "source_size": [self.source_width, self.source_height],
        }


def object_window(image: Image.Image, margin: float = OBJECT_MARGIN) -> SquareWindow:
    """The square window centred on the alpha bounding box, ``margin`` times its longer side."""
    if not has_alpha(image):
        raise ImageError("crop='object' needs an image with an alpha channel (RGBA) to find the object")
    if margin <= 0:
        raise ImageError(f"object crop margin must be positive, got {margin}")
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        raise ImageError("crop='object' found no object: the image is fully transparent")
    # pixel i covers [i, i + 1): the box spans [first, last + 1)
    cx = (cols[0] + cols[-1] + 1) / 2
    cy = (rows[0] + rows[-1] + 1) / 2
    side = margin * max(cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0])
    return SquareWindow(cx - side / 2, cy - side / 2, float(side), image.width, image.height)


def whole_window(image: Image.Image) -> SquareWindow:
    """The smallest square holding the whole image, centred (a non-square image gets white bars)."""
    side = max(image.width, image.height)
    return SquareWindow((image.width - side) / 2, (image.height - side) / 2, float(side), image.width, image.height)


def crop_window(image: Image.Image, crop: str = "none", margin: float = OBJECT_MARGIN) -> SquareWindow:
    if crop == "none":
        return whole_window(image)
    if crop == "object":
        return object_window(image, margin)
    raise ImageError(f"unknown crop mode {crop!r}; choose one of {', '.join(CROP_MODES)}")


def render_window(image: Image.Image, window: SquareWindow, size: int = FRAME_SIZE) -> Image.Image:
    """The window of ``image`` (composited on white) resized to ``size x size`` with antialiasing."""
    rgb = composite_on_white(image)
    # pad with white so the window lies inside the canvas (Image.resize's box must)
    pad_left = max(0, int(np.ceil(-window.left)))
    pad_top = max(0, int(np.ceil(-window.top)))
    pad_right = max(0, int(np.ceil(window.left + window.size - rgb.width)))
    pad_bottom = max(0, int(np.ceil(window.top + window.size - rgb.height)))
    if pad_left or pad_top or pad_right or pad_bottom:
        canvas = Image.new("RGB", (rgb.width + pad_left + pad_right, rgb.height + pad_top + pad_bottom), WHITE)
        canvas.paste(rgb, (pad_left, pad_top))
        rgb = canvas
    left, top = window.left + pad_left, window.top + pad_top
    box = (left, top, min(left + window.size, rgb.width), min(top + window.size, rgb.height))
    return rgb.resize((size, size), resample=Image.Resampling.LANCZOS, box=box)


def prepare_frame(
    image: str | Path | Image.Image, crop: str = "none", *, size: int = FRAME_SIZE, margin: float = OBJECT_MARGIN
) -> tuple[Image.Image, SquareWindow]:
    """Load ``image`` and return the model's RGB first frame and the window it was taken from."""
    img = load_image(image)
    if img.width < 1 or img.height < 1:
        raise ImageError(f"image has no pixels ({img.width}x{img.height})")
    window = crop_window(img, crop, margin)
    return render_window(img, window, size), window


__all__ = [
    "CROP_MODES",
    "FRAME_SIZE",
    "OBJECT_MARGIN",
    "ImageError",
    "SquareWindow",
    "composite_on_white",
    "crop_window",
    "load_image",
    "prepare_frame",
    "render_window",
]
