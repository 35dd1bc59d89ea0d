"""Shared pieces of the pipeline tests: one tiny real pipeline, a test image and drags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from puppet_master.drags import Drag

STEPS = 2
DRAG_A = Drag((0.5, 0.5), (0.7, 0.45))
DRAG_B = Drag((0.3, 0.6), (0.3, 0.2))


@pytest.fixture(scope="session")
def tiny_pipe():
    from puppet_master.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def object_image() -> Image.Image:
    """A 320x200 RGBA image: transparent background, a red box with a green 4x4 marker at x 150-153, y 90-93."""
    image = Image.new("RGBA", (320, 200), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rectangle([120, 70, 199, 129], fill=(200, 40, 40, 255))
    draw.rectangle([150, 90, 153, 93], fill=(0, 255, 0, 255))
    return image


def generate(pipe, image, drags, seed=0, **kwargs):
    """Run the pipeline with the test settings and one seeded CPU generator per video."""
    kwargs.setdefault("num_inference_steps", STEPS)
    kwargs.setdefault("output_type", "np")
    videos = kwargs.pop("videos", 1)
    generators = [torch.Generator().manual_seed(seed) for _ in range(videos)]
    return pipe(image, drags, generator=generators if videos > 1 else generators[0], **kwargs)


@pytest.fixture(scope="session")
def rgb_image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def svd_folder(tmp_path_factory) -> Path:
    """A small Stable Video Diffusion img2vid folder in diffusers layout (the tiny components + an SVD U-Net)."""
    from hub_standin import tiny_svd_folder

    return tiny_svd_folder(tmp_path_factory.mktemp("svd") / "svd-img2vid")


def released_layout(state: dict) -> dict:
    """A state dict as the authors saved theirs: every key prefixed with ``model.``."""
    return {f"model.{key}": value.clone().contiguous() for key, value in state.items()}


@pytest.fixture(scope="session")
def released_checkpoint(tiny_pipe, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("released") / "model.safetensors"
    save_file(released_layout(tiny_pipe.unet.state_dict()), str(path))
    return path
