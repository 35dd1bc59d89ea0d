import numpy as np
import pytest

from puppet_master.drags import (
    Drag,
    DragError,
    active_mask,
    array_to_drags,
    drags_to_array,
    interpolate,
    parse_drag,
    pixels_to_normalized,
    validate_drag_array,
)


def test_start_end_becomes_linear_trajectory_landing_on_end():
    arr = drags_to_array([Drag((0.2, 0.3), (0.6, 0.1))])
    assert arr.shape == (14, 5, 4) and arr.dtype == np.float32
    np.testing.assert_allclose(arr[:, 0, 0:2], np.tile([0.2, 0.3], (14, 1)), atol=1e-7)
    np.testing.assert_allclose(arr[0, 0, 2:4], [0.2, 0.3], atol=1e-7)
    np.testing.assert_allclose(arr[13, 0, 2:4], [0.6, 0.1], atol=1e-7)
    k = 5
    np.testing.assert_allclose(arr[k, 0, 2:4], np.array([0.2, 0.3]) + k / 13 * np.array([0.4, -0.2]), atol=1e-6)
    assert not arr[:, 1:].any(), "unused slots must stay all zeros"


def test_interpolate_any_frame_count():
    traj = interpolate((0, 0), (1, 2), num_frames=3)
    np.testing.assert_allclose(traj, [[0, 0], [0.5, 1], [1, 2]])


@pytest.mark.parametrize(
    "drags, message",
    [
        ([Drag((0.1, 0.1), (0.2, 0.2))] * 6, "at most 5"),
        ([Drag((float("nan"), 0.1), (0.2, 0.2))], "not finite"),
        ([Drag((0.1, 0.1), (1.2, 0.2))], "outside the image"),
        ([Drag((0.0, 0.0), (0.0, 0.0))], "drag 1 has no length"),
        ([Drag((0.1, 0.1), (0.2, 0.2)), Drag((0.4, 0.5), (0.4, 0.5))], "drag 2 has no length"),
    ],
)
def test_bad_user_drags_are_named(drags, message):
    with pytest.raises(DragError, match=message):
        drags_to_array(drags)


def test_parse_and_pixels():
    drag = parse_drag("0.5,0.25:0.75,0.5")
    assert drag == Drag((0.5, 0.25), (0.75, 0.5))
    assert pixels_to_normalized(Drag((128, 64), (256, 0)), 256, 128) == Drag((0.5, 0.5), (1.0, 0.0))
    with pytest.raises(DragError, match="X0,Y0:X1,Y1"):
        parse_drag("0.5;0.2")


def test_validate_drag_array_accepts_data_and_rejects_broken_rows():
    arr = drags_to_array([Drag((0.2, 0.3), (0.6, 0.1)), Drag((0.5, 0.5), (0.5, 0.9))])
    validate_drag_array(arr)
    validate_drag_array(np.stack([arr, np.zeros_like(arr)]))
    broken = arr.copy()
    broken[3, 0, 0] = 0.9
    with pytest.raises(DragError, match="start point"):
        validate_drag_array(broken)
    with pytest.raises(DragError, match="NaN"):
        validate_drag_array(np.full((14, 5, 4), np.nan, dtype=np.float32))
    with pytest.raises(DragError, match="at most 5"):
        validate_drag_array(np.zeros((14, 6, 4), dtype=np.float32))
    with pytest.raises(DragError, match="shape"):
        validate_drag_array(np.zeros((14, 5), dtype=np.float32))


def test_active_mask_and_round_trip():
    drags = [Drag((0.2, 0.3), (0.6, 0.1)), Drag((0.4, 0.4), (0.4, 0.8))]
    arr = drags_to_array(drags)
    assert active_mask(arr).tolist() == [True, True, False, False, False]
    back = array_to_drags(arr)
    for a, b in zip(back, drags, strict=True):
        np.testing.assert_allclose(a.start + a.end, b.start + b.end, atol=1e-6)
