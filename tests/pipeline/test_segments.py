"""Longer clips: segments chained through the real tiny pipeline (a spy records what each call got)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from puppet_master.cli import main
from puppet_master.drags import Drag
from puppet_master.pipeline import GenerationCancelled
from puppet_master.segments import generate_segments, segment_drags, segment_frames


class Spy:
    """The real pipeline, with the arguments of each call kept."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []

    def __call__(self, image, drags, **kwargs):
        self.calls.append({"image": image, "drags": list(drags), **kwargs})
        return self.pipe(image, drags, **kwargs)


def test_two_segments_give_27_frames_chained_through_the_last_frame(tiny_pipe, rgb_image):
    spy = Spy(tiny_pipe)
    drag = Drag.from_path([(0.3 + 0.4 * t, 0.5) for t in np.linspace(0, 1, segment_frames(2))])
    out = generate_segments(spy, rgb_image, [drag, Drag((0.5, 0.2), (0.5, 0.6))], 2, seed=3, num_inference_steps=1)
    assert len(out.frames) == 27 and len(spy.calls) == 2
    # the second segment's reference is frame 13 of the first (the joint frame is not repeated)
    assert np.array_equal(np.asarray(spy.calls[1]["image"]), np.asarray(out.frames[13]))
    assert spy.calls[1]["crop"] == "none"
    # its drags start where the first segment's trajectories ended
    first, second = spy.calls[0]["drags"], spy.calls[1]["drags"]
    for a, b in zip(first, second, strict=True):
        assert b.start == pytest.approx(a.end) and len(a.path) == len(b.path) == 14
    assert out.drags.shape == (27, 5, 4)
    assert np.allclose(out.drags[14, :2, 0:2], out.drags[13, :2, 2:4], atol=1e-6)
    assert [s["reference"] for s in out.segments] == ["input image", "frame 13"]
    # one seed makes the whole clip again
    again = generate_segments(tiny_pipe, rgb_image, [drag], 2, seed=3, num_inference_steps=1)
    same = generate_segments(tiny_pipe, rgb_image, [drag], 2, seed=3, num_inference_steps=1)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(again.frames, same.frames, strict=True))


def test_a_still_piece_is_left_out_and_a_cancel_in_the_second_segment_ends_the_clip(tiny_pipe, rgb_image):
    moving_then_still = Drag.from_path([(min(0.3 + 0.05 * i, 0.6), 0.5) for i in range(27)])
    assert [len(p) for p in segment_drags([moving_then_still], 2)] == [1, 0]
    calls = []

    def cancel_in_second(pipe, step, timestep, kwargs):
        calls.append(step)
        if len(calls) > 2:  # the first segment has 2 steps
            raise GenerationCancelled(step, 2)
        return {}

    with pytest.raises(GenerationCancelled):
        generate_segments(tiny_pipe, rgb_image, [Drag((0.3, 0.5), (0.6, 0.5))], 2, seed=0, num_inference_steps=2,
                          callback_on_step_end=cancel_in_second)
    assert len(calls) == 3
    with pytest.raises(ValueError, match="segments must be 1-8"):
        segment_drags([], 9)


def test_generate_segments_writes_the_long_clip_and_what_each_segment_used(tmp_path, object_image):
    image = tmp_path / "object.png"
    object_image.save(image)
    out = tmp_path / "long"
    assert main(["generate", "--tiny", "--image", str(image), "--drag", "0.5,0.5:0.7,0.4", "--steps", "1",
                 "--device", "cpu", "--seed", "2", "--segments", "2", "--out", str(out)]) == 0
    assert len(list(out.glob("frame_*.png"))) == 27
    settings = json.loads((out / "settings.json").read_text())
    assert settings["num_frames"] == 27 and settings["segments"] == 2
    assert [s["reference"] for s in settings["segment_inputs"]] == ["input image", "frame 13"]
    assert settings["segment_inputs"][1]["drags"][0]["start"] == pytest.approx(
        settings["segment_inputs"][0]["drags"][0]["end"])


def test_a_trajectory_of_the_whole_clip_is_taken_as_given(tmp_path, object_image):
    from puppet_master import protocol

    image = tmp_path / "object.png"
    object_image.save(image)
    points = [[0.4 + 0.2 * np.sin(np.pi * t), 0.5] for t in np.linspace(0, 1, 27)]  # out and back
    drags_file = tmp_path / "drags.json"
    drags_file.write_text(json.dumps([{"path": points}]))
    base = ["generate", "--tiny", "--image", str(image), "--drags-file", str(drags_file), "--steps", "1",
            "--device", "cpu", "--seed", "1"]
    assert main([*base, "--out", str(tmp_path / "one")]) == 1  # 27 points are not one 14-frame clip
    assert main([*base, "--segments", "2", "--out", str(tmp_path / "two")]) == 0
    inputs = json.loads((tmp_path / "two" / "settings.json").read_text())["segment_inputs"]
    assert inputs[0]["drags"][0]["path"][-1] == pytest.approx(points[13])  # padded to a square: x and y = 0.5 keep their values
    assert inputs[1]["drags"][0]["path"][-1] == pytest.approx(points[26])
    # the protocol takes such a path only for a job of that many frames
    two = protocol.JobSettings(segments=2)
    assert len(protocol.drags_to_json([{"path": points}], frames=two.frames_per_variant)[0]["path"]) == 27
    with pytest.raises(protocol.ProtocolError, match="27 points"):
        protocol.drags_to_json([{"path": points}])
