"""Longer clips: ``S`` segments of 14 frames chained through the pipeline, ``S x 13 + 1`` frames in all.

Segment ``k`` runs the pipeline once: its reference image is the last frame of segment ``k - 1``
(the input image for the first), and its drags are the pieces ``k*13 ... k*13 + 13`` of each drag's
trajectory over ``S x 13 + 1`` points (a drag's own path when it has that many points, else its
path or its start -> end line resampled in time). The joint frame is not repeated: each later
segment gives 13 new frames. A drag that does not move within a segment is left out of that segment
(the model reads a drag as a motion; a still point would read as "no drag").

What the paper does not claim: the model was trained on 14-frame clips from a real reference, and
every later segment is conditioned on a generated frame, so errors can build up from segment to
segment (docs/generate.md says so too).

The noise of all segments comes from one generator seeded with ``seed``, in segment order, so one
seed determines the whole clip.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from puppet_master.drags import NUM_FRAMES, Drag
from puppet_master.protocol import MAX_SEGMENTS, SEGMENT_STEP

#: a drag whose segment piece stays within this distance (fraction of the frame) of its start is still
STILL = 1e-6


def segment_frames(segments: int) -> int:
    """Frames of a clip of ``segments`` segments."""
    return segments * SEGMENT_STEP + 1


def segment_drags(drags: Sequence[Drag], segments: int) -> list[list[Drag]]:
    """Each segment's drags: the pieces of the drags' trajectories over ``segment_frames(segments)``
    points, 14 points each, the last point of one piece the first of the next; still pieces left out."""
    if not 1 <= segments <= MAX_SEGMENTS:
        raise ValueError(f"segments must be 1-{MAX_SEGMENTS}, got {segments}")
    total = segment_frames(segments)
    trajectories = [np.asarray(d.path) if d.path is not None and len(d.path) == total else d.trajectory(total)
                    for d in drags]
    pieces = []
    for k in range(segments):
        part = [t[k * SEGMENT_STEP: k * SEGMENT_STEP + NUM_FRAMES] for t in trajectories]
        pieces.append([Drag.from_path(p) for p in part if np.abs(p - p[0]).max() > STILL])
    return pieces


@dataclass
class SegmentedOutput:
    """``frames``: the ``S x 13 + 1`` PIL frames; ``drags``: their ``(S x 13 + 1, K, 4)`` drag array
    in frame coordinates; ``segments``: per segment what conditioned it (its reference, its drags
    in frame fractions); ``window``: where the first reference was cut from the input image."""

    frames: list[Any]
    drags: np.ndarray
    window: Any
    segments: list[dict[str, Any]] = field(default_factory=list)


def generate_segments(pipe: Any, image: Any, drags: Sequence[Drag], segments: int, *, seed: int,
                      crop: str = "none", on_segment: Callable[[int, Any], None] | None = None,
                      **kwargs: Any) -> SegmentedOutput:
    """Run ``pipe`` once per segment (see the module's docstring); ``kwargs`` go to every call
    (steps, guidance, callbacks). ``on_segment(k, output)`` is called as each segment finishes.
    A :class:`~puppet_master.pipeline.GenerationCancelled` from any call ends the clip there."""
    import torch

    pieces = segment_drags(drags, segments)
    generator = torch.Generator().manual_seed(seed)
    frames: list[Any] = []
    arrays: list[np.ndarray] = []
    records: list[dict[str, Any]] = []
    reference, window = image, None
    for k, piece in enumerate(pieces):
        if window is not None:  # later references are frames: the drags go into the frame's fractions
            piece = [Drag.from_path(window.to_frame(np.asarray(d.path))) for d in piece]
        out = pipe(reference, piece, num_videos_per_prompt=1, generator=[generator], output_type="pil",
                   crop=crop if window is None else "none", **kwargs)
        window = window or out.window
        new = out.frames[0] if k == 0 else out.frames[0][1:]
        frames += list(new)
        arrays.append(out.drags[0] if k == 0 else out.drags[0][1:])
        in_frame = piece if k > 0 else [Drag.from_path(window.to_frame(np.asarray(d.path))) for d in piece]
        records.append({"segment": k, "reference": "input image" if k == 0 else f"frame {len(frames) - len(new) - 1}",
                        "drags": [d.to_json() for d in in_frame]})
        reference = out.frames[0][-1]
        if on_segment is not None:
            on_segment(k, out)
    return SegmentedOutput(frames, np.concatenate(arrays, axis=0), window, records)
