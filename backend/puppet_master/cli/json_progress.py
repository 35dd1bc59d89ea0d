"""Machine-readable progress: one JSON object per line on stdout (``--progress json``).

Every line has an ``event``; the add-on's Download Model reads them (blender_addon/model_download.py
parses the same names). Events of ``download``:

- ``stage``: ``{"stage": "resolving" | "downloading" | "converting" | "cleaning"}``
- ``plan``: ``{"files": N, "download_bytes": B, "converted_bytes": C, "cache_dir": ..., "out": ...}``
- ``file``: ``{"repo": ..., "file": ..., "index": i, "files": N, "cached": bool}`` as each file starts
- ``progress``: ``{"file": ..., "done": b, "total": t, "overall_done": B1, "overall_total": B}``
  (at most every :data:`MIN_INTERVAL_S` per file, and at each file's end)
- ``message``: ``{"text": ...}`` what a terminal would show
- ``done``: ``{"model": folder, "dtype": ..., "default": bool, "models": [installed models]}``
- ``error``: ``{"message": ..., "exit_code": n}``; ``cancelled``: ``{"exit_code": 130}``
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

MIN_INTERVAL_S = 0.25
PROGRESS_MODES = ("bars", "json")


class JsonLines:
    """Writes events as JSON lines and keeps the running byte count across files."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.overall_total = 0
        self.finished_bytes = 0

    def emit(self, event: str, **fields: Any) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()

    def tqdm_class(self) -> type[tqdm]:
        """A tqdm class for huggingface_hub whose bars become ``progress`` events."""
        lines = self

        class _Bar(tqdm):
            def __init__(self, *args, **kwargs) -> None:
                kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 (closed with the bar)
                kwargs.pop("disable", None)
                super().__init__(*args, **kwargs)
                self._last_emit = 0.0
                self._counted = False
                self._name = str(kwargs.get("desc") or "")

            def update(self, n: float | None = 1) -> bool | None:
                shown = super().update(n)
                now = time.monotonic()
                if now - self._last_emit >= MIN_INTERVAL_S or (self.total and self.n >= self.total):
                    self._last_emit = now
                    lines.emit("progress", file=self._name, done=int(self.n), total=int(self.total or 0),
                               overall_done=lines.finished_bytes + int(self.n), overall_total=lines.overall_total)
                return shown

            def close(self) -> None:
                if getattr(self, "_counted", True) is False and self.total and self.n >= self.total:
                    lines.finished_bytes += int(self.n)
                self._counted = True
                sink = self.fp
                super().close()
                if sink is not None and not sink.closed:
                    sink.close()

        return _Bar
