"""The training loop on a tiny real U-Net and a latent cache built from tiny renders (CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from puppet_master.models.unet import PuppetMasterUNet
from tests.training.conftest import DRAG_A_MOVE, needs_drag_a_move, tiny_config
from training import checkpointing, objective
from training.config import ConfigError
from training.data import MixtureDataset
from training.tracking import read_metrics
from training.train import Trainer, build_model, build_optimizer


def test_overfitting_one_batch_halves_the_loss(tmp_path, latent_cache):
    config = tiny_config(tmp_path, latent_cache, {"optim.learning_rate": "1e-3"})
    dataset = MixtureDataset(config.data, seed=0)
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    draws = objective.draw(batch["index"], tuple(batch["latents"].shape[1:]), seed=0, p_mean=0.7, p_std=1.6,
                           drag_dropout=0.0)
    model = build_model(config)
    optimizer = build_optimizer(model, config)
    losses = []
    for _ in range(40):
        loss = objective.denoising_loss(model, batch, draws)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert min(losses[-5:]) <= 0.5 * losses[0], losses


def test_initialisation_from_an_svd_unet_copies_its_weights(tmp_path, latent_cache):
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(0)
    svd = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 32), down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), num_attention_heads=(1, 1),
        cross_attention_dim=32, layers_per_block=1, addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
    )
    svd.save_pretrained(tmp_path / "svd" / "unet")
    config = tiny_config(tmp_path, latent_cache, {
        "model.init": '"svd"', "model.svd_path": json.dumps(str(tmp_path / "svd")),
        "model.unet_config": "{pos_embed_dim = 8, drag_embedder_out_channels = [16]}",
    })
    model = build_model(config)
    svd_state = svd.state_dict()
    for name, value in model.state_dict().items():
        if name in svd_state:
            torch.testing.assert_close(value, svd_state[name], rtol=0, atol=0, msg=name)
    assert sum(name in svd_state for name in model.state_dict()) > 50
    with pytest.raises(ConfigError, match=r"unet/config\.json"):
        build_model(tiny_config(tmp_path, latent_cache, {"model.init": '"svd"', "model.svd_path": '"/nowhere"'}))


def _weights(folder):
    return load_file(str(folder / checkpointing.WEIGHTS_NAME))


def test_resume_gives_the_same_loss_curve(tmp_path, latent_cache):
    extra = {"train.max_steps": 4, "train.checkpoint_every": 2, "optim.learning_rate": "1e-3",
             "train.ema_decay": 0.5}
    full = Trainer(tiny_config(tmp_path / "full", latent_cache, extra)).train()

    first = Trainer(tiny_config(tmp_path / "split", latent_cache, {**extra, "train.max_steps": 2})).train()
    assert first.step == 2
    resumed_trainer = Trainer(tiny_config(tmp_path / "split", latent_cache, {**extra, "train.resume": '"latest"'}))
    assert resumed_trainer.step == 2
    resumed = resumed_trainer.train()

    assert sorted(full.losses) == [1, 2, 3, 4]
    assert sorted(resumed.losses) == [3, 4]
    for step in (1, 2):
        assert first.losses[step] == full.losses[step]
    for step in (3, 4):
        assert resumed.losses[step] == full.losses[step], (step, resumed.losses[step], full.losses[step])
    assert len(set(full.losses.values())) == 4  # the steps really differ (different samples and noise)

    # the logged curve is the same too (the resumed run continues the CSV without duplicate rows)
    rows_full = read_metrics(tmp_path / "full" / "logs" / "metrics.csv")
    rows_split = read_metrics(tmp_path / "split" / "logs" / "metrics.csv")
    assert [r["step"] for r in rows_split] == [1, 2, 3, 4]
    assert [r["loss"] for r in rows_split] == pytest.approx([r["loss"] for r in rows_full], rel=1e-6)

    # and the final model and EMA weights match
    for sub in ("model", "ema"):
        a = _weights(full.last_checkpoint / sub)
        b = _weights(resumed.last_checkpoint / sub)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{sub}/{key}")


def test_checkpoints_are_complete_pruned_and_loadable(tmp_path, latent_cache):
    config = tiny_config(tmp_path, latent_cache, {"train.max_steps": 3, "train.checkpoint_every": 1,
                                                  "train.checkpoints_total_limit": 2})
    result = Trainer(config).train()
    root = tmp_path / "checkpoints"
    kept = checkpointing.complete_checkpoints(root)
    assert [step for step, _ in kept] == [2, 3]
    assert json.loads((root / "latest.json").read_text())["step"] == 3
    folder = result.last_checkpoint
    for name in ("optimizer.safetensors", "rng_state_0.safetensors", "trainer_state.json",
                 "model/diffusion_pytorch_model.safetensors", "ema/diffusion_pytorch_model.safetensors"):
        assert (folder / name).is_file(), name
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["samples_seen"] == 3 * config.train.global_batch_size
    assert state["ema_updates"] == 3
    ema = PuppetMasterUNet.from_pretrained(folder / "ema")
    model = PuppetMasterUNet.from_pretrained(folder / "model")
    differs = [not torch.equal(a, b) for a, b in zip(ema.parameters(), model.parameters(), strict=True)]
    assert any(differs)  # the EMA lags behind the trained weights


def test_resume_from_a_missing_checkpoint_names_it(tmp_path, latent_cache):
    missing = tmp_path / "nowhere"
    with pytest.raises(checkpointing.CheckpointError, match="nowhere"):
        Trainer(tiny_config(tmp_path, latent_cache, {"train.resume": json.dumps(str(missing))}))


def test_a_unet_that_does_not_fit_the_cached_latents_is_refused(tmp_path, latent_cache):
    with pytest.raises(ConfigError, match=r"latents have 4 channels .*in_channels = 8 and out_channels = 4"):
        Trainer(tiny_config(tmp_path, latent_cache, {"model.unet_config.in_channels": "32",
                                                     "model.unet_config.out_channels": "16"}))


@needs_drag_a_move
def test_validation_writes_gifs_with_ema_weights_and_restores_the_model(tmp_path, latent_cache):
    config = tiny_config(tmp_path, latent_cache, {
        "train.max_steps": 1, "validation.every": 1, "validation.data": json.dumps(str(DRAG_A_MOVE)),
        "validation.num_clips": 1, "validation.num_inference_steps": 1, "optim.learning_rate": "1e-2",
        "train.ema_decay": 0.5,
    })
    trainer = Trainer(config)
    result = trainer.train()
    gif = tmp_path / "validation" / "step_00000001" / "00000.gif"
    assert gif.is_file()
    with Image.open(gif) as im:
        assert im.n_frames == 14 and im.size == (256, 256)
        im.seek(13)
        last = np.asarray(im.convert("RGB"))
    # the drag of clip 00000 is drawn in its first colour
    assert (np.abs(last.astype(int) - [230, 25, 75]).sum(axis=-1) < 40).any()
    # after validation the model holds its trained weights again, not the EMA
    trained = _weights(result.last_checkpoint / "model")
    model = trainer.accelerator.unwrap_model(trainer.model)
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), trained[name], rtol=0, atol=0)


def test_a_spent_time_budget_checkpoints_and_the_same_command_resumes(tmp_path, latent_cache):
    config = tiny_config(tmp_path, latent_cache, {"train.max_steps": 4, "train.checkpoint_every": 10,
                                                  "train.max_minutes": 1e-6})
    first = Trainer(config).train()
    assert first.step == 1  # the budget is checked after every step
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["step"] == 1
    resumed = Trainer(tiny_config(tmp_path, latent_cache, {"train.max_steps": 4, "train.checkpoint_every": 10,
                                                            "train.resume": '"latest"'})).train()
    assert resumed.step == 4 and sorted(resumed.losses) == [2, 3, 4]


def test_a_negative_time_budget_is_refused(tmp_path, latent_cache):
    with pytest.raises(ConfigError, match="max_minutes"):
        tiny_config(tmp_path, latent_cache, {"train.max_minutes": -1})


def test_a_residual_run_records_its_scale_where_assembly_reads_it(tmp_path, latent_cache):
    config = tiny_config(tmp_path, latent_cache, {"train.max_steps": 2, "train.checkpoint_every": 2,
                                                  "train.residual_scale": 3.0})
    trainer = Trainer(config).train()
    assert all(np.isfinite(v) for v in trainer.losses.values())
    ema = tmp_path / "checkpoints" / "checkpoint-00000002" / "ema"
    assert checkpointing.trained_residual_scale(ema) == 3.0
    assert checkpointing.trained_residual_scale(tmp_path) == 0.0  # not a checkpoint: a plain model
