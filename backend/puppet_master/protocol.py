"""The ZeroMQ wire protocol between clients, the broker (``puppet-master serve``) and workers.

Standard library plus the sibling ``drags`` module (NumPy): the Blender extension imports this
module (as a copy checked to be identical). docs/protocol.md describes every message; this module is the one source of truth.

Every message is multipart: frame 0 is a UTF-8 JSON object (the header) with at least
``{"v": PROTOCOL_VERSION, "type": <message type>}``; the remaining frames are binary payloads
(PNG bytes). Nothing received is ever unpickled or evaluated. :func:`decode` checks the header
against the schema of its type (required fields, their JSON types, the number of binary frames)
before anything else looks at it, and raises :class:`ProtocolError` carrying one of the error
codes below.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import struct
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import drags
from .endpoints import EndpointError, normalize_endpoint  # noqa: F401 (part of this module's API)

#: version 2 added drag paths (``"path"``: one point per frame); a version-1 peer sends and reads
#: start -> end drags only, and the server answers each client in the version it speaks
PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)

# --- message types: client -> server ---------------------------------------------------------
PING = "ping"  # -> PONG with the server's description
SUBMIT = "submit"  # header: req, drags, settings; frame 1: the input image (PNG) -> ACCEPTED | REJECTED
# CANCEL and FETCH name a job its owner may act on: the client that submitted it, or any client
# with the job's token (from ACCEPTED); anyone else gets FAILED not_owner
CANCEL = "cancel"  # header: req, job, token? -> CANCELLED (job event) | FAILED
FETCH = "fetch"  # header: req, job, token? -> RESULT | ERROR | CANCELLED | JOB_STATE (and attaches) | FAILED
STATUS = "status"  # header: req -> STATUS_REPLY (the asker's own jobs; others' only as counts)
UNLOAD = "unload"  # header: req -> UNLOADED (workers free their model) | FAILED not_allowed
HEARTBEAT = "heartbeat"  # both ways, every link; any message also counts as a heartbeat

# --- message types: server -> client ---------------------------------------------------------
PONG = "pong"  # header: req, server (dict: versions, model, device, dtype, queue, workers)
ACCEPTED = "accepted"  # header: req, job, position (0 = next to run), seq (acceptance order), token
REJECTED = "rejected"  # header: req, code, message: the submit was refused, no job exists
PROGRESS = "progress"  # header: job, step, total, eta_s; optional frame 1: small preview PNG
# the three final job events carry "req" when they answer a FETCH or a CANCEL
RESULT = "result"  # header: job, settings, drags, info; frames 1..N: PNG frames
ERROR = "error"  # header: job, code, message: the job ended in error (final)
CANCELLED = "cancelled"  # header: job: the job ended cancelled (final)
# a job of several variants sends each as it finishes (not final: the RESULT holds them all again)
VARIANT = "variant"  # header: job, index, seed; frames 1..N: that variant's PNG frames
JOB_STATE = "job_state"  # header: req, job, state, position: FETCH of an unfinished job
STATUS_REPLY = "status_reply"  # header: req, server, queue (job ids), workers (list of dicts)
UNLOADED = "unloaded"  # header: req, workers (how many were asked to unload)
FAILED = "failed"  # header: req, code, message, optional job: a request (not a job) failed

# --- message types: broker <-> worker (the backend socket) -----------------------------------
READY = "ready"  # worker -> broker: header: worker (dict: id, device, dtype, model, host, pid), secret
JOB = "job"  # broker -> worker: header: job, drags, settings; frame 1: image PNG
# the worker answers a JOB with PROGRESS*, then exactly one of RESULT, ERROR, CANCELLED; after a
# RESULT it sends PREVIEW_GIF (header: job; frame 1: preview.gif bytes), off the result's path
PREVIEW_GIF = "preview_gif"
# broker -> worker CANCEL (header: job), UNLOAD (-> UNLOADED), SHUTDOWN (the worker exits);
# (with "reason" when the broker refuses a worker: a wrong secret, a worker id in use);
# worker -> broker SHUTDOWN: the worker is leaving (its running job, if any, fails with worker_lost)
SHUTDOWN = "shutdown"

CLIENT_TYPES = frozenset({PING, SUBMIT, CANCEL, FETCH, STATUS, UNLOAD, HEARTBEAT})
SERVER_TYPES = frozenset(
    {PONG, ACCEPTED, REJECTED, PROGRESS, RESULT, ERROR, CANCELLED, JOB_STATE, STATUS_REPLY, UNLOADED,
     FAILED, HEARTBEAT, VARIANT}
)
WORKER_TYPES = frozenset({READY, HEARTBEAT, PROGRESS, RESULT, ERROR, CANCELLED, UNLOADED, SHUTDOWN, PREVIEW_GIF,
                          VARIANT})
BROKER_TO_WORKER_TYPES = frozenset({JOB, CANCEL, UNLOAD, HEARTBEAT, SHUTDOWN})

# --- job states (JOB_STATE, STATUS_REPLY, the results index) ----------------------------------
QUEUED, RUNNING, DONE, FAILED_STATE, CANCELLED_STATE = "queued", "running", "done", "error", "cancelled"
FINAL_STATES = frozenset({DONE, FAILED_STATE, CANCELLED_STATE})

# --- error codes (REJECTED, ERROR, FAILED) -----------------------------------------------------
BAD_MESSAGE = "bad_message"  # not a multipart JSON-header message, broken JSON, wrong frame count
BAD_VERSION = "bad_version"  # header "v" is not PROTOCOL_VERSION
UNKNOWN_TYPE = "unknown_type"  # header "type" is not a message type this peer accepts
BAD_FIELD = "bad_field"  # a field is missing, of the wrong JSON type or out of range
BAD_IMAGE = "bad_image"  # not a PNG, or it cannot be decoded
IMAGE_TOO_LARGE = "image_too_large"  # over MAX_IMAGE_BYTES or MAX_IMAGE_SIDE
BAD_DRAGS = "bad_drags"  # too many drags, non-finite or out-of-frame coordinates
BAD_SETTINGS = "bad_settings"  # unknown setting, or a value out of its range
QUEUE_FULL = "queue_full"  # the bounded job queue is full: try later
UNKNOWN_JOB = "unknown_job"  # no such job id (never existed, or pruned from the results folder)
JOB_FINISHED = "job_finished"  # CANCEL of a job that already ended
NO_WORKERS = "no_workers"  # no worker is connected and none is being started
WORKER_LOST = "worker_lost"  # the worker died or stopped answering heartbeats mid-job
GENERATION_FAILED = "generation_failed"  # the pipeline raised
SHUTTING_DOWN = "shutting_down"  # the server is stopping
DISK_FULL = "disk_full"  # the server's results disk is full: the message names the folder and its free space
NOT_OWNER = "not_owner"  # CANCEL/FETCH of a job submitted by another client, without its token
NOT_ALLOWED = "not_allowed"  # UNLOAD on a server whose operator did not allow it (serve --allow-unload)
BUSY = "busy"  # FETCH refused for now: results not yet read by clients fill the broker's bound; retry
TIMEOUT = "timeout"  # client side: no answer within the request timeout
INTERNAL = "internal"  # a bug on the server; the message says what

ERROR_CODES = frozenset(
    {BAD_MESSAGE, BAD_VERSION, UNKNOWN_TYPE, BAD_FIELD, BAD_IMAGE, IMAGE_TOO_LARGE, BAD_DRAGS, BAD_SETTINGS,
     QUEUE_FULL, DISK_FULL, NOT_OWNER, NOT_ALLOWED, BUSY, UNKNOWN_JOB, JOB_FINISHED, NO_WORKERS, WORKER_LOST,
     GENERATION_FAILED, SHUTTING_DOWN, TIMEOUT, INTERNAL}
)

# --- limits ----------------------------------------------------------------------------------
MAX_IMAGE_BYTES = 32 * 1024 * 1024  # bytes of the submitted PNG
MAX_IMAGE_SIDE = 4096  # pixels, width and height of the submitted image
MAX_HEADER_BYTES = 64 * 1024  # bytes of the JSON header frame
#: the largest frame any peer accepts (ZMQ_MAXMSGSIZE); bigger ones drop the connection
MAX_FRAME_BYTES = MAX_IMAGE_BYTES + 1024 * 1024
MAX_RESULT_FRAMES = 224  # binary frames in a RESULT (every variant's frames, one after another)
MAX_VARIANTS = 8  # videos of one job that differ by their seed (settings.variants)
MAX_SEGMENTS = 8  # 14-frame segments chained into one clip (settings.segments)
SEGMENT_STEP = drags.NUM_FRAMES - 1  # frames each further segment adds (the joint frame is not repeated)
#: the model's frames are FRAME_SIZE x FRAME_SIZE pixels; a result's frames are saved as FRAME_NAME
#: (frame_0000.png, ...: one image sequence for Blender) by generate, the server and the add-on
FRAME_SIZE = 256
FRAME_NAME = "frame_{:04d}.png"
MAX_DRAGS = drags.MAX_DRAGS  # the model's drag slots: one number for the whole project
MIN_STEPS, MAX_STEPS = 1, 200
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1
MAX_PREVIEW_SIDE = 128  # pixels, the side of a PROGRESS preview image
MAX_ID_CHARS = 64  # request ids
DEFAULT_MAX_QUEUE = 64  # jobs waiting (not counting running ones); `serve --max-queue`
# what the broker holds for clients that do not read (each result is ~1-3 MB of PNG frames):
CLIENT_SNDHWM = 1000  # messages queued per client connection (~300 bytes each but results); more are dropped
MAX_UNREAD_RESULT_BYTES_PER_CLIENT = 32 * 1024 * 1024  # result bytes sent to one client, not yet taken
MAX_UNREAD_RESULT_BYTES = 128 * 1024 * 1024  # the same over all clients; a FETCH beyond either is `busy`
MAX_WATCHERS = 8  # client connections that get one job's events (the submitter, then owners who fetched)

# --- timing (seconds) ------------------------------------------------------------------------
HEARTBEAT_INTERVAL_S = 1.0  # every peer sends a heartbeat when it has sent nothing for this long
HEARTBEAT_LIVENESS = 3  # missed intervals before a peer is declared gone
PEER_TIMEOUT_S = HEARTBEAT_INTERVAL_S * HEARTBEAT_LIVENESS  # silence after which a peer is gone
# A worker's main thread answers heartbeats while its generation thread runs the model; on a
# saturated machine (load 12 on 2 cores) that thread went unscheduled for over 3 s and healthy
# workers were declared lost. The broker sees a local worker's process exit at once anyway, so
# only a remote worker that vanishes waits this long to be noticed.
WORKER_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 10.0  # client: an unanswered request fails with TIMEOUT after this long

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# matched with fullmatch: "$" alone would also accept a final newline
_REQ_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_JOB_RE = re.compile(r"[0-9a-f]{32}")
_TOKEN_RE = re.compile(r"[0-9a-f]{32,64}")


class ProtocolError(ValueError):
    """A message or a value that breaks the protocol; ``code`` is one of the error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Message:
    """A decoded message: its type, the whole header and the binary frames after it."""

    type: str
    header: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)
    version: int = PROTOCOL_VERSION

    def get(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)


