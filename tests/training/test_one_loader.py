"""Training reads weights through the backend's one loader: fp16-only SVD folders (as
``puppet-master download`` keeps them) and the released single-file checkpoint with its own drag sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from puppet_master.tiny import TINY_UNET_CONFIG, tiny_components

DRAG_KEYS = ("num_drags", "pos_embed_dim", "drag_embedder_out_channels")


@pytest.fixture(scope="module")
def components():
    return tiny_components()


def _svd_folder(root: Path, components, variant: str | None) -> Path:
    """An SVD img2vid folder with the tiny encoders (weights as ``variant``) and a U-Net config
    without drag settings, as SVD's own U-Net config is."""
    for name in ("vae", "image_encoder"):
        model = components[name] if variant is None else components[name].to(torch.float16)
        model.save_pretrained(root / name, variant=variant)
        components[name].to(torch.float32)
    components["feature_extractor"].save_pretrained(root / "feature_extractor")
    config = {k: v for k, v in TINY_UNET_CONFIG.items() if k not in DRAG_KEYS}
    (root / "unet").mkdir(parents=True)
    (root / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNetSpatioTemporalConditionModel", **config}))
    return root


def _checkpoint_config(tmp_path: Path, checkpoint: Path, svd: Path):
    from conftest import tiny_config

    return tiny_config(tmp_path / "run", tmp_path / "cache", {
        "model.init": '"checkpoint"', "model.checkpoint_path": json.dumps(str(checkpoint)),
        "model.svd_path": json.dumps(str(svd)), "model.unet_config": "{}",
    })


def test_cache_latents_reads_an_fp16_only_svd_folder(components, tmp_path):
    from training.cache_latents import Encoders

    full = Encoders.from_svd(_svd_folder(tmp_path / "fp32", components, None))
    half = Encoders.from_svd(_svd_folder(tmp_path / "fp16", components, "fp16"))
    assert {p.name for p in (tmp_path / "fp16" / "vae").iterdir()} == {"config.json",
                                                                     "diffusion_pytorch_model.fp16.safetensors"}
    frames = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mean_full, _ = full.encode_frames(frames)
    mean_half, _ = half.encode_frames(frames)
    assert half.vae.dtype == torch.float32  # read from fp16 files, run in the dtype asked for
    torch.testing.assert_close(mean_half, mean_full, atol=2e-2, rtol=2e-2)
    assert not torch.equal(mean_half, mean_full)  # really the rounded weights, not the fp32 folder


def test_training_builds_the_released_unet_with_the_checkpoints_drag_sizes(components, tmp_path):
    from training.train import build_model

    svd = _svd_folder(tmp_path / "svd", components, "fp16")
    unet = components["unet"]
    checkpoint = tmp_path / "model.safetensors"
    save_file({f"model.{k}": v.contiguous() for k, v in unet.state_dict().items()}, str(checkpoint))

    config = _checkpoint_config(tmp_path, checkpoint, svd)
    model = build_model(config)
    assert model.training
    assert {k: model.config[k] for k in ("num_drags", "pos_embed_dim")} == {"num_drags": 5, "pos_embed_dim": 8}
    for name, value in unet.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_a_checkpoint_that_does_not_fit_is_a_config_error_naming_the_keys(components, tmp_path):
    from training.config import ConfigError
    from training.train import build_model

    svd = _svd_folder(tmp_path / "svd", components, None)
    state = {f"model.{k}": v.contiguous() for k, v in components["unet"].state_dict().items()}
    del state["model.conv_in.bias"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    config = _checkpoint_config(tmp_path, tmp_path / "partial.safetensors", svd)
    with pytest.raises(ConfigError, match=r"partial\.safetensors.*conv_in\.bias"):
        build_model(config)
