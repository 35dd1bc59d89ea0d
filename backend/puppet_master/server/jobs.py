"""In-memory state of the broker: jobs waiting or running, the connected workers, and who owns a job."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from puppet_master.protocol import MAX_WATCHERS, QUEUED, JobSettings


def token_hash(token: str) -> str:
    """What the results folder keeps of a job's token (the token itself is never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def owns(identity: bytes, token: str | None, owner: str | None, stored_hash: str | None) -> bool:
    """True when the client ``identity`` (or the ``token`` it sent) may act on a job whose
    record names ``owner`` (the submitter's routing id, hex) and ``stored_hash``. A record with
    neither was written before jobs had owners: anyone may act on it, as then."""
    if owner is None and stored_hash is None:
        return True
    if token is not None and stored_hash is not None and hmac.compare_digest(token_hash(token), stored_hash):
        return True
    return owner is not None and hmac.compare_digest(identity.hex(), owner)


@dataclass
class Job:
    """A job that has not ended yet (ended jobs live only in the results folder). Its input
    image stays on disk (``input.png``) until a worker takes the job."""

    id: str
    seq: int
    drags: list[dict[str, list[float]]]
    settings: JobSettings
    #: the submitter's routing id (hex) and the hash of the job's token: who may fetch and cancel
    owner: str | None = None
    token_sha256: str | None = None
    #: client routing ids that get this job's events (the submitter, then owners who fetched it)
    watchers: set[bytes] = field(default_factory=set)
    state: str = QUEUED
    worker: bytes | None = None
    start_index: int | None = None
    #: client routing id -> request id of a CANCEL still waiting for the job's final event
    cancel_reqs: dict[bytes, str] = field(default_factory=dict)
    accepted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    step: int = 0

    def owned_by(self, identity: bytes, token: str | None) -> bool:
        return owns(identity, token, self.owner, self.token_sha256)

    def watch(self, identity: bytes) -> None:
        """Send this job's events to ``identity`` too; the oldest other watcher makes room when
        MAX_WATCHERS connections already watch (a reopened .blend connects anew each time)."""
        if identity in self.watchers:
            return
        while len(self.watchers) >= MAX_WATCHERS:
            stale = next((w for w in self.watchers if w.hex() != self.owner), next(iter(self.watchers)))
            self.watchers.discard(stale)
        self.watchers.add(identity)


@dataclass
class Worker:
    """A worker process known to the broker (it sent READY and keeps sending heartbeats)."""

    identity: bytes
    info: dict[str, Any]
    last_heard: float = field(default_factory=time.monotonic)
    last_sent: float = field(default_factory=time.monotonic)
    job: str | None = None
    idle_since: float = field(default_factory=time.monotonic)
    jobs_done: int = 0
    #: False after the worker freed its model (UNLOAD); it loads it again for its next job
    loaded: bool = True

    def describe(self) -> dict[str, Any]:
        return {**self.info, "job": self.job, "jobs_done": self.jobs_done, "loaded": self.loaded}


class JobQueue:
    """A bounded FIFO of waiting jobs (plus lookup by id for cancel and fetch)."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._order: deque[str] = deque()
        self._jobs: dict[str, Job] = {}

    def __len__(self) -> int:
        return len(self._order)

    def full(self) -> bool:
        return len(self._order) >= self.max_length

    def push(self, job: Job) -> int:
        """Append ``job``; returns its position (how many jobs wait before it)."""
        self._order.append(job.id)
        self._jobs[job.id] = job
        return len(self._order) - 1

    def pop(self) -> Job | None:
        if not self._order:
            return None
        return self._jobs.pop(self._order.popleft())

    def remove(self, job_id: str) -> Job | None:
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._order.remove(job_id)
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job_id: str) -> int | None:
        try:
            return self._order.index(job_id)
        except ValueError:
            return None

    def ids(self) -> list[str]:
        return list(self._order)

    def drain(self) -> list[Job]:
        jobs = [self._jobs[j] for j in self._order]
        self._order.clear()
        self._jobs.clear()
        return jobs
