"""The add-on's plain-Python modules (no bpy): camera frame, overlay geometry, reference image, results, jobs."""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pytest
from addon_helpers import free_port

from blender_addon.core import (
    backend_process,
    camera_frame,
    drag_editing,
    job,
    overlay_geometry,
    reference_image,
    results,
)
from puppet_master.client import GenerationClient


# --- camera frame ---------------------------------------------------------------------------
def test_square_region_landscape_portrait_and_pixel_aspect():
    assert camera_frame.square_region(256, 256).is_full_frame
    wide = camera_frame.square_region(1920, 1080)
    assert wide.v0 == 0.0 and wide.v1 == 1.0
    assert wide.u1 - wide.u0 == pytest.approx(1080 / 1920)
    assert wide.u0 == pytest.approx((1 - 1080 / 1920) / 2)
    tall = camera_frame.square_region(100, 400)
    assert (tall.u0, tall.u1) == (0.0, 1.0) and tall.v1 - tall.v0 == pytest.approx(0.25)
    # 200x100 pixels that are twice as tall as wide display as a square
    assert camera_frame.square_region(200, 100, 1.0, 2.0).is_full_frame
    x, y = wide.frame_to_square(*wide.square_to_frame(0.3, 0.8))
    assert (x, y) == pytest.approx((0.3, 0.8))
    with pytest.raises(camera_frame.CameraFrameError, match="must be positive"):
        camera_frame.square_region(0, 10)


def _frame(w: float, h: float, z: float, cx: float = 0.0, cy: float = 0.0):
    # Blender's view_frame order: top-right, bottom-right, bottom-left, top-left
    return [(cx + w / 2, cy + h / 2, z), (cx + w / 2, cy - h / 2, z), (cx - w / 2, cy - h / 2, z), (cx - w / 2, cy + h / 2, z)]


def test_result_plane_covers_the_centred_square_at_depth():
    frame = _frame(1.6, 0.9, -2.0, cx=0.2)
    plane = camera_frame.result_plane(frame, 4.0, perspective=True)
    assert plane.side == pytest.approx(0.9 * 2.0)  # twice as far -> twice as big
    assert plane.centre == pytest.approx((0.4, 0.0, -4.0))
    ortho = camera_frame.result_plane(frame, 4.0, perspective=False)
    assert ortho.side == pytest.approx(0.9) and ortho.centre == pytest.approx((0.2, 0.0, -4.0))
    with pytest.raises(camera_frame.CameraFrameError, match="depth must be positive"):
        camera_frame.result_plane(frame, 0.0, perspective=True)


def test_square_camera_reproduces_the_centred_square():
    lens = 50.0
    # a 36 mm sensor at 50 mm: at depth z the frame is 36/50*|z| wide
    z = -lens / 36.0
    frame = _frame(1.0, 9 / 16, z, cx=0.1, cy=-0.05)
    cam = camera_frame.square_camera(frame, lens=lens, perspective=True)
    side = 9 / 16
    assert cam.sensor_width == pytest.approx(side / abs(z) * lens)
    assert (cam.shift_x, cam.shift_y) == pytest.approx((0.1 / side, -0.05 / side))
    ortho = camera_frame.square_camera(_frame(4.0, 3.0, -1.0), lens=lens, perspective=False)
    assert ortho.ortho_scale == pytest.approx(3.0) and ortho.sensor_width is None
    with pytest.raises(camera_frame.CameraFrameError, match="one depth"):
        camera_frame.FrameBox.from_corners([(0, 0, -1), (1, 0, -1), (1, 1, -2), (0, 1, -1)])


# --- overlay geometry -----------------------------------------------------------------------
def _ortho_view(width: int, height: int):
    """A perspective matrix that maps world x,y in [-1, 1] onto the whole region (looking down -z)."""
    return [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, 0], [0, 0, 0, 1]], width, height


