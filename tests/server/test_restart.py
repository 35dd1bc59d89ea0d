"""A server restart loses nothing: finished results are fetchable, an interrupted job is queued again."""

from __future__ import annotations

import json

from server_helpers import DRAGS, JOB_TIMEOUT_S, ServerProcess, png_bytes, run_job

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.protocol import JobSettings

LONG = JobSettings(num_inference_steps=200, min_guidance_scale=1.0, max_guidance_scale=1.0, seed=5, preview_every=0)


def test_fetch_after_restart_and_interrupted_job_resumes(tmp_path):
    results = tmp_path / "results"
    first = ServerProcess(results).start()
    try:
        first.wait_workers(1)
        client = first.client()
        done = run_job(client)
        assert isinstance(done, pm.Result)
        client.submit(png_bytes(), DRAGS, LONG)
        accepted = client.wait_for(lambda e: isinstance(e, pm.Accepted), 30)
        assert client.wait_for(lambda e: isinstance(e, pm.Progress) and e.step >= 1, JOB_TIMEOUT_S)
    finally:
        assert first.stop() == 0  # SIGTERM: a clean shutdown
    record = json.loads((results / accepted.job_id / "job.json").read_text())
    assert record["state"] == protocol.RUNNING  # left for the next start, not lost

    # the same client notices the server is gone, then back
    assert client.wait_for(lambda e: isinstance(e, pm.ConnectionLost), protocol.PEER_TIMEOUT_S + 2)
    port = first.endpoint.rsplit(":", 1)[1]
    second = ServerProcess(results, bind=f"tcp://127.0.0.1:{port}").start()
    try:
        assert client.wait_for(lambda e: isinstance(e, pm.ConnectionRestored), 30)
        # the client re-attaches to its unfinished job by itself; the server queued it again
        state = client.wait_for(lambda e: isinstance(e, pm.JobState) and e.job_id == accepted.job_id, 30)
        assert state.state in (protocol.QUEUED, protocol.RUNNING)
        with second.client() as other:  # the job's token still owns it after the restart; nothing else does
            other.fetch(done.job_id)
            refused = other.wait_for(lambda e: isinstance(e, pm.RequestFailed | pm.Result), 30)
            assert isinstance(refused, pm.RequestFailed) and refused.code == protocol.NOT_OWNER, refused
            other.fetch(done.job_id, client.tokens[done.job_id])
            again = other.wait_for(lambda e: isinstance(e, pm.Result), 30)
        assert again.frames == done.frames and again.settings["seed"] == done.settings["seed"]
        client.cancel(accepted.job_id)
        final = client.wait_for(lambda e: isinstance(e, pm.Cancelled | pm.Result | pm.JobError)
                                and e.job_id == accepted.job_id, JOB_TIMEOUT_S)
        assert isinstance(final, pm.Cancelled), final
    finally:
        client.close()
        assert second.stop() == 0
