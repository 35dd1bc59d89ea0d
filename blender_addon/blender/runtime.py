"""State that lives only while Blender runs (jobs in flight, pings, the local backend) and the timer.

The timer polls every client without blocking; tests call :func:`tick` by hand, because timers
do not run when Blender is in background mode.
"""

from __future__ import annotations

import atexit
from dataclasses import dataclass, field

import bpy

from ..core import backend_process, job, model_download

#: how often the timer polls while something is in flight, seconds
TIMER_INTERVAL_S = 0.1


@dataclass
class RuntimeState:
    controllers: dict[str, job.JobController] = field(default_factory=dict)  # scene name -> job
    pinger: job.Pinger | None = None
    connection_text: str = ""
    backend: backend_process.LocalBackend = field(default_factory=backend_process.LocalBackend)
    backend_error: str = ""
    backend_watch: bool = False
    download: model_download.ModelDownload = field(default_factory=model_download.ModelDownload)
    models: model_download.InstalledModels = field(default_factory=model_download.InstalledModels)


STATE = RuntimeState()
# Blender does not unregister add-ons when it quits: never leave a local backend or download orphaned
atexit.register(STATE.backend.stop)
atexit.register(STATE.download.stop)


def backend_status_lines() -> list[str]:
    backend = STATE.backend
    if backend.running:
        return [f"Local backend running (pid {backend.process.pid}), log: {backend.log_path}"]
    lines = []
    if STATE.backend_error:
        lines.extend(STATE.backend_error.splitlines()[-8:])
    return lines


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TIMER_INTERVAL_S, persistent=True)


def stop_timer() -> None:
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


def _redraw() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        for area in window.screen.areas:
            if area.type in {"VIEW_3D", "PROPERTIES", "PREFERENCES", "STATUSBAR"}:
                area.tag_redraw()


#: called with (scene, snapshot) when a job's state changes; generation.register sets it (so this
#: module does not import generation, which imports this one)
snapshot_handler = None


def tick() -> float | None:
    """Poll every job, the pending ping and the local backend; the next interval, or None when idle."""
    changed = False
    for scene_name, controller in list(STATE.controllers.items()):
        scene = bpy.data.scenes.get(scene_name)
        if scene is None:
            controller.close()
            del STATE.controllers[scene_name]
            continue
        snapshot = controller.poll()
        if snapshot is not None:
            changed = True
            if snapshot_handler is not None:
                snapshot_handler(scene, snapshot)
        if not controller.snapshot.active:
            controller.close()
            STATE.controllers.pop(scene_name, None)
    if STATE.pinger is not None:
        result = STATE.pinger.poll()
        if result is not None:
            STATE.connection_text = result.text
            STATE.pinger = None
            changed = True
    if STATE.backend_watch and not STATE.backend.running:
        STATE.backend_watch = False
        code = STATE.backend.exit_code
        STATE.backend_error = f"Local backend exited with code {code}. Log:\n{STATE.backend.log_tail()}"
        changed = True
    if STATE.download.status.active and STATE.download.poll():
        changed = True
        if STATE.download.status.state == "DONE":
            STATE.models.set(STATE.download.status.models)
    if STATE.models.pending and STATE.models.poll():
        changed = True
    if changed:
        _redraw()
    busy = (STATE.controllers or STATE.pinger is not None or STATE.backend_watch or STATE.download.status.active
            or STATE.models.pending)
    return TIMER_INTERVAL_S if busy else None


def shutdown() -> None:
    """Close every client and stop the local backend we started (add-on disabled or Blender quits)."""
    stop_timer()
    for controller in STATE.controllers.values():
        controller.close()
    STATE.controllers.clear()
    if STATE.pinger is not None:
        STATE.pinger.client.close()
        STATE.pinger = None
    STATE.backend_watch = False
    STATE.backend.stop()
    STATE.download.stop()