def test_project_and_mapping_round_trip():
    persmat, w, h = _ortho_view(400, 300)
    assert overlay_geometry.project_to_region(persmat, (0, 0, -1), w, h) == pytest.approx((200, 150))
    assert overlay_geometry.project_to_region(persmat, (-1, 1, -1), w, h) == pytest.approx((0, 300))
    behind = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, -1, 0]]
    assert overlay_geometry.project_to_region(behind, (0, 0, 1), w, h) is None
    identity = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    square = camera_frame.FrameBox(-0.5, 0.5, -0.5, 0.5, -1.0).corners()
    mapping = overlay_geometry.camera_square_mapping(persmat, identity, square, w, h)
    # normalised (0, 0) is the top-left: region y grows upwards
    assert mapping.to_region(0, 0) == pytest.approx((100, 225))
    assert mapping.to_region(1, 1) == pytest.approx((300, 75))
    assert mapping.to_region(0.5, 0.5) == pytest.approx((200, 150))
    assert mapping.from_region(*mapping.to_region(0.25, 0.9)) == pytest.approx((0.25, 0.9))
    assert mapping.contains(200, 150) and not mapping.contains(50, 150)


def test_arrow_shapes_and_handle_picking():
    mapping = overlay_geometry.SquareMapping((0.0, 200.0), (200.0, 200.0), (0.0, 0.0))
    shapes = overlay_geometry.arrow_shapes(mapping, [((0.25, 0.5), (0.75, 0.5)), ((0.5, 0.1), (0.5, 0.1))])
    first, second = shapes
    assert first.start == pytest.approx((50, 100)) and first.end == pytest.approx((150, 100))
    assert first.label == "1" and second.label == "2"
    tip, left, right = first.head
    assert tip == pytest.approx((150, 100))
    assert left[0] == pytest.approx(150 - overlay_geometry.HEAD_LENGTH_PX)
    half = overlay_geometry.HEAD_HALF_WIDTH_PX
    assert sorted([left[1], right[1]]) == pytest.approx([100 - half, 100 + half])
    assert first.label_position[0] > first.start[0] and first.label_position[1] > first.start[1]
    assert overlay_geometry.pick_handle(shapes, 52, 101) == (0, "start")
    assert overlay_geometry.pick_handle(shapes, 147, 99) == (0, "end")
    assert overlay_geometry.pick_handle(shapes, 100, 100) is None
    # a zero-length drag: the end handle is picked so it can be pulled out again
    assert overlay_geometry.pick_handle(shapes, 100, 180) == (1, "end")
    ring = overlay_geometry.circle_points((10, 10), 5, 8)
    assert all(math.hypot(x - 10, y - 10) == pytest.approx(5) for x, y in ring)
    assert overlay_geometry.clamp_unit(-0.2, 1.4) == (0.0, 1.0)


# --- reference image ------------------------------------------------------------------------
def test_composite_crop_alpha_checks_and_png():
    rgba = np.zeros((4, 6, 4), np.float32)
    rgba[1:3, 2:4] = (1.0, 0.0, 0.0, 1.0)  # an opaque red block in the centre
    rgba[0, 0] = (0.0, 0.0, 0.0, 0.5)
    rgb = reference_image.model_input(np.pad(rgba, ((6, 6), (5, 5), (0, 0))))
    assert rgb.shape == (16, 16, 3)
    white = reference_image.composite_on_white(rgba)
    assert white[0, 5] == pytest.approx((1, 1, 1)) and white[1, 2] == pytest.approx((1, 0, 0))
    assert white[0, 0] == pytest.approx((0.5, 0.5, 0.5))
    assert reference_image.centre_square(rgba).shape == (4, 4, 4)
    alpha = reference_image.centre_square(rgba)[..., 3]
    assert reference_image.drags_off_object(alpha, [(0.5, 0.5), (0.05, 0.95)]) == [1]
    flat = reference_image.to_blender_pixels(rgba)
    assert np.array_equal(reference_image.from_blender_pixels(flat, 6, 4, 4), rgba)
    png = reference_image.encode_png(white)
    import zlib

    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png[12:16] == b"IHDR"
    raw = zlib.decompress(png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8])
    stride = 1 + 6 * 3  # filter byte + 6 RGB pixels per row
    assert len(raw) == 4 * stride
    assert raw[stride + 1 + 2 * 3 : stride + 1 + 3 * 3] == bytes([255, 0, 0])  # row 1, column 2 is red
    assert raw[1:4] == bytes([128, 128, 128])  # half-transparent black on white
    with pytest.raises(reference_image.ReferenceImageError, match="only 4x4"):
        reference_image.model_input(rgba)


