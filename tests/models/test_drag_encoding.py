"""encode_drags against a direct per-drag reference, unused slots, clipping and input errors."""

import pytest
import torch
from conftest import random_drags

from puppet_master.models.drag_encoding import encode_drags


def _reference(drags: torch.Tensor, height: int, width: int, num_drags: int) -> torch.Tensor:
    """The spec's encoding written point by point (slow, obviously correct)."""
    batch, frames, slots, _ = drags.shape
    out = torch.full((batch, frames, 6 * num_drags, height, width), -1.0)
    for b in range(batch):
        for n in range(frames):
            for k in range(slots):
                row = drags[b, n, k]
                if not row.ne(0).any():
                    continue
                final = drags[b, -1, k, 2:]
                for channel, (x, y) in enumerate([row[:2], row[2:], final]):
                    sx, sy = float(x) * width, float(y) * height
                    ix = min(max(round(sx - 0.5), 0), width - 1)
                    iy = min(max(round(sy - 0.5), 0), height - 1)
                    out[b, n, 6 * k + 2 * channel, iy, ix] = sx - ix
                    out[b, n, 6 * k + 2 * channel + 1, iy, ix] = sy - iy
    return out


@pytest.mark.parametrize(("height", "width"), [(8, 8), (5, 7), (1, 3)])
def test_matches_point_by_point_reference(height, width):
    drags = random_drags(2, 4, 3, used=2, generator=torch.Generator().manual_seed(1))
    drags[0, :, 0, 2:] = torch.tensor([1.08, -0.04])  # outside the crop: clipped to the border cells
    encoded = encode_drags(drags, height, width, num_drags=5)
    assert encoded.shape == (2, 4, 30, height, width)
    torch.testing.assert_close(encoded, _reference(drags, height, width, 5), atol=1e-6, rtol=0)


def test_unused_slot_is_minus_one_everywhere_and_used_slot_is_not():
    drags = random_drags(1, 3, 4, used=4, generator=torch.Generator().manual_seed(2))
    drags[:, :, 2] = 0
    encoded = encode_drags(drags, 6, 6).view(1, 3, 4, 6, 6, 6)
    assert torch.all(encoded[:, :, 2] == -1)
    assert torch.all((encoded[:, :, [0, 1, 3]] != -1).flatten(3).sum(-1) >= 1)


def test_padding_to_num_drags_adds_unused_slots():
    drags = random_drags(1, 2, 2, used=2, generator=torch.Generator().manual_seed(3))
    padded = encode_drags(drags, 4, 4, num_drags=5)
    torch.testing.assert_close(padded[:, :, :12], encode_drags(drags, 4, 4))
    assert torch.all(padded[:, :, 12:] == -1)


def test_start_cell_and_offsets_of_one_drag():
    drags = torch.tensor([0.30, 0.55, 0.30, 0.55]).view(1, 1, 1, 4)
    encoded = encode_drags(drags, 4, 4)[0, 0]
    # x: 0.3 * 4 = 1.2 -> cell 1, offset 0.2; y: 0.55 * 4 = 2.2 -> cell 2, offset 0.2
    torch.testing.assert_close(encoded[:, 2, 1], torch.full((6,), 0.2))
    assert (encoded != -1).sum() == 6


@pytest.mark.parametrize(
    ("drags", "num_drags", "error", "message"),
    [
        (torch.zeros(1, 2, 3), None, ValueError, "shape"),
        (torch.zeros(1, 2, 3, 4, dtype=torch.int64), None, TypeError, "floating"),
        (torch.zeros(1, 2, 6, 4), 5, ValueError, "only 5"),
        (torch.full((1, 2, 1, 4), float("nan")), None, ValueError, "NaN"),
        ([[0.0, 0.0, 0.0, 0.0]], None, TypeError, "torch.Tensor"),
    ],
)
def test_bad_drags_raise_clear_errors(drags, num_drags, error, message):
    with pytest.raises(error, match=message):
        encode_drags(drags, 4, 4, num_drags=num_drags)
