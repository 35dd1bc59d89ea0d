"""The training objective: EDM denoising loss of the spec with drag dropout.

Per sample: ``ln(sigma) ~ N(p_mean, p_std^2)``, ``x_noisy = x0 + sigma * eps``, the network sees
``c_in(sigma) * x_noisy`` and ``c_noise(sigma)`` (as at inference), ``x0_hat = c_skip * x_noisy +
c_out * F``, loss ``(1 + 1/sigma^2) * mean((x0_hat - x0)^2)``. With probability ``drag_dropout`` all
drags of a sample are zeroed (the spec's guidance dropout). With probability ``cond_dropout`` (0 in
the spec: SVD's pretraining already taught its U-Net the unconditional input) the image latent, the
CLIP embedding and the drags are all zeroed: exactly the unconditional input of the pipeline's
classifier-free guidance, which a U-Net trained from scratch (the tiny model) must learn too.

``motion_weight`` (0 in the spec) raises the weight of the latent cells that change between the
first frame and frame ``n`` of the target clip, where a dragged part was and where it went. In most
clips those are a few percent of the cells, so under a uniform loss a U-Net trained from scratch
spends nearly all of its early samples learning to copy the still first frame; the weight hands
the moving part a fixed share of the gradient from the start.

``residual_scale`` (0 in the spec) moves the denoising into the space of
:func:`puppet_master.edm.to_residual`: the target is ``k * (latents - first-frame latent)``, zero
wherever nothing moves, so a U-Net trained from scratch gets the still frame for free.

The random draws of sample ``i`` come from a generator seeded by ``(seed, i)``, so a step computes
the same loss however the batch is split between processes and micro-steps, and after a resume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from puppet_master import edm

_NOISE_STREAM = 1  # keeps these draws independent of the data draws seeded by (seed, i)


@dataclass
class Draws:
    sigma: torch.Tensor  # (B,)
    noise: torch.Tensor  # like the latents
    keep_drags: torch.Tensor  # (B,) bool
    keep_cond: torch.Tensor | None = None  # (B,) bool; None: keep every image condition


def sample_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, int(index), _NOISE_STREAM]).generate_state(1, np.uint64)[0]) >> 1


def draw(indices: torch.Tensor, latent_shape: tuple[int, ...], *, seed: int, p_mean: float, p_std: float,
         drag_dropout: float, cond_dropout: float = 0.0) -> Draws:
    """Noise level, noise and dropout decisions for each sample number in ``indices`` (CPU)."""
    sigmas, noises, keep, keep_cond = [], [], [], []
    for index in indices.tolist():
        gen = torch.Generator().manual_seed(sample_seed(seed, index))
        sigmas.append(edm.sample_sigmas(1, generator=gen, p_mean=p_mean, p_std=p_std))
        noises.append(torch.randn(latent_shape, generator=gen))
        keep.append(torch.rand(1, generator=gen) >= drag_dropout)
        keep_cond.append(torch.rand(1, generator=gen) >= cond_dropout)  # drawn last: earlier draws unchanged
    return Draws(torch.cat(sigmas), torch.stack(noises), torch.cat(keep),
                 torch.cat(keep_cond) if cond_dropout > 0 else None)


def drop_drags(drags: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Zero every drag of the samples where ``keep`` is False (``drags`` is ``(B, N, K, 4)``)."""
    return drags * keep.to(drags.dtype).view(-1, 1, 1, 1)


MOTION_SCALE = 0.25  # latent change (mean |difference| over channels, unit-std latents) counted as full motion


def motion_weights(x0: torch.Tensor, strength: float) -> torch.Tensor:
    """``1 + strength * m`` per frame and cell, ``m`` in [0, 1] the change from frame 0 -> ``(B, N, 1, h, w)``."""
    change = (x0 - x0[:, :1]).abs().mean(dim=2, keepdim=True)
    return 1.0 + strength * (change / MOTION_SCALE).clamp(max=1.0)


def target_latents(batch: dict[str, torch.Tensor], residual_scale: float = 0.0) -> torch.Tensor:
    """What the U-Net learns to denoise: the video latents, or their residual (``residual_scale > 0``)."""
    latents = batch["latents"].float()
    if residual_scale <= 0:
        return latents
    anchor = batch["cond_latent"].float() * edm.VAE_SCALING_FACTOR  # the cache's cond latent is unscaled
    return edm.to_residual(latents, anchor, residual_scale)


def denoising_loss(model, batch: dict[str, torch.Tensor], draws: Draws, motion_weight: float = 0.0,
                   residual_scale: float = 0.0) -> torch.Tensor:
    """The weighted x0 loss of one batch (float32 scalar); ``draws`` already on the batch's device."""
    x0 = target_latents(batch, residual_scale)
    sigma = draws.sigma.to(x0.device, torch.float32)
    x_noisy = x0 + draws.noise.to(x0.device) * edm.append_dims(sigma, x0.ndim)
    cond_latent, embedding, keep_drags = batch["cond_latent"], batch["embedding"], draws.keep_drags.to(x0.device)
    if draws.keep_cond is not None:
        keep_cond = draws.keep_cond.to(x0.device)
        cond_latent = cond_latent * edm.append_dims(keep_cond.to(cond_latent.dtype), cond_latent.ndim)
        embedding = embedding * edm.append_dims(keep_cond.to(embedding.dtype), embedding.ndim)
        keep_drags = keep_drags & keep_cond
    output = model(
        edm.scale_input(x_noisy, sigma),
        edm.c_noise(sigma),
        cond_latent,
        embedding,
        drop_drags(batch["drags"], keep_drags),
    ).sample
    denoised = edm.denoise(output.float(), x_noisy, sigma)
    weights = motion_weights(batch["latents"].float(), motion_weight) if motion_weight > 0 else None
    return edm.edm_loss(denoised, x0, sigma, weights)
