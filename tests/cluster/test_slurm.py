"""The data pipeline as Slurm job arrays on a real single-node Slurm: the same clips as a local run,
every shard accounted for by the merge, a cancelled task named and redone."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_tools import render_plan, shard_status

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "cluster" / "slurm" / "pipeline.sh"
RENDER_ARGS = ["--views", "2", "--frames", "4", "--resolution", "48", "--engine", "workbench", "--points", "512"]
SBATCH_ARGS = "--cpus-per-task=1 --mem=500M"
SHARDS = 2
#: what differs between two renders of the same clip: timings
TIMINGS = ("seconds", "seconds_tracks", "seconds_images")

pytestmark = [pytest.mark.blender, pytest.mark.slurm]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    pytest.importorskip("bpy")
    folder = tmp_path_factory.mktemp("assets")
    subprocess.run([sys.executable, str(ROOT / "dataset_tools" / "procedural.py"), "--out", str(folder),
                    "--kinds", "hinged_box", "drawer", "--seeds", "0", "1", "--frames", "12"],
                   check=True, capture_output=True, timeout=300)
    (folder / "corrupt.glb").write_bytes(b"glTF\x02\x00\x00\x00 not a binary glTF")
    ids = [a.asset_id for a in render_plan.collect_assets([folder])]
    assert {render_plan.in_shard(i, 0, SHARDS) for i in ids} == {True, False}, "both tasks get assets"
    return folder


@pytest.fixture(scope="module")
def local(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "renders"
    done = subprocess.run([sys.executable, str(ROOT / "dataset_tools" / "render.py"), str(assets), "--out", str(out),
                           *RENDER_ARGS], capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout + done.stderr  # the corrupt asset failed
    done = subprocess.run([sys.executable, "-m", "dataset_tools.sample_drags", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _submit_pipeline(slurm, work: Path, assets: Path) -> dict[str, str]:
    done = slurm.run("bash", str(PIPELINE), "--shards", str(SHARDS), "--renders", "renders",
                     "--render-args", " ".join(RENDER_ARGS), "--sbatch-args", SBATCH_ARGS, "--", str(assets),
                     cwd=work, env={"PM_PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = dict(line.split() for line in done.stdout.splitlines())
    assert list(jobs) == ["render", "render-merge", "drags", "drags-merge"]
    return jobs


def _clip_files(root: Path) -> list[Path]:
    """Every file inside the clip folders (ROOT/asset/clip/...)."""
    files = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return sorted(p for p in files if len(p.parts) >= 3 and p.parts[0] not in ("shards", "reports"))


def test_job_arrays_render_and_sample_drags_as_a_local_run_does(slurm, assets, local, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    jobs = _submit_pipeline(slurm, work, assets)
    slurm.wait_for(list(jobs.values()))
    renders = work / "renders"
    # the merges saw every shard; the render merge lists the corrupt asset under its shard
    render_report = json.loads((renders / "shards" / "render_merged.json").read_text())
    assert render_report["finished"] == SHARDS and render_report["unfinished"] == []
    assert [(f["id"], f["shard"]) for f in render_report["failed"]] == [
        ("corrupt", next(i for i in range(SHARDS) if render_plan.in_shard("corrupt", i, SHARDS)))]
    assert render_report["exit_status"] == shard_status.EXIT_FAILED
    drags_report = json.loads((renders / "shards" / "drags_merged.json").read_text())
    assert drags_report["finished"] == SHARDS and drags_report["exit_status"] == shard_status.EXIT_OK
    assert "2/2 shards finished" in (work / f"pm-merge_{jobs['render-merge']}.out").read_text()
    # each task logged its shard, and wrote its own report
    assert "pm-render shard 1/2" in (work / f"pm-render_{jobs['render']}_1.out").read_text()
    assert sorted(p.name for p in (renders / "reports").iterdir()) == ["render_0-of-2.jsonl", "render_1-of-2.jsonl"]
    # the same clips as the local run, file by file
    files = _clip_files(renders)
    assert files == _clip_files(local)
    clips = 4  # two hinged boxes, two drawers (the corrupt asset has none)
    assert sum(f.name == "drags.json" for f in files) == clips
    assert sum(f.suffix == ".png" for f in files) == clips * 2 * 4  # views x frames
    for name in files:
        mine, theirs = renders / name, local / name
        if name.suffix == ".png":
            with Image.open(mine) as a, Image.open(theirs) as b:
                assert np.array_equal(np.asarray(a), np.asarray(b)), name
        elif name.suffix == ".npz":
            a, b = np.load(mine), np.load(theirs)
            assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files), name
        elif name.name == "clip.json":
            a, b = (json.loads(p.read_text()) for p in (mine, theirs))
            assert {k: v for k, v in a.items() if k not in TIMINGS} == {k: v for k, v in b.items() if k not in TIMINGS}
        elif name.suffix == ".json":
            assert json.loads(mine.read_text()) == json.loads(theirs.read_text()), name


def test_a_cancelled_task_is_named_by_the_merge_and_a_partial_array_redoes_it(slurm, assets, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {"PM_PYTHON": sys.executable, "PM_REPO": str(ROOT)}
    script = str(ROOT / "cluster" / "slurm" / "render.sbatch")
    held = slurm.run("sbatch", "--parsable", "--hold", f"--array=0-{SHARDS - 1}", *SBATCH_ARGS.split(), script,
                     str(assets), "--out", "renders", *RENDER_ARGS, cwd=work, env=env, check=True).stdout.strip()
    slurm.run("scancel", f"{held}_1", check=True)  # as if task 1 were preempted or killed before it ran
    slurm.run("scontrol", "release", held, check=True)
    merge = slurm.run("sbatch", "--parsable", f"--dependency=afterany:{held}", *SBATCH_ARGS.split(),
                      str(ROOT / "cluster" / "slurm" / "merge.sbatch"), "renders", "render", str(SHARDS),
                      cwd=work, env=env, check=True).stdout.strip()
    slurm.wait_for([held, merge])
    report = json.loads((work / "renders" / "shards" / "render_merged.json").read_text())
    assert report["exit_status"] == shard_status.EXIT_UNFINISHED and report["finished"] == 1
    assert [u["shard"] for u in report["unfinished"]] == [1]
    log = (work / f"pm-merge_{merge}.out").read_text()
    assert "shard 1/2 did not finish" in log and "--shard 1/2" in log
    # a partial array must say how many shards there are, or it would take other assets
    wrong = slurm.run("sbatch", "--parsable", "--array=1", *SBATCH_ARGS.split(), script, str(assets),
                      "--out", "renders", *RENDER_ARGS, cwd=work, env=env, check=True).stdout.strip()
    redo = slurm.run("sbatch", "--parsable", "--array=1", *SBATCH_ARGS.split(), script, str(assets),
                     "--out", "renders", *RENDER_ARGS, cwd=work, env={**env, "PM_SHARDS": str(SHARDS)},
                     check=True).stdout.strip()
    slurm.wait_for([wrong, redo])
    assert "needs PM_SHARDS" in (work / f"pm-render_{wrong}_1.out").read_text()
    done = subprocess.run([sys.executable, "-m", "dataset_tools.shard_status", str(work / "renders"), "--stage",
                           "render", "--shards", str(SHARDS)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == shard_status.EXIT_FAILED, done.stdout  # every shard finished; the corrupt asset failed
    assert "2/2 shards finished" in done.stdout
