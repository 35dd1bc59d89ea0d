"""The events :meth:`puppet_master.client.GenerationClient.poll` returns (standard library only;
re-exported by :mod:`puppet_master.client`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# --- events ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    """Base of everything :meth:`GenerationClient.poll` returns."""


@dataclass(frozen=True)
class Accepted(Event):
    """The submit ``req`` became job ``job_id``; ``position`` jobs wait before it (0 = next).
    ``token`` lets any connection fetch or cancel the job later (keep it with the job id)."""

    req: str
    job_id: str
    position: int
    seq: int
    token: str | None = None


@dataclass(frozen=True)
class Rejected(Event):
    """The submit ``req`` was refused (no job exists); ``code`` is a protocol error code."""

    req: str
    code: str
    message: str


@dataclass(frozen=True)
class Progress(Event):
    """Job ``job_id`` finished denoising step ``step`` of ``total``; ``preview_png`` is a small
    preview image (PNG bytes) on every ``preview_every``-th step, else None."""

    job_id: str
    step: int
    total: int
    eta_s: float | None
    preview_png: bytes | None = None


@dataclass(frozen=True)
class Result(Event):
    """Job ``job_id`` finished: ``frames`` are the PNG bytes of each frame, ``settings`` what was
    used (the seed included), ``drags`` the wire drags, ``info`` worker and timing details."""

    job_id: str
    frames: list[bytes]
    settings: dict[str, Any]
    drags: list[dict[str, list[float]]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def variants(self) -> list[list[bytes]]:
        """The frames of each variant (one list for a one-variant job): ``settings`` says how many
        frames each has (``frames_per_variant``)."""
        size = int(self.settings.get("frames_per_variant") or len(self.frames)) or 1
        return [self.frames[i:i + size] for i in range(0, len(self.frames), size)]


@dataclass(frozen=True)
class VariantReady(Event):
    """One variant of a several-variant job finished (not final: the job's :class:`Result` holds
    every variant again). ``frames``: its PNG frames; ``seed``: what made it."""

    job_id: str
    index: int
    seed: int
    frames: list[bytes]


@dataclass(frozen=True)
class JobError(Event):
    """Job ``job_id`` ended in error (final)."""

    job_id: str
    code: str
    message: str


@dataclass(frozen=True)
class Cancelled(Event):
    """Job ``job_id`` ended cancelled (final)."""

    job_id: str


@dataclass(frozen=True)
class JobState(Event):
    """Answer to a fetch of an unfinished job (``state`` "queued" or "running"); its events follow."""

    req: str
    job_id: str
    state: str
    position: int | None


@dataclass(frozen=True)
class RequestFailed(Event):
    """Request ``req`` (cancel, fetch, ping, status, unload) failed; ``job_id`` when it named one."""

    req: str
    code: str
    message: str
    job_id: str | None = None


@dataclass(frozen=True)
class Pong(Event):
    """Answer to :meth:`GenerationClient.ping`: ``server`` holds ``version``, ``protocol``,
    ``model``, ``device``, ``dtype``, ``queue`` (jobs waiting), ``running`` and ``workers``."""

    req: str | None
    server: dict[str, Any]
    rtt_s: float | None


@dataclass(frozen=True)
class StatusReply(Event):
    """Answer to :meth:`GenerationClient.status`: queued job ids, running jobs, worker list."""

    req: str
    server: dict[str, Any]
    queue: list[str]
    running: list[str]
    workers: list[dict[str, Any]]


@dataclass(frozen=True)
class Unloaded(Event):
    """Answer to :meth:`GenerationClient.unload`: ``workers`` idle workers freed their model."""

    req: str | None
    workers: int


@dataclass(frozen=True)
class ConnectionLost(Event):
    """Nothing was heard from the server for ``silent_s`` seconds (it is down or unreachable)."""

    silent_s: float


@dataclass(frozen=True)
class ConnectionRestored(Event):
    """The server answers again after a :class:`ConnectionLost`."""
