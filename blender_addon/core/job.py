"""One generation job as the add-on sees it: a small state machine fed by client events (no bpy).

``JobController.poll()`` never blocks (it polls the client with ``timeout_ms=0``), so a Blender
timer can call it ten times a second; it returns a :class:`JobSnapshot` whenever something changed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ._light import light_module

client_mod = light_module("client")
protocol = light_module("protocol")

IDLE, SUBMITTING, QUEUED, RUNNING, FETCHING, DONE, ERROR, CANCELLED = STATES = (
    "IDLE", "SUBMITTING", "QUEUED", "RUNNING", "FETCHING", "DONE", "ERROR", "CANCELLED",
)  # fmt: skip
ACTIVE_STATES = frozenset({SUBMITTING, QUEUED, RUNNING, FETCHING})
#: after losing the backend mid-job, keep waiting this long for it to come back, seconds
LOST_GIVE_UP_S = 60.0
#: a ping without answer fails after this long, seconds
PING_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class GenerationSettings:
    """What the artist chose; becomes the protocol's JobSettings."""

    steps: int = 25
    #: guidance of the last frame; 0: the model's own default (the first frame then too)
    guidance: float = 0.0
    seed: int | None = None
    preview_every: int = 5
    #: videos to choose from (one per seed), and 14-frame segments chained into a longer clip
    variants: int = 1
    segments: int = 1

    def to_job_settings(self) -> Any:
        own = self.guidance > 0
        return protocol.JobSettings(
            num_inference_steps=self.steps, min_guidance_scale=1.0 if own else None,
            max_guidance_scale=self.guidance if own else None, seed=self.seed, preview_every=self.preview_every,
            variants=self.variants, segments=self.segments,
        )  # fmt: skip


