"""Where the tests find ``../shared`` (specs, golden tensors, data lists, assets; read-only)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_shared() -> Path:
    """``$PUPPET_MASTER_SHARED``; else ``shared`` beside this checkout; else ``shared`` beside the
    local repository this checkout was cloned from (a scratch clone in a temporary folder)."""
    if os.environ.get("PUPPET_MASTER_SHARED"):
        return Path(os.environ["PUPPET_MASTER_SHARED"])
    beside = ROOT.parent / "shared"
    if beside.is_dir():
        return beside
    try:
        origin = subprocess.run(["git", "-C", str(ROOT), "remote", "get-url", "origin"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        origin = ""
    if origin and Path(origin).is_dir() and (Path(origin).resolve().parent / "shared").is_dir():
        return Path(origin).resolve().parent / "shared"
    return beside


SHARED = find_shared()
