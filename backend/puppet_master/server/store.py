"""The results folder: every accepted job on disk, so nothing is lost across restarts.

Layout (``--results``, default ``$PUPPET_MASTER_HOME/results``)::

    index.json            {"version": 1, "next_seq": N, "jobs": {job_id: summary}} (rebuilt if lost)
    <job_id>/job.json     the job record: state, times, seq, drags, settings, code/message, worker
    <job_id>/input.png    the submitted image (kept so that an interrupted job can run again)
    <job_id>/frame_0000.png ... preview.gif settings.json   (when done: what `generate` writes)

Job ids are 32 hex digits (checked before any path is built). Retention: a finished job is
pruned only when it is both older than ``keep_s`` and not among the newest ``keep_jobs``.

The job folders are the truth; the index is rebuilt from them. A job folder whose ``job.json`` is
unreadable or holds fields of the wrong type is moved aside into ``damaged/`` (named in the log and
in ``status``), so one damaged record never stops the server or the other jobs.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from puppet_master import protocol
from puppet_master.outputs import FRAME_NAME, write_json_atomic

log = logging.getLogger(__name__)

INDEX_NAME = "index.json"
JOB_NAME = "job.json"
INPUT_NAME = "input.png"
PREVIEW_NAME = "preview.gif"
DEFAULT_KEEP_JOBS = 100
DEFAULT_KEEP_S = 24 * 3600.0
_SUMMARY_KEYS = ("state", "seq", "created", "finished", "code")
DAMAGED_DIR = "damaged"
#: a submit is refused (disk_full) when the results disk has less than this free: room for its
#: input, its 14 frames, preview and records
MIN_FREE_BYTES = 8 * 1024 * 1024


def is_disk_full(exc: BaseException) -> bool:
    """True for the errors of a full disk or an exhausted quota."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
_STATES = {protocol.QUEUED, protocol.RUNNING, *protocol.FINAL_STATES}


def record_problem(record: Any, job_id: str) -> str | None:
    """What is wrong with a job record read from disk, or None when it can be used."""
    if not isinstance(record, dict):
        return f"{JOB_NAME} is not a JSON object"
    if record.get("job") != job_id:
        return f"its job id {str(record.get('job'))[:40]!r} is not its folder's"
    checks = {"seq": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
              "state": lambda v: v in _STATES,
              "created": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
              "settings": lambda v: v is None or isinstance(v, dict),
              "drags": lambda v: v is None or isinstance(v, list),
              "client": lambda v: v is None or isinstance(v, str),
              "token_sha256": lambda v: v is None or isinstance(v, str)}
    for key, ok in checks.items():
        if (key in record or key in ("seq", "state")) and not ok(record.get(key)):
            return f"its {key} {str(record.get(key))[:40]!r} has the wrong type or value"
    return None


