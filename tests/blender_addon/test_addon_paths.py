"""Curved and timed drags from the drag tool to the backend and into settings.json (real bpy, a real
`serve --tiny` on loopback)."""

from __future__ import annotations

import itertools
import math

import pytest
from addon_helpers import run_blender
from test_addon_generate import PUMP

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def test_a_curved_eased_stroke_and_a_keyframed_timing_reach_the_model(addon_zip, tiny_server, tmp_path):
    out = run_blender(
        f"""
        from types import SimpleNamespace
        import math, json
        dt = ext("blender.drag_tool")
        scene, cam, cube = setup_shot("{tiny_server}", resolution=(64, 64), steps=1)
        scene.puppet_master.drags.clear()
        W = H = 400
        persmat = cam.calc_matrix_camera(bpy.context.evaluated_depsgraph_get(), x=W, y=H) @ cam.matrix_world.inverted()
        area = SimpleNamespace(type="VIEW_3D", header_text_set=lambda t: None, tag_redraw=lambda: None)
        context = SimpleNamespace(scene=scene, area=area, region=SimpleNamespace(width=W, height=H),
                                  region_data=SimpleNamespace(view_perspective="CAMERA", perspective_matrix=persmat))
        op = SimpleNamespace(report=lambda kind, text: None, _editor=dt.editor_from_scene(scene))
        def event(kind, value="PRESS", x=0, y=0):
            return dt.PUPPET_OT_draw_drags.modal(op, context, SimpleNamespace(
                type=kind, value=value, mouse_region_x=x, mouse_region_y=y))
        # a half circle over the cube, from its centre to the right (region y goes up)
        event("LEFTMOUSE", "PRESS", 200, 200)
        for i in range(1, 41):
            a = math.pi * i / 40
            event("MOUSEMOVE", "NOTHING", 250 - 50 * math.cos(a), 200 + 50 * math.sin(a))
        event("LEFTMOUSE", "RELEASE", 300, 200)
        # and a straight one, timed by a keyframed Progress (Blender's default Bezier keys)
        event("LEFTMOUSE", "PRESS", 200, 170)
        event("MOUSEMOVE", "NOTHING", 230, 170)
        event("LEFTMOUSE", "RELEASE", 230, 170)
        props = scene.puppet_master
        props.drags[0].timing = "EASE_IN_OUT"
        second = props.drags[1]
        second.timing = "CUSTOM"
        scene.frame_set(1)
        second.progress = 0.0
        scene.keyframe_insert('puppet_master.drags[1].progress', frame=1)
        second.progress = 10.0
        scene.keyframe_insert('puppet_master.drags[1].progress', frame=14)
        shape_points = len(props.drags[0].shape)
        assert bpy.ops.puppet_master.generate() == {{"FINISHED"}}
        states, _ = pump(scene)
        settings = json.load(open(os.path.join(props.result_folder, "settings.json")))
        emit(state=props.job_state, error=props.job_error, shape_points=shape_points, drags=settings["drags"])
        """,
        addon_zip, tmp_path, setup=PUMP, timeout=300,
    )
    assert out["state"] == "DONE", out["error"]
    assert out["shape_points"] == 32
    curved, timed = out["drags"]
    path = [tuple(p) for p in curved["path"]]
    assert len(path) == 14 and len(set(path)) == 14
    assert path[0] == pytest.approx((0.5, 0.5), abs=1e-3) and path[-1] == pytest.approx((0.75, 0.5), abs=1e-3)
    radius = [math.dist(p, (0.625, 0.5)) for p in path]  # on the drawn half circle
    assert max(radius) - min(radius) < 0.01 and min(y for _, y in path) < 0.4
    gaps = [math.dist(a, b) for a, b in itertools.pairwise(path)]
    assert gaps[0] < gaps[6] > gaps[-1]  # eased in and out
    timed_path = [tuple(p) for p in timed["path"]]
    assert len(set(timed_path)) == 14 and all(y == pytest.approx(0.575, abs=1e-3) for _, y in timed_path)
    xs = [x for x, _ in timed_path]
    assert xs == sorted(xs) and xs[1] - xs[0] < xs[7] - xs[6]  # Bezier keys: slow out of the first key



def test_generate_wait_runs_the_job_to_its_end_in_a_script(addon_zip, tiny_server, tmp_path):
    """`bpy.ops.puppet_master.generate(wait=True)`: what a batch script or `blender -b` needs, since
    timers never run there."""
    out = run_blender(
        f"""
        import contextlib, io
        scene, cam, cube = setup_shot("{tiny_server}", steps=2)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            result = bpy.ops.puppet_master.generate(wait=True)
        props = scene.puppet_master
        # a backend that is not there: the call returns with the error, it does not hang
        prefs().endpoint = "tcp://127.0.0.1:9"
        try:
            bpy.ops.puppet_master.generate(wait=True, timeout=30)
            down = ""
        except RuntimeError as exc:
            down = str(exc)
        emit(result=sorted(result), state=props.job_state, plane=props.result_object is not None,
             printed=printed.getvalue(), down=down)
        """,
        addon_zip, tmp_path, setup=PUMP, timeout=300,
    )
    assert out["result"] == ["FINISHED"] and out["plane"]
    assert "Puppet-Master: Step" in out["printed"] and "Puppet-Master: Done: 14 frames" in out["printed"]
    assert "No backend answers at tcp://127.0.0.1:9" in out["down"]