# --- results --------------------------------------------------------------------------------
def test_result_folder_and_frames(tmp_path):
    job_id = "ab" * 16
    assert results.result_folder("//puppet_master", str(tmp_path / "shot.blend"), job_id) == tmp_path / "puppet_master" / job_id
    unsaved = results.result_folder("//puppet_master", "", job_id)
    assert unsaved.name == job_id and "puppet_master_unsaved" in str(unsaved)
    assert results.result_folder(str(tmp_path / "out"), "", job_id) == tmp_path / "out" / job_id
    with pytest.raises(results.ResultError, match="folder name"):
        results.result_folder("//x", "", "../evil")
    png = reference_image.encode_png(np.zeros((2, 2, 3), np.float32))
    paths = results.write_frames(tmp_path / job_id, [png] * 3)
    assert [p.name for p in paths] == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert results.existing_frames(tmp_path / job_id) == paths
    with pytest.raises(results.ResultError, match=r"frame 1 .* not a PNG"):
        results.write_frames(tmp_path / "bad", [png, b"nope"])


# --- jobs -----------------------------------------------------------------------------------
def test_guidance_zero_asks_for_the_model_default_and_a_value_for_a_ramp_from_one():
    model_default = job.GenerationSettings(steps=3).to_job_settings()
    assert (model_default.min_guidance_scale, model_default.max_guidance_scale) == (None, None)
    own = job.GenerationSettings(steps=3, guidance=4.0, seed=2).to_job_settings()
    assert (own.min_guidance_scale, own.max_guidance_scale, own.seed) == (1.0, 4.0, 2)


def test_job_with_backend_down_ends_in_a_clear_error():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    client = GenerationClient(endpoint, server_timeout_s=0.5, request_timeout_s=5.0)
    controller = job.JobController(endpoint, client=client)
    png = reference_image.encode_png(np.ones((32, 32, 3), np.float32))
    controller.submit(png, [((0.5, 0.5), (0.6, 0.5))], job.GenerationSettings(steps=2))
    assert controller.snapshot.state == job.SUBMITTING
    deadline = time.monotonic() + 5.0
    while controller.snapshot.active and time.monotonic() < deadline:
        controller.poll()
        time.sleep(0.02)
    controller.close()
    assert controller.snapshot.state == job.ERROR
    assert f"No backend answers at {endpoint}" in controller.snapshot.error


def test_job_rejects_bad_input_before_sending():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    controller = job.JobController(endpoint)
    try:
        with pytest.raises(ValueError, match="PNG"):
            controller.submit(b"not a png", [((0.5, 0.5), (0.6, 0.5))], job.GenerationSettings())
        png = reference_image.encode_png(np.ones((32, 32, 3), np.float32))
        with pytest.raises(ValueError, match="outside the image"):
            controller.submit(png, [((0.5, 0.5), (1.6, 0.5))], job.GenerationSettings())
    finally:
        controller.close()


def test_add_drag_puts_each_new_drag_at_a_spot_of_its_own():
    spots = [drag_editing.new_drag_position(i) for i in range(5)]
    assert len({start for start, _ in spots}) == 5
    assert all(0 <= c <= 1 for start, end in spots for c in (*start, *end))
    assert all(start != end for start, end in spots)


