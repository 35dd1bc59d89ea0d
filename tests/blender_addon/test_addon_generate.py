"""Generate, Cancel and reopen-and-fetch against a real `puppet-master serve --tiny` on loopback.

Timers do not tick in background mode, so the scripts pump the add-on's timer callback
(``runtime.tick``) by hand, as Blender's event loop would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from addon_helpers import free_port, run_blender

from puppet_master.client import GenerationClient, Result

pytestmark = [pytest.mark.blender, pytest.mark.slow]

PUMP = """
ACTIVE = ("SUBMITTING", "QUEUED", "RUNNING", "FETCHING")
def pump(scene, until=lambda props: props.job_state not in ACTIVE, timeout=120.0):
    runtime = ext("blender.runtime")
    seen, ticks = [], {"poll": [], "result": []}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        runtime.tick()
        kind = "result" if scene.puppet_master.job_state == "DONE" else "poll"
        ticks[kind].append(time.monotonic() - t0)
        state = scene.puppet_master.job_state
        if not seen or seen[-1] != state:
            seen.append(state)
        if until(scene.puppet_master):
            break
        time.sleep(0.02)
    polls = sorted(ticks["poll"]) or [0.0]
    timing = {"median_poll": polls[len(polls) // 2], "max_poll": polls[-1], "ticks": len(polls),
              "result": max(ticks["result"], default=0.0)}
    return seen, timing
def ping_until(prefix, timeout=90.0):
    # Check Connection (pumping the timer) until the text starts with prefix; the last text
    runtime = ext("blender.runtime")
    deadline, text = time.monotonic() + timeout, ""
    while time.monotonic() < deadline and not text.startswith(prefix):
        bpy.ops.puppet_master.ping()
        while runtime.STATE.pinger is not None:
            runtime.tick()
            time.sleep(0.02)
        text = runtime.STATE.connection_text
    return text
def setup_shot(endpoint, resolution=(96, 64), steps=2):
    scene, cam, cube = make_scene(resolution=resolution)
    scene.display.shading.light = "FLAT"
    scene.display.shading.color_type = "TEXTURE"
    scene.view_settings.view_transform = "Standard"
    scene.display.render_aa = "OFF"
    scene.render.dither_intensity = 0.0
    prefs().endpoint = endpoint
    props = scene.puppet_master
    props.reference_size = 64
    assert bpy.ops.puppet_master.render_reference() == {"FINISHED"}
    d = props.drags.add()
    d.start, d.end = (0.5, 0.5), (0.7, 0.4)
    props.use_scene_settings = True
    props.steps, props.seed = steps, 7
    return scene, cam, cube
"""


def test_generate_builds_a_camera_filling_image_sequence_plane(addon_zip, tiny_server, tmp_path):
    out = run_blender(
        f"""
        from bpy_extras.object_utils import world_to_camera_view
        import numpy as np
        scene, cam, cube = setup_shot("{tiny_server}", resolution=(384, 256), steps=1)
        scene.frame_start, scene.frame_end = 5, 10
        blend = os.path.join(os.environ["PM_WORKDIR"], "shot.blend")
        bpy.ops.wm.save_as_mainfile(filepath=blend)
        assert bpy.ops.puppet_master.generate() == {{"FINISHED"}}
        states, timing = pump(scene)
        props = scene.puppet_master
        plane = props.result_object
        nodes = plane.active_material.node_tree.nodes
        tex = next(n for n in nodes if n.type == "TEX_IMAGE")
        emission = next(n for n in nodes if n.type == "EMISSION")
        image = tex.image
        corners = [list(world_to_camera_view(scene, cam, plane.matrix_world @ v.co))[:2] for v in plane.data.vertices]
        # what the camera sees at the first and the last frame of the clip (centred square of the render)
        def render_square(frame):
            scene.frame_set(frame)
            path = os.path.join(os.environ["PM_WORKDIR"], "render_%d.png" % frame)
            scene.render.filepath = path
            scene.render.image_settings.file_format = "PNG"
            bpy.ops.render.render(write_still=True)
            img = bpy.data.images.load(path)
            return ext("blender.reference").image_array(img)[:, 64:320, :3]  # one pixel per texel
        folder = props.result_folder
        frames = sorted(f for f in os.listdir(folder) if f.startswith("frame_"))
        def frame_pixels(name):
            img = bpy.data.images.load(os.path.join(folder, name))
            return ext("blender.reference").image_array(img)[..., :3]
        clip = np.stack([frame_pixels(f) for f in frames])
        def errors(rendered):  # mean absolute difference to each of the 14 frames
            return np.abs(clip - rendered[None]).mean(axis=(1, 2, 3)).tolist()
        emit(states=states, timing=timing, state=props.job_state, error=props.job_error, job_id=props.job_id,
             folder=folder, frames=frames, blend_dir=os.path.dirname(blend),
             settings=json.load(open(os.path.join(folder, "settings.json"))),
             parent=plane.parent.name if plane.parent else None, source=image.source,
             duration=tex.image_user.frame_duration, start=tex.image_user.frame_start,
             offset=tex.image_user.frame_offset, auto_refresh=tex.image_user.use_auto_refresh,
             emission_linked=emission.outputs["Emission"].is_linked and tex.outputs["Color"].links[0].to_node == emission,
             image_path=bpy.path.abspath(image.filepath), corners=corners,
             frame_range=[scene.frame_start, scene.frame_end],
             errors_first=errors(render_square(5)), errors_last=errors(render_square(18)))
        """,
        addon_zip, tmp_path, setup=PUMP, timeout=300,
    )
    assert out["state"] == "DONE", out["error"]
    assert out["states"][0] == "SUBMITTING" and ("RUNNING" in out["states"] or "QUEUED" in out["states"])
    # how long the timer's ticks take is a figure for benchmarks/, printed here, never asserted
    print("timer ticks (s):", out["timing"])
    assert out["folder"] == f"{out['blend_dir']}/puppet_master/{out['job_id']}"
    assert out["frames"] == [f"frame_{i:04d}.png" for i in range(14)]
    # what the job ran with lies beside its frames, with a preview to look at: enough to run it again
    from PIL import Image

    assert Image.open(f"{out['folder']}/preview.gif").n_frames == 14
    recorded = out["settings"]
    assert recorded["job_id"] == out["job_id"] and recorded["settings"]["seed"] == 7
    assert recorded["settings"]["num_inference_steps"] == 1 and len(recorded["drags"]) == 1
    assert recorded["model"], recorded
    assert out["image_path"] == f"{out['folder']}/frame_0000.png"
    assert out["parent"] == "Cam" and out["source"] == "SEQUENCE" and out["auto_refresh"]
    assert (out["duration"], out["start"], out["offset"]) == (14, 5, -1)
    assert out["emission_linked"]
    assert out["frame_range"][0] <= 5 and out["frame_range"][1] >= 5 + 13
    # the plane's corners project exactly onto the corners of the camera frame's centred square
    u0 = (1 - 256 / 384) / 2
    expected = [[u0, 0.0], [1 - u0, 0.0], [1 - u0, 1.0], [u0, 1.0]]
    np.testing.assert_allclose(out["corners"], expected, atol=1e-5)
    # rendering from the camera plays the clip: frame 5 shows frame_0000, frame 18 shows frame_0013
    for errors, index in ((np.array(out["errors_first"]), 0), (np.array(out["errors_last"]), 13)):
        assert errors[index] < 0.01, errors
        assert errors.argmin() == index, errors


def test_ping_shows_model_and_device_and_cancel_stops_a_job(addon_zip, tiny_server, tmp_path):
    out = run_blender(
        f"""
        scene, cam, cube = setup_shot("{tiny_server}", steps=200)
        text = ping_until("Connected: model")
        assert bpy.ops.puppet_master.generate() == {{"FINISHED"}}
        pump(scene, until=lambda props: props.job_state == "RUNNING" and props.job_progress > 0)
        progress_at_cancel = scene.puppet_master.job_progress
        status_at_cancel = scene.puppet_master.job_status_text
        assert bpy.ops.puppet_master.cancel() == {{"FINISHED"}}
        states, _ = pump(scene)
        props = scene.puppet_master
        emit(connection=text, state=props.job_state, states=states, progress=progress_at_cancel,
             status=status_at_cancel, plane=props.result_object is not None)
        """,
        addon_zip, tmp_path, setup=PUMP, timeout=300,
    )
    assert out["connection"].startswith("Connected: model") and "on cpu" in out["connection"]
    assert 0 < out["progress"] < 1 and out["status"].startswith("Step ")
    assert out["state"] == "CANCELLED" and not out["plane"]


def test_a_malformed_endpoint_is_named_and_a_bare_host_port_works(addon_zip, tiny_server, tmp_path):
    """Check Connection and Generate with `tcp://127.0.0.1` (no port) say what the form is, with no
    traceback; ` 127.0.0.1:PORT` (a leading space, no tcp://) reaches the server."""
    bare = " " + tiny_server.removeprefix("tcp://")
    out = run_blender(
        f"""
        scene, cam, cube = setup_shot("tcp://127.0.0.1", steps=1)
        runtime = ext("blender.runtime")
        errors = {{}}
        for name in ("ping", "generate"):
            try:
                getattr(bpy.ops.puppet_master, name)()
                errors[name] = ""
            except RuntimeError as exc:
                errors[name] = str(exc)
        pinged = runtime.STATE.connection_text
        prefs().endpoint = {bare!r}
        text = ping_until("Connected")
        emit(errors=errors, pinged=pinged, connected=text, controllers=len(runtime.STATE.controllers))
        """,
        addon_zip, tmp_path, setup=PUMP,
    )
    for name in ("ping", "generate"):
        assert "has no port: expected tcp://HOST:PORT" in out["errors"][name], out["errors"]
        assert "Traceback" not in out["errors"][name] and "ZMQError" not in out["errors"][name]
    assert "has no port" in out["pinged"] and out["controllers"] == 0
    assert out["connected"].startswith("Connected")


def test_local_backend_start_connect_and_stop(addon_zip, tmp_path):
    """`serve` started from the add-on (broker only, no model worker: quick), reached, then stopped."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = run_blender(
        f"""
        runtime = ext("blender.runtime")
        p = prefs()
        p.endpoint = "{endpoint}"
        p.backend_python = {sys.executable!r}
        p.backend_model_args = "--tiny --workers 0"
        assert bpy.ops.puppet_master.backend_start() == {{"FINISHED"}}
        pid = runtime.STATE.backend.process.pid
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and not text.startswith("Connected"):
            bpy.ops.puppet_master.ping()
            while runtime.STATE.pinger is not None:
                runtime.tick()
                time.sleep(0.02)
            text = runtime.STATE.connection_text
            assert runtime.STATE.backend.running, runtime.STATE.backend.log_tail()
        assert bpy.ops.puppet_master.backend_stop() == {{"FINISHED"}}
        emit(connection=text, pid=pid, running=runtime.STATE.backend.running, lines=runtime.backend_status_lines())
        """,
        addon_zip, tmp_path,
    )
    assert out["connection"].startswith(f"Connected to {endpoint}") and "no model worker" in out["connection"]
    assert out["running"] is False and out["lines"] == []
    with pytest.raises(ProcessLookupError):
        os.kill(out["pid"], 0)


def test_reopen_fetches_a_result_that_finished_while_blender_was_closed(addon_zip, tiny_server, tmp_path):
    first = run_blender(
        f"""
        scene, cam, cube = setup_shot("{tiny_server}", steps=1)
        blend = os.path.join(os.environ["PM_WORKDIR"], "closed.blend")
        bpy.ops.wm.save_as_mainfile(filepath=blend)
        bpy.ops.puppet_master.generate()
        pump(scene, until=lambda props: bool(props.job_id))
        bpy.ops.wm.save_mainfile()
        emit(job_id=scene.puppet_master.job_id, state=scene.puppet_master.job_state, blend=blend,
             token=scene.puppet_master.job_token)
        """,
        addon_zip, tmp_path, setup=PUMP,
    )
    assert first["state"] in ("QUEUED", "RUNNING") and len(first["job_id"]) == 32
    assert len(first["token"]) == 32  # saved in the .blend: the reopened file owns the job
    # Blender is closed; wait until the backend has finished the job (only the job's token may ask)
    with GenerationClient(tiny_server) as client:
        client.fetch(first["job_id"], first["token"])
        done = client.wait_for(lambda e: isinstance(e, Result) and e.job_id == first["job_id"], timeout_s=120)
    assert done is not None, "the backend did not finish the job"
    second = run_blender(
        f"""
        bpy.ops.wm.open_mainfile(filepath={first["blend"]!r})
        scene = bpy.context.scene
        after_open = scene.puppet_master.job_state
        states, _ = pump(scene)
        props = scene.puppet_master
        emit(after_open=after_open, states=states, state=props.job_state, error=props.job_error,
             frames=sorted(f for f in os.listdir(props.result_folder) if f.endswith(".png")) if props.result_folder else [],
             plane=props.result_object.name if props.result_object else None, job_id=props.job_id)
        # Fetch again by hand with "replace": the plane is rebuilt, not duplicated
        props.replace_result = True
        assert bpy.ops.puppet_master.fetch_result() == {{"FINISHED"}}
        pump(scene)
        def results():
            return dict(
                meshes=[m.name for m in bpy.data.meshes if m.name.startswith("PM Result")],
                materials=[m.name for m in bpy.data.materials if m.name.startswith("PM Result")],
                images=[i.name for i in bpy.data.images if i.name.startswith("PM Result")],
                planes=[o.name for o in scene.objects if o.get("puppet_master_job")],
            )
        emit(refetch_state=props.job_state, replaced=results())
        # and with "replace" off, a variant is added beside it
        props.replace_result = False
        bpy.ops.puppet_master.fetch_result()
        pump(scene)
        emit(variant_state=props.job_state, variant=results())
        """,
        addon_zip, tmp_path, setup=PUMP,
    )
    assert second["after_open"] == "FETCHING"
    assert second["state"] == "DONE", second["error"]
    assert second["job_id"] == first["job_id"]
    assert second["frames"] == [f"frame_{i:04d}.png" for i in range(14)]
    assert second["plane"] is not None
    assert second["refetch_state"] == "DONE"
    assert all(len(names) == 1 for names in second["replaced"].values()), second["replaced"]
    assert second["variant_state"] == "DONE"
    assert all(len(names) == 2 for names in second["variant"].values()), second["variant"]


def test_curve_server_needs_the_public_key(addon_zip, tmp_path):
    """A CURVE-encrypted server (broker only): reached with its .key file, silent without it."""
    keys = tmp_path / "keys"
    subprocess.run([sys.executable, "-m", "puppet_master", "keys", "--out", str(keys)], check=True, capture_output=True)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [sys.executable, "-m", "puppet_master", "serve", "--bind", endpoint, "--workers", "0",
         "--curve-secret", str(keys / "server.key_secret"), "--results", str(tmp_path / "results")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        out = run_blender(
            f"""
            runtime = ext("blender.runtime")
            p = prefs()
            p.endpoint = "{endpoint}"
            def ping():
                bpy.ops.puppet_master.ping()
                while runtime.STATE.pinger is not None:
                    runtime.tick()
                    time.sleep(0.02)
                return runtime.STATE.connection_text
            without_key = ping()
            p.server_key = {str(keys / "server.key")!r}
            deadline = time.monotonic() + 60
            with_key = ""
            while time.monotonic() < deadline and not with_key.startswith("Connected"):
                with_key = ping()
            emit(without_key=without_key, with_key=with_key)
            """,
            addon_zip, tmp_path,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert out["without_key"].startswith(f"No backend answers at {endpoint}")
    assert out["with_key"].startswith(f"Connected to {endpoint}")


def test_crash_before_saving_loses_no_job(addon_zip, tiny_server, tmp_path):
    """Blender dies right after the backend accepted a job, before the .blend was saved again:
    reopening the file finds the job in the journal beside it and fetches the result."""
    first = run_blender(
        f"""
        scene, cam, cube = setup_shot("{tiny_server}", steps=1)
        blend = os.path.join(os.environ["PM_WORKDIR"], "crash.blend")
        bpy.ops.wm.save_as_mainfile(filepath=blend)
        bpy.ops.puppet_master.generate()
        pump(scene, until=lambda props: bool(props.job_id))
        emit(job_id=scene.puppet_master.job_id, blend=blend)
        os._exit(3)  # a crash: no save, no clean shutdown
        """,
        addon_zip, tmp_path, setup=PUMP, check=False,
    )
    assert len(first["job_id"]) == 32
    second = run_blender(
        f"""
        bpy.ops.wm.open_mainfile(filepath={first["blend"]!r})
        scene = bpy.context.scene
        after_open = (scene.puppet_master.job_state, scene.puppet_master.job_id)
        pump(scene)
        props = scene.puppet_master
        emit(after_open=after_open, state=props.job_state, error=props.job_error, job_id=props.job_id,
             frames=len([f for f in os.listdir(props.result_folder) if f.endswith(".png")]) if props.result_folder else 0)
        """,
        addon_zip, tmp_path, setup=PUMP,
    )
    assert second["after_open"] == ["FETCHING", first["job_id"]]
    assert second["state"] == "DONE", second["error"]
    assert second["frames"] == 14
