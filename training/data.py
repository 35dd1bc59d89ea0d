"""Training data: cached latents and Drag-a-Move clips, mixed by source and category, indexed by
a global sample number so that any sample can be rebuilt from ``(seed, number)``.

Sample ``i`` is drawn with its own random generator seeded by ``(seed, i)``: the bucket (source
and category) by the mix weights, a clip unit (clip, view, frames) in the bucket, one of its drag
samples, a random non-empty subset of its drags and, for cached clips, the latent noise
``mean + std * eps``. Optimiser step ``s`` uses samples ``[s * G, (s + 1) * G)`` with ``G`` the
global batch, split between processes and accumulation micro-steps, so resuming at step ``s``
continues exactly where training stopped (no epoch replay) whatever the number of processes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from torch.utils.data import Dataset, Sampler

from puppet_master.edm import VAE_SCALING_FACTOR
from training import dragamove
from training.config import DataConfig, SourceConfig

logger = logging.getLogger(__name__)

SHARD_GLOB = "shard_*.safetensors"
OTHER = "other"


class DataError(ValueError):
    """Training data that cannot be used; the message names the source, file and problem."""


@dataclass
class Unit:
    """One trainable clip view: where its latents are and the drag samples that go with them."""

    key: str  # de-duplication key
    category: str
    kind: str  # "drag_a_move" | "cached"
    path: Path  # pickle, or cache shard
    entry: str = ""  # tensor prefix inside a cache shard
    drags: list[np.ndarray] = field(default_factory=list)  # cached: (N, K, 4) per drag sample


@dataclass
class Bucket:
    name: str
    weight: float
    units: list[int]


def _cached_units(source: SourceConfig, categories: dict[str, str]) -> list[Unit]:
    folder = Path(source.path)
    shards = sorted(folder.glob(SHARD_GLOB)) if folder.is_dir() else []
    if not shards:
        raise DataError(f"source {source.name!r}: no {SHARD_GLOB} in {folder} (run training.cache_latents)")
    units = []
    for shard in shards:
        try:
            with safe_open(shard, framework="pt") as f:
                entries = json.loads((f.metadata() or {}).get("entries", "[]"))
        except Exception as exc:  # safetensors raises its own error types
            raise DataError(f"source {source.name!r}: cannot read cache shard {shard}: {exc}") from exc
        for e in entries:
            drags = [np.asarray(d, dtype=np.float32) for d in e.get("drags", [])]
            if not drags:
                continue
            category = categories.get(e["clip_id"].split("/")[0]) or e.get("category") or OTHER
            frames = ",".join(str(i) for i in e.get("frames", []))
            units.append(
                Unit(f"{e['clip_id']}#view{e['view']}#{frames}", category, "cached", shard, e["key"], drags)
            )
    return units


def _drag_a_move_units(source: SourceConfig) -> list[Unit]:
    try:
        paths = dragamove.find_clips(source.path)
    except dragamove.ClipFormatError as exc:
        raise DataError(f"source {source.name!r}: {exc}") from None
    units = []
    for path in paths:
        clip = dragamove.load_clip(path)
        units.append(Unit(clip.key, clip.category, "drag_a_move", path))
    return units


def _read_categories(source: SourceConfig) -> dict[str, str]:
    if not source.category_file:
        return {}
    path = Path(source.category_file)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"source {source.name!r}: cannot read category_file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"source {source.name!r}: category_file {path} must map asset id -> category")
    return {str(k): str(v) for k, v in data.items()}


def build_buckets(config: DataConfig) -> tuple[list[Unit], list[Bucket]]:
    """Index every source, drop duplicates (first source wins), and group units by mix bucket."""
    units: list[Unit] = []
    buckets: list[Bucket] = []
    seen: set[str] = set()
    duplicates = 0
    for source in config.sources:
        if source.kind == "cached":
            found = _cached_units(source, _read_categories(source))
        else:
            found = _drag_a_move_units(source)
        kept = []
        for unit in found:
            if config.deduplicate and unit.key in seen:
                duplicates += 1
                continue
            seen.add(unit.key)
            kept.append(len(units))
            units.append(unit)
        if source.categories:
            named = set(source.categories) - {OTHER}
            for cat, weight in source.categories.items():
                members = [i for i in kept if (units[i].category == cat if cat != OTHER else units[i].category not in named)]
                buckets.append(Bucket(f"{source.name}/{cat}", weight, members))
        else:
            buckets.append(Bucket(source.name, source.weight, kept))
    if duplicates:
        logger.info("dropped %d duplicate clip unit(s)", duplicates)
    empty = [b.name for b in buckets if not b.units and b.weight > 0]
    if empty and config.empty_bucket == "error":
        raise DataError(
            f"no clips for mix bucket(s) {', '.join(empty)}; add data or set data.empty_bucket = 'renormalise'"
        )
    buckets = [b for b in buckets if b.units and b.weight > 0]
    if not buckets:
        raise DataError("no training clips in any source with a positive weight")
    if empty:
        logger.warning("mix bucket(s) without clips, weights renormalised: %s", ", ".join(empty))
    return units, buckets


def random_drag_subset(drags: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep a random non-empty subset of the used drag slots (in random order, packed to the front)."""
    used = np.flatnonzero(np.any(drags != 0, axis=(0, 2)))
    out = np.zeros_like(drags)
    if len(used) == 0:
        return out
    count = int(rng.integers(1, len(used) + 1))
    chosen = rng.permutation(used)[:count]
    out[:, :count] = drags[:, chosen]
    return out


