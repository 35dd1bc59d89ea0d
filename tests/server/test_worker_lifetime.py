"""The workers `serve` starts do not outlive it: a SIGKILLed broker leaves no worker behind (on a
GPU such a ghost would hold a card's memory)."""

from __future__ import annotations

import os
import signal
import time

from server_helpers import ServerProcess


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (dead) parent's reaper counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_sigkilled_broker_leaves_no_worker_behind(tmp_path):
    server = ServerProcess(tmp_path / "results", workers=2).start()
    try:
        deadline = time.monotonic() + 120
        pids: list[int] = []
        while len(pids) < 2 and time.monotonic() < deadline:
            pids = server.worker_pids()
            time.sleep(0.2)
        assert len(pids) == 2, server.log()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)], "workers outlived their broker"
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.stop()


def test_workers_killed_mid_job_are_replaced_and_the_server_goes_on(tmp_path):
    """Three workers SIGKILLed in turn while running a job: each job ends worker_lost, a replacement
    starts, and the next job succeeds (deaths after readiness are not start failures)."""
    from server_helpers import FAST, JOB_TIMEOUT_S, png_bytes, run_job

    from puppet_master import client as pm
    from puppet_master import protocol
    from puppet_master.protocol import JobSettings

    long_job = JobSettings(num_inference_steps=200, min_guidance_scale=1.0, max_guidance_scale=1.0, seed=3,
                           preview_every=1)
    server = ServerProcess(tmp_path / "results", workers=1).start()
    killed: list[int] = []
    try:
        with server.client() as c:
            for _ in range(3):
                c.submit(png_bytes(), [((0.5, 0.5), (0.6, 0.5))], long_job)
                accepted = c.wait_for(lambda e: isinstance(e, pm.Accepted | pm.Rejected), 30)
                assert isinstance(accepted, pm.Accepted), accepted
                job_id = accepted.job_id
                progress = c.wait_for(lambda e, job_id=job_id: isinstance(e, pm.Progress) and e.job_id == job_id
                                      and e.step >= 1, JOB_TIMEOUT_S)
                assert progress is not None, server.log()
                (pid,) = [p for p in server.worker_pids() if p not in killed]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                ended = c.wait_for(lambda e, job_id=job_id: isinstance(e, pm.JobError | pm.Result | pm.Cancelled)
                                   and e.job_id == job_id, 60)
                assert isinstance(ended, pm.JobError) and ended.code == protocol.WORKER_LOST, ended
            assert server.process.poll() is None, server.log()
            assert isinstance(run_job(c, FAST), pm.Result), server.log()
        assert "keep failing" not in server.log() and "not restarting" not in server.log()
    finally:
        server.stop()
