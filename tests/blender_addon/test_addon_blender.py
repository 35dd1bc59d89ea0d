"""The extension inside real Blender (bpy 5.0.1), installed from the built zip in subprocesses."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from addon_helpers import ROOT, build, free_port, run_blender

import puppet_master

pytestmark = pytest.mark.blender


def test_zip_validates_and_carries_identical_light_modules(addon_zip):
    blender_ext = build.find_blender_ext()
    result = subprocess.run([sys.executable, str(blender_ext), "validate", str(addon_zip)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(addon_zip) as archive:
        names = set(archive.namelist())
        for name in build.LIGHT_MODULES:
            source = ROOT / "backend" / "puppet_master" / f"{name}.py"
            copied = archive.read(f"vendor/puppet_master_light/{name}.py")
            assert hashlib.sha256(copied).digest() == hashlib.sha256(source.read_bytes()).digest(), name
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
        sources = [n for n in names if n.endswith(".py") and not n.startswith("vendor/")]
        assert {"__init__.py", "blender/runtime.py", "core/job.py"} <= set(sources)
        assert not any("build" in n for n in sources) and not any("cameras" in n for n in names)
        for name in sources:  # the add-on never imports torch or the heavy backend
            text = archive.read(name).decode()
            assert "import torch" not in text and "from puppet_master" not in text, name
    assert manifest["version"] == puppet_master.__version__
    assert manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"network", "files"}
    wheels = [Path(w).name for w in manifest["wheels"]]
    assert all(f"wheels/{w}" in names for w in wheels)
    for python_tag in ("cp311-cp311", "cp312-abi3"):
        tags = [w for w in wheels if python_tag in w]
        assert any("manylinux" in w and "x86_64" in w for w in tags), tags
        assert any("win_amd64" in w for w in tags), tags
        assert any("macosx" in w and "universal2" in w for w in tags), tags  # arm64 and x64


def test_build_reports_a_version_mismatch(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "MANIFEST", tmp_path / "blender_manifest.toml")
    (tmp_path / "blender_manifest.toml").write_text('id = "puppet_master"\nversion = "9.9.9"\n')
    with pytest.raises(build.BuildError, match=r"version 9\.9\.9 != puppet_master"):
        build.build(tmp_path / "out")


def test_install_enable_and_register_twice(addon_zip, tmp_path):
    out = run_blender(
        """
        import addon_utils
        light = ext("core._light")
        state = []
        def snapshot():
            return {
                "scene_prop": hasattr(bpy.types.Scene, "puppet_master"),
                "generate_op": hasattr(bpy.types, "PUPPET_MASTER_OT_generate"),
                "panel": hasattr(bpy.types, "PUPPET_PT_main"),
                "load_post": sum(getattr(h, "__module__", "").startswith(ADDON) for h in bpy.app.handlers.load_post),
                "esc_keys": sum(item.idname == "puppet_master.cancel" and item.type == "ESC"
                                for km in bpy.context.window_manager.keyconfigs.addon.keymaps for item in km.keymap_items),
            }
        state.append(snapshot())
        for _ in range(2):
            addon_utils.disable(ADDON, default_set=True)
            state.append(snapshot())
            addon_utils.enable(ADDON, default_set=True)
            state.append(snapshot())
        wheel_site = os.path.join(os.environ["BLENDER_USER_RESOURCES"], "extensions", ".local", "lib",
                                  "python%d.%d" % sys.version_info[:2], "site-packages", "zmq")
        emit(state=state, vendored=light.vendored(), drags_file=light.light_module("drags").__file__,
             wheel_installed=os.path.isdir(wheel_site))
        """,
        addon_zip, tmp_path,
    )
    on = {"scene_prop": True, "generate_op": True, "panel": True, "load_post": 1, "esc_keys": 2}
    off = {"scene_prop": False, "generate_op": False, "panel": False, "load_post": 0, "esc_keys": 0}
    assert out["state"] == [on, off, on, off, on]
    assert out["vendored"] and "vendor/puppet_master_light/drags.py" in out["drags_file"]
    assert out["wheel_installed"], "Blender did not install the bundled pyzmq wheel"


def test_drags_survive_save_and_reload(addon_zip, tmp_path):
    out = run_blender(
        """
        scene, cam, cube = make_scene()
        props = scene.puppet_master
        for start, end in [((0.1, 0.2), (0.3, 0.4)), ((0.5, 0.5), (0.9, 0.1)), ((0.25, 0.75), (0.25, 0.5))]:
            d = props.drags.add()
            d.start, d.end = start, end
        props.job_id = "0123456789abcdef0123456789abcdef"
        path = os.path.join(os.environ["PM_WORKDIR"], "drags.blend")
        bpy.ops.wm.save_as_mainfile(filepath=path)
        bpy.ops.wm.read_homefile(use_empty=True)
        assert len(bpy.context.scene.puppet_master.drags) == 0
        bpy.ops.wm.open_mainfile(filepath=path)
        props = bpy.context.scene.puppet_master
        emit(drags=[[list(d.start), list(d.end)] for d in props.drags], job_id=props.job_id)
        """,
        addon_zip, tmp_path,
    )
    expected = [[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.5], [0.9, 0.1]], [[0.25, 0.75], [0.25, 0.5]]]
    import numpy as np

    np.testing.assert_allclose(np.array(out["drags"]), np.array(expected), atol=1e-6)
    assert out["job_id"] == "0123456789abcdef0123456789abcdef"


def test_reference_render_square_and_centred_square_and_off_object_warning(addon_zip, tmp_path):
    out = run_blender(
        """
        import numpy as np
        from bpy_extras.object_utils import world_to_camera_view
        ri = ext("blender.reference")
        cf = ext("core.camera_frame")
        results = {}
        for label, resolution, shift in (("square", (64, 64), 0.0), ("wide", (160, 90), 0.08)):
            scene, cam, cube = make_scene(resolution=resolution)
            cam.data.shift_x = shift
            cube.rotation_euler = (0.3, 0.2, 0.5)
            cube.scale = (0.7, 0.7, 0.7)
            bpy.context.view_layer.update()
            before = (cam.data.sensor_width, cam.data.sensor_fit, cam.data.shift_x, scene.render.resolution_x,
                      scene.render.resolution_y, scene.render.film_transparent)
            scene.puppet_master.reference_size = 64
            assert bpy.ops.puppet_master.render_reference() == {"FINISHED"}
            after = (cam.data.sensor_width, cam.data.sensor_fit, cam.data.shift_x, scene.render.resolution_x,
                     scene.render.resolution_y, scene.render.film_transparent)
            props = scene.puppet_master
            rgb = ri.image_array(props.reference_image)
            alpha = ri.image_array(props.reference_alpha)[..., 3]
            rows, cols = np.nonzero(alpha > 0.5)
            region = cf.square_region(*resolution)
            square = [region.frame_to_square(p.x, 1.0 - p.y) for p in
                      (world_to_camera_view(scene, cam, cube.matrix_world @ v.co) for v in cube.data.vertices)]
            xs, ys = [64 * s[0] for s in square], [64 * s[1] for s in square]
            d = props.drags.add()
            d.start, d.end = (0.03, 0.03), (0.2, 0.2)
            bpy.ops.puppet_master.check_drags()
            warning_off = props.drag_warning
            d.start = (0.5, 0.5)
            bpy.ops.puppet_master.check_drags()
            results[label] = dict(
                size=list(props.reference_image.size), restored=before == after, note=props.reference_note,
                corner_rgb=rgb[0, 0, :3].tolist(), corner_alpha=float(rgb[0, 0, 3]), centre_rgb=rgb[32, 32, :3].tolist(),
                alpha_box=[int(cols.min()), int(cols.max()) + 1, int(rows.min()), int(rows.max()) + 1],
                projected_box=[min(xs), max(xs), min(ys), max(ys)],
                warning_off=warning_off, warning_on=props.drag_warning,
                packed=props.reference_image.packed_file is not None,
            )
        emit(**results)
        """,
        addon_zip, tmp_path,
    )
    for label in ("square", "wide"):
        r = out[label]
        assert r["size"] == [64, 64] and r["restored"] and r["packed"]
        assert r["corner_rgb"] == pytest.approx([1.0, 1.0, 1.0]) and r["corner_alpha"] == 1.0  # on white
        assert max(r["centre_rgb"]) < 0.95  # the cube
        # the silhouette in the square render is exactly where the camera projects the cube
        assert r["alpha_box"] == pytest.approx(r["projected_box"], abs=1.0), label
        assert "Drag 1 starts off the object" in r["warning_off"]
        assert r["warning_on"] == ""
    assert out["square"]["note"] == ""
    assert "160x90" in out["wide"]["note"] and "centred square" in out["wide"]["note"]


def test_overlay_geometry_matches_blender_and_the_shared_camera_convention(addon_zip, tmp_path):
    out = run_blender(
        """
        from types import SimpleNamespace
        import numpy as np
        from bpy_extras import view3d_utils
        from bpy_extras.object_utils import world_to_camera_view
        cf, og = ext("core.camera_frame"), ext("core.overlay_geometry")
        from puppet_master import cameras  # the shared convention itself (the add-on does not ship it)
        out = {}
        for label, resolution, shift in (("square", (64, 64), 0.0), ("wide", (160, 90), 0.1)):
            scene, cam, cube = make_scene(resolution=resolution)
            cam.location = (1.0, -3.5, 1.2)
            cam.rotation_euler = (1.25, 0.05, 0.3)
            cam.data.shift_x = shift
            bpy.context.view_layer.update()
            # a camera view whose region has the render's aspect: the frame fills it
            w, h = 8 * resolution[0], 8 * resolution[1]
            persmat = cam.calc_matrix_camera(bpy.context.evaluated_depsgraph_get(), x=w, y=h) @ cam.matrix_world.inverted()
            region, rv3d = SimpleNamespace(width=w, height=h), SimpleNamespace(perspective_matrix=persmat)
            box = cf.FrameBox.from_corners([tuple(v) for v in cam.data.view_frame(scene=scene)])
            mapping = og.camera_square_mapping([list(r) for r in persmat], [list(r) for r in cam.matrix_world],
                                               box.centred_square().corners(), w, h)
            sq_region = cf.square_region(*resolution)
            points = [cube.matrix_world @ v.co for v in cube.data.vertices]
            blender_px = [list(view3d_utils.location_3d_to_region_2d(region, rv3d, p)) for p in points]
            square = [sq_region.frame_to_square(q.x, 1.0 - q.y) for q in (world_to_camera_view(scene, cam, p) for p in points)]
            ours_px = [list(mapping.to_region(*s)) for s in square]
            shapes = og.arrow_shapes(mapping, [(square[0], square[1])])
            out[label] = dict(blender_px=blender_px, ours_px=ours_px, square=[list(s) for s in square],
                              arrow=[list(shapes[0].start), list(shapes[0].end)],
                              back=[list(mapping.from_region(*p)) for p in blender_px])
            if label == "square":
                k = cameras.intrinsics(64, 64, cam.data.lens, cam.data.sensor_width)
                pixels, depth = cameras.project(np.array([list(p) for p in points]), k,
                                                cameras.blender_matrix_world_to_opencv([list(r) for r in cam.matrix_world]))
                out["shared"] = (pixels / 64.0).tolist()
        emit(**out)
        """,
        addon_zip, tmp_path,
    )
    import numpy as np

    for label in ("square", "wide"):
        r = out[label]
        np.testing.assert_allclose(r["ours_px"], r["blender_px"], atol=1e-3)
        np.testing.assert_allclose(r["arrow"], r["blender_px"][:2], atol=1e-3)
        np.testing.assert_allclose(r["back"], r["square"], atol=1e-5)
    # the add-on's camera-frame coordinates agree with puppet_master.cameras (used by the data tools)
    np.testing.assert_allclose(out["shared"], out["square"]["square"], atol=1e-5)


def test_generate_with_backend_down_reports_a_clear_error(addon_zip, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = run_blender(
        f"""
        scene, cam, cube = make_scene()
        prefs().endpoint = "{endpoint}"
        runtime = ext("blender.runtime")
        # Generate without reference or drags: refused with a reason (an operator ERROR report,
        # which bpy.ops raises as RuntimeError when called from Python), nothing sent
        def call_generate():
            try:
                return list(bpy.ops.puppet_master.generate()), ""
            except RuntimeError as exc:
                return ["CANCELLED"], str(exc)
        no_drags, no_drags_report = call_generate()
        first_error = scene.puppet_master.job_error
        d = scene.puppet_master.drags.add()
        d.start, d.end = (0.5, 0.5), (0.6, 0.5)
        no_ref, no_ref_report = call_generate()
        second_error = scene.puppet_master.job_error
        scene.puppet_master.reference_size = 64
        bpy.ops.puppet_master.render_reference()
        cancel_before = bpy.ops.puppet_master.cancel.poll()
        result = list(bpy.ops.puppet_master.generate())
        cancel_during = bpy.ops.puppet_master.cancel.poll()  # Esc cancels only while a job runs
        states, ticks = [], []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            runtime.tick()
            ticks.append(time.monotonic() - t0)
            states.append(scene.puppet_master.job_state)
            if scene.puppet_master.job_state not in ("SUBMITTING", "QUEUED", "RUNNING", "FETCHING"):
                break
            time.sleep(0.05)
        emit(no_drags=no_drags, first_error=first_error, no_ref=no_ref, second_error=second_error,
             reports=[no_drags_report, no_ref_report], result=result, state=scene.puppet_master.job_state, error=scene.puppet_master.job_error,
             ticks=sorted(ticks), active=len(runtime.STATE.controllers), first_state=states[0],
             cancel_polls=[cancel_before, cancel_during, bpy.ops.puppet_master.cancel.poll()])
        """,
        addon_zip, tmp_path,
    )
    assert out["no_drags"] == ["CANCELLED"] and "draw at least one drag" in out["first_error"]
    assert out["no_ref"] == ["CANCELLED"] and "no reference image" in out["second_error"]
    assert "draw at least one drag" in out["reports"][0] and "no reference image" in out["reports"][1]
    assert out["result"] == ["FINISHED"] and out["first_state"] == "SUBMITTING"
    assert out["state"] == "ERROR" and f"No backend answers at {endpoint}" in out["error"]
    assert out["active"] == 0
    assert out["cancel_polls"] == [False, True, False]
    ticks = out["ticks"]  # wall times on a shared CPU: the median is the work, the max catches blocking
    assert ticks[len(ticks) // 2] < 0.005 and ticks[-1] < 0.5, ticks


def test_local_backend_failure_shows_its_log(addon_zip, tmp_path):
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\necho "no model found for: $*" >&2\nexit 2\n')
    fake_python.chmod(0o755)
    out = run_blender(
        f"""
        runtime = ext("blender.runtime")
        p = prefs()
        p.backend_python = {str(fake_python)!r}
        p.backend_model_args = "--model /missing"
        assert bpy.ops.puppet_master.backend_start() == {{"FINISHED"}}
        deadline = time.monotonic() + 20
        while runtime.STATE.backend_watch and time.monotonic() < deadline:
            runtime.tick()
            time.sleep(0.05)
        lines = runtime.backend_status_lines()
        p.backend_python = os.path.join(os.environ["PM_WORKDIR"], "no_such_python")
        try:
            bpy.ops.puppet_master.backend_start()
            missing = ""
        except RuntimeError as exc:
            missing = str(exc)
        emit(lines=lines, missing=missing, missing_lines=runtime.backend_status_lines())
        """,
        addon_zip, tmp_path,
    )
    text = "\n".join(out["lines"])
    assert "exited with code 2" in text and "no model found for: -m puppet_master serve" in text
    assert "--model /missing" in text
    assert "backend Python executable not found" in out["missing"]
    assert any("backend Python executable not found" in line for line in out["missing_lines"])


def test_drag_tool_modal_draws_moves_deletes_and_warns_off_object(addon_zip, tmp_path):
    """The modal operator's event handling, fed Blender-like events (background Blender has no window)."""
    out = run_blender(
        """
        from types import SimpleNamespace
        dt = ext("blender.drag_tool")
        scene, cam, cube = make_scene(resolution=(64, 64))
        scene.puppet_master.reference_size = 64
        bpy.ops.puppet_master.render_reference()
        W = H = 400  # a camera view whose frame fills the region
        persmat = cam.calc_matrix_camera(bpy.context.evaluated_depsgraph_get(), x=W, y=H) @ cam.matrix_world.inverted()
        headers = []
        area = SimpleNamespace(type="VIEW_3D", header_text_set=headers.append, tag_redraw=lambda: None)
        context = SimpleNamespace(scene=scene, area=area, region=SimpleNamespace(width=W, height=H),
                                  region_data=SimpleNamespace(view_perspective="CAMERA", perspective_matrix=persmat))
        reports = []
        op = SimpleNamespace(report=lambda kind, text: reports.append(text), _editor=dt.editor_from_scene(scene))
        def event(kind, value="PRESS", x=0, y=0):
            return sorted(dt.PUPPET_OT_draw_drags.modal(op, context, SimpleNamespace(
                type=kind, value=value, mouse_region_x=x, mouse_region_y=y)))
        def drags():
            return [[list(d.start), list(d.end)] for d in scene.puppet_master.drags]
        log = {}
        # on the cube (centre of the frame) to the right: no warning
        log["press"] = event("LEFTMOUSE", "PRESS", 200, 200)
        event("MOUSEMOVE", "NOTHING", 300, 200)
        event("LEFTMOUSE", "RELEASE", 300, 200)
        log["one"], log["reports_one"] = drags(), list(reports)
        # from an empty corner: the off-object warning fires
        event("LEFTMOUSE", "PRESS", 20, 380)
        event("MOUSEMOVE", "NOTHING", 60, 340)
        event("LEFTMOUSE", "RELEASE", 60, 340)
        log["two"], log["warning"] = drags(), scene.puppet_master.drag_warning
        # grab the first arrow's end handle and move it up
        event("LEFTMOUSE", "PRESS", 300, 200)
        event("MOUSEMOVE", "NOTHING", 300, 300)
        event("LEFTMOUSE", "RELEASE", 300, 300)
        log["moved"] = drags()
        # right-click the second arrow's start handle: deleted; navigation passes through
        event("RIGHTMOUSE", "PRESS", 20, 380)
        log["deleted"] = drags()
        log["wheel"] = event("WHEELUPMOUSE")
        log["enter"] = event("RET")
        emit(log=log, reports=reports, headers=headers)
        """,
        addon_zip, tmp_path,
    )
    log = out["log"]
    import numpy as np

    assert log["press"] == ["RUNNING_MODAL"]
    np.testing.assert_allclose(log["one"], [[[0.5, 0.5], [0.75, 0.5]]], atol=1e-4)
    assert log["reports_one"] == []
    np.testing.assert_allclose(log["two"][1], [[0.05, 0.05], [0.15, 0.15]], atol=1e-4)
    assert "Drag 2 starts off the object" in log["warning"]
    assert any("Drag 2 starts off the object" in r for r in out["reports"])
    np.testing.assert_allclose(log["moved"][0], [[0.5, 0.5], [0.75, 0.25]], atol=1e-4)
    assert len(log["deleted"]) == 1
    assert log["wheel"] == ["PASS_THROUGH"] and log["enter"] == ["FINISHED"]
    assert out["headers"] == [None]


