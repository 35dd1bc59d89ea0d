"""Measurements of sampled drags that tests compare against the tracks, computed independently."""

import numpy as np

from dataset_tools.drag_schema import sample_array
from puppet_master import cameras


def view_reach(clip, sample) -> np.ndarray:
    """Every visible point's 2D reach in the sample's view and window (pixels at 256x256)."""
    k, w2c, (w, _h) = cameras.load_camera_arrays(clip.cameras)
    frames, view = sample["frames"], sample["view"]
    seen = clip.tracks.visibility[view, frames[0]]
    px, _ = cameras.project(clip.tracks.points[frames][:, seen], k[view], w2c[view])
    reach = np.full(len(seen), np.nan)
    reach[seen] = np.linalg.norm(px - px[:1], axis=-1).max(axis=0) / w * 256
    return reach


def drag_reach(sample) -> np.ndarray:
    arr = sample_array(sample)
    return np.linalg.norm(arr[..., 2:] - arr[:1, :, 2:], axis=-1).max(axis=0)[: len(sample["drag_info"])] * 256
