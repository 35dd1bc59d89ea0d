"""Classifier-free guidance with a per-frame weight (SVD's linear ramp, 1.0 at frame 0 -> 5.0 at frame 13).

The unconditional branch sees a zero first-frame latent, a zero CLIP embedding and zero drags (or,
with ``guidance_drops="drags"``, the same image and zero drags); the two branches run as one batch
``[uncond, cond]``. Because the EDM denoiser is affine in the network output with the same
``c_skip``/``c_out`` for both branches, guiding the network output equals guiding the denoised sample.
"""

from __future__ import annotations

import torch

#: what the unconditional branch drops: everything (SVD, the paper) or only the drags
GUIDANCE_DROPS = ("all", "drags")


def guidance_weights(
    min_scale: float, max_scale: float, num_frames: int, *, device=None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The ``(num_frames,)`` weights ramping linearly from ``min_scale`` (frame 0) to ``max_scale``."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return torch.linspace(min_scale, max_scale, num_frames, device=device, dtype=dtype)


def needs_unconditional(min_scale: float, max_scale: float) -> bool:
    """Whether the unconditional branch changes anything (a weight of 1 everywhere is the conditional output)."""
    return not (min_scale == 1.0 and max_scale == 1.0)


def combine_guidance(uncond: torch.Tensor, cond: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``uncond + w_n * (cond - uncond)`` for videos ``(B, N, ...)`` with per-frame weights ``(N,)``."""
    if uncond.shape != cond.shape:
        raise ValueError(f"the two guidance branches differ in shape: {tuple(uncond.shape)} vs {tuple(cond.shape)}")
    if weights.ndim != 1 or weights.shape[0] != cond.shape[1]:
        raise ValueError(f"need one guidance weight per frame ({cond.shape[1]}), got shape {tuple(weights.shape)}")
    w = weights.to(device=cond.device, dtype=cond.dtype).reshape(1, -1, *([1] * (cond.ndim - 2)))
    return uncond + w * (cond - uncond)
