"""A job's record in the results folder, and the jobs a previous run of the broker left unfinished."""

from __future__ import annotations

import logging
import time
from typing import Any

from puppet_master import protocol
from puppet_master.protocol import ProtocolError
from puppet_master.server.jobs import Job
from puppet_master.server.store import ResultStore

log = logging.getLogger(__name__)


def job_record(job: Job) -> dict[str, Any]:
    """The ``job.json`` of a job just accepted: what it is and who owns it (the submitter's
    routing id and the hash of its token, never the token)."""
    return {"job": job.id, "seq": job.seq, "state": protocol.QUEUED, "created": time.time(),
            "drags": job.drags, "settings": job.settings.to_json(), "client": job.owner,
            "token_sha256": job.token_sha256}


def recover_jobs(store: ResultStore) -> list[Job]:
    """The jobs a previous run left queued or running, in acceptance order, to queue again (their
    input image stays on disk). One that cannot run any more ends ``error`` with the reason."""
    jobs = []
    for record in store.unfinished():
        job_id = record["job"]
        try:
            settings = protocol.JobSettings.from_json(record.get("settings"))
            drags = protocol.check_drags(record.get("drags"), frames=settings.frames_per_variant)
            if not store.input_path(job_id).is_file():
                raise ProtocolError(protocol.INTERNAL, "its input image is missing")
        except ProtocolError as exc:
            store.update(job_id, state=protocol.FAILED_STATE, finished=time.time(), code=protocol.INTERNAL,
                         message=f"could not resume after a restart: {exc.message}")
            continue
        owner = record.get("client")
        try:
            watchers = {bytes.fromhex(owner)} if owner else set()
        except ValueError:  # not a routing id: only the token owns the job
            owner, watchers = None, set()
        job = Job(job_id, int(record.get("seq", 0)), drags, settings, owner=owner,
                  token_sha256=record.get("token_sha256"), watchers=watchers)
        try:
            store.update(job_id, state=protocol.QUEUED)
        except OSError as exc:  # a full disk at start: the record already says queued or running
            log.error("could not update job %s: %s", job_id, exc)
        jobs.append(job)
        log.info("job %s queued again after a restart", job_id)
    try:
        store.prune()
    except OSError as exc:
        log.warning("could not prune %s: %s", store.root, exc)
    return jobs
