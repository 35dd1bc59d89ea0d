"""Generate, cancel and fetch: the scene side of a job (thin glue between properties and job.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import bpy
from bpy.app.handlers import persistent

from ..core import job, job_journal, results
from ..core._light import light_module
from . import anchors, preferences, reference, result_plane, runtime
from .scene_drags import scene_drag_list, shot_indices

drags_mod = light_module("drags")
protocol = light_module("protocol")
log = logging.getLogger(__name__)


class GenerateError(RuntimeError):
    """Generate cannot start; the message tells the artist what to do."""


def scene_drags(scene: bpy.types.Scene) -> list:
    if not shot_indices(scene):
        raise GenerateError("draw at least one drag (Draw Drags) before generating")
    try:
        drags = scene_drag_list(scene)
        drags_mod.validate_drags(drags)
    except (ValueError, drags_mod.DragError) as exc:
        raise GenerateError(str(exc)) from exc
    return drags


def scene_settings(scene: bpy.types.Scene, prefs) -> job.GenerationSettings:
    props = scene.puppet_master
    shape = {"variants": props.variants, "segments": props.segments}
    if props.use_scene_settings:
        return job.GenerationSettings(steps=props.steps, guidance=props.guidance, seed=props.seed, **shape)
    return job.GenerationSettings(steps=prefs.default_steps, guidance=prefs.default_guidance, seed=prefs.default_seed,
                                  **shape)


def _server_key(prefs) -> str | None:
    try:
        return job.resolve_server_key(prefs.server_key)
    except job.ServerKeyError as exc:
        raise GenerateError(str(exc)) from exc


def _controller(prefs, endpoint: str | None = None) -> job.JobController:
    try:
        return job.JobController(endpoint or prefs.endpoint, _server_key(prefs))
    except protocol.EndpointError as exc:
        raise GenerateError(f"Backend Endpoint in the add-on preferences: {exc}") from exc


def start(scene: bpy.types.Scene) -> job.JobController:
    """Submit the scene's reference and drags; returns at once (the timer follows the job)."""
    props = scene.puppet_master
    if scene.name in runtime.STATE.controllers:
        raise GenerateError("a job is already running for this scene: wait for it or cancel it")
    prefs = preferences.get()
    drags = scene_drags(scene)
    image_png = reference.reference_png(scene)
    settings = scene_settings(scene, prefs)
    controller = _controller(prefs)
    try:
        controller.submit(image_png, drags, settings)
    except (protocol.ProtocolError, ValueError) as exc:
        controller.close()
        raise GenerateError(f"cannot submit: {exc}") from exc
    runtime.STATE.controllers[scene.name] = controller
    props.job_endpoint = controller.client.endpoint
    props.job_camera = scene.camera
    props.job_id = props.job_token = ""
    apply_snapshot(scene, controller.snapshot)
    runtime.ensure_timer()
    return controller


def attach(scene: bpy.types.Scene, job_id: str | None = None) -> job.JobController:
    """Follow or collect job ``job_id`` (default: the one saved in the scene)."""
    props = scene.puppet_master
    job_id = job_id or props.job_id
    if not job_id:
        raise GenerateError("this scene has no job to fetch")
    if scene.name in runtime.STATE.controllers:
        raise GenerateError("a job is already being followed for this scene")
    prefs = preferences.get()
    controller = _controller(prefs, props.job_endpoint)
    try:
        token = props.job_token if job_id == props.job_id else ""
        controller.attach(job_id, token or _journal(lambda root: job_journal.token_for(root, job_id)) or "")
    except (protocol.ProtocolError, ValueError) as exc:
        controller.close()
        raise GenerateError(f"cannot fetch job {job_id!r}: {exc}") from exc
    runtime.STATE.controllers[scene.name] = controller
    apply_snapshot(scene, controller.snapshot)
    runtime.ensure_timer()
    return controller


