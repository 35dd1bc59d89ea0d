"""Training on latent crops around a drag: the same U-Net, a fraction of the compute per sample.

Convolutions and attention of the U-Net see any grid size, so a step on ``s x s`` crops of the
``h x w`` latents trains the same weights for much less work (on the tiny recipe a 16x16 crop of the
32x32 latents costs about a third of the full step on the CPU). Each cropped sample keeps one of its
drags with its whole trajectory inside the window where that fits (``choose_window``), so the
cells the drag moves, which the loss weighs most, are the ones paid for. Drags are re-expressed in
the window's normalised coordinates; a drag whose start or path leaves the window is removed
(its part may still move, as for any drag left out by the random drag subset).

Which steps crop is decided by ``(seed, step)`` and each sample's window by ``(seed, sample
number)``, so a resumed run crops exactly as an uninterrupted one, however the batch is split.
"""

from __future__ import annotations

import numpy as np
import torch

from puppet_master.models.drag_encoding import active_drag_mask

_CROP_STREAM = 2  # independent of the data (no stream) and noise (1) draws of the same numbers


def step_is_cropped(seed: int, step: int, probability: float) -> bool:
    """Whether optimiser step ``step`` trains on crops (the same answer on every process)."""
    if probability <= 0:
        return False
    if probability >= 1:
        return True
    return bool(np.random.default_rng([seed, int(step), _CROP_STREAM]).random() < probability)


def _axis_start(points: np.ndarray, size: int, extent: int, rng: np.random.Generator) -> int:
    """First cell of a ``size``-cell window on an axis of ``extent`` cells that holds every one of
    ``points`` (cell coordinates, the start first) when they fit (uniformly among such windows),
    else centred on the start."""
    last = extent - size
    lo, hi = int(np.floor(points.min())), int(np.floor(points.max()))
    first_ok, last_ok = max(0, hi - size + 1), min(last, lo)
    if first_ok <= last_ok:
        return int(rng.integers(first_ok, last_ok + 1))
    return int(np.clip(round(points[0] - size / 2), 0, last))


def choose_window(drags: np.ndarray, size: int, height: int, width: int,
                  rng: np.random.Generator) -> tuple[int, int]:
    """Top-left cell ``(row, col)`` of an ``size x size`` window on an ``height x width`` latent grid.

    ``drags`` ``(N, K, 4)`` in normalised coordinates; one used drag is picked at random and its
    start and every point of its path are kept inside the window where they fit. Without drags
    the window is uniform."""
    used = np.flatnonzero(np.any(drags != 0, axis=(0, 2)))
    if len(used) == 0:
        return int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    k = int(rng.choice(used))
    xs = np.concatenate([drags[:1, k, 0], drags[:, k, 2]]) * width
    ys = np.concatenate([drags[:1, k, 1], drags[:, k, 3]]) * height
    col = _axis_start(xs, size, width, rng)
    row = _axis_start(ys, size, height, rng)
    return row, col


def crop_drags(drags: torch.Tensor, row: int, col: int, size: int, height: int, width: int) -> torch.Tensor:
    """``drags`` ``(N, K, 4)`` in the window's normalised coordinates; drags whose start or any point
    of the path falls outside the window become unused (all-zero) slots."""
    scale = drags.new_tensor([width, height, width, height])
    offset = drags.new_tensor([col, row, col, row])
    moved = (drags * scale - offset) / size
    used = active_drag_mask(drags[None])[0].any(dim=0)  # (K,)
    inside = ((moved >= 0) & (moved < 1)).all(dim=-1).all(dim=0)
    keep = (used & inside).to(drags.dtype)
    return moved * keep.view(1, -1, 1)


def crop_batch(batch: dict[str, torch.Tensor], size: int, seed: int) -> dict[str, torch.Tensor]:
    """A batch of ``size x size`` windows of ``latents`` ``(B, N, C, h, w)`` and ``cond_latent``
    ``(B, C, h, w)``, one window per sample chosen by ``(seed, batch['index'][i])``; the image
    embedding is the whole frame's and is kept."""
    latents, cond, drags = batch["latents"], batch["cond_latent"], batch["drags"]
    height, width = latents.shape[-2:]
    if not 0 < size <= min(height, width):
        raise ValueError(f"crop size {size} does not fit latents of {height}x{width}")
    out_latents, out_cond, out_drags = [], [], []
    for i, index in enumerate(batch["index"].tolist()):
        rng = np.random.default_rng([seed, int(index), _CROP_STREAM])
        row, col = choose_window(drags[i].numpy(), size, height, width, rng)
        out_latents.append(latents[i, ..., row:row + size, col:col + size])
        out_cond.append(cond[i, ..., row:row + size, col:col + size])
        out_drags.append(crop_drags(drags[i], row, col, size, height, width))
    cropped = dict(batch)
    cropped.update(latents=torch.stack(out_latents), cond_latent=torch.stack(out_cond), drags=torch.stack(out_drags))
    return cropped
