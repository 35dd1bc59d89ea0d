"""experiments.tiny_model.grow_unet: a trained U-Net carried into a layout with more cross-attention levels computes
the same function, keeps every trained weight, and trains its new modules from the first step."""

from __future__ import annotations

import json

import pytest
import torch

from experiments.tiny_model import grow_unet
from puppet_master.models.unet import PuppetMasterUNet
from tests.training.conftest import ROOT, TEST_UNET_CONFIG
from training.checkpointing import trained_residual_scale

PLAIN = {**TEST_UNET_CONFIG, "down_block_types": ["DownBlockSpatioTemporal"] * 2,
         "up_block_types": ["UpBlockSpatioTemporal"] * 2}


def _trained(seed: int = 0) -> PuppetMasterUNet:
    torch.manual_seed(seed)
    model = PuppetMasterUNet(**PLAIN)
    with torch.no_grad():  # stands in for training: no parameter keeps its initial value
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _inputs(frames: int = 4):
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(1, frames, 4, 16, 16, generator=g)
    cond = torch.randn(1, 4, 16, 16, generator=g)
    embedding = torch.randn(1, 1, TEST_UNET_CONFIG["cross_attention_dim"], generator=g)
    drags = torch.zeros(1, frames, 5, 4)
    for t in range(frames):  # one drag from (0.3, 0.4) moving right and up
        drags[0, t, 0] = torch.tensor([0.3, 0.4, 0.3 + 0.05 * t, 0.4 - 0.03 * t])
    return sample, torch.tensor([0.2]), cond, embedding, drags


def test_grown_unet_keeps_every_weight_and_computes_the_same_function():
    trained = _trained()
    grown, added = grow_unet.grow(trained, TEST_UNET_CONFIG)
    assert type(grown.down_blocks[0]).__name__ == "DragCrossAttnDownBlock"
    assert any(".attentions." in n for n in added) and any(".flow_convs." in n for n in added)
    new_state = grown.state_dict()
    for name, value in trained.state_dict().items():
        assert torch.equal(new_state[name], value), name
    with torch.no_grad():
        before, after = trained(*_inputs()).sample, grown.eval()(*_inputs()).sample
        assert before.abs().mean() > 0.1
        torch.testing.assert_close(after, before, atol=1e-3, rtol=1e-3)
        # the one difference left: diffusers' cross-attention down block builds its resnets with
        # GroupNorm eps 1e-6, the plain one with 1e-5; with the plain block's eps the outputs agree
        for module in grown.down_blocks[0].resnets.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.eps = 1e-5
        torch.testing.assert_close(grown(*_inputs()).sample, before, atol=1e-6, rtol=1e-5)


def test_the_added_modules_learn_from_the_first_step():
    grown, added = grow_unet.grow(_trained(), TEST_UNET_CONFIG)
    grown.train()
    start = {n: p.detach().clone() for n, p in grown.named_parameters()}
    sample, sigma, cond, embedding, drags = _inputs()
    optimizer = torch.optim.SGD(grown.parameters(), lr=0.1)
    for _ in range(2):  # step 1 moves the zeroed projections, step 2 what lies behind them
        loss = (grown(sample, sigma, cond, embedding, drags).sample - 1.0).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    params = dict(grown.named_parameters())
    moved = {n for n in added if n in params and not torch.equal(params[n], start[n])}
    assert any(".proj_out." in n for n in moved), "the zeroed output projections got no gradient"
    assert any(".attn1." in n for n in moved), "the attention behind the projections got no gradient"
    assert any(".flow_convs." in n and "conv_out" in n for n in moved), "drag modulation got no gradient"


def test_a_layout_that_reshapes_trained_weights_is_refused_by_name():
    wider = {**TEST_UNET_CONFIG, "block_out_channels": [32, 64]}
    with pytest.raises(grow_unet.GrowError, match="reshapes"):
        grow_unet.grow(_trained(), wider)


def test_cli_writes_a_folder_training_can_start_from(tmp_path):
    source = tmp_path / "checkpoint-00000007" / "ema"  # laid out as training writes a checkpoint
    _trained().save_pretrained(source)
    (source.parent / "trainer_state.json").write_text(json.dumps({"step": 7, "extra": {"residual_scale": 4.0}}))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text((ROOT / "training" / "configs" / "tiny.toml").read_text())
    out = grow_unet.main(["--from", str(source), "--config", str(recipe), "--out", str(tmp_path / "grown" / "unet"),
                          "--set", f"model.unet_config={_toml_table(TEST_UNET_CONFIG)}"])
    loaded = PuppetMasterUNet.from_pretrained(out)
    assert list(loaded.config.down_block_types) == TEST_UNET_CONFIG["down_block_types"]
    assert trained_residual_scale(out) == 4.0  # what assemble_pipeline reads

    with pytest.raises(SystemExit, match=r"no config\.json"):
        grow_unet.main(["--from", str(tmp_path / "nowhere"), "--config", str(recipe), "--out", str(tmp_path / "x")])


def _toml_table(values: dict) -> str:
    return "{" + ", ".join(f"{key} = {json.dumps(value)}" for key, value in values.items()) + "}"
