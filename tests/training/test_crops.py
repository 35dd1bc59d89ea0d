"""Training on latent windows around a drag (training/crops.py) with real cached latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.training.conftest import tiny_config
from training import crops
from training.config import ConfigError
from training.data import MixtureDataset
from training.train import Trainer


def _batch(latent_cache, tmp_path, indices=(0, 1, 2, 3)):
    dataset = MixtureDataset(tiny_config(tmp_path, latent_cache).data, seed=0)
    return torch.utils.data.default_collate([dataset[i] for i in indices])


def _cell(point: torch.Tensor, height: int, width: int) -> tuple[int, int]:
    return int(point[1] * height), int(point[0] * width)


def test_cropped_drags_point_at_the_same_latent_cells(tmp_path, latent_cache):
    batch = _batch(latent_cache, tmp_path)
    height, width = batch["latents"].shape[-2:]
    size = height // 2
    cropped = crops.crop_batch(batch, size, seed=3)
    assert cropped["latents"].shape[-2:] == (size, size) and cropped["cond_latent"].shape[-2:] == (size, size)
    assert torch.equal(cropped["embedding"], batch["embedding"])
    kept = 0
    for i in range(len(batch["index"])):
        for k in range(batch["drags"].shape[2]):
            new = cropped["drags"][i, :, k]
            if not new.ne(0).any():
                continue
            kept += 1
            old = batch["drags"][i, :, k]
            for n in (0, 13):  # start and end of the path: the same latent vector before and after
                r0, c0 = _cell(old[n, 2:], height, width)
                r1, c1 = _cell(new[n, 2:], size, size)
                torch.testing.assert_close(cropped["latents"][i, n, :, r1, c1], batch["latents"][i, n, :, r0, c0])
            assert ((new >= 0) & (new < 1)).all()
    assert kept >= len(batch["index"])  # every sample keeps the drag its window was chosen for


def test_a_drag_whose_path_leaves_the_window_is_removed():
    drags = torch.zeros(14, 5, 4)
    drags[:, 0, :2] = torch.tensor([0.1, 0.1])
    drags[:, 0, 2] = torch.linspace(0.1, 0.9, 14)  # crosses the whole frame
    drags[:, 0, 3] = 0.1
    drags[:, 1, :2] = drags[:, 1, 2:] = torch.tensor([0.2, 0.2])  # a still point near the first start
    out = crops.crop_drags(drags, row=0, col=0, size=16, height=32, width=32)
    assert not out[:, 0].ne(0).any()
    torch.testing.assert_close(out[:, 1], torch.full((14, 4), 0.4))


def test_the_window_holds_the_whole_path_of_one_drag_where_it_fits():
    rng = np.random.default_rng(0)
    drags = np.zeros((14, 5, 4), np.float32)
    drags[:, 2, :2] = (0.70, 0.20)
    drags[:, 2, 2] = np.linspace(0.70, 0.95, 14)
    drags[:, 2, 3] = np.linspace(0.20, 0.40, 14)
    for _ in range(50):
        row, col = crops.choose_window(drags, 16, 32, 32, rng)
        assert 0 <= row <= 16 and 0 <= col <= 16
        moved = crops.crop_drags(torch.from_numpy(drags), row, col, 16, 32, 32)
        assert moved[:, 2].ne(0).any()


def test_which_steps_crop_is_fixed_by_seed_and_step():
    decisions = [crops.step_is_cropped(0, s, 0.5) for s in range(200)]
    assert decisions == [crops.step_is_cropped(0, s, 0.5) for s in range(200)]
    assert 60 < sum(decisions) < 140
    assert not any(crops.step_is_cropped(0, s, 0.0) for s in range(20))
    assert all(crops.step_is_cropped(0, s, 1.0) for s in range(20))


def test_a_cropped_run_trains_and_resumes_exactly(tmp_path, latent_cache):
    size = MixtureDataset(tiny_config(tmp_path, latent_cache).data, seed=0)[0]["latents"].shape[-1] // 2
    extra = {"train.max_steps": 4, "train.checkpoint_every": 2, "optim.learning_rate": "1e-3",
             "train.crop_size": size, "train.crop_probability": 0.5}
    assert [crops.step_is_cropped(0, s, 0.5) for s in range(4)] == [False, False, True, False]  # seed 0
    full = Trainer(tiny_config(tmp_path / "full", latent_cache, extra)).train()
    Trainer(tiny_config(tmp_path / "split", latent_cache, {**extra, "train.max_steps": 2})).train()
    resumed = Trainer(tiny_config(tmp_path / "split", latent_cache, {**extra, "train.resume": '"latest"'})).train()
    assert all(np.isfinite(v) for v in full.losses.values())
    for step in (3, 4):  # the third step is a cropped one, the first after the resume
        assert resumed.losses[step] == full.losses[step]


def test_a_cropped_step_trains_on_the_window(tmp_path, latent_cache):
    size = MixtureDataset(tiny_config(tmp_path, latent_cache).data, seed=0)[0]["latents"].shape[-1] // 2
    extra = {"train.max_steps": 1}
    plain = Trainer(tiny_config(tmp_path / "plain", latent_cache, extra)).train()
    cropped = Trainer(tiny_config(tmp_path / "crop", latent_cache,
                                  {**extra, "train.crop_size": size, "train.crop_probability": 1.0})).train()
    assert np.isfinite(cropped.losses[1]) and cropped.losses[1] != plain.losses[1]


def test_a_crop_the_unet_cannot_take_is_refused(tmp_path, latent_cache):
    with pytest.raises(ConfigError, match=r"train.crop_size 3 must be .* a multiple of 2"):
        Trainer(tiny_config(tmp_path, latent_cache, {"train.crop_size": 3, "train.crop_probability": 1.0}))
    with pytest.raises(ConfigError, match=r"needs train\.crop_size"):
        tiny_config(tmp_path, latent_cache, {"train.crop_probability": 0.5})
