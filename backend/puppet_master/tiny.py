"""A tiny random-weight Puppet-Master pipeline, built offline in a fraction of a second.

For tests and smoke runs of everything around the model (CLI, server, add-on): the same pipeline
code and component classes as the real model, at a few dozen channels. Its frames are noise and
every output it produces is labelled untrained.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLTemporalDecoder
from torch import nn
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from puppet_master.models.unet import PuppetMasterUNet
from puppet_master.pipeline import PuppetMasterPipeline, svd_scheduler

TINY_SEED = 0
TINY_CROSS_ATTENTION_DIM = 32
TINY_UNET_CONFIG = {
    "sample_size": 16,
    "block_out_channels": (32, 32, 32, 32),
    "num_attention_heads": 1,
    "cross_attention_dim": TINY_CROSS_ATTENTION_DIM,
    "layers_per_block": 1,
    "pos_embed_dim": 8,
    "drag_embedder_out_channels": (16, 16),
    "num_drags": 5,
    "num_frames": 14,
}
# five levels: 256x256 frames <-> 16x16 latents (SVD's VAE has four, 32x32 latents); a quarter of
# the U-Net's work, which dominates a tiny run on a CPU. 32 is the smallest GroupNorm width.
TINY_VAE_CONFIG = {
    "block_out_channels": (32, 32, 32, 32, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 5,
    "layers_per_block": 1,
    "latent_channels": 4,
}
TINY_CLIP_SIZE = 32
TINY_CLIP_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": TINY_CLIP_SIZE,
    "patch_size": 8,
    "projection_dim": TINY_CROSS_ATTENTION_DIM,
}


def _randomize_zero_layers(model: nn.Module) -> None:
    """Re-initialise layers that start at zero (the drag towers' output convs), so drags matter."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not module.weight.any():
            module.reset_parameters()


def tiny_components(seed: int = TINY_SEED) -> dict:
    """The five components of a tiny random pipeline, identical for the same ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = PuppetMasterUNet(**TINY_UNET_CONFIG)
        _randomize_zero_layers(unet)
        vae = AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_CLIP_CONFIG))
    feature_extractor = CLIPImageProcessor(
        size={"shortest_edge": TINY_CLIP_SIZE}, crop_size={"height": TINY_CLIP_SIZE, "width": TINY_CLIP_SIZE}
    )
    for model in (unet, vae, image_encoder):
        model.eval()
    return {
        "vae": vae,
        "image_encoder": image_encoder,
        "unet": unet,
        "scheduler": svd_scheduler(),
        "feature_extractor": feature_extractor,
    }


def build_tiny_pipeline(seed: int = TINY_SEED) -> PuppetMasterPipeline:
    """A tiny random-weight :class:`PuppetMasterPipeline` (labelled untrained), on the CPU in float32."""
    return PuppetMasterPipeline(**tiny_components(seed), untrained=True)
