"""Variants and segments through `serve --tiny`: each variant is streamed as it finishes, the result
holds them all, and `submit` writes a folder per variant."""

from __future__ import annotations

import json
import subprocess
import sys

from server_helpers import DRAGS, JOB_TIMEOUT_S, png_bytes

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.protocol import JobSettings


def test_three_variants_of_two_segments_are_streamed_then_ended_once(server, tmp_path):
    settings = JobSettings(num_inference_steps=1, min_guidance_scale=1.0, max_guidance_scale=1.0, seed=4,
                           preview_every=0, variants=3, segments=2)
    events = []
    with server.client() as c:
        c.submit(png_bytes(), DRAGS, settings)
        final = c.wait_for(lambda e: isinstance(e, pm.Result | pm.JobError | pm.Rejected), JOB_TIMEOUT_S,
                           events.append)
        events += c.poll(500)
    assert isinstance(final, pm.Result), final
    streamed = [e for e in events if isinstance(e, pm.VariantReady)]
    assert [(v.index, v.seed) for v in streamed] == [(0, 4), (1, 5), (2, 6)]
    videos = final.variants()
    assert [len(v) for v in videos] == [27, 27, 27]
    assert [v.frames for v in streamed] == videos  # the result holds what was streamed
    assert videos[0] != videos[1]
    assert final.settings["seeds"] == [4, 5, 6] and final.settings["frames_per_variant"] == 27
    inputs = final.settings["segment_inputs"]  # per variant, per segment: what conditioned it
    assert [[s["reference"] for s in v] for v in inputs] == [["input image", "frame 13"]] * 3
    steps = [e.step for e in events if isinstance(e, pm.Progress)]
    assert steps[-1] == 6 and [e.total for e in events if isinstance(e, pm.Progress)][-1] == 6  # 3 x 2 x 1
    assert [e for e in events if isinstance(e, pm.Result)] == []  # exactly one ending
    # fetched again from disk: the same frames
    with server.client() as again:
        again.fetch(final.job_id, c.tokens[final.job_id])
        fetched = again.wait_for(lambda e: isinstance(e, pm.Result), 30)
    assert fetched.frames == final.frames and fetched.variants() == videos

    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "puppet_master", "submit", "--endpoint", server.endpoint, "--image",
                           str(_image(tmp_path)), "--drag", "0.5,0.5:0.7,0.45", "--steps", "1", "--seed", "8",
                           "--variants", "2", "--segments", "2", "--min-guidance", "1", "--max-guidance", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["job.json", "variant_00", "variant_01"]
    for index in range(2):
        folder = out / f"variant_{index:02d}"
        assert len(list(folder.glob("frame_*.png"))) == 27
        assert json.loads((folder / "settings.json").read_text())["seed"] == 8 + index


def test_a_cancel_in_the_second_segment_ends_the_job_once(server):
    settings = JobSettings(num_inference_steps=3, min_guidance_scale=1.0, max_guidance_scale=1.0, seed=1,
                           preview_every=0, segments=2)
    with server.client() as c:
        c.submit(png_bytes(), DRAGS, settings)
        progress = c.wait_for(lambda e: (isinstance(e, pm.Progress) and e.step > 3) or isinstance(e, pm.JobError),
                              JOB_TIMEOUT_S)
        assert isinstance(progress, pm.Progress) and progress.total == 6, progress  # in the second segment
        c.cancel(progress.job_id)
        final = c.wait_for(lambda e: isinstance(e, pm.Result | pm.JobError | pm.Cancelled), JOB_TIMEOUT_S)
        assert isinstance(final, pm.Cancelled), final
        assert not [e for e in c.poll(1000) if isinstance(e, pm.Result | pm.JobError | pm.Cancelled)]


def test_too_many_frames_are_refused_before_anything_runs():
    try:
        JobSettings.from_json({"variants": 8, "segments": 8})
    except protocol.ProtocolError as exc:
        assert exc.code == protocol.BAD_SETTINGS and "at most 224" in exc.message
    else:
        raise AssertionError("8 variants of 8 segments were accepted")
    assert "variants" not in JobSettings().to_json()  # servers from before variants refuse the key


def _image(tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(png_bytes())
    return path
