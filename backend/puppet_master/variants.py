"""Variants: one job, several videos that differ only by their seed, for the artist to choose from.

Each variant is a pipeline call of its own with one generator (seeds ``seed, seed + 1, ...``), so a
variant is, frame for frame, what a one-video run with its seed gives: it can be made again alone
(at more steps, say) from its seed. Batching the videos through ``num_videos_per_prompt`` is faster
on a large GPU but changes the floating-point order: on the tiny model it moved the frames by up to
1.7e-5 (about 0.1% of the 8-bit values by one step), so the batched path is kept apart
(``generate --num-videos``) and variants are made one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from puppet_master.protocol import MAX_VARIANTS

VARIANT_FOLDER = "variant_{:02d}"


def variant_seeds(seed: int, count: int) -> list[int]:
    """The seeds of ``count`` variants starting at ``seed``."""
    if not 1 <= count <= MAX_VARIANTS:
        raise ValueError(f"variants must be 1-{MAX_VARIANTS}, got {count}")
    return [seed + i for i in range(count)]


def generate_variants(pipe: Any, image: Any, drags: Any, seeds: Sequence[int],
                      on_variant: Callable[[int, int, Any], None] | None = None, **kwargs: Any) -> list[Any]:
    """Run ``pipe(image, drags, **kwargs)`` once per seed (one video each); returns the outputs in
    seed order and calls ``on_variant(index, seed, output)`` as each one finishes."""
    import torch

    outputs = []
    for index, seed in enumerate(seeds):
        output = pipe(image, drags, num_videos_per_prompt=1, generator=[torch.Generator().manual_seed(seed)],
                      **kwargs)
        outputs.append(output)
        if on_variant is not None:
            on_variant(index, seed, output)
    return outputs
