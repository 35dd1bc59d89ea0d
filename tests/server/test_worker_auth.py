"""Only workers that show the worker secret get jobs; a worker id cannot be taken over; a result
that is not 14 PNGs of 256x256 is never stored. The broker runs alone (`serve --workers 0`)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from PIL import Image
from server_helpers import DRAGS, FAST, ScriptedWorker, ServerProcess, noise_frames, png_bytes

from puppet_master import client as pm
from puppet_master import protocol


@pytest.fixture
def broker_only(tmp_path):
    server = ServerProcess(tmp_path / "results", workers=0).start()
    server.secret = server.worker_secret_file.read_text().strip()
    yield server
    server.stop()


def _submit(c: pm.GenerationClient) -> pm.Accepted:
    c.submit(png_bytes(), DRAGS, FAST)
    accepted = c.wait_for(lambda e: isinstance(e, pm.Accepted), 10)
    assert accepted is not None
    return accepted


def test_a_worker_without_the_secret_gets_no_job(broker_only):
    for secret in (None, "f" * 64):
        fake = ScriptedWorker(broker_only.worker_endpoint, secret, worker_id=f"fake-{secret}")
        try:
            refused = fake.next_message()
            assert refused.type == protocol.SHUTDOWN and "worker secret" in refused.header["reason"]
            with broker_only.client() as c:
                _submit(c)
                assert broker_only.server_info()["workers"] == 0
            assert fake.next_message(timeout_s=1.0) is None  # the queued job is not sent to it
        finally:
            fake.close()
    genuine = ScriptedWorker(broker_only.worker_endpoint, broker_only.secret)
    try:
        assert genuine.next_message().type == protocol.JOB  # the waiting jobs go to a worker with the secret
    finally:
        genuine.close()


def test_a_worker_id_in_use_cannot_be_taken_over(broker_only):
    genuine = ScriptedWorker(broker_only.worker_endpoint, broker_only.secret, worker_id="gpu0", pid=100)
    try:
        with broker_only.client() as c:
            job = _submit(c)
            assert genuine.next_message().header["job"] == job.job_id
            impostor = ScriptedWorker(broker_only.worker_endpoint, broker_only.secret, worker_id="gpu0", pid=666)
            try:
                refused = impostor.next_message()
                assert refused.type == protocol.SHUTDOWN and "in use" in refused.header["reason"]
            finally:
                impostor.close()
            # the genuine worker's job goes on and ends with its result
            genuine.send(protocol.RESULT, {"job": job.job_id, "settings": {"seed": 1}}, noise_frames())
            assert isinstance(c.wait_for(lambda e: isinstance(e, pm.Result | pm.JobError), 10), pm.Result)
    finally:
        genuine.close()


def _png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("frames, why", [
    ([b"NOT A PNG"] * 14, "frame 0: the image must be a PNG"),
    ([_png(64)] * 14, "frame 0 is 64x64, not 256x256"),
    ([_png(256)] * 13, "13 frames instead of 14"),
    ([_png(256)] * 13 + [_png(256)[:-30]], "frame 13 is not a sound PNG"),
])
def test_a_broken_result_is_refused_and_not_stored(broker_only, frames, why):
    worker = ScriptedWorker(broker_only.worker_endpoint, broker_only.secret)
    try:
        with broker_only.client() as c:
            job = _submit(c)
            assert worker.next_message().header["job"] == job.job_id
            worker.send(protocol.RESULT, {"job": job.job_id, "settings": {"seed": 1}}, frames)
            error = c.wait_for(lambda e: isinstance(e, pm.Result | pm.JobError), 10)
        assert isinstance(error, pm.JobError) and error.code == protocol.GENERATION_FAILED, error
        assert why in error.message
        folder = broker_only.results / job.job_id
        assert not list(folder.glob("frame_*.png"))
        assert json.loads((folder / "job.json").read_text())["state"] == protocol.FAILED_STATE
    finally:
        worker.close()


def test_the_worker_command_says_why_it_was_refused(broker_only, tmp_path):
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("0" * 64)
    out = subprocess.run([sys.executable, "-m", "puppet_master", "worker", "--connect", broker_only.worker_endpoint,
                          "--tiny", "--worker-secret", str(wrong)], capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stderr
    assert "refused this worker: it did not show the worker secret" in out.stderr
