"""Live previews: a job's progress events carry the decoded estimate of its frames, in step order,
and `submit --preview-file` keeps the newest one on disk."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from PIL import Image
from server_helpers import JOB_TIMEOUT_S, png_bytes

from puppet_master import client as pm
from puppet_master.protocol import JobSettings


def test_a_20_step_job_delivers_previews_in_order(server):
    settings = JobSettings(num_inference_steps=20, min_guidance_scale=1.0, max_guidance_scale=1.0, seed=4,
                           preview_every=5)
    previews = []
    with server.client() as c:
        c.submit(png_bytes(), [((0.5, 0.5), (0.6, 0.5))], settings)
        final = c.wait_for(lambda e: isinstance(e, pm.Result | pm.JobError | pm.Rejected), JOB_TIMEOUT_S,
                           lambda e: previews.append(e) if isinstance(e, pm.Progress) and e.preview_png else None)
    assert isinstance(final, pm.Result), final
    steps = [p.step for p in previews]
    assert steps == sorted(steps) and len(steps) >= 3 and steps[-1] <= 20
    assert all(Image.open(io.BytesIO(p.preview_png)).format == "PNG" for p in previews)


def test_submit_keeps_the_newest_preview_in_a_file(server, tmp_path):
    image = tmp_path / "in.png"
    image.write_bytes(png_bytes(64))
    preview = tmp_path / "live.png"
    done = subprocess.run([sys.executable, "-m", "puppet_master", "submit", "--endpoint", server.endpoint,
                           "--image", str(image), "--drag", "0.5,0.5:0.6,0.5", "--steps", "12", "--min-guidance", "1",
                           "--max-guidance", "1", "--out", str(tmp_path / "out"), "--preview-file", str(preview),
                           "--preview-every", "3"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert Image.open(preview).format == "PNG" and not preview.with_name("live.png.part").exists()
    assert len(list((tmp_path / "out").glob("frame_*.png"))) == 14
