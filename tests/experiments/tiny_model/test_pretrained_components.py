"""The committed tiny components (experiments/tiny_model/weights/tiny_components): they load through the
project's own loaders, have the recipe's shapes, and reconstruct a real rendered object far better
than the same networks untrained."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from experiments.tiny_model import tiny_components as tc
from puppet_master.models.vae import load_vae
from tests.training.conftest import ROOT

FOLDER = ROOT / "experiments" / "tiny_model" / "weights" / "tiny_components"
EXAMPLE = ROOT / "backend" / "puppet_master" / "assets" / "examples" / "cabinet.png"


def _example_video(frames: int = 4) -> torch.Tensor:
    with Image.open(EXAMPLE) as im:
        rgb = np.asarray(im.convert("RGB").resize((256, 256)), dtype=np.float32)
    return (torch.from_numpy(rgb).permute(2, 0, 1) / 127.5 - 1.0)[None].repeat(frames, 1, 1, 1)


@torch.no_grad()
def _reconstruction_error(vae, video: torch.Tensor) -> float:
    latents = vae.encode(video).latent_dist.mode()
    assert latents.shape == (len(video), tc.VAE_CONFIG["latent_channels"], 32, 32)
    recon = vae.decode(latents, num_frames=len(video)).sample.clamp(-1, 1)
    return float((recon - video).abs().mean())


def test_committed_components_load_and_reconstruct_far_better_than_untrained():
    vae = load_vae(FOLDER / "vae").eval()
    assert type(vae).__name__ == "TemporalVAE" and vae.config.norm_num_groups == tc.VAE_CONFIG["norm_num_groups"]
    assert list(vae.config.block_out_channels) == list(tc.VAE_CONFIG["block_out_channels"])
    video = _example_video()
    trained, untrained = _reconstruction_error(vae, video), _reconstruction_error(tc.build_vae(seed=0).eval(), video)
    assert trained < 0.25 * untrained, (trained, untrained)

    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    encoder = CLIPVisionModelWithProjection.from_pretrained(FOLDER / "image_encoder").eval()
    extractor = CLIPImageProcessor.from_pretrained(FOLDER / "feature_extractor")
    assert encoder.config.projection_dim == tc.TINY_CROSS_ATTENTION_DIM
    with torch.no_grad():
        green = encoder(tc.clip_pixels(video[:1], extractor)).image_embeds
        swapped = encoder(tc.clip_pixels(video[:1, [2, 1, 0]], extractor)).image_embeds
    assert not torch.allclose(green, swapped, atol=1e-3)  # it sees colour: what it was trained to predict

    report = json.loads((FOLDER / "vae_report.json").read_text())
    assert report["latent_channels"] == vae.config.latent_channels and report["vae_steps"] > 0


def test_committed_work_in_progress_unet_matches_the_recipe_and_records_its_residual_space():
    """experiments/tiny_model/weights/tiny_unet: the recipe's U-Net, loadable as a training init and assembly input."""
    from puppet_master.models.unet import PuppetMasterUNet
    from training.checkpointing import trained_residual_scale
    from training.config import load_config

    folder = ROOT / "experiments" / "tiny_model" / "weights" / "tiny_unet" / "ema"
    config = load_config(ROOT / "experiments" / "tiny_model" / "configs" / "tiny_trained.toml")
    unet = PuppetMasterUNet.from_pretrained(folder)
    for key, value in config.model.unet_config.items():
        got = unet.config[key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == value, key
    assert trained_residual_scale(folder) == config.train.residual_scale == 4.0
    assert all(torch.isfinite(p).all() for p in unet.parameters())
