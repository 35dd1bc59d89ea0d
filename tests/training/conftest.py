"""Tiny real parts for the training tests: rendered-clip folders written as render.py lays them out,
an "SVD" folder holding puppet_master.tiny's VAE and CLIP encoder in diffusers layout, a latent cache
built from them by training.cache_latents, and a training config around all of it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataset_tools import drag_schema
from puppet_master.tiny import TINY_CROSS_ATTENTION_DIM, tiny_components
from tests.shared_data import SHARED
from training.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DRAG_A_MOVE = SHARED / "data" / "drag-a-move-test"
RENDER_SIZE = 64  # tiny latents keep CPU steps fast
NUM_FRAMES = 14

#: two levels of puppet_master.tiny's U-Net: one cross-attention (drag) block down and up; its
#: cross-attention width matches the tiny CLIP encoder so the tiny pipeline can validate it
TEST_UNET_CONFIG = {
    "block_out_channels": [32, 32],
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"],
    "num_attention_heads": 1,
    "cross_attention_dim": TINY_CROSS_ATTENTION_DIM,
    "layers_per_block": 1,
    "pos_embed_dim": 8,
    "drag_embedder_out_channels": [16],
}

needs_drag_a_move = pytest.mark.skipif(
    not DRAG_A_MOVE.is_dir(), reason=f"shared Drag-a-Move clips not found at {DRAG_A_MOVE}"
)


def _frame(t: int, view: int, size: int) -> Image.Image:
    """An RGBA frame: a grey body and an orange part that moves right over the clip."""
    arr = np.zeros((size, size, 4), np.uint8)
    arr[size // 4 : 3 * size // 4, size // 4 : size // 2] = (90, 90, 200 - 40 * view, 255)
    x = size // 2 + t
    arr[size // 3 : size // 2, x : x + size // 8] = (240, 140, 20, 255)
    return Image.fromarray(arr, "RGBA")


def write_clip(root: Path, asset: str, clip: str, *, views: int = 2, size: int = RENDER_SIZE,
               category: str = "Animals") -> Path:
    folder = root / asset / clip
    for v in range(views):
        (folder / f"view_{v:02d}").mkdir(parents=True, exist_ok=True)
        for t in range(NUM_FRAMES):
            _frame(t, v, size).save(folder / f"view_{v:02d}" / f"{t:04d}.png")
    (folder / "clip.json").write_text(json.dumps({"asset_id": asset, "clip": clip, "num_frames": NUM_FRAMES,
                                                  "category": category}))
    k = [[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]]
    cams = {"image_size": [size, size], "views": [{"K": k, "world_to_camera": np.eye(4).tolist()}] * views}
    (folder / "cameras.json").write_text(json.dumps(cams))
    np.savez(folder / "tracks.npz", points=np.zeros((NUM_FRAMES, 4, 3)), part_ids=np.zeros(4, np.int64),
             visibility=np.ones((views, NUM_FRAMES, 4), bool))
    samples = []
    for v in range(views):
        start = np.array([0.56, 0.42])
        traj = start + np.linspace(0, 13 / size, NUM_FRAMES)[:, None] * np.array([1.0, 0.0])
        drags = np.concatenate([np.repeat(start[None], NUM_FRAMES, 0), traj], axis=1)[:, None]
        second = drags.copy()
        second[:, 0, 1] += 0.1
        second[:, 0, 3] += 0.1
        for arr in (drags, np.concatenate([drags, second], axis=1)):
            info = [{"group": "part", "point": 0, "path_px": 13.0}] * arr.shape[1]
            samples.append(drag_schema.make_sample(v, list(range(NUM_FRAMES)), 1, arr, info))
    doc = drag_schema.make_document(asset, clip, (size, size), {"seed": 0}, samples, [])
    drag_schema.write_drags_json(folder / drag_schema.DRAGS_FILE, doc)
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    """The CI machine has two cores shared with other work: one torch thread is several times faster."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_svd(tmp_path_factory) -> Path:
    """puppet_master.tiny's VAE, CLIP encoder and processor saved as an SVD folder."""
    folder = tmp_path_factory.mktemp("tiny_svd")
    components = tiny_components()
    components["vae"].save_pretrained(folder / "vae")
    components["image_encoder"].save_pretrained(folder / "image_encoder")
    components["feature_extractor"].save_pretrained(folder / "feature_extractor")
    return folder


@pytest.fixture(scope="session")
def renders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("renders")
    write_clip(root, "asset_a", "clip_0", category="Animals")
    write_clip(root, "asset_b", "clip_0", category="Human-Shape")
    return root


@pytest.fixture(scope="session")
def latent_cache(tmp_path_factory, renders, tiny_svd) -> Path:
    from training.cache_latents import Encoders, cache

    out = tmp_path_factory.mktemp("cache")
    torch.manual_seed(0)
    cache(renders, out, Encoders.from_svd(tiny_svd), shard_size=3, resolution=RENDER_SIZE, progress=False)
    return out


def tiny_overrides(output_dir: Path, cache_dir: Path, extra: dict | None = None) -> list[str]:
    """``--set`` overrides: puppet_master.tiny's U-Net trained on the tiny cache."""
    unet_toml = "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in TEST_UNET_CONFIG.items()) + "}"
    values = {
        "output_dir": json.dumps(str(output_dir)),
        "model.unet_config": unet_toml,
        "data.sources": "[{name = \"tiny\", kind = \"cached\", path = " + json.dumps(str(cache_dir)) + ", weight = 1.0}]",
        "data.num_workers": "0",
        "train.global_batch_size": "2",
        "train.mixed_precision": "\"no\"",
        "train.resume": "\"\"",
        "train.log_every": "1",
        "validation.every": "0",
        "model.gradient_checkpointing": "false",
    }
    values.update({k: str(v) for k, v in (extra or {}).items()})
    return [f"{k}={v}" for k, v in values.items()]


def tiny_config(output_dir: Path, cache_dir: Path, extra: dict | None = None):
    return load_config(ROOT / "training" / "configs" / "tiny.toml", tiny_overrides(output_dir, cache_dir, extra))
