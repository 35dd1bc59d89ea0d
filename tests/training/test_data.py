"""Training data: the shared Drag-a-Move clips, the latent cache, the mix, de-duplication, the sampler."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
import torch
from safetensors import safe_open

from puppet_master.drags import validate_drag_array
from puppet_master.edm import VAE_SCALING_FACTOR
from tests.training.conftest import DRAG_A_MOVE, NUM_FRAMES, needs_drag_a_move
from training import dragamove
from training.config import DataConfig, SourceConfig
from training.data import DataError, MixtureDataset, StepBatchSampler, random_drag_subset


@needs_drag_a_move
def test_shared_drag_a_move_clips_load_with_the_right_shapes_and_conventions():
    paths = dragamove.find_clips(DRAG_A_MOVE)
    assert len(paths) == 10
    on_object = 0
    for path in paths:
        clip = dragamove.load_clip(path)
        assert clip.latents.shape == (14, 4, 32, 32)
        assert clip.cond_latent.shape == (4, 32, 32)
        assert clip.embedding.shape == (1, 1024)
        assert clip.drags.shape == (14, 5, 4)
        # video latents are scaled by 0.18215, the first-frame latent is not
        torch.testing.assert_close(clip.latents[0] / VAE_SCALING_FACTOR, clip.cond_latent, atol=2e-2, rtol=1e-2)
        drags = validate_drag_array(clip.drags.numpy(), num_frames=14)  # start repeated, frame 0 at start
        used = np.flatnonzero(np.any(drags != 0, axis=(0, 2)))
        assert len(used) >= 1 and list(used) == list(range(len(used)))  # used slots come first
        frames = dragamove.read_gif_frames(clip.gif_path, size=None)
        assert frames.shape == (14, 512, 512, 3)
        # x is the column, y the row: the drag starts on the object, not on the white background
        for k in used:
            x, y = (np.clip(drags[0, k, :2], 0, 1) * 511).round().astype(int)
            patch = frames[0, max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].astype(int)
            on_object += int((patch.sum(axis=-1) < 3 * 245).any())
    assert on_object >= 9


def test_refuses_pickles_that_name_other_code(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"latents": __import__("os").getcwd}))  # names a non-tensor global
    with pytest.raises(dragamove.ClipFormatError, match=r"evil\.pkl"):
        dragamove.load_clip(evil)
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"not a pickle")
    with pytest.raises(dragamove.ClipFormatError, match=r"broken\.pkl"):
        dragamove.load_clip(broken)
    partial = tmp_path / "partial.pkl"
    partial.write_bytes(pickle.dumps({"latents": 1}))
    with pytest.raises(dragamove.ClipFormatError, match="missing key"):
        dragamove.load_clip(partial)


def _cached(cache, **kwargs) -> DataConfig:
    source = SourceConfig(name="tiny", kind="cached", path=str(cache), **kwargs)
    return DataConfig(sources=[source], batch_size=1, num_workers=0)


def test_cached_samples_are_deterministic_under_a_seed(latent_cache):
    a = MixtureDataset(_cached(latent_cache, weight=1.0), seed=5)
    b = MixtureDataset(_cached(latent_cache, weight=1.0), seed=5)
    c = MixtureDataset(_cached(latent_cache, weight=1.0), seed=6)
    assert len(a.units) == 4  # 2 clips x 2 views (two drag samples each)
    for i in (0, 3, 17):
        x, y = a[i], b[i]
        for key in x:
            assert torch.equal(x[key], y[key]), key
    assert any(not torch.equal(a[i]["latents"], c[i]["latents"]) for i in range(4))
    item = a[0]
    assert item["latents"].shape[:2] == (NUM_FRAMES, 4)
    assert item["cond_latent"].shape == item["latents"].shape[1:]
    assert item["embedding"].shape == (1, 32)
    assert item["drags"].shape == (NUM_FRAMES, 5, 4)
    # latents are a scaled draw mean + std * eps from the cache; the first-frame latent is the mean, unscaled
    unit = a.units[a.choose(0)[1]]
    with safe_open(unit.path, framework="pt") as f:
        mean, std = f.get_tensor(f"{unit.entry}.mean").float(), f.get_tensor(f"{unit.entry}.std").float()
    assert f.metadata is not None and mean.shape == item["latents"].shape
    torch.testing.assert_close(item["cond_latent"], mean[0])
    eps = (item["latents"] / VAE_SCALING_FACTOR - mean) / std
    assert abs(eps.mean().item()) < 0.2 and eps.std().item() == pytest.approx(1.0, abs=0.2)


def test_mix_weights_per_category(latent_cache):
    config = _cached(latent_cache, categories={"Animals": 0.75, "Human-Shape": 0.25})
    dataset = MixtureDataset(config, seed=0)
    assert [b.name for b in dataset.buckets] == ["tiny/Animals", "tiny/Human-Shape"]
    counts = Counter(dataset.units[dataset.choose(i)[1]].key.split("/")[0] for i in range(2000))
    assert counts["asset_a"] / 2000 == pytest.approx(0.75, abs=0.04)  # asset_a is an Animal
    # a configured category without clips is an error by default, or renormalised on request
    config = _cached(latent_cache, categories={"Animals": 0.5, "Daily-Used": 0.5})
    with pytest.raises(DataError, match="Daily-Used"):
        MixtureDataset(config, seed=0)
    config.empty_bucket = "renormalise"
    assert MixtureDataset(config, seed=0).probabilities.tolist() == [1.0]


def test_duplicates_are_dropped_at_load(latent_cache):
    sources = [SourceConfig(name=n, kind="cached", path=str(latent_cache), weight=0.5) for n in ("a", "b")]
    config = DataConfig(sources=sources, empty_bucket="renormalise")
    dataset = MixtureDataset(config, seed=0)
    assert len(dataset.units) == 4 and [b.name for b in dataset.buckets] == ["a"]
    config.deduplicate = False
    assert len(MixtureDataset(config, seed=0).units) == 8


def test_random_drag_subset_keeps_a_non_empty_subset():
    drags = np.zeros((14, 5, 4), np.float32)
    drags[:, :3] = np.arange(1, 4, dtype=np.float32)[None, :, None] / 10
    rng = np.random.default_rng(0)
    sizes = Counter()
    for _ in range(300):
        out = random_drag_subset(drags, rng)
        used = np.flatnonzero(np.any(out != 0, axis=(0, 2)))
        assert 1 <= len(used) <= 3 and list(used) == list(range(len(used)))
        assert {round(float(v), 3) for v in out[0, used, 0]} <= {0.1, 0.2, 0.3}
        sizes[len(used)] += 1
    assert set(sizes) == {1, 2, 3}


def test_step_sampler_covers_each_global_batch_once_and_resumes():
    def batches(num_processes, accumulation, batch, start=0, steps=3):
        per_rank = [
            list(StepBatchSampler(batch_size=batch, num_processes=num_processes, process_index=r,
                                  accumulation=accumulation, start_step=start, max_steps=start + steps))
            for r in range(num_processes)
        ]
        return per_rank

    # a step's samples are the same block whatever the split between processes and micro-steps
    for procs, accum, batch in ((1, 4, 2), (2, 2, 2), (4, 1, 2), (2, 1, 4)):
        per_rank = batches(procs, accum, batch)
        for step in range(3):
            seen = sorted(i for rank in per_rank for mb in rank[step * accum : (step + 1) * accum] for i in mb)
            assert seen == list(range(step * 8, (step + 1) * 8)), (procs, accum, batch)
    resumed = batches(2, 2, 2, start=1, steps=2)
    assert resumed == [rank[2:] for rank in batches(2, 2, 2)]