def wait(scene: bpy.types.Scene, timeout_s: float | None = None, on_status=None, poll_s: float = 0.05):
    """Follow the scene's job to its end in this call (what the timer does, in a loop): for scripts
    and background mode, where timers never run. ``on_status(text)`` gets each new status line; a
    timeout or Ctrl-C cancels the job. Returns the scene's Puppet-Master properties."""
    import time

    props = scene.puppet_master
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    try:
        while scene.name in runtime.STATE.controllers:
            runtime.tick()
            status = props.job_status_text or props.job_state.title()
            if on_status is not None and status != last:
                on_status(status)
                last = status
            if deadline is not None and time.monotonic() > deadline:
                cancel(scene)
                deadline = None  # the cancel itself is followed to its end
            time.sleep(poll_s)
    except KeyboardInterrupt:
        cancel(scene)
        while scene.name in runtime.STATE.controllers:
            runtime.tick()
            time.sleep(poll_s)
    return props


def cancel(scene: bpy.types.Scene) -> bool:
    controller = runtime.STATE.controllers.get(scene.name)
    if controller is None:
        return False
    controller.cancel()
    apply_snapshot(scene, controller.snapshot)
    return True


def apply_snapshot(scene: bpy.types.Scene, snapshot: job.JobSnapshot) -> None:
    """Copy a job snapshot into the scene (saved with the .blend); on a result, save frames and build the plane."""
    props = scene.puppet_master
    if snapshot.job_id and snapshot.job_id != props.job_id and snapshot.state in job.ACTIVE_STATES:
        _journal(lambda root: job_journal.record(root, snapshot.job_id, scene.name, props.job_endpoint,
                                                 snapshot.token))
    if snapshot.job_id:
        props.job_id = snapshot.job_id
    if snapshot.token:
        props.job_token = snapshot.token
    props.job_progress = snapshot.progress
    props.job_status_text = snapshot.status
    if snapshot.preview_png:  # (also when the result came in the same poll: the panel then moves on)
        show_preview(scene, snapshot.preview_png)
    props.job_error = snapshot.error
    state, retryable = snapshot.state, snapshot.retryable
    if state == job.DONE and snapshot.frames:
        try:
            finish(scene, snapshot)
        except Exception as exc:  # the frames or the plane failed: keep the job (Fetch retries), tell the artist
            log.exception("saving the result failed")
            state, retryable = job.ERROR, True
            props.job_error = f"Result received but could not be saved: {exc}"
    props.job_state = state
    if snapshot.job_id and state in (job.DONE, job.CANCELLED, job.ERROR) and not retryable:
        _journal(lambda root: job_journal.finish(root, snapshot.job_id))


PREVIEW_IMAGE = "PM Preview"
_shown_previews: dict[str, int] = {}  # scene name -> hash of the preview it shows


def show_preview(scene: bpy.types.Scene, png: bytes) -> bpy.types.Image | None:
    """Show the newest progress preview (the server's decoded estimate of the frames) as the
    scene's ``PM Preview`` image, which the panel draws while the job runs."""
    import hashlib
    import tempfile

    digest = hash(png)
    props = scene.puppet_master
    if _shown_previews.get(scene.name) == digest and props.preview_image is not None:
        return props.preview_image
    name = hashlib.sha1(scene.name.encode(), usedforsecurity=False).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"puppet_master_preview_{name}.png"
    try:
        results.write_atomic(path, png)
    except OSError as exc:
        log.warning("could not write the preview: %s", exc)
        return None
    image = props.preview_image
    if image is None or bpy.path.abspath(image.filepath) != str(path):
        image = bpy.data.images.load(str(path), check_existing=False)
        image.name = f"{PREVIEW_IMAGE} {scene.name}"
        props.preview_image = image
    else:
        image.reload()
    _shown_previews[scene.name] = digest
    return image


def journal_root() -> Path:
    """The folder of the job journal: the output folder's root for this .blend."""
    return results.result_folder(preferences.get().output_folder, bpy.data.filepath, "journal").parent


def _journal(action):
    """``action(journal folder)``'s result, or None when the folder cannot be used."""
    try:
        return action(journal_root())
    except OSError as exc:  # an unwritable folder must not break the job itself
        log.warning("could not update the job journal: %s", exc)
        return None


