"""TemporalVAE: SVD's temporal-decoder VAE with a configurable number of norm groups."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder
from PIL import Image

from puppet_master.models.vae import TemporalVAE, load_vae

CONFIG = {"block_out_channels": (32, 64), "down_block_types": ("DownEncoderBlock2D",) * 2, "latent_channels": 8}


def _round_trip(vae, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return vae.decode(vae.encode(x).latent_dist.mode(), num_frames=len(x)).sample


def test_thirty_two_groups_is_exactly_diffusers_model():
    torch.manual_seed(0)
    theirs = AutoencoderKLTemporalDecoder(**CONFIG).eval()
    torch.manual_seed(0)
    ours = TemporalVAE(**CONFIG).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    assert torch.equal(_round_trip(theirs, x), _round_trip(ours, x))


def test_groups_apply_to_every_norm_and_change_the_model():
    torch.manual_seed(0)
    vae = TemporalVAE(**CONFIG, norm_num_groups=4).eval()
    norms = [m for m in vae.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) > 10 and {m.num_groups for m in norms} == {4}
    torch.manual_seed(0)
    default = AutoencoderKLTemporalDecoder(**CONFIG).eval()
    assert set(vae.state_dict()) == set(default.state_dict())  # same parameters, other normalisation
    default.load_state_dict(vae.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert not torch.allclose(_round_trip(vae, x), _round_trip(default, x))
    with pytest.raises(ValueError, match="norm_num_groups 5 must divide"):
        TemporalVAE(**CONFIG, norm_num_groups=5)


def test_load_vae_keeps_the_group_count_and_reads_svd_folders(tmp_path):
    torch.manual_seed(0)
    ours = TemporalVAE(**CONFIG, norm_num_groups=4).eval()
    ours.save_pretrained(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["_class_name"] == "TemporalVAE"
    loaded = load_vae(tmp_path / "ours").eval()
    assert type(loaded) is TemporalVAE and loaded.config.norm_num_groups == 4
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(_round_trip(ours, x), _round_trip(loaded, x))
    AutoencoderKLTemporalDecoder(**CONFIG).save_pretrained(tmp_path / "svd")
    assert type(load_vae(tmp_path / "svd")) is AutoencoderKLTemporalDecoder
    with pytest.raises(OSError):
        load_vae(tmp_path / "missing")


def test_a_pipeline_with_it_saves_and_loads(tmp_path):
    from puppet_master.loading import load_pipeline
    from puppet_master.models.unet import PuppetMasterUNet
    from puppet_master.pipeline import PuppetMasterPipeline
    from puppet_master.tiny import TINY_UNET_CONFIG, TINY_VAE_CONFIG, tiny_components

    parts = tiny_components()
    torch.manual_seed(0)
    parts["vae"] = TemporalVAE(**dict(TINY_VAE_CONFIG, latent_channels=8, norm_num_groups=4)).eval()
    parts["unet"] = PuppetMasterUNet(**dict(TINY_UNET_CONFIG, in_channels=16, out_channels=8)).eval()
    pipe = PuppetMasterPipeline(**parts, untrained=True)
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["vae"] == ["puppet_master.models.vae", "TemporalVAE"]
    again = load_pipeline(tmp_path / "pipe", device="cpu", dtype=torch.float32)
    assert type(again.vae) is TemporalVAE and again.vae.config.norm_num_groups == 4
    drags = np.zeros((14, 1, 4), np.float32)
    drags[:, 0] = [0.5, 0.5, 0.6, 0.5]
    drags[0, 0, 2:] = drags[0, 0, :2]
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    runs = [p(image, drags, num_inference_steps=1, output_type="np", generator=torch.Generator().manual_seed(0)).frames
            for p in (pipe, again)]
    np.testing.assert_array_equal(runs[0], runs[1])
