"""Download Model from the preferences: ``puppet-master download --progress json`` as a child
process, read line by line on a thread, so Blender never waits on it (no bpy here).

The child writes one JSON event per line (``backend/puppet_master/cli/json_progress.py`` lists
them); :meth:`ModelDownload.poll`, called from the add-on's timer, folds the new ones into a
:class:`DownloadStatus` the preferences draw. Cancel sends SIGTERM (the download keeps its
finished files and the next run goes on from them), then kills after a grace period.
:class:`InstalledModels` asks ``puppet-master info --json`` which models are installed, on a
thread too.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

from .backend_process import BackendLaunchError, check_python, child_env

#: seconds Cancel waits for the download to stop before killing it
CANCEL_GRACE_S = 10.0
#: exit status of a cancelled download (as the CLI documents)
EXIT_CANCELLED = 130


def _check_python(python: str) -> None:
    try:
        check_python(python)
    except BackendLaunchError as exc:
        raise DownloadError(str(exc)) from None


class DownloadError(RuntimeError):
    """The download could not be started; the message says why and what to set."""


@dataclass
class DownloadStatus:
    state: str = "IDLE"  # IDLE, RUNNING, CANCELLING, DONE, FAILED, CANCELLED
    stage: str = ""
    fraction: float = 0.0
    text: str = ""
    file: str = ""
    model: str = ""
    error: str = ""
    models: list[dict] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ("RUNNING", "CANCELLING")


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


class ModelDownload:
    """One ``puppet-master download`` child process and what it has reported."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.status = DownloadStatus()
        self._events: queue.Queue = queue.Queue()
        self._stderr: list[str] = []
        self._cancel_deadline: float | None = None
        self._ended = False

    def command(self, python: str, extra_args: list[str] | tuple[str, ...] = ()) -> list[str]:
        _check_python(python)
        return [python, "-m", "puppet_master", "download", "--progress", "json", *extra_args]

    def start(self, python: str, extra_args: list[str] | tuple[str, ...] = ()) -> None:
        if self.status.active:
            raise DownloadError("a download is already running")
        command = self.command(python, extra_args)
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            stdin=subprocess.DEVNULL, text=True, env=child_env())
        except OSError as exc:
            raise DownloadError(f"cannot start {python}: {exc}") from exc
        self.status = DownloadStatus(state="RUNNING", text="Starting the download...")
        self._events = queue.Queue()
        self._stderr = []
        self._cancel_deadline = None
        self._ended = False
        threading.Thread(target=self._read, args=(self.process.stdout, self._events), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True).start()

    @staticmethod
    def _read(stream, events: queue.Queue) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "message", "text": line.rstrip()}
            events.put(event if isinstance(event, dict) else {"event": "message", "text": str(event)})
        events.put(None)  # end of output

    def _read_stderr(self, stream) -> None:
        for line in stream:
            self._stderr.append(line.rstrip())
            del self._stderr[:-20]

    def poll(self) -> bool:
        """Fold new events into :attr:`status`; True when something changed. Never blocks."""
        changed = False
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if event is None:
                self._ended = True
                continue
            self._apply(event)
            changed = True
        if self.status.state == "CANCELLING" and self.process is not None and self.process.poll() is None \
                and self._cancel_deadline is not None and time.monotonic() > self._cancel_deadline:
            self.process.kill()
        if self.status.active and self._ended and self.process is not None and self.process.poll() is not None:
            self._finish(self.process.returncode)
            changed = True
        return changed

    def _apply(self, event: dict) -> None:
        kind, s = event.get("event"), self.status
        if kind == "stage":
            s.stage = str(event.get("stage", ""))
            s.text = {"resolving": "Asking the hub for the files...", "downloading": "Downloading...",
                      "converting": "Converting the weights (a few minutes)...",
                      "cleaning": "Removing the raw downloads..."}.get(s.stage, s.stage)
            if s.stage == "converting":
                s.fraction = max(s.fraction, 0.99)
        elif kind == "plan":
            s.text = f"{event.get('files', 0)} files, {_gb(int(event.get('download_bytes', 0)))} to download"
        elif kind == "file":
            s.file = str(event.get("file", ""))
        elif kind == "progress":
            total = int(event.get("overall_total") or 0)
            if total > 0:
                s.fraction = min(1.0, int(event.get("overall_done", 0)) / total)
                s.text = f"Downloading {s.file}: {_gb(int(event.get('overall_done', 0)))} of {_gb(total)}"
        elif kind == "message":
            if s.stage != "downloading":
                s.text = str(event.get("text", ""))
        elif kind == "done":
            s.model = str(event.get("model", ""))
            s.models = list(event.get("models") or [])
        elif kind == "error":
            s.error = str(event.get("message", ""))
        elif kind == "cancelled":
            s.text = "Cancelling: waiting for the download to stop..."

    def _finish(self, code: int) -> None:
        s = self.status
        if code == 0:
            s.state, s.fraction = "DONE", 1.0
            s.text = f"Installed in {s.model}" if s.model else "Done"
        elif code == EXIT_CANCELLED or s.state in ("CANCELLING", "CANCELLED"):
            s.state, s.text = "CANCELLED", "Cancelled: the finished files are kept; Download Model goes on from them"
        else:
            s.state = "FAILED"
            s.error = s.error or "\n".join(self._stderr[-5:]) or f"the download exited with code {code}"
            s.text = f"Download failed (exit code {code})"

    def cancel(self) -> None:
        if self.process is None or self.process.poll() is not None or not self.status.active:
            return
        self.process.send_signal(signal.SIGTERM)
        self.status.state = "CANCELLING"
        self.status.text = "Cancelling..."
        self._cancel_deadline = time.monotonic() + CANCEL_GRACE_S

    def stop(self) -> None:
        """Kill a running download at once (the add-on is being disabled or Blender quits)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=CANCEL_GRACE_S)


class InstalledModels:
    """``puppet-master info --json``'s installed models, asked on a thread."""

    def __init__(self) -> None:
        self.models: list[dict] = []
        self.known = False  # False until the backend has been asked (or a download reported them)
        self.error = ""
        self.pending = False
        self._result: queue.Queue = queue.Queue()

    def refresh(self, python: str, timeout: float = 120.0) -> None:
        _check_python(python)
        if self.pending:
            return
        self.pending = True

        def ask() -> None:
            try:
                done = subprocess.run([python, "-m", "puppet_master", "info", "--json"], capture_output=True,
                                      text=True, timeout=timeout, env=child_env(), stdin=subprocess.DEVNULL)
                if done.returncode != 0:
                    self._result.put(("error", done.stderr.strip().splitlines()[-1:] or ["info failed"]))
                else:
                    self._result.put(("models", json.loads(done.stdout).get("models", [])))
            except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                self._result.put(("error", [str(exc)]))

        threading.Thread(target=ask, daemon=True).start()

    def poll(self) -> bool:
        try:
            kind, value = self._result.get_nowait()
        except queue.Empty:
            return False
        self.pending = False
        if kind == "models":
            self.models, self.error, self.known = value, "", True
        else:
            self.error = value[0] if value else "info failed"
        return True

    def set(self, models: list[dict]) -> None:
        self.models, self.error, self.known = list(models), "", True


def model_lines(models: list[dict]) -> list[str]:
    """One line per installed model for the preferences."""
    if not models:
        return ["No model installed: Download Model installs the default one"]
    lines = []
    for m in models:
        mark = " (default)" if m.get("default") else ""
        lines.append(f"{m.get('name')}{mark}: {_gb(int(m.get('bytes') or 0))}, {m.get('dtype') or 'dtype unknown'}, "
                     f"{', '.join(m.get('licences') or []) or 'licence unknown'}")
    return lines
