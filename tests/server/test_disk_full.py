"""A full results disk (a 20 MB tmpfs): the broker stays up, refuses submits with disk_full naming
the folder, keeps serving fetches, a job whose result cannot be stored ends once with disk_full,
nothing is left unindexed, and serve starts on a full disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from server_helpers import FAST, JOB_TIMEOUT_S, ServerProcess, png_bytes, run_job

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.protocol import JobSettings


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 20 MB tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk, leave_bytes: int) -> None:
    """Fill ``disk`` until ``leave_bytes`` are free (an existing filler file grows)."""
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "ab") as f:
        f.write(b"\0" * max(0, free - leave_bytes))


def _job_folders(results) -> set[str]:
    return {p.name for p in results.iterdir() if p.is_dir() and protocol.is_job_id(p.name)}


def test_a_full_results_disk_refuses_submits_and_ends_the_jobs_it_touches(small_disk):
    results = small_disk / "results"
    server = ServerProcess(results).start()
    try:
        with server.client() as c:
            first = run_job(c, FAST)
            assert isinstance(first, pm.Result), server.log()
            # a job runs while the disk fills up: its result cannot be stored
            c.submit(png_bytes(), [((0.5, 0.5), (0.6, 0.5))],
                     JobSettings(num_inference_steps=30, min_guidance_scale=1.0, max_guidance_scale=1.0, seed=2,
                                 preview_every=0))
            accepted = c.wait_for(lambda e: isinstance(e, pm.Accepted | pm.Rejected), 30)
            assert isinstance(accepted, pm.Accepted), accepted
            _fill(small_disk, 0)
            endings = []
            deadline_events = c.wait_for(lambda e: isinstance(e, pm.JobError | pm.Result | pm.Cancelled)
                                         and e.job_id == accepted.job_id, JOB_TIMEOUT_S)
            endings.append(deadline_events)
            assert isinstance(endings[0], pm.JobError) and endings[0].code == protocol.DISK_FULL, endings
            assert str(results) in endings[0].message
            # no second ending arrives for it
            assert c.wait_for(lambda e: isinstance(e, pm.JobError | pm.Result) and e.job_id == accepted.job_id,
                              3) is None
            # submits are refused while the disk is full, naming the folder and the free space
            c.submit(png_bytes(), [((0.5, 0.5), (0.6, 0.5))], FAST)
            refused = c.wait_for(lambda e: isinstance(e, pm.Accepted | pm.Rejected), 30)
            assert isinstance(refused, pm.Rejected) and refused.code == protocol.DISK_FULL, refused
            assert str(results) in refused.message and "MiB free" in refused.message
            # fetches are still served
            c.fetch(first.job_id)
            again = c.wait_for(lambda e: isinstance(e, pm.Result) and e.job_id == first.job_id, 30)
            assert again is not None and len(again.frames) == 14
        assert server.process.poll() is None, server.log()
        # nothing is left unindexed: every job folder is in the index
        index = json.loads((results / "index.json").read_text())["jobs"]
        assert _job_folders(results) <= set(index)
    finally:
        server.stop()

    # after a restart on the still-full disk: serve starts, the failed job stays failed (one ending)
    server = ServerProcess(results).start()
    try:
        with server.client() as c:
            c.fetch(accepted.job_id)
            event = c.wait_for(lambda e: getattr(e, "job_id", None) == accepted.job_id
                               and isinstance(e, pm.JobError | pm.Result | pm.RequestFailed), 30)
            assert not isinstance(event, pm.Result), event
            c.submit(png_bytes(), [((0.5, 0.5), (0.6, 0.5))], FAST)
            refused = c.wait_for(lambda e: isinstance(e, pm.Accepted | pm.Rejected), 30)
            assert isinstance(refused, pm.Rejected) and refused.code == protocol.DISK_FULL
            # room again: submits work again
            os.remove(small_disk / "filler")
            assert isinstance(run_job(c, FAST), pm.Result)
        assert server.process.poll() is None
    finally:
        server.stop()