class ResultStore:
    """Jobs persisted under ``root``; one writer (the broker's thread)."""

    def __init__(self, root: str | Path, *, keep_jobs: int = DEFAULT_KEEP_JOBS, keep_s: float = DEFAULT_KEEP_S):
        self.root = Path(root).expanduser()
        self.keep_jobs = keep_jobs
        self.keep_s = keep_s
        self.root.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, dict[str, Any]] = {}
        self.next_seq = 0
        #: records moved aside as damaged: {"job", "reason", "moved_to"}
        self.damaged: list[dict[str, str]] = []
        self._load_index()

    # --- records -----------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        return self.root / protocol.check_job_id(job_id)

    def create(self, record: dict[str, Any], image_png: bytes) -> None:
        """Persist a newly accepted job (its record and input image) before it is acknowledged."""
        folder = self.job_dir(record["job"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INPUT_NAME).write_bytes(image_png)
        self._write(record)

    def update(self, job_id: str, **fields: Any) -> dict[str, Any] | None:
        record = self.load(job_id)
        if record is None:
            return None
        record.update(fields)
        self._write(record)
        return record

    def load(self, job_id: str) -> dict[str, Any] | None:
        """The job record, or None for an unknown or unreadable job."""
        if not protocol.is_job_id(job_id):
            return None
        try:
            record = json.loads((self.root / job_id / JOB_NAME).read_text())
        except (OSError, ValueError):
            return None
        return record if record_problem(record, job_id) is None else None

    def input_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / INPUT_NAME

    def input_png(self, job_id: str) -> bytes | None:
        try:
            return self.input_path(job_id).read_bytes()
        except OSError:
            return None

    def save_result(self, job_id: str, frames_png: list[bytes], settings: dict[str, Any],
                    preview_gif: bytes | None = None, **fields: Any) -> dict[str, Any] | None:
        """Write the frames and ``preview.gif`` as received, ``settings.json``; mark the job done.
        Only bytes are written here (the worker encodes them) so the broker never stalls."""
        folder = self.job_dir(job_id)
        for i, data in enumerate(frames_png):
            (folder / FRAME_NAME.format(i)).write_bytes(data)
        if preview_gif:
            (folder / PREVIEW_NAME).write_bytes(preview_gif)
        write_json_atomic(folder / "settings.json", settings)
        return self.update(job_id, state=protocol.DONE, finished=time.time(), frames=len(frames_png), **fields)

    def save_preview(self, job_id: str, preview_gif: bytes) -> None:
        """Write a finished job's ``preview.gif`` (it arrives just after the result)."""
        (self.job_dir(job_id) / PREVIEW_NAME).write_bytes(preview_gif)

    def frame_paths(self, record: dict[str, Any]) -> list[Path]:
        """The frame files of a finished job, from its (already loaded) record."""
        folder = self.job_dir(record["job"])
        return [folder / FRAME_NAME.format(i) for i in range(int(record.get("frames", 0)))]

    def result_frames(self, job_id: str) -> list[bytes]:
        record = self.load(job_id)
        return [path.read_bytes() for path in self.frame_paths(record)] if record else []

    def result_settings(self, job_id: str) -> dict[str, Any]:
        try:
            return json.loads((self.job_dir(job_id) / "settings.json").read_text())
        except (OSError, ValueError):
            return {}

    def result_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """A finished job's RESULT fields (job, settings, drags, info), from its record and settings.json."""
        settings = self.result_settings(record["job"])
        drags = settings.pop("drags", record.get("drags") or [])
        settings.pop("job", None)
        return {"job": record["job"], "settings": settings, "drags": drags, "info": record.get("info") or {}}

    def why_unknown(self, job_id: str) -> str:
        """Why ``job_id`` has no record: moved aside as damaged (where to), or never here or pruned."""
        damaged = next((d for d in self.damaged if d["job"] == job_id), None)
        if damaged:
            return f"its record was damaged ({damaged['reason']}) and the server moved it aside to {damaged['moved_to']}"
        return "never submitted, or pruned"

    def unfinished(self) -> list[dict[str, Any]]:
        """Records of jobs that were queued or running when the server stopped, in seq order."""
        records = [self.load(job_id) for job_id, s in self._index.items() if s.get("state") not in protocol.FINAL_STATES]
        return sorted((r for r in records if r), key=lambda r: r.get("seq", 0))

    def __len__(self) -> int:
        return len(self._index)

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def full_message(self) -> str:
        return (f"the server's results disk is full ({self.root}: {self.free_bytes() / 2**20:.1f} MiB free, "
                f"{MIN_FREE_BYTES // 2**20} MiB needed per job): free space there, or restart serve with another --results")

    def remove(self, job_id: str) -> None:
        """Delete a job's folder and index entry (a job that could not be stored)."""
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        self._index.pop(job_id, None)
        try:
            self._write_index()
        except OSError as exc:
            log.warning("could not rewrite the index of %s: %s", self.root, exc)

    def drop_frames(self, job_id: str) -> None:
        """Delete the result files a failed save left (frames, preview, settings), keeping the record."""
        folder = self.job_dir(job_id)
        for path in [*folder.glob("frame_*.png"), folder / PREVIEW_NAME, folder / "settings.json"]:
            path.unlink(missing_ok=True)

    # --- retention ---------------------------------------------------------------------------
    def prune(self, now: float | None = None) -> list[str]:
        """Delete finished jobs beyond the newest ``keep_jobs`` that are older than ``keep_s``."""
        now = time.time() if now is None else now
        finished = sorted(
            ((s.get("seq", 0), job_id, s) for job_id, s in self._index.items() if s.get("state") in protocol.FINAL_STATES),
            reverse=True,
        )
        removed = []
        for _, job_id, summary in finished[self.keep_jobs:]:
            if now - float(summary.get("finished") or summary.get("created") or 0) > self.keep_s:
                shutil.rmtree(self.root / job_id, ignore_errors=True)
                self._index.pop(job_id, None)
                removed.append(job_id)
        if removed:
            log.info("pruned %d old job(s) from %s", len(removed), self.root)
            self._write_index()
        return removed

    # --- internals ---------------------------------------------------------------------------
    def _write(self, record: dict[str, Any]) -> None:
        write_json_atomic(self.job_dir(record["job"]) / JOB_NAME, record)
        self._index[record["job"]] = {k: record.get(k) for k in _SUMMARY_KEYS}
        self.next_seq = max(self.next_seq, int(record.get("seq", -1)) + 1)
        self._write_index()

    def _write_index(self) -> None:
        write_json_atomic(self.root / INDEX_NAME, {"version": 1, "next_seq": self.next_seq, "jobs": self._index})

    def quarantine(self, job_id: str, reason: str) -> None:
        """Move a damaged job folder into ``damaged/`` and name it in the log and in ``damaged``."""
        target = self.root / DAMAGED_DIR / job_id
        suffix = 1
        while target.exists():
            target = self.root / DAMAGED_DIR / f"{job_id}.{suffix}"
            suffix += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.root / job_id), str(target))
        self._index.pop(job_id, None)
        self.damaged.append({"job": job_id, "reason": reason, "moved_to": str(target)})
        log.error("job %s has a damaged record (%s): moved aside to %s; the other jobs are served", job_id, reason,
                  target)

    def _load_index(self) -> None:
        try:
            data = json.loads((self.root / INDEX_NAME).read_text())
            next_seq = data.get("next_seq", 0)
            self.next_seq = next_seq if isinstance(next_seq, int) and not isinstance(next_seq, bool) else 0
        except (OSError, ValueError, AttributeError):
            self.next_seq = 0
        # the job folders are the truth: the index is rebuilt from their records
        self._index = {}
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and protocol.is_job_id(p.name)):
            try:
                record = json.loads((folder / JOB_NAME).read_text())
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                self.quarantine(folder.name, f"{JOB_NAME} cannot be read: {str(exc)[:80]}")
                continue
            problem = record_problem(record, folder.name)
            if problem is not None:
                self.quarantine(folder.name, problem)
                continue
            self._index[folder.name] = {k: record.get(k) for k in _SUMMARY_KEYS}
        self.next_seq = max([self.next_seq, *(int(s["seq"]) + 1 for s in self._index.values())])
        try:
            self._write_index()
        except OSError as exc:  # a full disk: serve anyway (submits are refused until there is room)
            log.error("could not write %s: %s", self.root / INDEX_NAME, exc)
