"""Inputs are checked up front, with errors that name the problem (nothing runs on bad input)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DRAG_A

from puppet_master.drags import Drag, DragError, drags_to_array


@pytest.mark.parametrize(
    ("drags", "message"),
    [
        ([Drag((0.1 * i, 0.5), (0.1 * i, 0.6)) for i in range(1, 7)], "at most 5"),
        ([Drag((0.5, 0.5), (1.2, 0.5))], "outside the image"),
        ([Drag((-0.1, 0.5), (0.5, 0.5))], "outside the image"),
        ([Drag((float("nan"), 0.5), (0.5, 0.5))], "not finite"),
        (np.full((14, 5, 4), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((13, 5, 4), dtype=np.float32), "13 frames"),
        (np.zeros((14, 6, 4), dtype=np.float32), "at most 5"),
        ("0.5,0.5:0.6,0.6", "list of puppet_master.drags.Drag"),
    ],
)
def test_bad_drags(tiny_pipe, rgb_image, drags, message):
    with pytest.raises(DragError, match=message):
        tiny_pipe(rgb_image, drags, num_inference_steps=1)


def test_trajectory_array_must_start_at_its_start_point(tiny_pipe, rgb_image):
    arr = drags_to_array([DRAG_A])
    arr[0, 0, 2] += 0.2
    with pytest.raises(DragError, match="frame 0"):
        tiny_pipe(rgb_image, arr, num_inference_steps=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_frames": 1}, "num_frames"),
        ({"max_guidance_scale": float("nan")}, "max_guidance_scale"),
        ({"num_videos_per_prompt": 0}, "num_videos_per_prompt"),
        ({"decode_chunk_size": 0}, "decode_chunk_size"),
        ({"output_type": "mp4"}, "output_type"),
        ({"crop": "centre"}, "crop"),
        ({"callback_on_step_end_tensor_inputs": ["image"]}, "not available"),
    ],
)
def test_bad_settings(tiny_pipe, rgb_image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_pipe(rgb_image, [DRAG_A], **kwargs)