# --- ids ------------------------------------------------------------------------------------
def new_job_id() -> str:
    """A fresh job id: 32 lowercase hex digits (safe as a folder name)."""
    return uuid.uuid4().hex


def new_job_token() -> str:
    """A job's secret: whoever holds it may fetch and cancel the job (32 hex digits, 128 bits)."""
    return secrets.token_hex(16)


def new_request_id() -> str:
    """A fresh request id (clients choose them; the server echoes them in its replies)."""
    return uuid.uuid4().hex[:16]


def is_request_id(value: object) -> bool:
    return isinstance(value, str) and _REQ_RE.fullmatch(value) is not None


def is_job_id(value: object) -> bool:
    return isinstance(value, str) and _JOB_RE.fullmatch(value) is not None


def check_job_id(value: object) -> str:
    if not is_job_id(value):
        raise ProtocolError(BAD_FIELD, f"job id must be 32 lowercase hex digits, got {_short(value)}")
    return value  # type: ignore[return-value]


# --- encoding and decoding -------------------------------------------------------------------
def encode(type_: str, fields: Mapping[str, Any] | None = None, blobs: Sequence[bytes] = (),
           version: int = PROTOCOL_VERSION) -> list[bytes]:
    """The frames of a message: the JSON header (with version and type) then the blobs. For a
    version-1 peer, drags lose their paths (:func:`drags_for_version`)."""
    header = {"v": version, "type": type_}
    if version < 2 and fields and isinstance(fields.get("drags"), list):
        fields = {**fields, "drags": drags_for_version(fields["drags"], version)}
    if fields:
        header.update(fields)
    data = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    return [data, *(bytes(b) for b in blobs)]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a header")


