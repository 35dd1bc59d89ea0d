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
from dataclasses import dataclass, field
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


@dataclass
class Video:
    """One variant as made: its PIL ``frames``, their ``(N, K, 4)`` drag array in frame coordinates,
    the ``window`` cut from the input image, its ``seed``, and per segment what conditioned it
    (empty for a one-segment video)."""

    frames: list[Any]
    drags: Any
    window: Any
    seed: int
    segment_inputs: list[dict[str, Any]] = field(default_factory=list)


def generate_videos(pipe: Any, image: Any, drags: Any, seeds: Sequence[int], segments: int = 1, *,
                    on_variant: Callable[[int, Video], None] | None = None,
                    on_call: Callable[..., None] | None = None, **kwargs: Any) -> list[Video]:
    """What ``generate`` and the server make of one job: a video per seed (one pipeline run each),
    each of ``segments`` chained segments (:mod:`puppet_master.segments`). ``on_call()`` follows every
    pipeline call, ``on_variant(index, video)`` every finished video; ``kwargs`` go to every call."""
    from puppet_master.segments import generate_segments

    videos = []
    for index, seed in enumerate(seeds):
        if segments > 1:
            clip = generate_segments(pipe, image, drags, segments, seed=seed, on_segment=on_call, **kwargs)
            video = Video(clip.frames, clip.drags, clip.window, seed, clip.segments)
        else:
            (out,) = generate_variants(pipe, image, drags, [seed], on_variant=on_call, output_type="pil", **kwargs)
            video = Video(out.frames[0], out.drags[0], out.window, seed)
        videos.append(video)
        if on_variant is not None:
            on_variant(index, video)
    return videos
