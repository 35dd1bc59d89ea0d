"""A small journal of submitted jobs beside the results (no bpy), so a crash loses no job.

The job id is saved in the .blend, but only when the artist saves. The journal
(``<output folder>/jobs.json``, e.g. ``//puppet_master/jobs.json``) is written the moment the
backend accepts a job; reopening the .blend after a crash finds the job there and fetches it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .results import write_atomic

JOURNAL_NAME = "jobs.json"
#: entries kept (oldest dropped first)
MAX_ENTRIES = 100
PENDING, FINISHED = "pending", "finished"


@dataclass(frozen=True)
class JournalEntry:
    job_id: str
    scene: str
    endpoint: str
    state: str
    time: float
    #: the job's token: only its owner may fetch it (see docs/protocol.md)
    token: str = ""


def _read(path: Path) -> list[JournalEntry]:
    try:
        data = json.loads(path.read_text())
        return [JournalEntry(**item) for item in data.get("jobs", [])]
    except FileNotFoundError:
        return []
    except (ValueError, TypeError, AttributeError):
        return []  # a damaged journal must never stop the artist: start a new one


def _write(path: Path, entries: list[JournalEntry]) -> None:
    write_atomic(path, json.dumps({"version": 1, "jobs": [asdict(e) for e in entries[-MAX_ENTRIES:]]}, indent=1).encode())


def record(root: Path, job_id: str, scene: str, endpoint: str, token: str = "") -> None:
    """Note a job the backend accepted for ``scene``, with its token."""
    path = root / JOURNAL_NAME
    entries = [e for e in _read(path) if e.job_id != job_id]
    entries.append(JournalEntry(job_id, scene, endpoint, PENDING, time.time(), token))
    _write(path, entries)


def finish(root: Path, job_id: str) -> None:
    """Mark a job as ended (result saved, error or cancelled)."""
    path = root / JOURNAL_NAME
    entries = _read(path)
    if any(e.job_id == job_id and e.state == PENDING for e in entries):
        _write(path, [replace(e, state=FINISHED) if e.job_id == job_id else e for e in entries])


def token_for(root: Path, job_id: str) -> str:
    """The token saved with ``job_id`` ("" if the journal does not know the job)."""
    return next((e.token for e in _read(root / JOURNAL_NAME) if e.job_id == job_id), "")


def latest_pending(root: Path, scene: str) -> JournalEntry | None:
    """The newest job of ``scene`` that never ended, if any."""
    pending = [e for e in _read(root / JOURNAL_NAME) if e.scene == scene and e.state == PENDING]
    return max(pending, key=lambda e: e.time, default=None)
