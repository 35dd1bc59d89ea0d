"""`puppet-master download` with the real huggingface_hub client against a stand-in hub on 127.0.0.1.

The stand-in serves a small Stable Video Diffusion img2vid repository in the real layout (fp16
variant files beside the full ones, SVD's own U-Net weights that must never be fetched) and a
Space holding ``ckpts/model.safetensors`` in the released layout (the tiny U-Net, no drag options:
its sizes come from its shapes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hub_standin import SPACE, SVD_REPO, StandInHub, build_repos

from puppet_master import hub
from puppet_master.conversion import MANIFEST_FILE, sha256_of
from tests.server.server_helpers import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "backend" / "puppet_master" / "assets" / "examples" / "cabinet.png"


@pytest.fixture(scope="module")
def repos(svd_folder, released_checkpoint, tmp_path_factory) -> dict[str, Path]:
    return build_repos(tmp_path_factory.mktemp("hub-repos"), svd_folder, released_checkpoint)


@pytest.fixture
def standin(repos):
    server = StandInHub()
    server.add("model", SVD_REPO, repos["svd"])
    server.add("space", SPACE, repos["space"])
    url = server.start()
    yield server, url
    server.stop()


def cli(tmp_path: Path, url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_ENDPOINT": url, "PUPPET_MASTER_HOME": str(tmp_path / "home"),
                   "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1", **env}
    if "HF_TOKEN" not in env:
        environment.pop("HF_TOKEN", None)
    environment.pop("PUPPET_MASTER_MODEL", None)
    return subprocess.run([sys.executable, "-m", "puppet_master", *args], capture_output=True, text=True,
                          env=environment, timeout=600, cwd=ROOT)


def download(tmp_path, url, *args, **env):
    return cli(tmp_path, url, "download", "--svd-repo", SVD_REPO, "--checkpoint-repo", SPACE, *args, **env)


def test_download_converts_the_default_model_that_generate_uses(standin, tmp_path):
    server, url = standin
    done = download(tmp_path, url)
    assert done.returncode == 0, done.stdout + done.stderr
    model = tmp_path / "home" / "models" / "puppet-master"
    assert "it is the default model" in done.stdout and "removed the raw downloads" in done.stdout
    assert not (tmp_path / "home" / "downloads").exists()
    # only what the pipeline needs: fp16 variants, no SVD U-Net weights, no demo files
    fetched = server.fetched()
    assert "unet/config.json" in fetched and "ckpts/model.safetensors" in fetched
    assert not [f for f in fetched if f.startswith("unet/") and f.endswith(".safetensors")]
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in fetched
    assert "vae/diffusion_pytorch_model.safetensors" not in fetched and "README.md" not in fetched
    manifest = json.loads((model / MANIFEST_FILE).read_text())
    assert manifest["dtype"] == "float16"
    assert manifest["sources"]["svd"]["repo"] == SVD_REPO and manifest["sources"]["checkpoint"]["repo_type"] == "space"
    assert manifest["sources"]["checkpoint"]["revision"] == server.repos[("space", SPACE)].commit
    assert any("CC-BY-NC-SA-4.0" in licence for licence in manifest["licences"])
    assert manifest["weights"] and all(sha256_of(model / path) == digest for path, digest in manifest["weights"].items())
    # generate with no model option uses it
    out = tmp_path / "result"
    done = cli(tmp_path, url, "generate", "--image", str(EXAMPLE), "--drag", "0.5,0.5:0.6,0.5", "--steps", "1",
               "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list(out.glob("frame_*.png"))) == 14
    assert json.loads((out / "settings.json").read_text())["model"] == {"model": str(model), "default": True}
    # info lists it as the default, with its sources and licences
    info = json.loads(cli(tmp_path, url, "info", "--json").stdout)
    (listed,) = info["models"]
    assert listed["name"] == "puppet-master" and listed["default"] and listed["dtype"] == "float16"
    assert listed["sources"]["svd"].startswith(SVD_REPO + "@") and listed["bytes"] > 0
    # serve with no model option serves it
    server_process = ServerProcess(tmp_path / "results", model=(), env={"PUPPET_MASTER_HOME": str(tmp_path / "home")})
    server_process.start()
    try:
        server_process.wait_workers(1)
        served = cli(tmp_path, url, "submit", "--endpoint", server_process.endpoint, "--image", str(EXAMPLE),
                     "--drag", "0.5,0.5:0.6,0.5", "--steps", "1", "--out", str(tmp_path / "served"))
        assert served.returncode == 0, served.stdout + served.stderr + server_process.log()[-3000:]
        assert len(list((tmp_path / "served").glob("frame_*.png"))) == 14
    finally:
        server_process.stop()
    # a second download does not overwrite it by accident
    again = download(tmp_path, url)
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_gated_repository_asks_to_log_in_then_to_accept_the_licence(repos, tmp_path):
    server = StandInHub()
    server.add("model", SVD_REPO, repos["svd"], gated_tokens={"hf_accepted"})
    server.add("space", SPACE, repos["space"])
    url = server.start()
    try:
        anonymous = download(tmp_path, url)
        assert anonymous.returncode == hub.EXIT_LOGIN
        assert "hf auth login" in anonymous.stderr and "Traceback" not in anonymous.stderr
        refused = download(tmp_path, url, HF_TOKEN="hf_not_accepted")
        assert refused.returncode == hub.EXIT_LICENCE and "Traceback" not in refused.stderr
        assert f"{url}/{SVD_REPO}" in refused.stderr and "accept the licence" in refused.stderr
        accepted = download(tmp_path, url, HF_TOKEN="hf_accepted")
        assert accepted.returncode == 0, accepted.stderr
    finally:
        server.stop()


def test_an_interrupted_download_resumes_and_ends_identical(standin, tmp_path):
    """The connection drops in the checkpoint and the hub goes down: the run stops with its finished
    files kept; the next run fetches only what is missing (huggingface_hub's cache) and converts the
    same model. (Inside a run the client resumes a dropped file from its last 10 MB chunk; these
    files are smaller than one chunk.)"""
    server, url = standin
    name = "ckpts/model.safetensors"
    server.cut_after[name] = 5000
    server.fail_after_cut = True
    first = download(tmp_path, url, "--keep-cache")
    assert first.returncode == hub.EXIT_NETWORK, first.stdout + first.stderr
    assert "the hub refused ckpts/model.safetensors" in first.stderr, first.stderr[-1500:]
    assert "Traceback" not in first.stderr and not (tmp_path / "home" / "models" / "puppet-master").exists()
    before = len(server.requests)
    got_first = server.fetched()
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in got_first
    server.fail_after_cut = False
    second = download(tmp_path, url, "--keep-cache")
    assert second.returncode == 0, second.stdout + second.stderr
    again = [p for m, p, _ in server.requests[before:] if m == "GET" and "/resolve/" in p]
    assert again and all(p.endswith(name) for p in again), again  # finished files are not fetched again
    cached = next((tmp_path / "home" / "downloads").rglob("model.safetensors"))
    assert cached.read_bytes() == (server.repos[("space", SPACE)].folder / name).read_bytes()


def test_a_corrupted_file_is_refused_and_named(standin, tmp_path):
    server, url = standin
    real = (server.repos[("model", SVD_REPO)].folder / "vae" / "config.json").read_bytes()
    server.corrupt["vae/config.json"] = real.replace(b"{", b"[", 1)  # same size, other content
    done = download(tmp_path, url)
    assert done.returncode == hub.EXIT_CORRUPT and "vae/config.json" in done.stderr and "corrupt" in done.stderr
    assert not (tmp_path / "home" / "models" / "puppet-master").exists()
    server.corrupt.clear()
    assert download(tmp_path, url).returncode == 0  # the bad copy was removed: fetched afresh


def test_not_enough_disk_space_is_refused_before_any_byte_moves(standin, tmp_path):
    server, url = standin
    server.declared_sizes["ckpts/model.safetensors"] = 1 << 50  # a petabyte
    done = download(tmp_path, url)
    assert done.returncode == hub.EXIT_DISK and "not enough disk space" in done.stderr and "free" in done.stderr
    assert server.fetched() == []


def test_offline_converts_from_the_cache_and_names_what_is_missing(standin, tmp_path):
    server, url = standin
    assert download(tmp_path, url, "--keep-cache").returncode == 0
    shutil.rmtree(tmp_path / "home" / "models")
    server.stop()  # no hub at all now
    offline = download(tmp_path, url, HF_HUB_OFFLINE="1")
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert (tmp_path / "home" / "models" / "puppet-master" / "model_index.json").is_file()
    empty = download(tmp_path / "other", url, HF_HUB_OFFLINE="1")
    assert empty.returncode == hub.EXIT_OFFLINE and "HF_HUB_OFFLINE" in empty.stderr and "Traceback" not in empty.stderr
    server.start()  # the fixture stops it again


def test_a_missing_repository_or_file_is_named(standin, tmp_path):
    _server, url = standin
    done = download(tmp_path, url, "--svd-repo", "stand-in/nothing-here")
    assert done.returncode == hub.EXIT_NOT_FOUND and "stand-in/nothing-here" in done.stderr
    done = download(tmp_path, url, "--checkpoint-file", "ckpts/other.safetensors")
    assert done.returncode == hub.EXIT_NOT_FOUND and "ckpts/other.safetensors" in done.stderr


def test_svd_file_selection_prefers_fp16_and_skips_the_unet_weights():
    names = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors",
             "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.fp16.safetensors",
             "image_encoder/model.safetensors", "scheduler/scheduler_config.json", "README.md", "svd.safetensors"]
    assert hub.select_svd_files(names) == [
        "image_encoder/model.safetensors", "model_index.json", "scheduler/scheduler_config.json",
        "unet/config.json", "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors"]


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_progress_json_reports_plan_files_bytes_and_the_installed_model(standin, tmp_path):
    _, url = standin
    done = download(tmp_path, url, "--progress", "json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    events = _events(done.stdout)  # every line of stdout is one JSON event
    kinds = [e["event"] for e in events]
    assert [e["stage"] for e in events if e["event"] == "stage"] == ["resolving", "downloading", "converting",
                                                                    "cleaning"]
    plan = next(e for e in events if e["event"] == "plan")
    files = [e for e in events if e["event"] == "file"]
    assert len(files) == plan["files"] and {f["file"] for f in files} >= {"ckpts/model.safetensors",
                                                                          "vae/config.json"}
    progress = [e for e in events if e["event"] == "progress"]
    overall = [e["overall_done"] for e in progress]
    assert overall == sorted(overall) and overall[-1] == plan["download_bytes"] == progress[-1]["overall_total"]
    assert all(e["done"] <= e["total"] for e in progress)
    assert kinds[-1] == "done"
    final = events[-1]
    assert final["default"] and Path(final["model"]) == tmp_path / "home" / "models" / "puppet-master"
    assert [m["name"] for m in final["models"]] == ["puppet-master"] and final["models"][0]["default"]


def test_cancel_stops_the_download_keeps_finished_files_and_the_next_run_goes_on(standin, tmp_path):
    """SIGTERM (the add-on's Cancel) while the checkpoint is held back by the hub: exit 130 with a
    ``cancelled`` event and no traceback; the next run fetches only the checkpoint."""
    import signal
    import threading

    server, url = standin
    name = "ckpts/model.safetensors"
    server.hold[name] = threading.Event()
    env = {**os.environ, "HF_ENDPOINT": url, "PUPPET_MASTER_HOME": str(tmp_path / "home"),
           "HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    env.pop("HF_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "puppet_master", "download", "--svd-repo", SVD_REPO,
                             "--checkpoint-repo", SPACE, "--progress", "json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for line in proc.stdout:  # wait until the held file has been asked for
            event = json.loads(line)
            if event["event"] == "file" and event["file"] == name:
                break
        while not any(m == "GET" and p.endswith(name) for m, p, _ in server.requests):
            threading.Event().wait(0.05)
        proc.send_signal(signal.SIGTERM)
        rest, stderr = proc.communicate(timeout=60)
    finally:
        server.hold[name].set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert _events(rest)[-1] == {"event": "cancelled", "exit_code": 130}
    assert "cancelled" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "home" / "models" / "puppet-master").exists()
    before = len(server.requests)
    again = download(tmp_path, url)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    fetched = [p for m, p, _ in server.requests[before:] if m == "GET" and "/resolve/" in p]
    assert fetched and all(p.endswith(name) for p in fetched), fetched
