"""Drag encoding: drags ``(B, N, K, 4)`` -> per-frame maps ``(B, N, 6*K, h, w)`` (paper Sec. 3.2, App. A).

For each drag slot three cells of a ``-1`` map are written: the start point (channels 0-1), the
point in the current frame (2-3) and the point in the last frame (4-5). The value written is the
fractional offset ``c * s - index`` of the point inside its cell, for x then y. A slot whose row
is all zeros ("no drag") stays ``-1`` everywhere.
"""

from __future__ import annotations

import torch

__all__ = ["CHANNELS_PER_DRAG", "active_drag_mask", "check_drags", "encode_drags"]

CHANNELS_PER_DRAG = 6


def check_drags(drags: torch.Tensor, num_drags: int | None = None, name: str = "drags") -> None:
    """Raise ``ValueError``/``TypeError`` naming the problem when ``drags`` is not a valid drag tensor."""
    if not isinstance(drags, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(drags).__name__}")
    if drags.ndim != 4 or drags.shape[-1] != 4:
        raise ValueError(
            f"`{name}` must have shape (batch, frames, drags, 4) with rows [x_start, y_start, x_n, y_n], "
            f"got {tuple(drags.shape)}"
        )
    if not drags.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {drags.dtype}")
    if num_drags is not None and drags.shape[2] > num_drags:
        raise ValueError(f"`{name}` has {drags.shape[2]} drag slots but the model has only {num_drags}")
    if not torch.isfinite(drags).all():
        raise ValueError(f"`{name}` contains NaN or infinite values")


def active_drag_mask(drags: torch.Tensor) -> torch.Tensor:
    """``(B, N, K)`` boolean mask: True where the drag slot is used (its row is not all zeros)."""
    return drags.ne(0).any(dim=-1)


def pad_drags(drags: torch.Tensor, num_drags: int) -> torch.Tensor:
    """Pad the drag-slot dimension with all-zero ("no drag") slots up to ``num_drags``."""
    missing = num_drags - drags.shape[2]
    if missing <= 0:
        return drags
    return torch.nn.functional.pad(drags, (0, 0, 0, missing))


def _cell(coord: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell index ``round(c*s - 0.5)`` clipped to the map, and the offset ``c*s - index`` written there."""
    scaled = coord * size
    index = torch.round(scaled - 0.5).clamp_(0, size - 1)
    return index.long(), scaled - index


def encode_drags(
    drags: torch.Tensor, height: int, width: int, num_drags: int | None = None
) -> torch.Tensor:
    """Encode ``drags`` ``(B, N, K, 4)`` into ``(B, N, 6 * num_drags, height, width)`` maps.

    ``num_drags`` (default ``K``) pads the slots with unused drags; coordinates are normalised
    (x by the width, y by the height). Vectorised over batch, frames and drags.
    """
    check_drags(drags, num_drags)
    if height < 1 or width < 1:
        raise ValueError(f"`height` and `width` must be positive, got {height}x{width}")
    num_drags = drags.shape[2] if num_drags is None else num_drags
    drags = pad_drags(drags, num_drags)
    batch, frames, slots, _ = drags.shape

    # points (B, N, K, 3, 2): start, current, final (the last frame's current point), as (x, y)
    final = drags[:, -1:, :, 2:].expand(batch, frames, slots, 2)
    points = torch.stack([drags[..., :2], drags[..., 2:], final], dim=3)
    ix, off_x = _cell(points[..., 0], width)
    iy, off_y = _cell(points[..., 1], height)

    # write (off_x, off_y) into the two channels of each point at its flattened cell index
    flat_index = (iy * width + ix).unsqueeze(-1).expand(*ix.shape, 2)
    values = torch.stack([off_x, off_y], dim=-1)
    values = torch.where(active_drag_mask(drags)[..., None, None], values, torch.full_like(values, -1.0))
    maps = drags.new_full((batch, frames, slots, 3, 2, height * width), -1.0)
    maps.scatter_(-1, flat_index.unsqueeze(-1), values.unsqueeze(-1))
    return maps.reshape(batch, frames, slots * CHANNELS_PER_DRAG, height, width)
