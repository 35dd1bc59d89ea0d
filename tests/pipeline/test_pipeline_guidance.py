"""Guidance as the spec says: per-frame ramp 1 -> 5, zero unconditional branch, batched [uncond, cond]."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import DRAG_A, generate

from puppet_master.guidance import combine_guidance, guidance_weights, needs_unconditional


def test_ramp_is_linear_from_first_to_last_frame():
    w = guidance_weights(1.0, 5.0, 14)
    assert w.shape == (14,)
    assert w[0].item() == 1.0 and w[-1].item() == 5.0
    torch.testing.assert_close(w[1:] - w[:-1], torch.full((13,), 4.0 / 13))


def test_combination_on_known_tensors():
    uncond = torch.zeros(2, 14, 4, 3, 3)
    cond = torch.ones(2, 14, 4, 3, 3)
    out = combine_guidance(uncond, cond, guidance_weights(1.0, 5.0, 14))
    # uncond + w (cond - uncond) = w in frame n
    for n in range(14):
        torch.testing.assert_close(out[:, n], torch.full((2, 4, 3, 3), 1.0 + 4.0 * n / 13))
    # frame 0 has weight 1: exactly the conditional output, whatever the unconditional one is
    uncond = torch.full((1, 14, 4, 2, 2), -3.0)
    cond = torch.arange(14.0).view(1, 14, 1, 1, 1).expand(1, 14, 4, 2, 2)
    out = combine_guidance(uncond, cond, guidance_weights(1.0, 5.0, 14))
    assert torch.equal(out[:, 0], cond[:, 0])
    assert out[0, 13, 0, 0, 0].item() == pytest.approx(-3.0 + 5.0 * (13.0 + 3.0))


def test_combination_checks_shapes():
    with pytest.raises(ValueError, match="one guidance weight per frame"):
        combine_guidance(torch.zeros(1, 14, 4, 2, 2), torch.zeros(1, 14, 4, 2, 2), torch.ones(13))
    with pytest.raises(ValueError, match="differ in shape"):
        combine_guidance(torch.zeros(1, 14, 4, 2, 2), torch.zeros(2, 14, 4, 2, 2), torch.ones(14))


def test_weight_one_everywhere_needs_no_unconditional_branch():
    assert not needs_unconditional(1.0, 1.0)
    assert needs_unconditional(1.0, 5.0) and needs_unconditional(2.0, 2.0)


def _capture_unet_inputs(pipe, rgb_image, **kwargs):
    calls = []

    def hook(module, args, kw):
        calls.append([a.clone() if torch.is_tensor(a) else a for a in args])

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        generate(pipe, rgb_image, [DRAG_A], num_inference_steps=1, output_type="latent", **kwargs)
    finally:
        handle.remove()
    return calls


def test_unet_sees_zero_unconditional_branch_and_edm_inputs(tiny_pipe, rgb_image):
    (call,) = _capture_unet_inputs(tiny_pipe, rgb_image)
    sample, timestep, image_latents, embeds, drags = call
    assert sample.shape == (2, 14, 4, 16, 16)  # [uncond, cond] in one batch
    # the same noisy latents in both branches, scaled by c_in = 1 / sqrt(sigma^2 + 1) with sigma = 700
    torch.testing.assert_close(sample[0], sample[1])
    assert sample.std().item() == pytest.approx(700.0 / math.sqrt(700.0**2 + 1), rel=0.05)
    assert timestep.item() == pytest.approx(0.25 * math.log(700.0), rel=1e-4)
    # unconditional: zero image latent, zero CLIP embedding, zero drags; conditional: the real ones
    assert not image_latents[0].any() and image_latents[1].abs().sum() > 0
    assert not embeds[0].any() and embeds[1].abs().sum() > 0
    assert not drags[0].any()
    torch.testing.assert_close(drags[1, -1, 0], torch.tensor([0.5, 0.5, 0.7, 0.45]))


def test_first_frame_latent_is_the_unscaled_vae_mean(tiny_pipe, rgb_image):
    (call,) = _capture_unet_inputs(tiny_pipe, rgb_image)
    pixels = tiny_pipe.frame_to_tensor(rgb_image)
    expected = tiny_pipe.vae.encode(pixels).latent_dist.mean
    torch.testing.assert_close(call[2][1:], expected)


def test_guidance_of_one_runs_only_the_conditional_branch(tiny_pipe, rgb_image):
    (call,) = _capture_unet_inputs(tiny_pipe, rgb_image, min_guidance_scale=1.0, max_guidance_scale=1.0)
    assert call[0].shape[0] == 1 and call[2].abs().sum() > 0


def test_a_call_without_guidance_uses_the_model_default_which_survives_saving(tiny_pipe, rgb_image, tmp_path):
    from puppet_master.pipeline import PuppetMasterPipeline

    assert (tiny_pipe.config.default_min_guidance_scale, tiny_pipe.config.default_max_guidance_scale) == (1.0, 5.0)
    (paper,) = _capture_unet_inputs(tiny_pipe, rgb_image)[:1]
    assert paper[0].shape[0] == 2  # 1 -> 5: both branches
    tiny_pipe.register_to_config(default_max_guidance_scale=1.0)
    try:
        (own,) = _capture_unet_inputs(tiny_pipe, rgb_image)[:1]
        assert own[0].shape[0] == 1  # the model's 1 -> 1: conditional branch only
        implicit = generate(tiny_pipe, rgb_image, [DRAG_A]).frames
        explicit = generate(tiny_pipe, rgb_image, [DRAG_A], min_guidance_scale=1.0, max_guidance_scale=1.0).frames
        assert (implicit == explicit).all()
        tiny_pipe.save_pretrained(tmp_path / "pipe")
        loaded = PuppetMasterPipeline.from_pretrained(tmp_path / "pipe")
        assert loaded.config.default_max_guidance_scale == 1.0
    finally:
        tiny_pipe.register_to_config(default_max_guidance_scale=5.0)


def test_drag_only_guidance_keeps_the_image_in_both_branches_and_survives_saving(tiny_pipe, rgb_image, tmp_path):
    from puppet_master.pipeline import PuppetMasterPipeline

    tiny_pipe.register_to_config(guidance_drops="drags")
    try:
        (call,) = _capture_unet_inputs(tiny_pipe, rgb_image, min_guidance_scale=3.0, max_guidance_scale=3.0)
        sample, _, image_latents, embeds, drags = call
        assert sample.shape[0] == 2
        torch.testing.assert_close(image_latents[0], image_latents[1])
        torch.testing.assert_close(embeds[0], embeds[1])
        assert image_latents[0].abs().sum() > 0 and not drags[0].any() and drags[1].abs().sum() > 0
        # the guidance amplifies what the drags change: drag-only guidance at 3 differs from no guidance
        guided = generate(tiny_pipe, rgb_image, [DRAG_A], min_guidance_scale=3.0, max_guidance_scale=3.0).frames
        plain = generate(tiny_pipe, rgb_image, [DRAG_A], min_guidance_scale=1.0, max_guidance_scale=1.0).frames
        assert np.abs(guided - plain).max() > 1e-3
        tiny_pipe.save_pretrained(tmp_path / "pipe")
        assert PuppetMasterPipeline.from_pretrained(tmp_path / "pipe").config.guidance_drops == "drags"
    finally:
        tiny_pipe.register_to_config(guidance_drops="all")


def test_unknown_guidance_drops_is_refused(tiny_pipe):
    from puppet_master.pipeline import PuppetMasterPipeline

    with pytest.raises(ValueError, match="guidance_drops must be one of all, drags"):
        PuppetMasterPipeline(**tiny_pipe.components, guidance_drops="image")