def test_local_backend_command_uses_the_default_model_and_the_memory_preset():
    plain = backend_process.LaunchSettings(sys.executable, "tcp://127.0.0.1:5555").command()
    assert plain == [sys.executable, "-m", "puppet_master", "serve", "--bind", "tcp://127.0.0.1:5555"]
    low = backend_process.LaunchSettings(sys.executable, "tcp://127.0.0.1:5555", "--tiny", memory="low").command()
    assert low[-3:] == ["--tiny", "--memory", "low"]
    # the endpoint is normalised, or refused with the expected form (not as an encryption problem)
    assert backend_process.LaunchSettings(sys.executable, " localhost:5555").command()[5] == "tcp://localhost:5555"
    with pytest.raises(backend_process.BackendLaunchError, match="has no port: expected tcp://HOST:PORT"):
        backend_process.LaunchSettings(sys.executable, "tcp://127.0.0.1").command()


def test_local_backend_launch_errors_and_log(tmp_path):
    with pytest.raises(backend_process.BackendLaunchError, match="not found"):
        backend_process.LaunchSettings(str(tmp_path / "nope"), "tcp://127.0.0.1:1").command()
    with pytest.raises(backend_process.BackendLaunchError, match="cannot parse"):
        backend_process.LaunchSettings(sys.executable, "tcp://x", "--model 'unclosed").command()
    # a "Python" that fails at once: its exit code and log reach the artist
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\necho "cannot serve: $*" >&2\nexit 3\n')
    fake_python.chmod(0o755)
    backend = backend_process.LocalBackend()
    backend.start(backend_process.LaunchSettings(str(fake_python), "tcp://127.0.0.1:1", "--model /nowhere"))
    deadline = time.monotonic() + 30
    while backend.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.exit_code == 3
    assert "cannot serve: -m puppet_master serve --bind tcp://127.0.0.1:1 --model /nowhere" in backend.log_tail()
    backend.stop()
    # a long-running process is stopped politely (SIGINT), then reaped
    sleeper = tmp_path / "sleeper"
    sleeper.write_text("#!/bin/sh\nexec sleep 60\n")
    sleeper.chmod(0o755)
    backend.start(backend_process.LaunchSettings(str(sleeper), "tcp://127.0.0.1:1"))
    assert backend.running
    with pytest.raises(backend_process.BackendLaunchError, match="already running"):
        backend.start(backend_process.LaunchSettings(str(sleeper), "tcp://127.0.0.1:1"))
    backend.stop()
    assert not backend.running and backend.exit_code is not None


# --- the drag tool's editing rules ------------------------------------------------------------
def test_drag_editor_draws_moves_deletes_and_limits():


    # a 200x200 square whose top-left corner is at region pixel (100, 300)
    mapping = overlay_geometry.SquareMapping((100.0, 300.0), (300.0, 300.0), (100.0, 100.0))
    editor = drag_editing.DragEditor(max_drags=2)
    assert editor.press(mapping, 50, 50) == drag_editing.OUTSIDE and editor.drags == []
    # click-drag draws an arrow from the press to the release point
    assert editor.press(mapping, 150, 250) == drag_editing.ADDED
    assert editor.move(mapping, 250, 250)
    assert editor.release() and not editor.release()
    assert editor.drags == [((0.25, 0.25), (0.75, 0.25))]
    # grabbing a handle moves that end only; points stay inside the square
    assert editor.press(mapping, 151, 249) == drag_editing.GRABBED and editor.grab == (0, "start")
    editor.move(mapping, 0, 400)
    editor.release()
    assert editor.drags == [((0.0, 0.0), (0.75, 0.25))]
    assert not editor.move(mapping, 200, 200)  # nothing grabbed
    # a plain click (or a wiggle under MIN_DRAG_PX) makes no drag
    assert editor.press(mapping, 200, 120) == drag_editing.ADDED
    editor.move(mapping, 202, 121)
    assert editor.release(mapping) and editor.discarded and len(editor.drags) == 1
    assert editor.press(mapping, 200, 120) == drag_editing.ADDED
    editor.move(mapping, 230, 120)
    assert editor.release(mapping) and not editor.discarded
    assert editor.press(mapping, 120, 120) == drag_editing.FULL and len(editor.drags) == 2
    # moving an existing handle onto the other end is an edit, not a click: it stays
    editor.press(mapping, 230, 120)
    editor.move(mapping, 200, 120)
    assert editor.release(mapping) and not editor.discarded and len(editor.drags) == 2
    # right-click on a handle deletes its drag; elsewhere nothing
    assert editor.delete_at(mapping, 20, 20) is None
    assert editor.delete_at(mapping, 250, 250) == 0
    assert editor.drags == [((0.5, 0.9), (0.5, 0.9))] and editor.active == 0