def test_the_result_goes_to_the_camera_that_made_the_job(addon_zip, tiny_server, tmp_path):
    out = run_blender(
        f"""
        scene, cam, cube = setup_shot("{tiny_server}", steps=2)
        other = bpy.data.objects.new("Other", cam.data.copy())
        scene.collection.objects.link(other)
        assert bpy.ops.puppet_master.generate() == {{"FINISHED"}}
        scene.camera = other  # the artist looks through another camera while the job runs
        pump(scene)
        props = scene.puppet_master
        emit(state=props.job_state, error=props.job_error, parent=props.result_object.parent.name)
        """,
        addon_zip, tmp_path, setup=PUMP, timeout=300,
    )
    assert out["state"] == "DONE", out["error"]
    assert out["parent"] == "Cam"


def test_the_panel_keeps_the_newest_progress_preview_as_a_blender_image(addon_zip, tiny_server, tmp_path):
    out = run_blender(
        f"""
        scene, cam, cube = setup_shot("{tiny_server}", steps=20)
        props = scene.puppet_master
        assert bpy.ops.puppet_master.generate() == {{"FINISHED"}}
        seen = []
        runtime = ext("blender.runtime")
        deadline = time.monotonic() + 240
        while scene.name in runtime.STATE.controllers and time.monotonic() < deadline:
            runtime.tick()
            image = props.preview_image
            if image is not None and (not seen or seen[-1] != props.job_progress):
                seen.append(props.job_progress)
            time.sleep(0.02)
        image = props.preview_image
        emit(state=props.job_state, seen=seen, size=list(image.size) if image else None,
             name=image.name if image else None, images=[i.name for i in bpy.data.images if i.name.startswith("PM Preview")])
        """,
        addon_zip, tmp_path, setup=PUMP, timeout=300,
    )
    assert out["state"] == "DONE"
    assert out["seen"] and out["seen"] == sorted(out["seen"])
    assert out["size"][0] == out["size"][1] > 0 and out["name"].startswith("PM Preview")
    assert len(out["images"]) == 1  # one image, reloaded with each newer preview


def test_a_result_goes_into_the_sequencer_on_a_free_channel(addon_zip, tiny_server, tmp_path):
    out = run_blender(
        f"""
        scene, cam, cube = setup_shot("{tiny_server}", steps=1)
        assert bpy.ops.puppet_master.generate(wait=True) == {{"FINISHED"}}
        editor = scene.sequence_editor_create()
        editor.strips.new_effect("Busy", "COLOR", channel=1, frame_start=1, length=30)  # channel 1 is taken
        assert bpy.ops.puppet_master.result_to_sequencer() == {{"FINISHED"}}
        assert bpy.ops.puppet_master.result_to_sequencer(frame_start=100) == {{"FINISHED"}}
        strips = sorted(((s.name, s.channel, int(s.frame_final_start), int(s.frame_final_duration), s.type)
                         for s in editor.strips_all if s.name.startswith("PM ")), key=lambda s: s[2])
        emit(strips=strips, job=scene.puppet_master.job_id)
        """,
        addon_zip, tmp_path, setup=PUMP, timeout=300,
    )
    (first, later) = out["strips"]
    assert first[0] == f"PM {out['job'][:8]} seed 7" and first[1:] == [2, 1, 14, "IMAGE"]
    assert later[1:] == [1, 100, 14, "IMAGE"]  # no strip over frames 100-113: channel 1 is free there


def test_three_variants_of_two_segments_to_choose_from_on_the_plane_and_in_the_sequencer(
        addon_zip, tiny_server, tmp_path):
    out = run_blender(
        f"""
        scene, cam, cube = setup_shot("{tiny_server}", steps=5)  # a preview every 5 of the 30 steps
        props = scene.puppet_master
        props.variants, props.segments = 3, 2
        assert bpy.ops.puppet_master.generate(wait=True) == {{"FINISHED"}}
        plane = props.result_object
        node = next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
        def state():
            return dict(image=bpy.path.abspath(node.image.filepath), duration=node.image_user.frame_duration,
                        matrix=[list(r) for r in plane.matrix_world], objects=sorted(o.name for o in scene.objects),
                        materials=len(bpy.data.materials), folder=props.result_folder, variant=props.result_variant)
        before = state()
        assert bpy.ops.puppet_master.choose_variant(index=2) == {{"FINISHED"}}
        after = state()
        assert bpy.ops.puppet_master.result_to_sequencer() == {{"FINISHED"}}
        strip = next(s for s in scene.sequence_editor.strips_all if s.name.startswith("PM "))
        thumbs = sorted(i.name for i in bpy.data.images if i.name.startswith("PM Variant"))
        emit(state=props.job_state, variants=props.result_variants, before=before, after=after, thumbs=thumbs,
             strip=[strip.name, int(strip.frame_final_duration)], job=props.job_id,
             preview=props.preview_image.name if props.preview_image else None)
        """,
        addon_zip, tmp_path, setup=PUMP, timeout=400,
    )
    import json
    from pathlib import Path

    assert out["state"] == "DONE" and out["variants"] == 3
    assert out["preview"] and out["preview"].startswith("PM Preview")  # the job showed itself forming
    root = Path(out["before"]["folder"]).parent
    seeds = []
    for index in range(3):
        folder = root / f"variant_{index:02d}"
        assert len(list(folder.glob("frame_*.png"))) == 27
        seeds.append(json.loads((folder / "settings.json").read_text())["settings"]["seed"])
    assert seeds == [7, 8, 9]
    before, after = out["before"], out["after"]
    assert Path(before["image"]).parent.name == "variant_00" and Path(after["image"]).parent.name == "variant_02"
    assert after["variant"] == 2 and after["folder"].endswith("variant_02")
    # choosing changed the plane's image sequence and nothing else
    assert {k: v for k, v in before.items() if k not in ("image", "folder", "variant")} == {
        k: v for k, v in after.items() if k not in ("image", "folder", "variant")}
    assert before["duration"] == 27
    assert len(out["thumbs"]) == 3
    assert out["strip"] == [f"PM {out['job'][:8]} v2 seed 9", 27]
