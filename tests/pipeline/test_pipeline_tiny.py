"""The tiny pipeline end to end on the CPU: shapes, seeds, drags, batching, callbacks, cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import DRAG_A, DRAG_B, STEPS, generate

from puppet_master.drags import drags_to_array
from puppet_master.pipeline import GenerationCancelled


@pytest.fixture(scope="module")
def run_a(tiny_pipe, rgb_image):
    return generate(tiny_pipe, rgb_image, [DRAG_A], seed=0)


def test_end_to_end_14_frames_of_256(run_a, tiny_pipe):
    frames = run_a.frames
    assert frames.shape == (1, 14, 256, 256, 3)
    assert frames.dtype == np.float32 and np.isfinite(frames).all()
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    assert frames.std() > 0.01  # not a constant image
    # the drags that conditioned the video: frame 0 at the start, the last frame at the end
    assert np.allclose(run_a.drags[0, 0, 0], [0.5, 0.5, 0.5, 0.5])
    assert np.allclose(run_a.drags[0, -1, 0], [0.5, 0.5, 0.7, 0.45])
    assert not run_a.drags[0, :, 1:].any()
    assert tiny_pipe.config.untrained is True


def test_same_seed_gives_identical_frames(run_a, tiny_pipe, rgb_image):
    again = generate(tiny_pipe, rgb_image, [DRAG_A], seed=0)
    np.testing.assert_array_equal(again.frames, run_a.frames)


def test_different_seed_or_drag_gives_different_frames(run_a, tiny_pipe, rgb_image):
    other_drag = generate(tiny_pipe, rgb_image, [DRAG_B], seed=0, output_type="latent")
    other_seed = generate(tiny_pipe, rgb_image, [DRAG_A], seed=1, output_type="latent")
    same = generate(tiny_pipe, rgb_image, [DRAG_A], seed=0, output_type="latent")
    assert (other_drag.frames - same.frames).abs().max() > 1e-3
    assert (other_seed.frames - same.frames).abs().max() > 1e-3


def test_no_drags_is_valid_pil_output(tiny_pipe, rgb_image, run_a):
    out = generate(tiny_pipe, rgb_image, [], seed=0, output_type="pil")
    assert len(out.frames) == 1 and len(out.frames[0]) == 14
    assert all(f.size == (256, 256) and f.mode == "RGB" for f in out.frames[0])
    assert not out.drags.any()
    pil = np.stack([np.asarray(f) for f in out.frames[0]]).astype(np.float32) / 255
    assert np.abs(pil - run_a.frames[0]).max() > 0.05  # drags changed the video


def test_batch_of_drag_sets_matches_separate_runs(tiny_pipe, rgb_image):
    """Two drag sets in one call (one generator per video) give the videos of two separate calls."""
    batch = np.stack([drags_to_array([DRAG_A]), drags_to_array([DRAG_B])])
    together = generate(tiny_pipe, rgb_image, batch, seed=3, videos=2, output_type="latent")
    alone_a = generate(tiny_pipe, rgb_image, [DRAG_A], seed=3, output_type="latent")
    alone_b = generate(tiny_pipe, rgb_image, [DRAG_B], seed=3, output_type="latent")
    assert together.frames.shape[0] == 2
    # (batch size changes the order of float sums: equal up to rounding, far closer than two drags)
    assert (alone_a.frames - alone_b.frames).abs().max() > 0.1
    torch.testing.assert_close(together.frames[0], alone_a.frames[0], atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(together.frames[1], alone_b.frames[0], atol=2e-3, rtol=1e-3)


def test_unbatched_guidance_matches_batched(tiny_pipe, rgb_image):
    batched = generate(tiny_pipe, rgb_image, [DRAG_A], seed=5, output_type="latent")
    tiny_pipe.batch_guidance = False
    try:
        separate = generate(tiny_pipe, rgb_image, [DRAG_A], seed=5, output_type="latent")
    finally:
        tiny_pipe.batch_guidance = True
    torch.testing.assert_close(separate.frames, batched.frames, atol=2e-3, rtol=1e-3)


def test_num_videos_per_prompt_share_drags_and_generators(tiny_pipe, rgb_image):
    out = generate(tiny_pipe, rgb_image, [DRAG_A], seed=0, videos=2, num_videos_per_prompt=2, output_type="latent")
    assert out.frames.shape == (2, 14, 4, 16, 16) and out.drags.shape == (2, 14, 5, 4)
    torch.testing.assert_close(out.frames[0], out.frames[1], atol=2e-3, rtol=1e-3)  # same seed, same drags
    with pytest.raises(ValueError, match="one per video"):
        generate(tiny_pipe, rgb_image, [DRAG_A], videos=3, num_videos_per_prompt=2)


def test_decoding_in_chunks_never_mixes_videos_or_chunks(tiny_pipe):
    """The temporal decoder mixes the frames it decodes together: chunks stay within one video."""
    latents = torch.randn(2, 6, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    chunked = tiny_pipe.decode_latents(latents, decode_chunk_size=4)
    assert chunked.shape == (2, 6, 3, 256, 256)
    alone = torch.cat([tiny_pipe.decode_latents(latents[1:, :4]), tiny_pipe.decode_latents(latents[1:, 4:])], dim=1)
    torch.testing.assert_close(chunked[1:], alone, atol=1e-5, rtol=1e-5)


def test_callback_sees_every_step_and_can_replace_latents(tiny_pipe, rgb_image):
    seen = []

    def callback(pipe, step, timestep, tensors):
        seen.append((step, float(timestep), tuple(tensors["latents"].shape)))
        return {"latents": torch.zeros_like(tensors["latents"])}

    out = generate(tiny_pipe, rgb_image, [DRAG_A], output_type="latent", callback_on_step_end=callback)
    assert [s[0] for s in seen] == list(range(STEPS))
    assert seen[0][1] == pytest.approx(0.25 * np.log(700.0), rel=1e-4)  # c_noise of sigma_max
    assert seen[0][2] == (1, 14, 4, 16, 16)
    assert not out.frames.any()  # the last replacement is the result


@pytest.mark.parametrize("how", ["interrupt", "raise"])
def test_cancellation_stops_before_decoding(tiny_pipe, rgb_image, how):
    steps = []

    def callback(pipe, step, timestep, tensors):
        steps.append(step)
        if how == "interrupt":
            pipe.interrupt()
            return {}
        raise GenerationCancelled(step + 1, pipe.num_timesteps)

    with pytest.raises(GenerationCancelled) as info:
        generate(tiny_pipe, rgb_image, [DRAG_A], num_inference_steps=3, callback_on_step_end=callback)
    assert steps == [0]
    assert (info.value.step, info.value.total) == (1, 3)
    # the next call runs normally again
    out = generate(tiny_pipe, rgb_image, [DRAG_A], num_inference_steps=1, output_type="latent")
    assert out.frames.shape == (1, 14, 4, 16, 16)


def test_latents_of_more_channels_run_end_to_end(rgb_image):
    """A VAE of 16 latent channels with a U-Net of 32 in / 16 out (the tiny trained model's option)."""
    from diffusers import AutoencoderKLTemporalDecoder

    from puppet_master.models.unet import PuppetMasterUNet
    from puppet_master.pipeline import PuppetMasterPipeline
    from puppet_master.tiny import TINY_UNET_CONFIG, TINY_VAE_CONFIG, tiny_components

    parts = tiny_components()
    torch.manual_seed(0)
    parts["vae"] = AutoencoderKLTemporalDecoder(**dict(TINY_VAE_CONFIG, latent_channels=16)).eval()
    with pytest.raises(ValueError, match=r"needs 32 in .* and 16 out"):
        PuppetMasterPipeline(**parts)
    parts["unet"] = PuppetMasterUNet(**dict(TINY_UNET_CONFIG, in_channels=32, out_channels=16)).eval()
    pipe = PuppetMasterPipeline(**parts, untrained=True)
    pipe.set_progress_bar_config(disable=True)
    seen = []

    def callback(pipe, step, timestep, tensors):
        seen.append(tuple(tensors["latents"].shape))
        return tensors

    frames = generate(pipe, rgb_image, [DRAG_A], output_type="np", callback_on_step_end=callback).frames[0]
    assert frames.shape == (14, 256, 256, 3) and np.isfinite(frames).all()
    assert seen[0] == (1, 14, 16, 16, 16)


def test_a_residual_model_adds_its_output_to_the_first_frame_latent(tiny_pipe, rgb_image):
    """``latent_residual_scale k``: the same sampling, then ``first-frame latent + result / k``."""
    from puppet_master.image_prep import prepare_frame
    from puppet_master.pipeline import PuppetMasterPipeline

    with pytest.raises(ValueError, match="latent_residual_scale must be"):
        PuppetMasterPipeline(**tiny_pipe.components, latent_residual_scale=-1.0)
    residual_pipe = PuppetMasterPipeline(**tiny_pipe.components, latent_residual_scale=4.0)
    residual_pipe.set_progress_bar_config(disable=True)
    plain = generate(tiny_pipe, rgb_image, [DRAG_A], seed=5, output_type="latent").frames
    residual = generate(residual_pipe, rgb_image, [DRAG_A], seed=5, output_type="latent").frames
    frame, _ = prepare_frame(rgb_image, "none", size=tiny_pipe.frame_size)
    anchor = tiny_pipe.encode_image_latents(tiny_pipe.frame_to_tensor(frame)) * tiny_pipe.vae.config.scaling_factor
    torch.testing.assert_close(residual, anchor.unsqueeze(1) + plain / 4.0, atol=1e-5, rtol=1e-5)
    assert residual_pipe.config.latent_residual_scale == 4.0


def test_a_drag_path_is_the_trajectory_the_model_gets(tiny_pipe, rgb_image):
    from puppet_master.drags import NUM_FRAMES, Drag, trajectories_to_array

    t = np.linspace(0, 1, NUM_FRAMES)
    curve = np.stack([0.4 + 0.2 * t, 0.5 - 0.15 * np.sin(np.pi * t)], axis=1)  # an arc, not a line
    path = generate(tiny_pipe, rgb_image, [Drag.from_path(curve)], seed=4, output_type="latent")
    array = generate(tiny_pipe, rgb_image, trajectories_to_array([curve]), seed=4, output_type="latent")
    straight = generate(tiny_pipe, rgb_image, [Drag(tuple(curve[0]), tuple(curve[-1]))], seed=4, output_type="latent")
    torch.testing.assert_close(path.frames, array.frames, atol=0, rtol=0)
    np.testing.assert_allclose(path.drags[0, :, 0, 2:4], curve, atol=1e-6)
    assert not torch.allclose(path.frames, straight.frames)
