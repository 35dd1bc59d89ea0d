"""Where a result goes in the Video Sequence Editor (no bpy): the lowest free channel and the name."""

from __future__ import annotations

from collections.abc import Iterable

#: channels the sequencer has (Blender's limit)
MAX_CHANNEL = 128


def free_channel(occupied: Iterable[tuple[int, int, int]], start: int, end: int) -> int:
    """The lowest channel with no strip overlapping frames ``[start, end)``; ``occupied`` holds
    ``(channel, first frame, frame after the last)`` of the existing strips."""
    busy = {channel for channel, first, after in occupied if first < end and start < after}
    for channel in range(1, MAX_CHANNEL + 1):
        if channel not in busy:
            return channel
    raise ValueError(f"every sequencer channel holds a strip over frames {start}-{end - 1}")


def strip_name(job_id: str, seed: object = None, variant: int | None = None) -> str:
    """``PM <job> seed <seed>`` (and the variant, when there are several), as the strip is named."""
    name = f"PM {job_id[:8]}"
    if variant is not None:
        name += f" v{variant}"
    if seed is not None:
        name += f" seed {seed}"
    return name