def decode(frames: Sequence[bytes], accepted: frozenset[str] | None = None) -> Message:
    """Check and decode the frames of one message (without a ROUTER identity frame).

    ``accepted`` is the set of types this peer accepts (e.g. CLIENT_TYPES on the server). Raises
    ProtocolError for a missing or oversized header, broken JSON, a wrong version, an unknown
    type, missing or mistyped fields, or the wrong number of binary frames for the type.
    """
    if not frames:
        raise ProtocolError(BAD_MESSAGE, "empty message")
    raw = frames[0]
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError(BAD_MESSAGE, f"header frame of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(raw).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(BAD_MESSAGE, f"header frame is not valid UTF-8 JSON: {_short(str(exc))}") from None
    if not isinstance(header, dict):
        raise ProtocolError(BAD_MESSAGE, f"header must be a JSON object, got {type(header).__name__}")
    version = header.get("v")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            BAD_VERSION, f"protocol version {_short(version)} is not supported (this peer speaks "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    type_ = header.get("type")
    if not isinstance(type_, str) or type_ not in _SCHEMAS or (accepted is not None and type_ not in accepted):
        raise ProtocolError(UNKNOWN_TYPE, f"unknown message type {_short(type_)}")
    blobs = [bytes(f) for f in frames[1:]]
    required, optional, min_blobs, max_blobs = _SCHEMAS[type_]
    for name, kind in required.items():
        if name not in header:
            raise ProtocolError(BAD_FIELD, f"{type_}: missing field {name!r}")
        _check_type(type_, name, header[name], kind)
    for name, kind in optional.items():
        if header.get(name) is not None:
            _check_type(type_, name, header[name], kind)
    if not min_blobs <= len(blobs) <= max_blobs:
        expected = str(min_blobs) if min_blobs == max_blobs else f"{min_blobs}-{max_blobs}"
        raise ProtocolError(BAD_MESSAGE, f"{type_}: expected {expected} binary frame(s), got {len(blobs)}")
    if "req" in header and header["req"] is not None and not is_request_id(header["req"]):
        raise ProtocolError(BAD_FIELD, f"{type_}: request id must be 1-{MAX_ID_CHARS} of [A-Za-z0-9_.:-]")
    if "job" in header and header["job"] is not None:
        check_job_id(header["job"])
    if header.get("token") is not None and _TOKEN_RE.fullmatch(str(header["token"])) is None:
        raise ProtocolError(BAD_FIELD, f"{type_}: a job token is 32-64 lowercase hex digits")
    return Message(type_, header, blobs, version)


_NUMBER = (int, float)
# type -> (required fields, optional fields, min binary frames, max binary frames)
_SCHEMAS: dict[str, tuple[dict[str, Any], dict[str, Any], int, int]] = {
    PING: ({}, {"req": str}, 0, 0),
    HEARTBEAT: ({}, {}, 0, 0),
    SUBMIT: ({"req": str, "drags": list}, {"settings": dict}, 1, 1),
    CANCEL: ({"req": str, "job": str}, {"token": str}, 0, 0),
    FETCH: ({"req": str, "job": str}, {"token": str}, 0, 0),
    STATUS: ({"req": str}, {}, 0, 0),
    UNLOAD: ({"req": str}, {}, 0, 0),
    PONG: ({"server": dict}, {"req": str}, 0, 0),
    ACCEPTED: ({"req": str, "job": str, "position": int, "seq": int}, {"token": str}, 0, 0),
    REJECTED: ({"req": str, "code": str, "message": str}, {}, 0, 0),
    PROGRESS: ({"job": str, "step": int, "total": int}, {"eta_s": _NUMBER, "elapsed_s": _NUMBER}, 0, 1),
    RESULT: ({"job": str, "settings": dict}, {"req": str, "drags": list, "info": dict}, 1, MAX_RESULT_FRAMES),
    VARIANT: ({"job": str, "index": int, "seed": int}, {}, 1, MAX_RESULT_FRAMES),
    ERROR: ({"job": str, "code": str, "message": str}, {"req": str}, 0, 0),
    CANCELLED: ({"job": str}, {"req": str}, 0, 0),
    JOB_STATE: ({"req": str, "job": str, "state": str}, {"position": int}, 0, 0),
    STATUS_REPLY: ({"req": str, "server": dict, "queue": list, "workers": list}, {"running": list}, 0, 0),
    UNLOADED: ({}, {"req": str, "workers": int}, 0, 0),
    FAILED: ({"req": str, "code": str, "message": str}, {"job": str}, 0, 0),
    READY: ({"worker": dict}, {"secret": str}, 0, 0),
    JOB: ({"job": str, "drags": list, "settings": dict}, {}, 1, 1),
    PREVIEW_GIF: ({"job": str}, {}, 1, 1),
    SHUTDOWN: ({}, {"reason": str}, 0, 0),
}


def _check_type(type_: str, name: str, value: Any, kind: Any) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # JSON true/false are not numbers here
    ok = not (isinstance(value, bool) and bool not in kinds) and isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise ProtocolError(BAD_FIELD, f"{type_}: field {name!r} must be {names}, got {type(value).__name__}")


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- job settings ----------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSettings:
    """How a job is generated. Defaults are the paper's inference settings (50 Euler steps) and
    the model's own guidance ramp (None: for Puppet-Master 1.0 on frame 0 to 5.0 on the last frame)."""

    num_inference_steps: int = 50
    min_guidance_scale: float | None = None
    max_guidance_scale: float | None = None
    #: None: the server draws one and reports it in the result's settings
    seed: int | None = None
    #: send a small preview image with every n-th progress event; 0 sends none
    preview_every: int = 5
    #: videos that differ by their seed (seed, seed + 1, ...), each as a one-video run of its seed
    variants: int = 1
    #: 14-frame segments chained into one clip of segments x 13 + 1 frames
    segments: int = 1

    @property
    def frames_per_variant(self) -> int:
        return self.segments * SEGMENT_STEP + 1

    @property
    def result_frames(self) -> int:
        """Frames in the job's RESULT: every variant's, one after another."""
        return self.variants * self.frames_per_variant

    def to_json(self) -> dict[str, Any]:
        """The wire form; ``variants`` and ``segments`` only when not 1 (servers before them refuse them)."""
        data = asdict(self)
        for name in ("variants", "segments"):
            if data[name] == 1:
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> JobSettings:
        """Check every value (raising ProtocolError(BAD_SETTINGS, ...)) and build the settings."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ProtocolError(BAD_SETTINGS, f"unknown setting(s) {', '.join(map(_short, unknown))}")
        values = asdict(cls())
        values.update(data)
        steps = _int_in(values["num_inference_steps"], "num_inference_steps", MIN_STEPS, MAX_STEPS)
        low, high = (None if values[name] is None else _float_in(values[name], name, 0.0, MAX_GUIDANCE)
                     for name in ("min_guidance_scale", "max_guidance_scale"))
        seed = None if values["seed"] is None else _int_in(values["seed"], "seed", 0, MAX_SEED)
        preview = _int_in(values["preview_every"], "preview_every", 0, MAX_STEPS)
        variants = _int_in(values["variants"], "variants", 1, MAX_VARIANTS)
        segments = _int_in(values["segments"], "segments", 1, MAX_SEGMENTS)
        settings = cls(steps, low, high, seed, preview, variants, segments)
        if settings.result_frames > MAX_RESULT_FRAMES:
            raise ProtocolError(BAD_SETTINGS, f"{variants} variants of {settings.frames_per_variant} frames make "
                                f"{settings.result_frames} frames; at most {MAX_RESULT_FRAMES} per job")
        return settings


def _int_in(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(BAD_SETTINGS, f"{name} must be an integer, got {_short(value)}")
    if not low <= value <= high:
        raise ProtocolError(BAD_SETTINGS, f"{name} must be within {low}-{high}, got {value}")
    return value


def _float_in(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
        raise ProtocolError(BAD_SETTINGS, f"{name} must be a finite number, got {_short(value)}")
    if not low <= value <= high:
        raise ProtocolError(BAD_SETTINGS, f"{name} must be within {low}-{high}, got {value}")
    return float(value)


# --- drags and images ------------------------------------------------------------------------
def drags_to_json(items: Sequence[Any], frames: int = drags.NUM_FRAMES) -> list[dict[str, Any]]:
    """Wire form of drags given as ``drags.Drag`` objects (with or without a path), dicts
    (``{"start": [x, y], "end": [x, y]}``, ``{"path": [[x, y], ...]}``) or pairs
    ``((x0, y0), (x1, y1))``; checked by :func:`check_drags`."""
    out = []
    for drag in items:
        if isinstance(drag, drags.Drag):
            out.append(drag.to_json())
            continue
        if isinstance(drag, Mapping):
            out.append(dict(drag))
            continue
        try:
            start, end = drag
            out.append({"start": [start[0], start[1]], "end": [end[0], end[1]]})
        except (TypeError, ValueError, IndexError, KeyError):
            raise ProtocolError(BAD_DRAGS, f"a drag needs start [x, y] and end [x, y], got {_short(drag)}") from None
    return check_drags(out, frames=frames)


def _point(index: int, name: str, point: Any) -> list[float]:
    if not isinstance(point, list) or len(point) != 2:
        raise ProtocolError(BAD_DRAGS, f"drag {index + 1}: {name} must be [x, y]")
    if any(isinstance(c, bool) or not isinstance(c, _NUMBER) for c in point):
        raise ProtocolError(BAD_DRAGS, f"drag {index + 1}: {name} must hold two numbers, got {_short(point)}")
    return [float(c) for c in point]


def check_drags(value: Any, version: int = PROTOCOL_VERSION, frames: int = drags.NUM_FRAMES) -> list[dict[str, Any]]:
    """Check wire drags: a list of ``{"start": [x, y], "end": [x, y]}``, and from version 2 also
    ``{"path": [[x, y], ...]}`` (one point per frame; with start and end too, they must be its ends),
    with numbers (JSON's ``true`` is not one). Returned with start and end always, and the path
    where one was given. The drag rules themselves (how many, finite, inside the frame, a length,
    14 path points) are ``drags.validate_drags``', whose error becomes a ``bad_drags`` error."""
    if not isinstance(value, list):
        raise ProtocolError(BAD_DRAGS, f"drags must be a list, got {type(value).__name__}")
    allowed = ({"start", "end"}, {"path"}, {"start", "end", "path"}) if version >= 2 else ({"start", "end"},)
    forms = " or ".join("{" + ", ".join(f"'{k}': ..." for k in sorted(keys)) + "}" for keys in allowed)
    out, parsed = [], []
    for index, drag in enumerate(value):
        if not isinstance(drag, dict) or set(drag) not in allowed:
            raise ProtocolError(BAD_DRAGS, f"drag {index + 1} must be {forms}"
                                + ("" if version >= 2 else " (paths need protocol version 2)"))
        wire = {name: _point(index, name, drag[name]) for name in ("start", "end") if name in drag}
        if "path" in drag:
            if not isinstance(drag["path"], list) or len(drag["path"]) > max(frames, 4 * drags.NUM_FRAMES):
                raise ProtocolError(BAD_DRAGS, f"drag {index + 1}: path must be a list of {drags.NUM_FRAMES} [x, y]")
            wire["path"] = [_point(index, f"path point {i}", p) for i, p in enumerate(drag["path"])]
        try:
            parsed.append(drags.Drag.from_json(wire))
        except drags.DragError as exc:
            raise ProtocolError(BAD_DRAGS, f"drag {index + 1}: {exc}") from None
        out.append(parsed[-1].to_json())
    try:
        drags.validate_drags(parsed, max_drags=MAX_DRAGS, path_points=(drags.NUM_FRAMES, frames))
    except drags.DragError as exc:
        raise ProtocolError(BAD_DRAGS, str(exc)) from None
    return out


def drags_for_version(wire: list[dict[str, Any]], version: int) -> list[dict[str, Any]]:
    """Wire drags as a peer of ``version`` reads them: version 1 gets start and end only."""
    if version >= 2:
        return wire
    return [{k: v for k, v in d.items() if k != "path"} if isinstance(d, dict) else d for d in wire]


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) read from a PNG's IHDR chunk, without decoding it; ProtocolError if the
    bytes are not a PNG or exceed the limits."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ProtocolError(IMAGE_TOO_LARGE, f"image of {len(data)} bytes exceeds {MAX_IMAGE_BYTES} bytes")
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ProtocolError(BAD_IMAGE, "the image must be a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise ProtocolError(BAD_IMAGE, f"the PNG has an empty size {width}x{height}")
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
        raise ProtocolError(
            IMAGE_TOO_LARGE, f"image of {width}x{height} pixels exceeds {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}"
        )
    return width, height


@dataclass(frozen=True)
class SubmitRequest:
    """A checked SUBMIT: the request id, drags in wire form, settings and the PNG bytes."""

    req: str
    drags: list[dict[str, list[float]]]
    settings: JobSettings
    image_png: bytes
    image_size: tuple[int, int]


def check_submit(message: Message) -> SubmitRequest:
    """Check a decoded SUBMIT's drags, settings and image header (the server decodes the image)."""
    settings = JobSettings.from_json(message.header.get("settings"))
    drags = check_drags(message.header["drags"], message.version, settings.frames_per_variant)
    size = png_size(message.blobs[0])
    return SubmitRequest(message.header["req"], drags, settings, message.blobs[0], size)
