"""Shared pieces of the U-Net tests: the golden files and tiny real configurations."""

import json
from pathlib import Path

import pytest
import torch

from tests.shared_data import SHARED

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = SHARED / "golden"
SPEC = SHARED / "spec"

# the smallest configuration diffusers' blocks allow (GroupNorm(32) needs 32 channels)
TINY_CONFIG = {
    "block_out_channels": (32, 32, 32, 32),
    "num_attention_heads": (1, 1, 1, 1),
    "cross_attention_dim": 16,
    "layers_per_block": 1,
    "pos_embed_dim": 8,
    "drag_embedder_out_channels": (8, 8),
    "num_drags": 3,
    "num_frames": 3,
}


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (the read-only ../shared folder beside the checkout)")
    return path


@pytest.fixture(scope="session")
def golden():
    """(config, state dict without the `model.` prefix, io tensors) of the small released architecture."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    model_file = require(GOLDEN / "unet_small.model.safetensors")
    with safe_open(str(model_file), "pt") as handle:
        config = json.loads(handle.metadata()["config"])
    state = {key.removeprefix("model."): value for key, value in load_file(str(model_file)).items()}
    io = load_file(str(require(GOLDEN / "unet_small.io.safetensors")))
    return config, state, io


def random_drags(batch: int, frames: int, slots: int, used: int, generator: torch.Generator) -> torch.Tensor:
    """Linear trajectories for the first `used` slots, zeros ("no drag") for the rest."""
    start = torch.rand(batch, 1, slots, 2, generator=generator) * 0.8 + 0.1
    end = (start + torch.randn(batch, 1, slots, 2, generator=generator) * 0.2).clamp(-0.05, 1.05)
    t = torch.linspace(0, 1, frames).view(1, frames, 1, 1)
    drags = torch.cat([start.expand(-1, frames, -1, -1), start + t * (end - start)], dim=-1)
    drags[:, :, used:] = 0
    return drags


def tiny_inputs(model, batch: int = 2, frames: int = 3, size: int = 8, used: int = 2, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "sample": torch.randn(batch, frames, 4, size, size, generator=generator),
        "timestep": torch.randn(batch, generator=generator),
        "image_latents": torch.randn(batch, 4, size, size, generator=generator),
        "encoder_hidden_states": torch.randn(batch, 1, model.config.cross_attention_dim, generator=generator),
        "drags": random_drags(batch, frames, model.config.num_drags, used, generator),
    }


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Random values in every parameter (zero-initialised convs included) so every path matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model
