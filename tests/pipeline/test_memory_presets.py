"""Memory presets: what each switches on, that they compute the same latents, and the CLI."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from conftest import DRAG_A, generate
from diffusers.models.attention import BasicTransformerBlock, TemporalBasicTransformerBlock

from puppet_master.cli import main
from puppet_master.loading import ModelLoadError, load_pipeline
from puppet_master.memory import (
    AUTO_THRESHOLDS_GIB,
    PRESETS,
    choose_preset,
    enable_forward_chunking,
    preset_for_free_memory,
)
from puppet_master.models.attention import AllToFirstAttnProcessor
from puppet_master.tiny import tiny_components


def _unet_inputs(unet, batch: int = 2, frames: int = 14):
    g = torch.Generator().manual_seed(3)
    size = unet.config.sample_size
    drags = torch.zeros(batch, frames, unet.config.num_drags, 4)
    t = torch.linspace(0, 1, frames)[:, None]
    drags[0, :, 0] = torch.cat([torch.tensor([0.4, 0.5]).expand(frames, 2), torch.tensor([0.4, 0.5]) + t * 0.2], -1)
    return {
        "sample": torch.randn(batch, frames, 4, size, size, generator=g),
        "timestep": torch.full((batch,), 0.3),
        "image_latents": torch.randn(batch, 4, size, size, generator=g),
        "encoder_hidden_states": torch.randn(batch, 1, unet.config.cross_attention_dim, generator=g),
        "drags": drags,
    }


def test_forward_chunking_keeps_all_to_first_attention_and_its_output():
    unet = tiny_components()["unet"]
    spatial = [m for m in unet.modules() if isinstance(m, BasicTransformerBlock)]
    temporal = [m for m in unet.modules() if isinstance(m, TemporalBasicTransformerBlock)]
    assert spatial and temporal
    assert all(isinstance(m.attn1.processor, AllToFirstAttnProcessor) for m in spatial)
    inputs = _unet_inputs(unet)
    with torch.no_grad():
        whole = unet(**inputs).sample
        assert enable_forward_chunking(unet) == len(spatial) + len(temporal)
        assert all(m._chunk_size == 1 for m in spatial + temporal)
        chunked = unet(**inputs).sample
    # chunking touched only the feed-forward layers: the attention is still all-to-first
    assert all(isinstance(m.attn1.processor, AllToFirstAttnProcessor) for m in spatial)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    enable_forward_chunking(unet, False)
    assert all(m._chunk_size is None for m in spatial + temporal)


@pytest.mark.parametrize("preset", ["balanced", "low"])
def test_presets_compute_the_latents_of_high(rgb_image, preset):
    high = load_pipeline(tiny=True, device="cpu", memory="high")
    other = load_pipeline(tiny=True, device="cpu", memory=preset)
    plan = PRESETS[preset]
    assert (other.memory_plan, other.batch_guidance, other.decode_chunk_size) == (
        plan, plan.batch_guidance, plan.decode_chunk_size)
    assert high.batch_guidance and high.decode_chunk_size is None
    for pipe in (high, other):
        pipe.set_progress_bar_config(disable=True)
    a = generate(high, rgb_image, [DRAG_A], seed=2, output_type="latent").frames
    b = generate(other, rgb_image, [DRAG_A], seed=2, output_type="latent").frames
    torch.testing.assert_close(b, a, atol=2e-3, rtol=1e-3)


def test_low_decodes_two_frames_at_a_time(rgb_image):
    pipe = load_pipeline(tiny=True, device="cpu", memory="low")
    pipe.set_progress_bar_config(disable=True)
    seen = []
    decode = pipe.vae.decode

    def spy(z, num_frames, **kwargs):
        seen.append(num_frames)
        return decode(z, num_frames=num_frames, **kwargs)

    pipe.vae.decode = spy
    generate(pipe, rgb_image, [DRAG_A], output_type="np")
    assert seen == [2] * 7


def test_the_preset_is_picked_from_free_memory_and_says_why():
    plan, why = choose_preset(None, torch.device("cpu"))
    assert plan.name == "high" and "cpu" in why
    assert preset_for_free_memory(AUTO_THRESHOLDS_GIB["high"] + 1) == "high"
    assert preset_for_free_memory(AUTO_THRESHOLDS_GIB["high"] - 0.5) == "balanced"
    assert preset_for_free_memory(AUTO_THRESHOLDS_GIB["balanced"] - 0.5) == "low"
    assert choose_preset("low", torch.device("cpu"))[1] == "memory preset low (asked for)"
    with pytest.raises(ModelLoadError, match=r"unknown memory preset 'huge'.*high, balanced, low"):
        load_pipeline(tiny=True, device="cpu", memory="huge")


def test_generate_records_the_preset_and_serve_passes_it_to_its_workers(tmp_path, object_image, caplog):
    from puppet_master.cli.serve import model_option_argv

    object_image.save(tmp_path / "object.png")
    out = tmp_path / "result"
    with caplog.at_level("INFO"):
        assert main(["generate", "--tiny", "--image", str(tmp_path / "object.png"), "--out", str(out), "--steps", "1",
                     "--drag", "0.5,0.5:0.6,0.5", "--device", "cpu", "--memory", "low"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["memory"] == "low" and settings["decode_chunk_size"] == 2
    assert settings["model"]["memory"] == "low"
    assert "memory preset low (asked for)" in caplog.text
    assert model_option_argv(argparse.Namespace(tiny=True, memory="balanced")) == ["--tiny", "--memory", "balanced"]
