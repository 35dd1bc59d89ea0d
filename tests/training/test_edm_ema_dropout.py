"""EDM preconditioning against diffusers' SVD scheduler, the EMA update and drag dropout."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler
from torch import nn

from puppet_master import edm
from puppet_master.pipeline import SVD_SCHEDULER_CONFIG
from training import objective
from training.ema import EMA


def test_denoise_equals_the_svd_euler_scheduler():
    scheduler = EulerDiscreteScheduler(**SVD_SCHEDULER_CONFIG)
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.timestep_type == "continuous"
    scheduler.set_timesteps(25)
    gen = torch.Generator().manual_seed(0)
    for i in (0, 7, 24):
        sigma = scheduler.sigmas[i]
        x = torch.randn(2, 14, 4, 8, 8, generator=gen) * float(sigma)
        out = torch.randn(2, 14, 4, 8, 8, generator=gen)
        t = scheduler.timesteps[i]
        # time input and input scaling
        assert float(edm.c_noise(sigma)) == pytest.approx(float(t), rel=1e-5)
        scheduler._step_index = None
        scheduler._init_step_index(t)
        torch.testing.assert_close(edm.scale_input(x, sigma), scheduler.scale_model_input(x, t))
        # denoised sample
        step = scheduler.step(out, t, x)
        torch.testing.assert_close(edm.denoise(out, x, sigma.expand(2)), step.pred_original_sample)


def test_preconditioning_formulas_and_sigma_distribution():
    sigma = torch.tensor([0.1, 1.0, 10.0])
    torch.testing.assert_close(edm.c_in(sigma), 1 / torch.sqrt(sigma**2 + 1))
    torch.testing.assert_close(edm.c_noise(sigma), 0.25 * torch.log(sigma))
    torch.testing.assert_close(edm.c_skip(sigma), 1 / (sigma**2 + 1))
    torch.testing.assert_close(edm.c_out(sigma), -sigma / torch.sqrt(sigma**2 + 1))
    torch.testing.assert_close(edm.loss_weight(sigma), 1 + 1 / sigma**2)
    # the exact v-target (eps - sigma * x0) / sqrt(sigma^2 + 1) denoises to the clean sample
    x0, eps = torch.randn(3, 5), torch.randn(3, 5)
    s = sigma[:, None]
    v = (eps - s * x0) / torch.sqrt(s**2 + 1)
    torch.testing.assert_close(edm.denoise(v, x0 + s * eps, sigma), x0)
    log_sigma = edm.sample_sigmas(200_000, generator=torch.Generator().manual_seed(1)).log()
    assert log_sigma.mean().item() == pytest.approx(0.7, abs=0.02)
    assert log_sigma.std().item() == pytest.approx(1.6, abs=0.02)


def test_edm_loss_weights_each_sample():
    target = torch.zeros(2, 3)
    denoised = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    sigma = torch.tensor([1.0, 2.0])
    expected = ((1 + 1) * 1.0 + (1 + 0.25) * 4.0) / 2
    assert edm.edm_loss(denoised, target, sigma).item() == pytest.approx(expected)


def test_edm_loss_with_weights_is_a_weighted_mean_per_sample():
    target = torch.zeros(2, 3)
    denoised = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    sigma = torch.tensor([1.0, 1.0])
    weights = torch.tensor([[1.0, 1.0, 2.0], [5.0, 1.0, 1.0]])
    first = (1 * 1 + 1 * 4 + 2 * 9) / 4
    expected = 2 * (first + 1.0) / 2
    assert edm.edm_loss(denoised, target, sigma, weights).item() == pytest.approx(expected)
    # uniform weights of any size give the unweighted loss
    torch.testing.assert_close(edm.edm_loss(denoised, target, sigma, torch.full((2, 3), 7.0)),
                               edm.edm_loss(denoised, target, sigma))


def test_motion_weights_raise_the_cells_that_change_and_the_loss_where_a_model_misses_them():
    x0 = torch.zeros(1, 3, 2, 4, 4)
    x0[:, 1:, :, 1, 2] = 1.0   # a part that moves into cell (1, 2) in frames 1-2
    x0[:, 2, :, 3, 3] = 0.1    # a small change, below MOTION_SCALE
    w = objective.motion_weights(x0, 4.0)
    assert w.shape == (1, 3, 1, 4, 4)
    assert torch.all(w[:, 0] == 1.0)  # frame 0 never differs from itself
    assert w[0, 1, 0, 1, 2] == pytest.approx(5.0) and w[0, 2, 0, 1, 2] == pytest.approx(5.0)
    assert w[0, 2, 0, 3, 3] == pytest.approx(1 + 4 * 0.1 / objective.MOTION_SCALE)
    assert w[0, 1, 0, 0, 0] == 1.0
    # a prediction that copies frame 0 everywhere misses only the moving cells: the weighting raises its loss
    copy = x0[:, :1].expand_as(x0)
    sigma = torch.ones(1)
    assert edm.edm_loss(copy, x0, sigma, w).item() > 3 * edm.edm_loss(copy, x0, sigma).item()


def test_the_residual_space_is_zero_where_nothing_moves_and_round_trips():
    anchor = torch.randn(2, 3, 4, 4)
    latents = anchor.unsqueeze(1).repeat(1, 5, 1, 1, 1)
    latents[:, 3:, :, 1, 1] += 0.5  # a part that moves in the last frames
    residual = edm.to_residual(latents, anchor, 4.0)
    assert residual[:, :3].abs().max() == 0 and residual[:, 3:, :, 1, 1] == pytest.approx(2.0)
    torch.testing.assert_close(edm.from_residual(residual, anchor, 4.0), latents)
    with pytest.raises(ValueError, match="residual scale must be > 0"):
        edm.to_residual(latents, anchor, 0.0)


class _PerfectStillDenoiser(nn.Module):
    """Outputs the F for which the denoised sample is exactly zero, whatever the noise level."""

    def forward(self, x, t, cond_latent, embedding, drags):
        sigma = torch.exp(4 * t).view(-1, *([1] * (x.ndim - 1)))
        x_noisy = x / edm.c_in(sigma)
        return type("Out", (), {"sample": -edm.c_skip(sigma) * x_noisy / edm.c_out(sigma)})()


def test_in_the_residual_space_a_still_clip_is_the_zero_target():
    """A clip whose frames all equal the condition: predicting zero is perfect only in residual space."""
    cond = torch.randn(2, 4, 3, 3)
    batch = {"latents": (cond * edm.VAE_SCALING_FACTOR).unsqueeze(1).repeat(1, 6, 1, 1, 1), "cond_latent": cond,
             "embedding": torch.rand(2, 1, 8), "drags": torch.zeros(2, 6, 5, 4)}
    draws = objective.Draws(torch.tensor([0.3, 5.0]), torch.randn(2, 6, 4, 3, 3), torch.tensor([True, True]))
    net = _PerfectStillDenoiser()
    assert objective.denoising_loss(net, batch, draws, residual_scale=8.0).item() == pytest.approx(0.0, abs=1e-8)
    assert objective.denoising_loss(net, batch, draws).item() > 0.01
    torch.testing.assert_close(objective.target_latents(batch, 8.0), torch.zeros_like(batch["latents"]))


def test_ema_update_follows_the_decay_and_swaps_back():
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    ema = EMA(model, decay=0.9999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], torch.full((2, 3), 1e-4))
    ema.update(model)
    torch.testing.assert_close(ema.shadow["weight"], torch.full((2, 3), 1 - 0.9999**2))
    assert ema.num_updates == 2
    with ema.swapped_in(model):
        torch.testing.assert_close(model.weight.detach(), ema.shadow["weight"])
    torch.testing.assert_close(model.weight.detach(), torch.ones(2, 3))
    with pytest.raises(RuntimeError), ema.swapped_in(model):
        raise RuntimeError("validation failed")
    torch.testing.assert_close(model.weight.detach(), torch.ones(2, 3))  # restored even on error
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_drag_dropout_drops_all_drags_of_about_ten_percent_of_samples():
    indices = torch.arange(4000)
    draws = objective.draw(indices, (1,), seed=3, p_mean=0.7, p_std=1.6, drag_dropout=0.1)
    rate = 1 - draws.keep_drags.float().mean().item()
    assert rate == pytest.approx(0.1, abs=3 * math.sqrt(0.09 / 4000))
    drags = torch.rand(6, 14, 5, 4) + 0.1
    keep = torch.tensor([True, False, True, True, False, True])
    dropped = objective.drop_drags(drags, keep)
    assert (dropped[~keep] == 0).all()  # every drag of a dropped sample is "no drag"
    torch.testing.assert_close(dropped[keep], drags[keep])
    # the same sample number always gets the same draws (resume, any process split)
    again = objective.draw(indices[:10], (1,), seed=3, p_mean=0.7, p_std=1.6, drag_dropout=0.1)
    torch.testing.assert_close(again.sigma, draws.sigma[:10])
    assert torch.equal(again.keep_drags, draws.keep_drags[:10])
    none = objective.draw(indices[:100], (1,), seed=3, p_mean=0.7, p_std=1.6, drag_dropout=0.0)
    assert none.keep_drags.all()


class _RecordingNet(nn.Module):
    """Returns zeros and keeps what it was given (the conditioning the loss passed on)."""

    def forward(self, x, t, cond_latent, embedding, drags):
        self.seen = (cond_latent.clone(), embedding.clone(), drags.clone())
        return type("Out", (), {"sample": torch.zeros_like(x)})()


def test_condition_dropout_gives_the_guidance_unconditional_input_and_leaves_other_draws_alone():
    indices = torch.arange(4000)
    plain = objective.draw(indices, (1,), seed=3, p_mean=0.7, p_std=1.6, drag_dropout=0.1)
    draws = objective.draw(indices, (1,), seed=3, p_mean=0.7, p_std=1.6, drag_dropout=0.1, cond_dropout=0.1)
    assert plain.keep_cond is None
    torch.testing.assert_close(draws.sigma, plain.sigma)
    assert torch.equal(draws.keep_drags, plain.keep_drags)
    rate = 1 - draws.keep_cond.float().mean().item()
    assert rate == pytest.approx(0.1, abs=3 * math.sqrt(0.09 / 4000))

    batch = {"latents": torch.randn(4, 14, 4, 2, 2), "cond_latent": torch.rand(4, 4, 2, 2) + 0.1,
             "embedding": torch.rand(4, 1, 8) + 0.1, "drags": torch.rand(4, 14, 5, 4) + 0.1}
    chosen = objective.Draws(draws.sigma[:4], torch.randn(4, 14, 4, 2, 2), torch.tensor([True, True, False, True]),
                             torch.tensor([True, False, True, True]))
    net = _RecordingNet()
    objective.denoising_loss(net, batch, chosen)
    cond, emb, drags = net.seen
    assert (cond[1] == 0).all() and (emb[1] == 0).all() and (drags[1] == 0).all()  # the unconditional input
    assert (drags[2] == 0).all() and torch.equal(cond[2], batch["cond_latent"][2])  # drag dropout alone
    for i in (0, 3):
        assert torch.equal(cond[i], batch["cond_latent"][i]) and torch.equal(drags[i], batch["drags"][i])