@dataclass(frozen=True)
class JobSnapshot:
    """Everything the panel shows about a job, plus the frames once they arrive."""

    state: str = IDLE
    job_id: str = ""
    #: the job's token from its acceptance: what lets a new connection (a reopened .blend) fetch it
    token: str = ""
    progress: float = 0.0
    status: str = ""
    error: str = ""
    frames: list[bytes] = field(default_factory=list)
    #: the frames of each variant (one list for a one-variant job), once the result is in
    variants: list[list[bytes]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    drags: list[Any] = field(default_factory=list)  # the drags the job ran with (the server's echo)
    info: dict[str, Any] = field(default_factory=dict)  # model, device, timings of the run
    preview_png: bytes | None = None
    #: an ERROR caused by the connection (the job may still finish and be fetched later)
    retryable: bool = False

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


ServerKeyError = client_mod.ServerKeyError


def resolve_server_key(setting: str) -> str | None:
    """The server's public key from the preference: Z85 text, a ``.key`` file path, or empty (no CURVE)."""
    key = client_mod.read_public_key(setting)
    return None if key is None else key.decode()


def describe_backend_down(endpoint: str) -> str:
    return (
        f"No backend answers at {endpoint}. Start it (Preferences > Puppet-Master > Start Local Backend, "
        f"or `puppet-master serve`) or check the endpoint."
    )


def _lost_text(silent_s: int) -> str:
    return f"Backend not answering for {silent_s} s; waiting for it to come back..."


class JobController:
    """Drives one job through a :class:`GenerationClient` it owns."""

    def __init__(self, endpoint: str, server_public_key: str | None = None, *, client: Any = None) -> None:
        self.endpoint = endpoint
        self.client = client or client_mod.GenerationClient(endpoint, server_public_key=server_public_key or None)
        self.snapshot = JobSnapshot()
        self._request: str | None = None
        self._lost_since: float | None = None
        self._silent_at_loss = 0.0
        self._cancel_pending = False

    # --- starting -------------------------------------------------------------------------
    def submit(self, image_png: bytes, drags: Sequence[Any], settings: GenerationSettings) -> None:
        """Send the job (raises ProtocolError at once for input the server would refuse)."""
        self._request = self.client.submit(image_png, drags, settings.to_job_settings())
        self.snapshot = JobSnapshot(state=SUBMITTING, status=f"Submitting to {self.endpoint}...")

    def attach(self, job_id: str, token: str = "") -> None:
        """Follow (or collect the result of) an existing job, e.g. after reopening the .blend;
        ``token`` (saved at its acceptance) shows the backend the job is this artist's."""
        self._request = self.client.fetch(job_id, token or None)
        self.snapshot = JobSnapshot(state=FETCHING, job_id=job_id, token=token,
                                    status=f"Fetching job {job_id[:8]}...")

    def cancel(self) -> None:
        if self.snapshot.state in (QUEUED, RUNNING, FETCHING) and self.snapshot.job_id:
            self.client.cancel(self.snapshot.job_id)
            self._set(status="Cancelling...")
        elif self.snapshot.state == SUBMITTING:
            # no job id yet: the job is cancelled as soon as it is accepted
            self._set(status="Cancelling...", cancel_pending=True)

    # --- polling --------------------------------------------------------------------------
    def poll(self) -> JobSnapshot | None:
        """Apply every event that has arrived; the new snapshot if anything changed, else None."""
        before = self.snapshot
        for event in self.client.poll(0):
            self._apply(event)
        lost_for = 0.0 if self._lost_since is None else time.monotonic() - self._lost_since
        if self._lost_since is not None and self.snapshot.state in (QUEUED, RUNNING):
            silent = int(self._silent_at_loss + lost_for)
            text = _lost_text(silent)
            if self.snapshot.status != text:  # counts up, one second at a time
                self._set(status=text)
        if lost_for > LOST_GIVE_UP_S and self.snapshot.active and self.snapshot.job_id:
            self._set(
                state=ERROR, retryable=True,
                error=f"Lost the backend at {self.endpoint} during job {self.snapshot.job_id[:8]}; the job id "
                "is saved: use Fetch Result once the backend is back.",
            )
        return None if self.snapshot is before else self.snapshot

    def close(self) -> None:
        self.client.close()

    # --- internals ------------------------------------------------------------------------
    def _set(self, cancel_pending: bool | None = None, **changes: Any) -> None:
        if cancel_pending is not None:
            self._cancel_pending = cancel_pending
        self.snapshot = replace(self.snapshot, **changes)

    def _apply(self, event: Any) -> None:
        c = client_mod
        state = self.snapshot.state
        if isinstance(event, c.Accepted) and event.req == self._request:
            ahead = f" ({event.position} ahead)" if event.position else ""
            self._set(state=QUEUED, job_id=event.job_id, token=event.token or "", status=f"Queued{ahead}")
            if self._cancel_pending:
                self.client.cancel(event.job_id)
        elif isinstance(event, c.Rejected) and event.req == self._request:
            if event.code == protocol.TIMEOUT:
                self._set(state=ERROR, error=describe_backend_down(self.endpoint), status="", retryable=True)
            else:
                self._set(state=ERROR, error=f"Rejected: {event.message}", status="")
        elif isinstance(event, c.JobState) and event.job_id == self.snapshot.job_id:
            new_state = RUNNING if event.state == protocol.RUNNING else QUEUED
            self._set(state=new_state, status=f"Job is {event.state}")
        elif isinstance(event, c.Progress) and event.job_id == self.snapshot.job_id:
            eta = f", about {event.eta_s:.0f} s left" if event.eta_s is not None else ""
            self._set(
                state=RUNNING, progress=event.step / max(1, event.total),
                status=f"Step {event.step}/{event.total}{eta}",
                preview_png=event.preview_png or self.snapshot.preview_png,
            )  # fmt: skip
        elif isinstance(event, c.Result) and event.job_id == self.snapshot.job_id:
            self._set(state=DONE, progress=1.0, frames=list(event.frames), variants=event.variants(),
                      settings=dict(event.settings),
                      drags=list(event.drags), info=dict(event.info),
                      status=f"Done: {len(event.frames)} frames")  # fmt: skip
        elif isinstance(event, c.VariantReady) and event.job_id == self.snapshot.job_id:
            self._set(status=f"Variant {event.index + 1} ready (seed {event.seed})")
        elif isinstance(event, c.JobError) and event.job_id == self.snapshot.job_id:
            self._set(state=ERROR, error=f"Generation failed ({event.code}): {event.message}", status="")
        elif isinstance(event, c.Cancelled) and event.job_id == self.snapshot.job_id:
            self._set(state=CANCELLED, status="Cancelled", error="")
        elif isinstance(event, c.RequestFailed) and state in ACTIVE_STATES:
            if event.code == protocol.UNKNOWN_JOB and event.job_id == self.snapshot.job_id:
                self._set(state=ERROR, error=f"The backend no longer knows job {self.snapshot.job_id[:8]}: {event.message}")
            elif event.code == protocol.NOT_OWNER and event.job_id == self.snapshot.job_id:
                self._set(state=ERROR, error=f"The backend says job {self.snapshot.job_id[:8]} is another client's: "
                          "this file lacks the job's token (it is saved when the job is accepted)")
            elif event.code == protocol.TIMEOUT and state == FETCHING:
                self._set(state=ERROR, error=describe_backend_down(self.endpoint), retryable=True)
            elif event.code != protocol.JOB_FINISHED:
                self._set(status=f"{event.message}")
        elif isinstance(event, c.ConnectionLost) and state in ACTIVE_STATES:
            self._lost_since = time.monotonic()
            self._silent_at_loss = float(event.silent_s or 0.0)
            if state in (SUBMITTING, FETCHING):
                self._set(state=ERROR, error=describe_backend_down(self.endpoint), status="", retryable=True)
            else:
                self._set(status=_lost_text(int(self._silent_at_loss)))
        elif isinstance(event, c.ConnectionRestored):
            self._lost_since = None
            if state in ACTIVE_STATES:
                self._set(status="Backend is back; re-attaching to the job...")


@dataclass(frozen=True)
class PingResult:
    ok: bool
    text: str
    server: dict[str, Any] = field(default_factory=dict)


class Pinger:
    """A non-blocking ping: ``poll()`` returns None until the answer (or the timeout) arrives."""

    def __init__(self, endpoint: str, server_public_key: str | None = None, timeout_s: float = PING_TIMEOUT_S) -> None:
        self.client = client_mod.GenerationClient(
            endpoint, server_public_key=server_public_key or None, request_timeout_s=timeout_s,
            server_timeout_s=timeout_s,
        )  # fmt: skip
        self.endpoint = self.client.endpoint
        self._req = self.client.ping()
        self._deadline = time.monotonic() + timeout_s

    def poll(self) -> PingResult | None:
        for event in self.client.poll(0):
            if isinstance(event, client_mod.Pong) and event.req == self._req:
                s = event.server
                rtt = f", {event.rtt_s * 1000:.0f} ms" if event.rtt_s is not None else ""
                if not s.get("workers"):
                    text = f"Connected to {self.endpoint}, but no model worker is ready yet (queue {s.get('queue', 0)}{rtt})"
                else:
                    text = (
                        f"Connected: model {s.get('model', '?')} on {s.get('device', '?')} ({s.get('dtype', '?')}), "
                        f"{s['workers']} worker(s), queue {s.get('queue', 0)}{rtt}"
                    )
                self.client.close()
                return PingResult(True, text, dict(s))
        if time.monotonic() > self._deadline:
            self.client.close()
            return PingResult(False, describe_backend_down(self.endpoint))
        return None