def test_server_key_from_text_or_key_file(tmp_path):
    import zmq.auth

    public_file, _ = zmq.auth.create_certificates(str(tmp_path), "server")
    public, _ = zmq.auth.load_certificate(public_file)
    assert job.resolve_server_key("") is None
    assert job.resolve_server_key(f"  {public.decode()} ") == public.decode()
    assert job.resolve_server_key(public_file) == public.decode()
    with pytest.raises(job.ServerKeyError, match=r"40-character public key or a \.key file"):
        job.resolve_server_key("too-short")
    (tmp_path / "empty.key").write_text("metadata\n")
    with pytest.raises(job.ServerKeyError, match=r"(?i)no public.key found"):
        job.resolve_server_key(str(tmp_path / "empty.key"))


def test_job_journal_records_finishes_and_survives_damage(tmp_path):
    from blender_addon.core import job_journal

    root = tmp_path / "puppet_master"
    assert job_journal.latest_pending(root, "Scene") is None
    job_journal.record(root, "a" * 32, "Scene", "tcp://127.0.0.1:5555")
    job_journal.record(root, "b" * 32, "Scene", "tcp://127.0.0.1:5555")
    job_journal.record(root, "c" * 32, "Other", "tcp://127.0.0.1:5555")
    assert job_journal.latest_pending(root, "Scene").job_id == "b" * 32
    job_journal.finish(root, "b" * 32)
    assert job_journal.latest_pending(root, "Scene").job_id == "a" * 32
    job_journal.finish(root, "a" * 32)
    assert job_journal.latest_pending(root, "Scene") is None
    assert job_journal.latest_pending(root, "Other").endpoint == "tcp://127.0.0.1:5555"
    (root / job_journal.JOURNAL_NAME).write_text("{broken")
    assert job_journal.latest_pending(root, "Other") is None
    job_journal.record(root, "d" * 32, "Other", "tcp://x:1")
    assert job_journal.latest_pending(root, "Other").job_id == "d" * 32


def test_a_silent_backend_is_counted_up_in_the_status_and_the_job_goes_on(tmp_path):
    """The broker is frozen (SIGSTOP) mid-job: the status says for how long, second by second; once
    it is thawed the job comes to an end."""
    import signal

    from tests.server.server_helpers import ServerProcess

    server = ServerProcess(tmp_path / "results").start()
    client = GenerationClient(server.endpoint, server_timeout_s=0.5)
    controller = job.JobController(server.endpoint, client=client)
    try:
        png = reference_image.encode_png(np.ones((32, 32, 3), np.float32))
        controller.submit(png, [((0.5, 0.5), (0.6, 0.5))], job.GenerationSettings(steps=50))
        deadline = time.monotonic() + 240
        while controller.snapshot.state != job.RUNNING and time.monotonic() < deadline:
            controller.poll()
            time.sleep(0.02)
        assert controller.snapshot.state == job.RUNNING, controller.snapshot
        os.kill(server.process.pid, signal.SIGSTOP)
        seen = []
        try:
            while len(seen) < 3 and time.monotonic() < deadline:
                controller.poll()
                text = controller.snapshot.status
                if text.startswith("Backend not answering") and (not seen or seen[-1] != text):
                    seen.append(text)
                time.sleep(0.05)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        counts = [int(t.split("for ")[1].split(" s")[0]) for t in seen]
        assert len(counts) == 3 and counts == sorted(counts) and counts[-1] > counts[0], seen
        # thawed, the job ends (done, or lost when its worker gave the silent broker up first)
        while controller.snapshot.active and time.monotonic() < deadline:
            controller.poll()
            time.sleep(0.05)
        assert controller.snapshot.state in (job.DONE, job.ERROR), controller.snapshot
    finally:
        controller.close()
        server.stop()


