"""Jobs end to end on a real tiny server: many clients, two workers, cancel, fetch, a killed worker."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image
from server_helpers import DRAGS, FAST, JOB_TIMEOUT_S, png_bytes, run_job

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.protocol import JobSettings

#: long enough that a job is surely still running when the test acts on it
LONG = JobSettings(num_inference_steps=200, min_guidance_scale=1.0, max_guidance_scale=1.0, seed=3, preview_every=1)


def _wait_progress(c: pm.GenerationClient, job_id: str, min_step: int = 1) -> pm.Progress:
    event = c.wait_for(lambda e: isinstance(e, pm.Progress) and e.job_id == job_id and e.step >= min_step,
                       JOB_TIMEOUT_S)
    assert event is not None, f"no progress for job {job_id}"
    return event


def _accepted(c: pm.GenerationClient, settings: JobSettings = FAST) -> pm.Accepted:
    c.submit(png_bytes(), DRAGS, settings)
    event = c.wait_for(lambda e: isinstance(e, pm.Accepted | pm.Rejected), 30)
    assert isinstance(event, pm.Accepted), event
    return event


@pytest.fixture
def second_worker(server):
    """A second CPU worker joining the shared server over its worker endpoint (scale-out)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "puppet_master", "worker", "--connect", server.worker_endpoint, "--tiny",
         "--worker-secret", str(server.worker_secret_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        server.wait_workers(2)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while server.server_info()["workers"] > 1 and time.monotonic() < deadline:
        time.sleep(0.2)


@pytest.mark.slow
def test_twenty_clients_at_once_on_two_workers(server, second_worker):
    clients = [server.client() for _ in range(20)]
    try:
        for c in clients:
            c.submit(png_bytes(color=(10 * len(c.jobs), 90, 200)), DRAGS, FAST)
        finals: dict[int, pm.Event] = {}
        accepted: dict[int, pm.Accepted] = {}
        deadline = time.monotonic() + 20 * JOB_TIMEOUT_S
        while len(finals) < len(clients) and time.monotonic() < deadline:
            for i, c in enumerate(clients):
                for event in c.poll(timeout_ms=5):
                    if isinstance(event, pm.Accepted):
                        accepted[i] = event
                    elif isinstance(event, pm.Result | pm.JobError | pm.Cancelled | pm.Rejected):
                        finals[i] = event
    finally:
        for c in clients:
            c.close()
    assert len(accepted) == 20 and all(isinstance(e, pm.Result) for e in finals.values()), finals
    assert len({a.job_id for a in accepted.values()}) == 20
    for event in finals.values():
        assert len(event.frames) == 14
        assert Image.open(io.BytesIO(event.frames[0])).size == (256, 256)
        assert event.info["untrained"] is True
    # FIFO: jobs start in acceptance order, and each worker ran its jobs in that order
    by_start = sorted(finals.values(), key=lambda e: e.info["start_index"])
    assert [e.info["seq"] for e in by_start] == sorted(e.info["seq"] for e in by_start)
    workers = {e.info["worker"] for e in finals.values()}
    assert len(workers) == 2, f"both workers should have taken jobs, got {workers}"


def test_cancel_queued_and_running_jobs(server):
    with server.client() as c:
        running = _accepted(c, LONG)
        queued = _accepted(c, LONG)
        c.cancel(queued.job_id)
        assert c.wait_for(lambda e: isinstance(e, pm.Cancelled) and e.job_id == queued.job_id, 10)
        progress = _wait_progress(c, running.job_id)
        assert progress.total == LONG.num_inference_steps and progress.eta_s is not None
        preview = Image.open(io.BytesIO(progress.preview_png))  # preview_every=1: every step has one
        assert preview.format == "PNG" and max(preview.size) <= protocol.MAX_PREVIEW_SIDE
        c.cancel(running.job_id)
        final = c.wait_for(lambda e: isinstance(e, pm.Cancelled | pm.Result | pm.JobError)
                           and e.job_id == running.job_id, 60)
        assert isinstance(final, pm.Cancelled), final
        c.cancel(running.job_id)
        again = c.wait_for(lambda e: isinstance(e, pm.RequestFailed), 10)
        assert again.code == protocol.JOB_FINISHED
        c.fetch(queued.job_id)
        assert c.wait_for(lambda e: isinstance(e, pm.Cancelled) and e.job_id == queued.job_id, 10)
    for job in (running, queued):
        record = json.loads((server.results / job.job_id / "job.json").read_text())
        assert record["state"] == protocol.CANCELLED_STATE


def test_fetch_after_the_client_disconnected_mid_job(server, tmp_path):
    with server.client() as first:
        job = _accepted(first)
    # the submitter is gone; the job still runs and its owner can fetch it from a new connection with the token
    with server.client() as second:
        second.fetch(job.job_id, job.token)
        answer = second.wait_for(lambda e: isinstance(e, pm.JobState | pm.Result), 30)
        if isinstance(answer, pm.JobState):
            assert answer.state in (protocol.QUEUED, protocol.RUNNING)
            answer = second.wait_for(lambda e: isinstance(e, pm.Result | pm.JobError), JOB_TIMEOUT_S)
        assert isinstance(answer, pm.Result), answer
    folder = server.results / job.job_id  # stored before it was announced
    assert answer.frames == [(folder / f"frame_{i:04d}.png").read_bytes() for i in range(14)]
    assert (folder / "settings.json").exists()
    with server.client() as third:  # and again, from disk; without the token it is someone else's job
        third.fetch(job.job_id)
        refused = third.wait_for(lambda e: isinstance(e, pm.RequestFailed | pm.Result), 30)
        assert isinstance(refused, pm.RequestFailed) and refused.code == protocol.NOT_OWNER, refused
        third.fetch(job.job_id, job.token)
        again = third.wait_for(lambda e: isinstance(e, pm.Result), 30)
        assert again.frames == answer.frames and again.settings["seed"] == FAST.seed
        third.fetch("0" * 32)
        unknown = third.wait_for(lambda e: isinstance(e, pm.RequestFailed), 10)
        assert unknown.code == protocol.UNKNOWN_JOB
    # `submit --job` fetches it too and writes what `generate` writes
    out = subprocess.run([sys.executable, "-m", "puppet_master", "submit", "--endpoint", server.endpoint, "--job",
                          job.job_id, "--token", job.token, "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"frame_{i:04d}.png" for i in range(14)] + ["preview.gif", "settings.json"]
    written_frame = Image.open(tmp_path / "out" / "frame_0003.png")
    assert written_frame.tobytes() == Image.open(io.BytesIO(answer.frames[3])).tobytes()
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert settings["job"] == job.job_id and settings["seed"] == FAST.seed and "untrained" in settings["note"]
    # the worker sends the results folder's preview.gif just after the result
    deadline = time.monotonic() + 120
    while not (folder / "preview.gif").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Image.open(folder / "preview.gif").n_frames == 14


def test_killed_worker_fails_its_job_within_the_heartbeat_timeout_and_the_next_job_succeeds(server):
    with server.client() as c:
        job = _accepted(c, LONG)
        _wait_progress(c, job.job_id)
        (pid,) = [p for p in server.worker_pids() if p in _children(server.process.pid)]
        os.kill(pid, signal.SIGKILL)
        error = c.wait_for(lambda e: isinstance(e, pm.JobError | pm.Result | pm.Cancelled), 30)
        assert isinstance(error, pm.JobError) and error.job_id == job.job_id, error
        assert error.code == protocol.WORKER_LOST
        assert isinstance(run_job(c), pm.Result)  # the replacement worker takes the next job


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}
