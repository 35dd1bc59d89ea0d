"""Start and stop a local ``puppet-master serve`` process (no bpy).

The add-on never blocks on it: ``start`` returns at once, ``state`` tells whether the process is
still alive, and its output goes to a log file whose tail the panel shows when it dies.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._light import light_module

protocol = light_module("protocol")

#: how long ``stop`` waits for a polite exit before killing, seconds
STOP_GRACE_S = 3.0
#: lines of the log shown when the process fails
LOG_TAIL_LINES = 15


class BackendLaunchError(RuntimeError):
    """The local backend could not be started; the message says why."""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a backend child process: Blender's own Python paths must not leak in."""
    env = {**os.environ, **(extra or {}), "PYTHONUNBUFFERED": "1"}
    for var in ("PYTHONHOME", "PYTHONPATH"):
        env.pop(var, None)
    return env


def check_python(python: str) -> None:
    """Refuse an unset or missing backend Python (BackendLaunchError says what to set)."""
    if not python:
        raise BackendLaunchError("set the Python executable of the backend in the add-on preferences")
    if not Path(python).is_file():
        raise BackendLaunchError(f"backend Python executable not found: {python}")


@dataclass(frozen=True)
class LaunchSettings:
    python: str
    endpoint: str
    model_args: str = ""
    memory: str = ""  # a `serve --memory` preset; empty: picked by the backend
    extra_env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        check_python(self.python)
        try:
            model = shlex.split(self.model_args)
        except ValueError as exc:
            raise BackendLaunchError(f"cannot parse the model options {self.model_args!r}: {exc}") from exc
        try:
            endpoint = protocol.normalize_endpoint(self.endpoint)
        except protocol.EndpointError as exc:
            raise BackendLaunchError(f"Backend Endpoint: {exc}") from exc
        memory = ["--memory", self.memory] if self.memory else []
        return [self.python, "-m", "puppet_master", "serve", "--bind", endpoint, *model, *memory]


class LocalBackend:
    """One local backend process and its log file."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self._log_file = None

    def start(self, settings: LaunchSettings) -> None:
        if self.running:
            raise BackendLaunchError(f"the local backend is already running (pid {self.process.pid})")
        command = settings.command()
        fd, name = tempfile.mkstemp(prefix="puppet_master_backend_", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop/_reap)
        env = child_env(settings.extra_env)
        try:
            self.process = subprocess.Popen(
                command, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        except OSError as exc:
            self._close_log()
            raise BackendLaunchError(f"cannot start {command[0]}: {exc}") from exc

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT if os.name != "nt" else signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=STOP_GRACE_S)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
