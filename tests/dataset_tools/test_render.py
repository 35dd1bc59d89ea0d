"""render.py end to end with real Blender (bpy in subprocesses), tiny sizes.

Assets: RobotExpressive.glb (skinned, 2 of its 14 clips), the three procedural assets (hinged lid,
drawer, shape-key blob), a GLB without animation and a corrupt GLB, in one batch with two workers.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from puppet_master import cameras
from tests.shared_data import SHARED

ROOT = Path(__file__).resolve().parents[2]
ROBOT = SHARED / "assets" / "RobotExpressive.glb"
RENDER = ROOT / "dataset_tools" / "render.py"
PROCEDURAL = ROOT / "dataset_tools" / "procedural.py"
SIZE, VIEWS, FRAMES = 64, 2, 3
ROBOT_CLIPS = ["Wave", "Yes"]
PROCEDURAL_CLIPS = {"hinged_box_0": "open_lid", "drawer_0": "slide_out", "morph_blob_0": "bulge"}
STATIC_PARTS = {"hinged_box_0": "base", "drawer_0": "cabinet", "morph_blob_0": "pedestal"}

pytestmark = pytest.mark.blender


def render_command(inputs, out, *extra):
    return [
        sys.executable, str(RENDER), *map(str, inputs), "--out", str(out), "--views", str(VIEWS),
        "--frames", str(FRAMES), "--resolution", str(SIZE), "--samples", "4", "--no-denoise",
        "--clips", ",".join(ROBOT_CLIPS + list(PROCEDURAL_CLIPS.values())), "--max-step", "0", *extra,
    ]


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    pytest.importorskip("bpy")
    if not ROBOT.is_file():
        pytest.skip(f"shared assets not found at {ROBOT}")
    work = tmp_path_factory.mktemp("render")
    assets = work / "assets"
    for static in (False, True):
        folder = assets / "static" if static else assets
        subprocess.run(
            [sys.executable, str(PROCEDURAL), "--out", str(folder), "--seeds", "0", "--frames", "12",
             *(["--kinds", "drawer", "--static"] if static else [])],
            check=True, capture_output=True, timeout=300,
        )
    (assets / "corrupt.glb").write_bytes(b"glTF\x02\x00\x00\x00 this is not a real binary glTF")
    (assets / "notes.obj").write_text("v 0 0 0\n")  # a format render.py does not read: reported as skipped
    out = work / "out"
    started = time.monotonic()
    result = subprocess.run(
        render_command([assets, ROBOT], out, "--workers", "2", "--review-strip"),
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # the corrupt GLB failed
    return {"out": out, "assets": assets, "stdout": result.stdout, "seconds": time.monotonic() - started}


def report(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "report.jsonl").read_text().splitlines()]


def clip_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/*/clip.json"))


def test_report_lists_every_asset_and_the_batch_goes_on(batch):
    records = {r["asset_id"]: r for r in report(batch["out"])}
    assert set(records) == {"RobotExpressive", *PROCEDURAL_CLIPS, "drawer_0_2", "corrupt", "notes.obj"}
    assert records["corrupt"]["status"] == "failed" and "import failed" in records["corrupt"]["reason"]
    assert records["notes.obj"]["status"] == "skipped" and "unsupported file type '.obj'" in records["notes.obj"]["reason"]
    assert records["drawer_0_2"]["status"] == "skipped" and records["drawer_0_2"]["reason"] == "no animation"
    for asset, clip in PROCEDURAL_CLIPS.items():
        assert records[asset]["status"] == "ok" and records[asset]["clips"] == [clip]
    assert records["RobotExpressive"]["clips"] == ROBOT_CLIPS
    assert "[7/7]" in batch["stdout"], "progress lines on stdout"
    assert "1 assets failed" in batch["stdout"]
    status = json.loads((batch["out"] / "shards" / "render_0-of-1.json").read_text())
    assert status["status"] == "done" and status["exit_status"] == 1
    assert status["counts"] == {"ok": 4, "skipped": 2, "failed": 1}
    assert [f["id"] for f in status["failed"]] == ["corrupt"]


def test_counts_of_clips_views_frames(batch):
    out = batch["out"]
    found = {f"{p.parent.name}/{p.name}" for p in clip_dirs(out)}
    assert found == {f"RobotExpressive/{c}" for c in ROBOT_CLIPS} | {f"{a}/{c}" for a, c in PROCEDURAL_CLIPS.items()}
    for clip_dir in clip_dirs(out):
        meta = json.loads((clip_dir / "clip.json").read_text())
        cams = json.loads((clip_dir / "cameras.json").read_text())
        assert meta["num_frames"] == FRAMES == len(meta["frame_indices"]) and meta["views"] == VIEWS
        assert meta["frame_indices"][0] == meta["clip_frame_range"][0]
        assert meta["frame_indices"][-1] == meta["clip_frame_range"][1]
        assert meta["fps"] == 24 and meta["engine"] == "cycles" and meta["resolution"] == [SIZE, SIZE]
        assert cams["image_size"] == [SIZE, SIZE] and len(cams["views"]) == VIEWS
        assert "OpenCV" in cams["convention"] and "top-left" in cams["convention"]
        assert sorted(p.name for p in clip_dir.glob("view_*")) == [f"view_{v:02d}" for v in range(VIEWS)]
        for v in range(VIEWS):
            frames = sorted(p.name for p in (clip_dir / f"view_{v:02d}").glob("*.png"))
            assert frames == [f"{t:04d}.png" for t in range(FRAMES)]
        with Image.open(clip_dir / "review_strip.png") as strip:
            assert strip.size == (4 * SIZE, SIZE)
        tracks = np.load(clip_dir / "tracks.npz")
        assert tracks["points"].shape == (FRAMES, 4096, 3) and tracks["points"].dtype == np.float32
        assert tracks["visibility"].shape == (VIEWS, FRAMES, 4096) and tracks["visibility"].dtype == bool
        assert tracks["part_ids"].dtype == np.int32 and tracks["bone_ids"].dtype == np.int32
        assert tracks["part_ids"].max() < len(tracks["part_names"])


def _load(clip_dir: Path):
    cams = json.loads((clip_dir / "cameras.json").read_text())
    k, w2c, (w, h) = cameras.load_camera_arrays(cams)
    return k, w2c, (w, h), np.load(clip_dir / "tracks.npz")


def test_visible_points_land_on_the_rendered_silhouette(batch):
    for clip_dir in clip_dirs(batch["out"]):
        k, w2c, (w, h), tracks = _load(clip_dir)
        for v in range(VIEWS):
            for t in range(FRAMES):
                with Image.open(clip_dir / f"view_{v:02d}" / f"{t:04d}.png") as image:
                    rgba = np.asarray(image)
                assert rgba.shape == (h, w, 4)
                visible = tracks["visibility"][v, t]
                assert visible.sum() > 100, f"{clip_dir} view {v} frame {t}: too few visible points"
                pixels, _ = cameras.project(tracks["points"][t][visible], k[v], w2c[v])
                col, row = np.floor(pixels).astype(int).T
                on_object = rgba[row, col, 3] > 0
                assert on_object.mean() >= 0.95, f"{clip_dir} view {v} frame {t}: {on_object.mean():.3f}"
                # the default background is white and the silhouette is in the alpha channel
                empty = rgba[..., 3] == 0
                assert empty.any() and (rgba[empty][:, :3] == 255).all()


def test_whole_clip_stays_inside_the_image(batch):
    for clip_dir in clip_dirs(batch["out"]):
        k, w2c, (w, h), tracks = _load(clip_dir)
        meta = json.loads((clip_dir / "clip.json").read_text())
        lo, hi = (np.array(b) for b in meta["bbox"])
        assert np.all(hi - lo <= 1.0 + 1e-6) and np.isclose((hi - lo).max(), 1.0)
        for v in range(VIEWS):
            pixels, depth = cameras.project(tracks["points"], k[v], w2c[v])
            assert (depth > 0).all() and cameras.inside_image(pixels, w, h).all(), f"{clip_dir} view {v}"


def test_static_parts_stay_put_and_moving_parts_move(batch):
    for asset, clip in PROCEDURAL_CLIPS.items():
        tracks = np.load(batch["out"] / asset / clip / "tracks.npz")
        names = list(tracks["part_names"])
        moved = np.linalg.norm(tracks["points"] - tracks["points"][0], axis=2).max(axis=0)
        static = tracks["part_ids"] == names.index(STATIC_PARTS[asset])
        assert static.any() and (~static).any()
        assert moved[static].max() < 1e-5, asset
        assert moved[~static].max() > 0.1, asset
        assert (tracks["bone_ids"] == -1).all()


def test_skinned_points_get_their_bones(batch):
    tracks = np.load(batch["out"] / "RobotExpressive" / "Wave" / "tracks.npz")
    bones = list(tracks["bone_names"])
    assert (tracks["bone_ids"] >= 0).all() and "Head" in bones
    # the waving hand moves far more than the feet during "Wave"
    moved = np.linalg.norm(tracks["points"] - tracks["points"][0], axis=2).max(axis=0)
    hand = [i for i, b in enumerate(bones) if b.startswith(("LowerArmR", "HandR", "UpperArmR"))]
    feet = [i for i, b in enumerate(bones) if b.startswith("Foot")]
    assert hand and feet
    assert moved[np.isin(tracks["bone_ids"], hand)].mean() > 3 * moved[np.isin(tracks["bone_ids"], feet)].mean()


def test_resume_skips_finished_clips(batch, tmp_path):
    out = batch["out"]
    # forget one clip of the robot: only it is rendered again
    redo = out / "RobotExpressive" / "Yes"
    keep = out / "RobotExpressive" / "Wave" / "view_00" / "0000.png"
    keep_mtime = os.stat(keep).st_mtime_ns
    (redo / "clip.json").unlink()
    lines_before = len(report(out))
    result = subprocess.run(render_command([batch["assets"], ROBOT], out, "--review-strip"), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr  # the corrupt GLB fails again
    new = {r["asset_id"]: r for r in report(out)[lines_before:]}
    assert new["RobotExpressive"]["clips_rendered"] == 1 and new["RobotExpressive"]["clips_resumed"] == 1
    assert (redo / "clip.json").is_file()
    assert os.stat(keep).st_mtime_ns == keep_mtime
    for asset in PROCEDURAL_CLIPS:
        assert new[asset]["resumed"] is True and new[asset]["seconds"] == 0.0
    assert new["drawer_0_2"]["status"] == "skipped" and new["corrupt"]["status"] == "failed"


def test_timeout_is_reported(batch, tmp_path):
    result = subprocess.run(
        render_command([ROBOT], tmp_path / "out", "--timeout", "0.5"), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    (record,) = report(tmp_path / "out")
    assert record["status"] == "failed" and record["reason"].startswith("timeout after 0.5s")


GATED_WORKER = """#!/bin/sh
# a worker that has started and waits on a FIFO nobody writes: busy until it is killed
touch "{marks}/started.$$"
read line < "{fifo}"
exec "$@"
"""


def _ignore_sigint() -> None:
    """As a shell without job control starts background commands (CI's, for one): SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(("workers", "sig"), [(2, signal.SIGINT), (1, signal.SIGINT), (1, signal.SIGTERM)])
def test_cancel_stops_the_workers(tmp_path, workers, sig):
    """Ctrl-C or `kill` cancels the batch and kills its busy workers, whatever the shell ignored.

    The workers wait on a FIFO, so the batch cannot end before the signal: no race with the clock.
    """
    marks = tmp_path / "marks"
    marks.mkdir()
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    gated = tmp_path / "blender"
    gated.write_text(GATED_WORKER.format(marks=marks, fifo=fifo))
    gated.chmod(0o755)
    assets = [ROBOT, ROBOT.with_name("copy") / ROBOT.name][:workers]  # a missing file is an asset too
    process = subprocess.Popen(
        render_command(assets, tmp_path / "out", "--workers", str(workers), "--blender", str(gated)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=_ignore_sigint,
    )
    try:
        deadline = time.monotonic() + 120  # only a broken render.py waits this long
        while len(list(marks.iterdir())) < workers and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        started = [int(p.suffix[1:]) for p in marks.iterdir()]
        assert len(started) == workers, process.communicate(timeout=10)[0]
        process.send_signal(sig)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 130 and "cancelled" in output, output
        # the batch waited for its killed workers: none is left, not even as a zombie
        assert not [pid for pid in started if Path(f"/proc/{pid}").exists()], "worker processes left running"
        report_file = tmp_path / "out" / "report.jsonl"
        assert not report_file.exists() or not report_file.read_text(), "a cancelled asset is not a failed one"
    finally:  # whatever failed, no process of this test outlives it
        if process.poll() is None:
            process.kill()
        for pid in (int(p.suffix[1:]) for p in marks.iterdir()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


BLENDER_STYLE = """
import runpy, sys
import bpy  # preloaded, as inside Blender
sys.argv = ["blender", "-b", "-P", sys.argv[1], "--", *sys.argv[2:]]
runpy.run_path(sys.argv[3], run_name="__main__")
"""


def test_blender_style_invocation_inline_workbench_rgba(batch, tmp_path):
    """`blender -b -P render.py -- ARGS`: bpy already loaded, arguments after `--`; in-process worker."""
    script = tmp_path / "as_blender.py"
    script.write_text(BLENDER_STYLE)
    out = tmp_path / "out"
    glb = batch["assets"] / "drawer_0.glb"
    result = subprocess.run(
        [sys.executable, str(script), str(RENDER), str(glb), "--out", str(out), "--views", "1", "--frames", "2",
         "--resolution", str(SIZE), "--engine", "workbench", "--rgba", "--workers", "0", "--points", "256"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (record,) = report(out)
    assert record["status"] == "ok" and record["clips"] == ["slide_out"]
    meta = json.loads((out / "drawer_0" / "slide_out" / "clip.json").read_text())
    assert meta["engine"] == "workbench" and meta["background"] == "transparent" and meta["num_frames"] == 2
    with Image.open(out / "drawer_0" / "slide_out" / "view_00" / "0001.png") as image:
        rgba = np.asarray(image)
    assert (rgba[..., 3] == 0).mean() > 0.3 and (rgba[..., 3] == 255).mean() > 0.05
    assert (rgba[rgba[..., 3] == 0][:, :3] != 255).any(), "--rgba keeps the transparent background unwhitened"


OTHER_FORMATS = """
import sys
import bpy
sys.path.insert(0, sys.argv[1])
from dataset_tools import procedural
out = sys.argv[2]
procedural.make_asset("hinged_box", 1, out + "/box.glb")
bpy.ops.export_scene.fbx(filepath=out + "/box_fbx.fbx", bake_anim=True)
base = bpy.data.objects["base"]  # a second animated object: in a .blend both actions play together
base.keyframe_insert("location", index=0, frame=1)
base.location.x = 0.3
base.keyframe_insert("location", index=0, frame=24)
bpy.ops.wm.save_as_mainfile(filepath=out + "/two_parts.blend")
"""


def test_fbx_and_blend_inputs(batch, tmp_path):
    script = tmp_path / "formats.py"
    script.write_text(OTHER_FORMATS)
    subprocess.run([sys.executable, str(script), str(ROOT), str(tmp_path)], check=True, capture_output=True, timeout=120)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(RENDER), str(tmp_path / "box_fbx.fbx"), str(tmp_path / "two_parts.blend"), "--out", str(out),
         "--views", "1", "--frames", "2", "--resolution", str(SIZE), "--samples", "1", "--no-denoise", "--points", "512",
         "--max-step", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = {r["asset_id"]: r for r in report(out)}
    assert records["box_fbx"]["clips"] == ["open_lid"]
    assert records["two_parts"]["status"] == "ok" and len(records["two_parts"]["clips"]) == 1

    def displacement(asset):
        (clip_dir,) = [p.parent for p in (out / asset).glob("*/clip.json")]
        tracks = np.load(clip_dir / "tracks.npz")
        moved = np.linalg.norm(tracks["points"][-1] - tracks["points"][0], axis=1)
        return {str(n): moved[tracks["part_ids"] == i].max() for i, n in enumerate(tracks["part_names"])}

    fbx = displacement("box_fbx")
    assert fbx["base"] < 1e-5 and fbx["lid"] > 0.3
    blend = displacement("two_parts")
    assert blend["base"] > 0.1 and blend["lid"] > 0.3


CLIP_HISTORY = """
import json, sys
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
import bpy
from dataset_tools import blender_scene as bs

def vertices_of(second, frame, first=None):
    bs.reset_scene()
    bs.import_asset(Path(sys.argv[2]))
    clips = {c.name: c for c in bs.find_clips()}
    if first:
        bs.activate_clip(clips[first], list(clips.values()))
        bs.set_frame(clips[first].frame_start + 7)
    bs.activate_clip(clips[second], list(clips.values()))
    bs.set_frame(frame)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    return np.concatenate([bs.world_vertices(o, depsgraph) for o in bs.geometry_objects()])

result = {}
for first, second in [("Wave", "Idle"), ("Jump", "Wave")]:
    alone = vertices_of(second, 4)
    result[f"{first}->{second}"] = float(np.abs(vertices_of(second, 4, first) - alone).max())
    result[f"{first} vs {second}"] = float(np.abs(vertices_of(first, 4) - alone).max())
print(json.dumps(result))
"""


def test_a_clip_poses_the_same_whatever_played_before(tmp_path):
    """Bones a clip does not animate are at rest, not where the previous clip of the asset left them."""
    script = tmp_path / "history.py"
    script.write_text(CLIP_HISTORY)
    result = subprocess.run([sys.executable, str(script), str(ROOT), str(ROBOT)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = json.loads(result.stdout.strip().splitlines()[-1])
    assert diffs["Wave->Idle"] < 1e-5 and diffs["Jump->Wave"] < 1e-5
    assert diffs["Wave vs Idle"] > 0.05 and diffs["Jump vs Wave"] > 0.05  # the clips themselves differ


def test_resume_refuses_other_settings_and_overwrite_re_renders(batch, tmp_path):
    """A trial with 1 view at 32 px, then 2 views at 48 px into the same --out: refused, then --overwrite."""
    out = tmp_path / "out"
    glb = batch["assets"] / "drawer_0.glb"

    def run(*extra):
        return subprocess.run(
            [sys.executable, str(RENDER), str(glb), "--out", str(out), "--frames", "2", "--samples", "1",
             "--no-denoise", "--points", "256", *extra], capture_output=True, text=True, timeout=300,
        )

    first = run("--views", "1", "--resolution", "32")
    assert first.returncode == 0, first.stdout + first.stderr
    clip = out / "drawer_0" / "slide_out"
    trial = json.loads((clip / "clip.json").read_text())
    assert trial["settings"]["views"] == 1 and trial["settings"]["render"]["resolution"] == 32
    refused = run("--views", "2", "--resolution", "48")
    assert refused.returncode == 2
    assert "views: 1 -> 2" in refused.stderr and "render.resolution: 32 -> 48" in refused.stderr
    assert "--overwrite" in refused.stderr
    assert json.loads((clip / "clip.json").read_text()) == trial, "a refused run changes nothing"
    assert len(report(out)) == 1
    again = run("--views", "1", "--resolution", "32")  # the same settings resume as before
    assert again.returncode == 0 and report(out)[-1]["resumed"] is True
    redo = run("--views", "2", "--resolution", "48", "--overwrite")
    assert redo.returncode == 0, redo.stdout + redo.stderr
    meta = json.loads((clip / "clip.json").read_text())
    assert meta["views"] == 2 and meta["resolution"] == [48, 48] and "resumed" not in report(out)[-1]
    with Image.open(clip / "view_01" / "0001.png") as image:
        assert image.size == (48, 48)
    assert json.loads((out / "render_settings.json").read_text()) == meta["settings"]


LATE_DRAWER = """
import sys
import bpy
sys.path.insert(0, sys.argv[1])
from dataset_tools import procedural
procedural.make_asset("drawer", 0, sys.argv[2] + "/late.glb", frames=166)
drawer = bpy.data.objects["drawer"]  # still until frame 110, then it slides out by frame 166
drawer.location[1] = 0.0
drawer.keyframe_insert("location", index=1, frame=110)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2] + "/late_drawer.blend")
"""


def test_a_long_clip_renders_its_most_moving_window_in_small_steps(tmp_path):
    """166 frames: 14 frames spread evenly would be 12.7 frames (0.53 s) apart and jump; the
    default renders 14 frames 4 apart where the drawer moves."""
    script = tmp_path / "late.py"
    script.write_text(LATE_DRAWER)
    subprocess.run([sys.executable, str(script), str(ROOT), str(tmp_path)], check=True, capture_output=True, timeout=120)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(RENDER), str(tmp_path / "late_drawer.blend"), "--out", str(out), "--views", "1",
         "--resolution", "32", "--engine", "workbench", "--points", "512", "--workers", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (clip_dir,) = [p.parent for p in out.glob("late_drawer/*/clip.json")]
    meta = json.loads((clip_dir / "clip.json").read_text())
    frames = meta["frame_indices"]
    assert meta["clip_frame_range"] == [1.0, 166.0] and len(frames) == 14
    assert np.allclose(np.diff(frames), 4.0) and meta["window"] == [frames[0], frames[-1]]
    assert frames[0] >= 110 - 4 and frames[-1] <= 166
    tracks = np.load(clip_dir / "tracks.npz")
    step = np.linalg.norm(np.diff(tracks["points"], axis=0), axis=-1).max(axis=1)  # largest move per step
    # spread evenly: 5 of 13 steps move, up to 0.121 per step; the window: 13 of 13, at most 0.04
    assert step.max() < 0.06 and np.count_nonzero(step > 1e-4) >= 12