def _frame_rgb(path: Path):
    """A saved frame as a top-down ``(H, W, 3)`` uint8 array (Blender reads the PNG)."""
    import numpy as np

    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        w, h = image.size
        pixels = np.empty(w * h * 4, np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return (np.clip(pixels.reshape(h, w, 4)[::-1, :, :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def finish(scene: bpy.types.Scene, snapshot: job.JobSnapshot) -> bpy.types.Object:
    props = scene.puppet_master
    prefs = preferences.get()
    root = results.result_folder(prefs.output_folder, bpy.data.filepath, snapshot.job_id)
    videos = snapshot.variants or [snapshot.frames]
    seeds = snapshot.settings.get("seeds") or [snapshot.settings.get("seed")]
    first: list[Path] = []
    last_frames: list[Path] = []
    for index, frames in enumerate(videos):  # several variants: one folder each, all kept beside the .blend
        folder = root if len(videos) == 1 else root / results.VARIANT_FOLDER.format(index)
        paths = results.write_frames(folder, frames)
        settings = {**snapshot.settings, "seed": seeds[min(index, len(seeds) - 1)]}
        if len(videos) > 1:
            settings["variant"] = index
        results.write_settings(folder, snapshot.job_id, props.job_endpoint, settings, snapshot.drags, snapshot.info)
        results.write_preview(folder, [_frame_rgb(p) for p in paths])
        first = first or paths
        last_frames.append(paths[-1])
    if len(videos) > 1:
        result_plane.variant_thumbnails(snapshot.job_id, last_frames)
    props.result_folder = str(root if len(videos) == 1 else root / results.VARIANT_FOLDER.format(0))
    props.result_variants, props.result_variant = len(videos), 0
    return result_plane.build_plane(scene, first, snapshot.job_id, replace=props.replace_result,
                                    camera=props.job_camera, start=result_start(scene), hold=props.result_hold)


def result_start(scene: bpy.types.Scene) -> int:
    """The scene frame where a result starts playing (the panel's Start Frame, or the scene's start)."""
    start = scene.puppet_master.result_start
    return scene.frame_start if start < 0 else start


@persistent
def on_load_post(*_args) -> None:
    """After opening a .blend: collect the results of jobs that were in flight when it was saved."""
    for scene in bpy.data.scenes:
        props = getattr(scene, "puppet_master", None)
        if props is None:
            continue
        if not (props.job_id and props.job_state in job.ACTIVE_STATES):
            # not saved since the job started (a crash?): the journal knows
            entry = job_journal.latest_pending(journal_root(), scene.name)
            if entry is None or (entry.job_id == props.job_id and props.job_state in (job.DONE, job.CANCELLED)):
                continue
            props.job_id, props.job_endpoint, props.job_token = entry.job_id, entry.endpoint, entry.token
        try:
            attach(scene)
        except GenerateError as exc:
            props.job_state = job.ERROR
            props.job_error = str(exc)


@persistent
def on_load_pre(*_args) -> None:
    """Before another .blend replaces this one: stop following its jobs (they go on in the backend)."""
    for controller in runtime.STATE.controllers.values():
        controller.close()
    runtime.STATE.controllers.clear()


@persistent
def on_depsgraph_update(scene, _depsgraph=None) -> None:
    """Result planes follow changes of the render resolution, the lens or the camera's scale."""
    try:
        result_plane.refit_planes(scene)
        _moved, outside = anchors.reproject(scene)
        warning = anchors.outside_warning(outside)
        if scene.puppet_master.anchor_warning != warning:
            scene.puppet_master.anchor_warning = warning
    except (ValueError, ReferenceError, AttributeError, ZeroDivisionError) as exc:  # a half-deleted camera
        log.debug("could not refit result planes or drags: %s", exc)


_HANDLERS = ((bpy.app.handlers.load_pre, on_load_pre), (bpy.app.handlers.load_post, on_load_post),
             (bpy.app.handlers.depsgraph_update_post, on_depsgraph_update))


def register() -> None:
    runtime.snapshot_handler = apply_snapshot
    for handlers, function in _HANDLERS:
        handlers.append(function)


def unregister() -> None:
    runtime.snapshot_handler = None
    for handlers, function in _HANDLERS:
        if function in handlers:
            handlers.remove(function)
