"""Non-blocking client for ``puppet-master serve`` (standard library + pyzmq, no torch).

The Blender extension imports this module (as a checked copy), so it imports nothing from
``puppet_master`` except, relatively, :mod:`.protocol` and :mod:`.events`.

Every call returns at once. Requests (:meth:`GenerationClient.submit`, :meth:`~GenerationClient.cancel`,
:meth:`~GenerationClient.fetch`, :meth:`~GenerationClient.ping`, :meth:`~GenerationClient.status`,
:meth:`~GenerationClient.unload`) queue a message and return its request id; what the server
answers, and everything it pushes (progress, results), comes back as typed events from
:meth:`~GenerationClient.poll`, which a UI timer calls with ``timeout_ms=0``::

    client = GenerationClient("tcp://127.0.0.1:5555")
    req = client.submit(png_bytes, [((0.5, 0.4), (0.7, 0.4))], JobSettings(num_inference_steps=25))
    # in a timer:
    for event in client.poll(0):
        match event:
            case Accepted(job_id=job): ...
            case Progress(step=s, total=t, eta_s=eta): ...
            case Result(frames=pngs): ...   # list of PNG bytes
            case JobError(code=c, message=m) | Rejected(code=c, message=m): ...
            case ConnectionLost(): ...

Every accepted job ends in exactly one of :class:`Result`, :class:`JobError` or
:class:`Cancelled`. The client sends a heartbeat when idle and reports :class:`ConnectionLost`
when the server has been silent for ``server_timeout_s``, then :class:`ConnectionRestored`
(after which it re-attaches to its unfinished jobs with FETCH). A request that gets no answer in
``request_timeout_s`` ends in :class:`Rejected` (for a submit) or :class:`RequestFailed`, code
``timeout``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import zmq
import zmq.auth as zmq_auth
import zmq.utils.z85

from . import protocol
from .events import (
    Accepted,
    Cancelled,
    ConnectionLost,
    ConnectionRestored,
    Event,
    JobError,
    JobState,
    Pong,
    Progress,
    Rejected,
    RequestFailed,
    Result,
    StatusReply,
    Unloaded,
    VariantReady,
)
from .protocol import JobSettings, ProtocolError

log = logging.getLogger(__name__)

MAX_MESSAGES_PER_POLL = 200  # one poll() returns after this many messages, so a UI timer stays short
#: a FETCH answered `busy` (the server holds many unread results) is asked again after this long,
#: until the request times out
BUSY_RETRY_S = 0.5
#: length of a CurveZMQ public key in Z85 text
Z85_KEY_CHARS = 40


class ServerKeyError(ValueError):
    """A server key that is neither a Z85 public key nor a readable key file; the message says which."""


def read_public_key(key_or_path: str | bytes) -> bytes | None:
    """A server's CURVE public key from its 40-character Z85 text or a ``.key``/``.key_secret``
    file (as ``puppet-master keys`` writes them); None for an empty setting (no CURVE)."""
    text = (key_or_path.decode() if isinstance(key_or_path, bytes) else str(key_or_path)).strip()
    if not text:
        return None
    path = os.path.expanduser(text)
    if not os.path.isfile(path):
        if len(text) != Z85_KEY_CHARS:
            raise ServerKeyError(f"the server key must be the {Z85_KEY_CHARS}-character public key or a .key file; "
                                 f"{text[:12]!r}... is neither")
        try:
            zmq.utils.z85.decode(text)
        except (ValueError, KeyError) as exc:
            raise ServerKeyError(f"{text!r} is not a Z85 CURVE key") from exc
        return text.encode()
    try:
        public, _ = zmq_auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ServerKeyError(f"cannot read a CURVE public key from {path}: {exc}") from exc
    if not public:
        raise ServerKeyError(f"no public-key found in {path}")
    return public

__all__ = [
    "Accepted", "Cancelled", "ConnectionLost", "ConnectionRestored", "Event", "GenerationClient", "JobError",
    "JobSettings", "JobState", "Pong", "Progress", "ProtocolError", "Rejected", "RequestFailed", "Result",
    "StatusReply", "Unloaded", "VariantReady",
]


# --- the client ------------------------------------------------------------------------------
class GenerationClient:
    """A connection to one server endpoint. Not thread-safe: use it from one thread.

    Args:
        endpoint: e.g. ``tcp://127.0.0.1:5555`` (``127.0.0.1:5555`` is taken as tcp; anything else
            raises :class:`~puppet_master.protocol.EndpointError` naming the expected form).
        server_public_key: the server's CURVE public key (Z85 text, 40 characters, as printed by
            ``puppet-master keys``); required when the server uses CURVE, else leave None.
        heartbeat_interval_s: send a heartbeat when nothing was sent for this long.
        server_timeout_s: report :class:`ConnectionLost` after this long without a message.
        request_timeout_s: a request unanswered for this long fails with code ``timeout``.
        context: a zmq.Context to use (default: the process-wide instance).
    """

    def __init__(
        self,
        endpoint: str = protocol.DEFAULT_ENDPOINT,
        *,
        server_public_key: str | bytes | None = None,
        heartbeat_interval_s: float = protocol.HEARTBEAT_INTERVAL_S,
        server_timeout_s: float = protocol.PEER_TIMEOUT_S,
        request_timeout_s: float = protocol.REQUEST_TIMEOUT_S,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = protocol.normalize_endpoint(endpoint)  # EndpointError before any socket exists
        self.heartbeat_interval_s = heartbeat_interval_s
        self.server_timeout_s = server_timeout_s
        self.request_timeout_s = request_timeout_s
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        # a fixed identity lets a restarted server route events of this client's jobs to it
        self._socket.setsockopt(zmq.ROUTING_ID, b"c" + os.urandom(15))
        self._socket.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        if server_public_key:
            key = server_public_key.encode() if isinstance(server_public_key, str) else server_public_key
            public, secret = zmq.curve_keypair()
            self._socket.curve_serverkey = key.strip()
            self._socket.curve_publickey = public
            self._socket.curve_secretkey = secret
        self._socket.connect(self.endpoint)
        now = time.monotonic()
        self._last_sent = now
        self._last_heard: float | None = None
        self._opened = now
        self._connected: bool | None = None
        # req id -> (message type, job id or None, deadline, time sent)
        self._pending: dict[str, tuple[str, str | None, float, float]] = {}
        #: job id -> last known state ("queued", "running", "done", "error", "cancelled")
        self.jobs: dict[str, str] = {}
        #: job id -> its token (from Accepted, or given to fetch/cancel): sent with every request on it
        self.tokens: dict[str, str] = {}
        self.last_server_info: dict[str, Any] | None = None
        self._closed = False
        self._unclaimed: list[Event] = []  # events after a wait_for match, for the next poll
        self._busy_retries: dict[str, float] = {}  # req of a FETCH answered busy -> when to ask again

    # --- requests (each returns its request id at once) --------------------------------------
    def submit(self, image_png: bytes, drags: Sequence[Any], settings: JobSettings | dict | None = None) -> str:
        """Queue a generation job; answered by :class:`Accepted` or :class:`Rejected`.

        ``image_png``: PNG bytes (RGB or RGBA, square is best; at most 4096x4096 and 32 MiB).
        ``drags``: up to 5 drags as ``drags.Drag`` objects, ``((x0, y0), (x1, y1))`` pairs or
        ``{"start": [x, y], "end": [x, y]}`` dicts, in fractions of the frame (x right, y down).
        Raises :class:`ProtocolError` (a ValueError) at once for input the server would refuse.
        """
        if isinstance(settings, dict):
            settings = JobSettings.from_json(settings)
        settings = settings or JobSettings()
        JobSettings.from_json(settings.to_json())  # range checks
        wire_drags = protocol.drags_to_json(drags, frames=settings.frames_per_variant)
        image_png = bytes(image_png)
        protocol.png_size(image_png)
        return self._request(
            protocol.SUBMIT, {"drags": wire_drags, "settings": settings.to_json()}, blobs=[image_png]
        )

    def cancel(self, job_id: str, token: str | None = None) -> str:
        """Ask to cancel a job; the job then ends in :class:`Cancelled` (or its result, if it
        finished first). A job that already ended gives :class:`RequestFailed` ``job_finished``.
        ``token``: the job's token, for a job submitted from another connection."""
        return self._request(protocol.CANCEL, self._job_fields(job_id, token), job_id=job_id)

    def fetch(self, job_id: str, token: str | None = None) -> str:
        """Ask for a job by id (e.g. after Blender was closed): a finished job answers with its
        final event (:class:`Result`, :class:`JobError` or :class:`Cancelled`); an unfinished one
        with :class:`JobState`, and its progress and final events follow to this client. Only the
        job's owner is answered: the connection that submitted it, or one sending its ``token``
        (:attr:`Accepted.token`); anyone else gets :class:`RequestFailed` ``not_owner``."""
        return self._request(protocol.FETCH, self._job_fields(job_id, token), job_id=job_id)

    def _job_fields(self, job_id: str, token: str | None) -> dict[str, Any]:
        protocol.check_job_id(job_id)
        if token:
            self.tokens[job_id] = token
        return {"job": job_id, **({"token": self.tokens[job_id]} if job_id in self.tokens else {})}

    def ping(self) -> str:
        """Ask the server to describe itself; answered by :class:`Pong` (with the round trip)."""
        return self._request(protocol.PING, {})

    def status(self) -> str:
        """Ask for the queue and workers; answered by :class:`StatusReply`."""
        return self._request(protocol.STATUS, {})

    def unload(self) -> str:
        """Ask idle workers to free their model (GPU memory); answered by :class:`Unloaded`.
        The model loads again on the next job."""
        return self._request(protocol.UNLOAD, {})

    # --- events ------------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 0) -> list[Event]:
        """Every event that has arrived, waiting at most ``timeout_ms`` for the first one.

        Also sends a heartbeat when due and turns silence and unanswered requests into events.
        With ``timeout_ms=0`` it never blocks (safe in a UI timer).
        """
        if self._closed:
            return []
        events, self._unclaimed = self._unclaimed, []
        wait = 0 if events else max(0, int(timeout_ms))
        for _ in range(MAX_MESSAGES_PER_POLL):
            if not self._socket.poll(wait, zmq.POLLIN):
                break
            wait = 0
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._heard(events)
            try:
                message = protocol.decode(frames, protocol.SERVER_TYPES)
            except ProtocolError as exc:
                log.warning("ignoring a malformed message from the server: %s", exc)
                continue
            event = self._to_event(message)
            if event is not None:
                events.append(event)
        self._tick(events)
        return events

    def wait_for(
        self, predicate: Callable[[Event], bool], timeout_s: float, on_event: Callable[[Event], None] | None = None
    ) -> Event | None:
        """Blocking helper for scripts and tests (not for a UI thread): poll until an event
        matches ``predicate`` or ``timeout_s`` passes (then None). Other events go to
        ``on_event`` when given."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            events = self.poll(timeout_ms=min(100, max(1, int(remaining * 1000))))
            for index, event in enumerate(events):
                if predicate(event):
                    self._unclaimed = events[index + 1 :]  # not lost: the next poll returns them
                    return event
                if on_event is not None:
                    on_event(event)

    @property
    def connected(self) -> bool | None:
        """True once the server answered, False after :class:`ConnectionLost`, None before."""
        return self._connected

    def close(self) -> None:
        """Close the socket at once (LINGER 0); the server keeps running this client's jobs."""
        if not self._closed:
            self._closed = True
            self._socket.close(linger=0)

    def __enter__(self) -> GenerationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------
    def _request(self, type_: str, fields: dict[str, Any], *, blobs: Sequence[bytes] = (),
                 job_id: str | None = None) -> str:
        if self._closed:
            raise RuntimeError("the client is closed")
        req = protocol.new_request_id()
        now = time.monotonic()
        self._send(type_, {"req": req, **fields}, blobs)
        self._pending[req] = (type_, job_id, now + self.request_timeout_s, now)
        return req

    def _send(self, type_: str, fields: dict[str, Any], blobs: Sequence[bytes] = ()) -> None:
        try:
            self._socket.send_multipart(protocol.encode(type_, fields, blobs), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            # the outgoing queue is full (server unreachable for long): the request times out
            log.warning("could not queue a %s message: the server is not taking messages", type_)
        self._last_sent = time.monotonic()

    def _heard(self, events: list[Event]) -> None:
        self._last_heard = time.monotonic()
        if self._connected is False:
            events.append(ConnectionRestored())
            for job_id, state in self.jobs.items():
                if state not in protocol.FINAL_STATES:
                    self.fetch(job_id)  # re-attach (a restarted server re-queues unfinished jobs)
        self._connected = True

    def _tick(self, events: list[Event]) -> None:
        now = time.monotonic()
        if now - self._last_sent >= self.heartbeat_interval_s:
            self._send(protocol.HEARTBEAT, {})
        since = self._last_heard if self._last_heard is not None else self._opened
        if self._connected is not False and now - since > self.server_timeout_s:
            self._connected = False
            events.append(ConnectionLost(silent_s=now - since))
        for req, (type_, job_id, deadline, _) in list(self._pending.items()):
            if req in self._busy_retries and now >= self._busy_retries[req] and now <= deadline:
                del self._busy_retries[req]
                self._send(type_, {"req": req, **self._job_fields(job_id, None)})
            if now > deadline:
                del self._pending[req]
                self._busy_retries.pop(req, None)
                text = f"no answer from {self.endpoint} to {type_} within {self.request_timeout_s:g} s"
                if type_ == protocol.SUBMIT:
                    events.append(Rejected(req, protocol.TIMEOUT, text))
                else:
                    events.append(RequestFailed(req, protocol.TIMEOUT, text, job_id))

    def _answered(self, req: str | None) -> float | None:
        entry = self._pending.pop(req, None) if req else None
        return None if entry is None else time.monotonic() - entry[3]

    def _to_event(self, m: protocol.Message) -> Event | None:
        h = m.header
        req = h.get("req")
        if m.type == protocol.HEARTBEAT:
            return None
        if m.type == protocol.PONG:
            rtt = self._answered(req)
            self.last_server_info = h["server"]
            return Pong(req, h["server"], rtt)
        if m.type == protocol.ACCEPTED:
            self._answered(req)
            self.jobs[h["job"]] = protocol.QUEUED
            if h.get("token"):
                self.tokens[h["job"]] = h["token"]
            return Accepted(req, h["job"], h["position"], h["seq"], h.get("token"))
        if m.type == protocol.REJECTED:
            self._answered(req)
            return Rejected(req, h["code"], h["message"])
        if m.type == protocol.PROGRESS:
            self.jobs[h["job"]] = protocol.RUNNING
            eta = h.get("eta_s")
            return Progress(h["job"], h["step"], h["total"], None if eta is None else float(eta),
                            m.blobs[0] if m.blobs else None)
        if m.type == protocol.RESULT:
            self._answered(req)
            self.jobs[h["job"]] = protocol.DONE
            return Result(h["job"], list(m.blobs), h["settings"], h.get("drags") or [], h.get("info") or {})
        if m.type == protocol.VARIANT:
            return VariantReady(h["job"], h["index"], h["seed"], list(m.blobs))
        if m.type == protocol.ERROR:
            self._answered(req)
            self.jobs[h["job"]] = protocol.FAILED_STATE
            return JobError(h["job"], h["code"], h["message"])
        if m.type == protocol.CANCELLED:
            self._answered(req)
            self.jobs[h["job"]] = protocol.CANCELLED_STATE
            return Cancelled(h["job"])
        if m.type == protocol.JOB_STATE:
            self._answered(req)
            self.jobs[h["job"]] = h["state"]
            return JobState(req, h["job"], h["state"], h.get("position"))
        if m.type == protocol.STATUS_REPLY:
            self._answered(req)
            return StatusReply(req, h["server"], h["queue"], h.get("running") or [], h["workers"])
        if m.type == protocol.UNLOADED:
            self._answered(req)
            return Unloaded(req, int(h.get("workers") or 0))
        if m.type == protocol.FAILED:
            entry = self._pending.get(req) if req else None
            if (h["code"] == protocol.BUSY and entry is not None and entry[0] == protocol.FETCH
                    and time.monotonic() + BUSY_RETRY_S < entry[2]):
                self._busy_retries[req] = time.monotonic() + BUSY_RETRY_S  # asked again by _tick
                return None
            self._answered(req)
            return RequestFailed(req, h["code"], h["message"], h.get("job"))
        return None
