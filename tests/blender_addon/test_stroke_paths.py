"""Drag shapes, timing and trajectories (the add-on's plain logic, no bpy)."""

from __future__ import annotations

import itertools
import math

import pytest

from blender_addon.core import drag_editing, drag_paths, overlay_geometry

# a 200x200 square whose top-left corner is at region pixel (100, 300)
MAPPING = overlay_geometry.SquareMapping((100.0, 300.0), (300.0, 300.0), (100.0, 100.0))


def _gaps(points):
    return [math.dist(a, b) for a, b in itertools.pairwise(points)]


def test_a_curved_stroke_becomes_14_points_spaced_evenly_along_it():
    arc = [(150 + 80 * math.sin(a), 250 - 80 + 80 * math.cos(a)) for a in [i * math.pi / 2 / 60 for i in range(61)]]
    shape = drag_paths.stroke_shape(arc)
    assert len(shape) == drag_paths.SHAPE_POINTS and shape[0] == arc[0] and shape[-1] == arc[-1]
    traj = drag_paths.trajectory(shape)
    assert len(traj) == 14 and traj[0] == arc[0] and traj[-1] == arc[-1]
    gaps = _gaps(traj)
    assert max(gaps) - min(gaps) < 0.02 * max(gaps)  # arc-length spacing
    radius = [math.dist(p, (150, 170)) for p in traj]  # every point on the drawn quarter circle
    assert max(radius) - min(radius) < 0.5


def test_a_straight_stroke_stays_straight():
    wobbly = [(100 + t, 200 + (1.0 if t % 2 else -1.0)) for t in range(0, 101, 5)]  # within 3 px of its chord
    wobbly[0], wobbly[-1] = (100, 200), (200, 200)
    assert drag_paths.stroke_shape(wobbly) == [(100, 200), (200, 200)]
    traj = drag_paths.trajectory([(0.2, 0.5), (0.8, 0.5)])
    assert all(y == 0.5 for _, y in traj)
    assert [x for x, _ in traj] == pytest.approx([0.2 + 0.6 * k / 13 for k in range(14)])


@pytest.mark.parametrize("timing, mid", [("LINEAR", 0.5), ("EASE_IN", 0.25), ("EASE_OUT", 0.75),
                                         ("EASE_IN_OUT", 0.5)])
def test_timing_profiles_place_the_frames_along_the_path(timing, mid):
    fractions = drag_paths.timing_fractions(timing, 3)
    assert fractions[0] == 0 and fractions[-1] == 1 and fractions[1] == pytest.approx(mid)
    f14 = drag_paths.timing_fractions(timing)
    assert f14 == sorted(f14) and len(f14) == 14
    if timing == "EASE_IN_OUT":  # slow at both ends, fast in the middle
        gaps = _gaps([(f, 0) for f in f14])
        assert gaps[0] < gaps[6] > gaps[-1]


def test_a_custom_timing_is_normalised_and_never_walks_back():
    samples = [10, 10, 12, 11, 15, 20, 30, 40, 50, 60, 65, 68, 69, 70]  # an F-curve with a dip
    fractions = drag_paths.timing_fractions("CUSTOM", 14, samples)
    assert fractions[0] == 0 and fractions[-1] == 1 and fractions == sorted(fractions)
    assert fractions[2] == pytest.approx(2 / 60) and fractions[3] == fractions[2]
    with pytest.raises(ValueError, match="end higher"):
        drag_paths.timing_fractions("CUSTOM", 14, [5.0] * 14)
    with pytest.raises(ValueError, match="unknown timing"):
        drag_paths.timing_fractions("BOUNCY")


def test_moving_an_end_keeps_the_curve_and_the_middle_handle_bends_it():
    shape = drag_paths.resample([(0.2, 0.5), (0.5, 0.3), (0.8, 0.5)], 9)
    moved = drag_paths.moved_shape(shape, (0.2, 0.5), (0.5, 0.5))  # half as long: the same curve, scaled
    assert moved[0] == (0.2, 0.5) and moved[-1] == (0.5, 0.5)
    assert drag_paths.point_at(moved, 0.5) == pytest.approx((0.35, 0.4), abs=1e-9)
    bent = drag_paths.bent_shape([(0.2, 0.5), (0.8, 0.5)], (0.5, 0.2))
    assert bent[0] == (0.2, 0.5) and bent[-1] == (0.8, 0.5)
    assert drag_paths.point_at(bent, 0.5)[1] < 0.3


def test_the_drag_tool_turns_a_curved_stroke_into_a_shape_and_edits_it():
    editor = drag_editing.DragEditor(max_drags=5)
    assert editor.press(MAPPING, 150, 250) == drag_editing.ADDED
    for a in [i * math.pi / 40 for i in range(1, 41)]:  # a half circle, upwards
        editor.move(MAPPING, 200 - 50 * math.cos(a), 250 - 50 * math.sin(a))
    assert editor.release(MAPPING) and not editor.discarded
    (start, end), shape = editor.drags[0], editor.shapes[0]
    assert len(shape) == drag_paths.SHAPE_POINTS and shape[0] == start and shape[-1] == end
    assert end == pytest.approx((0.75, 0.25), abs=1e-6)
    # the overlay: a polyline shaft, a bend handle at its middle, and a tick per frame
    arrow = overlay_geometry.arrow_shapes(MAPPING, editor.drags, editor.shapes, [drag_paths.trajectory(shape)])[0]
    assert len(arrow.path) == drag_paths.SHAPE_POINTS and len(arrow.ticks) == 14
    assert arrow.middle == pytest.approx((200, 200), abs=1.0)
    # the bend handle pulls the middle; the ends stay
    assert editor.press(MAPPING, *arrow.middle) == drag_editing.GRABBED and editor.grab == (0, "middle")
    editor.move(MAPPING, 200, 180)
    editor.release(MAPPING)
    assert editor.drags[0] == (start, end) and drag_paths.point_at(editor.shapes[0], 0.5)[1] == pytest.approx(0.6, abs=0.01)
    # a straight stroke stays two points
    editor.press(MAPPING, 150, 150)
    editor.move(MAPPING, 200, 151)
    editor.move(MAPPING, 250, 150)
    editor.release(MAPPING)
    assert len(editor.shapes[1]) == 2
