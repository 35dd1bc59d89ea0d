"""In-memory state of the broker: jobs waiting or running, and the connected workers."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from puppet_master.protocol import QUEUED, JobSettings


@dataclass
class Job:
    """A job that has not ended yet (ended jobs live only in the results folder)."""

    id: str
    seq: int
    drags: list[dict[str, list[float]]]
    settings: JobSettings
    image_png: bytes
    #: client routing ids that get this job's events (the submitter, then anyone who fetched it)
    watchers: set[bytes] = field(default_factory=set)
    state: str = QUEUED
    worker: bytes | None = None
    start_index: int | None = None
    #: client routing id -> request id of a CANCEL still waiting for the job's final event
    cancel_reqs: dict[bytes, str] = field(default_factory=dict)
    accepted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    step: int = 0


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
