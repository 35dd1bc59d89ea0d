"""EDM preconditioning for v-prediction, as used by Stable Video Diffusion and Puppet-Master.

The network sees ``c_in(sigma) * x_noisy`` and the time input ``c_noise(sigma)``; its output ``F``
becomes the denoised sample ``x0 = c_skip * x_noisy + c_out * F``. Training samples
``ln(sigma) ~ Normal(p_mean, p_std^2)`` and weights the squared ``x0`` error by ``1 + 1 / sigma^2``.
The same maths is in diffusers' ``EulerDiscreteScheduler`` with ``prediction_type="v_prediction"``
and ``timestep_type="continuous"`` (SVD's scheduler configuration); training and inference share it.
"""

from __future__ import annotations

import torch

#: SVD's training distribution of noise levels (and the paper's): ln(sigma) ~ N(0.7, 1.6^2)
P_MEAN = 0.7
P_STD = 1.6
#: scale of SVD's VAE latents
VAE_SCALING_FACTOR = 0.18215


def append_dims(values: torch.Tensor, ndim: int) -> torch.Tensor:
    """``values`` of shape ``(B,)`` reshaped to ``(B, 1, ..., 1)`` with ``ndim`` dimensions."""
    if values.ndim > ndim:
        raise ValueError(f"cannot broadcast a {values.ndim}-d tensor to {ndim} dimensions")
    return values.reshape(*values.shape, *([1] * (ndim - values.ndim)))


def c_in(sigma: torch.Tensor) -> torch.Tensor:
    """Input scale ``1 / sqrt(sigma^2 + 1)``."""
    return (sigma**2 + 1) ** -0.5


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """Time input of the network: ``0.25 * ln(sigma)``."""
    return 0.25 * torch.log(sigma)


def c_skip(sigma: torch.Tensor) -> torch.Tensor:
    """Skip weight of v-prediction: ``1 / (sigma^2 + 1)``."""
    return 1.0 / (sigma**2 + 1)


def c_out(sigma: torch.Tensor) -> torch.Tensor:
    """Output weight of v-prediction: ``-sigma / sqrt(sigma^2 + 1)``."""
    return -sigma * (sigma**2 + 1) ** -0.5


def scale_input(x_noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The network input ``c_in(sigma) * x_noisy``; ``sigma`` is ``(B,)`` or a scalar."""
    sigma = torch.as_tensor(sigma, dtype=x_noisy.dtype, device=x_noisy.device)
    return x_noisy * append_dims(c_in(sigma), x_noisy.ndim)


def denoise(model_output: torch.Tensor, x_noisy: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The denoised sample ``x0 = c_skip * x_noisy + c_out * model_output``."""
    sigma = torch.as_tensor(sigma, dtype=x_noisy.dtype, device=x_noisy.device)
    return model_output * append_dims(c_out(sigma), x_noisy.ndim) + x_noisy * append_dims(
        c_skip(sigma), x_noisy.ndim
    )


def sample_sigmas(
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(batch_size,)`` float32 noise levels with ``ln(sigma) ~ Normal(p_mean, p_std^2)``."""
    gen_device = generator.device if generator is not None else "cpu"
    log_sigma = torch.randn(batch_size, generator=generator, device=gen_device) * p_std + p_mean
    return log_sigma.exp().to(device if device is not None else gen_device)


def loss_weight(sigma: torch.Tensor) -> torch.Tensor:
    """EDM loss weight for v-prediction with unit data std: ``1 + 1 / sigma^2``."""
    return 1.0 + sigma**-2


def edm_loss(denoised: torch.Tensor, target: torch.Tensor, sigma: torch.Tensor,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ``(1 + 1 / sigma^2) * mean((denoised - target)^2)`` (per sample).

    ``weights`` (broadcastable to ``target``, positive) turn each sample's mean into a weighted
    mean. Computed in float32 whatever the dtype of ``denoised``.
    """
    error = (denoised.float() - target.float()) ** 2
    if weights is None:
        per_sample = error.flatten(1).mean(dim=1)
    else:
        weights = torch.broadcast_to(weights.float(), error.shape).flatten(1)
        per_sample = (error.flatten(1) * weights).sum(dim=1) / weights.sum(dim=1)
    return (loss_weight(sigma.float()) * per_sample).mean()


def to_residual(latents: torch.Tensor, anchor: torch.Tensor, scale: float) -> torch.Tensor:
    """Video latents ``(B, N, C, h, w)`` -> the residual variable ``scale * (latents - anchor)``.

    ``anchor`` (``(B, C, h, w)``, scaled like ``latents``) is the first frame's latent, repeated over
    the frames. A model trained from scratch in this space (``scale > 0``) gets the still parts of
    the first frame for free and spends its capacity on what moves; ``scale`` brings the small
    residuals towards the unit standard deviation the noise levels assume.
    """
    if scale <= 0:
        raise ValueError(f"the residual scale must be > 0, got {scale}")
    return (latents - anchor.unsqueeze(1)) * scale


def from_residual(residual: torch.Tensor, anchor: torch.Tensor, scale: float) -> torch.Tensor:
    """Inverse of :func:`to_residual`: ``anchor + residual / scale``."""
    if scale <= 0:
        raise ValueError(f"the residual scale must be > 0, got {scale}")
    return anchor.unsqueeze(1) + residual / scale