class MixtureDataset(Dataset):
    """Map-style dataset over global sample numbers (any non-negative int)."""

    def __init__(self, config: DataConfig, seed: int):
        self.config = config
        self.seed = int(seed)
        self.units, self.buckets = build_buckets(config)
        weights = np.array([b.weight for b in self.buckets], dtype=np.float64)
        self.probabilities = weights / weights.sum()

    def __len__(self) -> int:
        return 2**62  # samples are drawn, not enumerated; the sampler decides how many

    def describe(self) -> str:
        parts = [f"{b.name}: {len(b.units)} units, p={p:.3f}" for b, p in zip(self.buckets, self.probabilities, strict=True)]
        return f"{len(self.units)} clip units; " + "; ".join(parts)

    def choose(self, index: int) -> tuple[int, int, np.random.Generator]:
        """Bucket and unit of sample ``index``, and the generator for its remaining draws."""
        rng = np.random.default_rng([self.seed, int(index)])
        bucket = int(rng.choice(len(self.buckets), p=self.probabilities))
        members = self.buckets[bucket].units
        return bucket, members[int(rng.integers(len(members)))], rng

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        _, unit_index, rng = self.choose(index)
        unit = self.units[unit_index]
        if unit.kind == "drag_a_move":
            clip = dragamove.load_clip(unit.path)
            latents, cond, emb = clip.latents, clip.cond_latent, clip.embedding
            drags = clip.drags.numpy()
        else:
            drags = unit.drags[int(rng.integers(len(unit.drags)))]
            latents, cond, emb = self._load_cached(unit, rng)
        drags = self._fit_drags(drags, unit)
        if self.config.random_drag_subset:
            drags = random_drag_subset(drags, rng)
        return {
            "latents": latents.float(),
            "cond_latent": cond.float(),
            "embedding": emb.float(),
            "drags": torch.from_numpy(np.ascontiguousarray(drags, dtype=np.float32)),
            "index": torch.tensor(int(index)),
        }

    def _fit_drags(self, drags: np.ndarray, unit: Unit) -> np.ndarray:
        n, k = self.config.num_frames, self.config.max_drags
        if drags.ndim != 3 or drags.shape[0] != n or drags.shape[2] != 4 or drags.shape[1] > k:
            raise DataError(f"{unit.path} ({unit.key}): drags must be ({n}, <={k}, 4), got {drags.shape}")
        if drags.shape[1] < k:
            drags = np.concatenate([drags, np.zeros((n, k - drags.shape[1], 4), drags.dtype)], axis=1)
        return drags

    @staticmethod
    def _load_cached(unit: Unit, rng: np.random.Generator):
        with safe_open(unit.path, framework="pt") as f:
            mean = f.get_tensor(f"{unit.entry}.mean").float()
            std = f.get_tensor(f"{unit.entry}.std").float()
            emb = f.get_tensor(f"{unit.entry}.embedding").float()
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        sample = mean + std * torch.randn(mean.shape, generator=gen)
        return sample * VAE_SCALING_FACTOR, mean[0], emb.reshape(1, -1)


class StepBatchSampler(Sampler[list[int]]):
    """Yields this process's micro-batches of global sample numbers, from ``start_step`` on.

    Step ``s``, micro-step ``m``, process ``r`` takes ``s*G + (m*P + r)*B + [0, B)`` with
    ``G = B * P * A``.
    """

    def __init__(self, *, batch_size: int, num_processes: int, process_index: int, accumulation: int,
                 start_step: int = 0, max_steps: int | None = None):
        self.batch_size, self.num_processes = batch_size, num_processes
        self.process_index, self.accumulation = process_index, accumulation
        self.start_step, self.max_steps = start_step, max_steps
        self.global_batch = batch_size * num_processes * accumulation

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.max_steps is None or step < self.max_steps:
            for micro in range(self.accumulation):
                first = step * self.global_batch + (micro * self.num_processes + self.process_index) * self.batch_size
                yield list(range(first, first + self.batch_size))
            step += 1

    def __len__(self) -> int:
        if self.max_steps is None:
            raise TypeError("an endless sampler has no length")
        return max(0, self.max_steps - self.start_step) * self.accumulation