def test_panel_preferences_and_status_bar_draw_valid_ui(addon_zip, tmp_path):
    """Run the draw code against a layout that checks every property, operator and icon it is given
    (background Blender cannot create a real UILayout)."""
    out = run_blender(
        """
        from types import SimpleNamespace
        panels, runtime, job = ext("blender.panels"), ext("blender.runtime"), ext("core.job")
        icons = set(bpy.types.UILayout.bl_rna.functions["prop"].parameters["icon"].enum_items.keys())
        problems, seen = [], []
        class Layout:
            alert = False
            def _icon(self, kw):
                if kw.get("icon") and kw["icon"] not in icons:
                    problems.append("unknown icon " + kw["icon"])
            def _prop(self, data, name):
                if name not in data.bl_rna.properties:
                    problems.append(f"{type(data).__name__} has no property {name}")
            def box(self): return Layout()
            def row(self, **kw): return Layout()
            def column(self, **kw): return Layout()
            def label(self, **kw):
                self._icon(kw); seen.append(kw.get("text", ""))
            def prop(self, data, name, **kw):
                self._icon(kw); self._prop(data, name); seen.append("prop:" + name)
            def operator(self, idname, **kw):
                self._icon(kw)
                module, name = idname.split(".")
                if not hasattr(getattr(bpy.ops, module), name) or getattr(getattr(bpy.ops, module), name).get_rna_type() is None:
                    problems.append("unknown operator " + idname)
                seen.append("op:" + idname)
                return SimpleNamespace()
            def template_ID(self, data, name, **kw): self._prop(data, name)
            def template_list(self, cls, _id, data, name, active_data, active_name, **kw):
                self._prop(data, name); self._prop(active_data, active_name)
                if not hasattr(bpy.types, cls): problems.append("unknown UIList " + cls)
            def progress(self, **kw):
                if not 0.0 <= kw["factor"] <= 1.0: problems.append("progress factor out of range")
                seen.append("progress:" + kw.get("text", ""))
        scene, cam, cube = make_scene(resolution=(160, 90))
        scene.puppet_master.reference_size = 64
        bpy.ops.puppet_master.render_reference()
        props = scene.puppet_master
        d = props.drags.add(); d.start, d.end = (0.01, 0.01), (0.2, 0.2)
        bpy.ops.puppet_master.check_drags()
        props.use_scene_settings = True
        props.job_id, props.job_state, props.job_error = "ab" * 16, "ERROR", "Generation failed (worker_lost): the worker was lost"
        context = SimpleNamespace(scene=scene)
        panel = SimpleNamespace(layout=Layout())
        panels.PUPPET_PT_main.draw(panel, context)
        idle = list(seen); seen.clear()
        # while a job runs: progress bar, Cancel, and the status bar
        runtime.STATE.controllers[scene.name] = job.JobController("tcp://127.0.0.1:9")
        props.job_state, props.job_progress, props.job_status_text = "RUNNING", 0.4, "Step 2/5"
        panels.PUPPET_PT_main.draw(panel, context)
        panels.draw_status(SimpleNamespace(layout=Layout()), context)
        running = list(seen); seen.clear()
        runtime.STATE.controllers.pop(scene.name).close()
        class PrefsDrawn:  # the preferences, with a checking layout
            layout = Layout()
            def __getattr__(self, name):
                return getattr(prefs(), name)
        type(prefs()).draw(PrefsDrawn(), context)
        prefs_idle = list(seen); seen.clear()
        # while a model download runs: its progress and Cancel
        md = ext("core.model_download")
        runtime.STATE.download.status = md.DownloadStatus(state="RUNNING", fraction=0.3, text="Downloading vae: 3 MB")
        runtime.STATE.models.set([{"name": "puppet-master", "default": True, "bytes": 5e9, "dtype": "float16",
                                   "licences": ["CC-BY-NC-SA-4.0"]}])
        type(prefs()).draw(PrefsDrawn(), context)
        prefs_downloading = list(seen)
        runtime.STATE.download.status = md.DownloadStatus()
        emit(problems=problems, idle=idle, running=running, prefs=prefs_idle, prefs_downloading=prefs_downloading)
        """,
        addon_zip, tmp_path,
    )
    assert out["problems"] == []
    idle, running = out["idle"], out["running"]
    assert "op:puppet_master.generate" in idle and "op:puppet_master.fetch_result" in idle
    assert any("centred square" in text for text in idle)
    assert any("Drag 1 starts off the object" in text for text in idle)
    assert any("worker_lost" in text for text in idle)
    assert "op:puppet_master.cancel" in running and "op:puppet_master.generate" not in running
    assert running.count("progress:Step 2/5") == 1 and "progress:Puppet-Master: Step 2/5" in running
    for name in ("endpoint", "server_key", "backend_python", "backend_model_args", "backend_memory",
                 "download_args", "output_folder", "default_steps"):
        assert "prop:" + name in out["prefs"]
    assert "op:puppet_master.backend_start" in out["prefs"]
    assert "op:puppet_master.model_download" in out["prefs"] and "op:puppet_master.models_refresh" in out["prefs"]
    downloading = out["prefs_downloading"]
    assert "op:puppet_master.model_download_cancel" in downloading and "op:puppet_master.model_download" not in downloading
    assert "progress:Downloading vae: 3 MB" in downloading
    assert "puppet-master (default): 5.00 GB, float16, CC-BY-NC-SA-4.0" in downloading
