"""Id lists in the released format, and the labels CSV of the curation filter.

The released lists (``objaverse-animation.json``, ``objaverse-animation-HQ.json``) are one JSON
array of asset id strings on a single line, written like ``json.dumps(ids)``. Curation keeps or
drops clips (``<asset_id>/<clip>``); an asset enters the asset list when at least one of its clips is
kept. The clip list uses the same format with ``<asset_id>/<clip>`` entries.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

_TRUE = {"1", "true", "yes", "keep", "good", "y", "t"}
_FALSE = {"0", "false", "no", "drop", "bad", "n", "f"}


class ListError(ValueError):
    """An id list or labels file that cannot be used; the message names the file and the line."""


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_id_list(path: str | Path, ids: Iterable[str]) -> list[str]:
    """Write ids (duplicates dropped, first order kept) as the released lists are written."""
    unique = list(dict.fromkeys(str(i) for i in ids))
    _write_text_atomic(Path(path), json.dumps(unique))
    return unique


def read_id_list(path: str | Path) -> list[str]:
    """Read a released-format id list, checking it is a JSON array of unique strings."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ListError(f"{path}: missing") from exc
    except json.JSONDecodeError as exc:
        raise ListError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, list) or not all(isinstance(i, str) and i for i in data):
        raise ListError(f"{path}: expected a JSON array of id strings")
    if len(set(data)) != len(data):
        raise ListError(f"{path}: the list repeats ids")
    return data


def asset_ids_of(clip_ids: Iterable[str]) -> list[str]:
    """The asset ids of ``<asset_id>/<clip>`` ids, in first-seen order."""
    return list(dict.fromkeys(c.split("/", 1)[0] for c in clip_ids))


def parse_label(value: str, *, where: str) -> int:
    text = value.strip().lower()
    if text in _TRUE:
        return 1
    if text in _FALSE:
        return 0
    raise ListError(f"{where}: label {value!r} is not one of 1/0, keep/drop, true/false, yes/no, good/bad")


def read_labels(path: str | Path) -> dict[str, int]:
    """Read a labels CSV with a header naming an id column (``id`` or ``clip``) and ``label``.

    An id is ``<asset_id>/<clip>`` for one clip or ``<asset_id>`` for every clip of the asset.
    Labels are 1 (keep) or 0 (drop); keep/drop, true/false, yes/no and good/bad are accepted too.
    """
    path = Path(path)
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            fields = [name.strip().lower() for name in (reader.fieldnames or [])]
            id_col = next((c for c in ("id", "clip", "clip_id", "asset_id", "uid") if c in fields), None)
            if id_col is None or "label" not in fields:
                raise ListError(f"{path}: the header must name an id column ('id' or 'clip') and 'label', got {fields}")
            raw_id = reader.fieldnames[fields.index(id_col)]
            raw_label = reader.fieldnames[fields.index("label")]
            labels: dict[str, int] = {}
            for line_no, row in enumerate(reader, start=2):
                key = (row.get(raw_id) or "").strip()
                if not key:
                    raise ListError(f"{path}:{line_no}: empty id")
                labels[key] = parse_label(row.get(raw_label) or "", where=f"{path}:{line_no}")
    except FileNotFoundError as exc:
        raise ListError(f"{path}: missing") from exc
    except UnicodeDecodeError as exc:
        raise ListError(f"{path}: not a text CSV ({exc})") from exc
    if not labels:
        raise ListError(f"{path}: no labelled rows")
    return labels


def label_for(clip_id: str, labels: dict[str, int]) -> int | None:
    """The label of a clip: its own row first, else its asset's row, else None."""
    if clip_id in labels:
        return labels[clip_id]
    return labels.get(clip_id.split("/", 1)[0])