def test_preview_gif_decodes_to_the_frames_within_the_palette_step(tmp_path):
    import io

    from PIL import Image

    from blender_addon.core import preview_gif

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(3)]
    data = preview_gif.encode_gif(frames, fps=10)
    gif = Image.open(io.BytesIO(data))
    assert gif.n_frames == 3 and gif.size == (56, 40) and gif.info.get("loop") == 0
    for k, frame in enumerate(frames):
        gif.seek(k)
        decoded = np.asarray(gif.convert("RGB")).astype(int)
        # the nearest of 6 or 7 levels per channel: at most half a step (25.5 or 21.25) away
        assert np.abs(decoded - frame.astype(int)).max() <= 26
        assert gif.info["duration"] == 100
    with pytest.raises(ValueError, match="same size"):
        preview_gif.encode_gif([frames[0], frames[0][:10]])


def test_sequencer_layout_finds_the_lowest_free_channel():
    from blender_addon.core import sequencer_layout

    occupied = [(1, 1, 30), (2, 10, 20), (3, 50, 60)]
    assert sequencer_layout.free_channel(occupied, 1, 15) == 3
    assert sequencer_layout.free_channel(occupied, 30, 44) == 1
    assert sequencer_layout.free_channel(occupied, 15, 55) == 4
    assert sequencer_layout.strip_name("0123456789abcdef" * 2, 7, variant=2) == "PM 01234567 v2 seed 7"
    with pytest.raises(ValueError, match="every sequencer channel"):
        sequencer_layout.free_channel([(c, 0, 10) for c in range(1, 129)], 0, 5)


def test_clip_timing_holds_frames_and_grows_the_scene_only_as_needed(tmp_path):
    from blender_addon.core import clip_timing

    clip = clip_timing.ClipTiming(start=10, hold=2, frames=14)
    assert (clip.length, clip.last) == (28, 37)
    assert [clip.frame_at(f) for f in (9, 10, 11, 12, 37, 38)] == [None, 0, 0, 1, 13, None]
    assert clip.held_order()[:5] == [0, 0, 1, 1, 2] and len(clip.held_order()) == 28
    # a short scene grows to hold the clip (and no further); a longer one keeps its range and loops
    assert clip_timing.scene_range(1, 20, clip, False) == clip_timing.SceneRange(1, 37, (10, 37))
    assert clip_timing.scene_range(1, 250, clip, False) == clip_timing.SceneRange(1, 250, (10, 37))
    assert clip_timing.scene_range(1, 250, clip, True).preview is None  # the artist's preview range stays
    assert clip_timing.scene_range(10, 30, clip, False) == clip_timing.SceneRange(10, 37, None)
    assert clip_timing.scene_range(20, 40, clip, False).start == 10
    with pytest.raises(ValueError, match="hold factor"):
        clip_timing.ClipTiming(1, 0, 14)
    # the held sequence: one file per scene frame, links to the generated frames
    frames = results.write_frames(tmp_path, [results.PNG_SIGNATURE + bytes([i]) for i in range(3)])
    held = clip_timing.held_frames(frames, clip_timing.ClipTiming(1, 3, 3))
    assert [p.name for p in held] == [f"frame_{i:04d}.png" for i in range(9)]
    assert all(p.parent.name == "hold_3" for p in held)
    assert [p.read_bytes()[-1] for p in held] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert clip_timing.held_frames(frames, clip_timing.ClipTiming(1, 1, 3)) == frames
