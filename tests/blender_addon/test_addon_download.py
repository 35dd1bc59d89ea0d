"""Download Model in the preferences, with real bpy, against a stand-in hub on loopback: progress
while it runs, the installed model afterwards, Cancel, and the error of a refused download."""

from __future__ import annotations

import sys

import pytest
from addon_helpers import run_blender
from safetensors.torch import save_file

from tests.pipeline.hub_standin import SPACE, SVD_REPO, StandInHub, build_repos, tiny_svd_folder

pytestmark = [pytest.mark.blender, pytest.mark.slow]

PUMP = f"""
runtime = ext("blender.runtime")
p = prefs()
p.backend_python = {sys.executable!r}
p.download_args = "--svd-repo {SVD_REPO} --checkpoint-repo {SPACE}"
def pump(until, timeout=240.0):
    states, fractions = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runtime.tick()
        status = runtime.STATE.download.status
        if not states or states[-1] != status.state:
            states.append(status.state)
        fractions.append(status.fraction)
        if until(status):
            break
        time.sleep(0.05)
    return states, fractions
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from puppet_master.tiny import tiny_components

    root = tmp_path_factory.mktemp("addon-hub")
    svd = tiny_svd_folder(root / "svd-img2vid")
    checkpoint = root / "model.safetensors"
    unet = tiny_components()["unet"]
    save_file({f"model.{k}": v.contiguous() for k, v in unet.state_dict().items()}, str(checkpoint))
    server = StandInHub()
    repos = build_repos(root / "repos", svd, checkpoint)
    server.add("model", SVD_REPO, repos["svd"])
    server.add("space", SPACE, repos["space"])
    url = server.start()
    yield server, url
    server.stop()


def _env(tmp_path, url):
    return {"HF_ENDPOINT": url, "PUPPET_MASTER_HOME": str(tmp_path / "home"), "HF_HOME": str(tmp_path / "hf"),
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_TOKEN": ""}


def test_download_model_shows_progress_then_the_installed_model(addon_zip, hub, tmp_path):
    _, url = hub
    out = run_blender(
        """
        t0 = time.monotonic()
        assert bpy.ops.puppet_master.model_download() == {"FINISHED"}
        started = time.monotonic() - t0
        states, fractions = pump(lambda s: not s.active)
        status = runtime.STATE.download.status
        models = ext("core.model_download").model_lines(runtime.STATE.models.models)
        # Refresh asks the backend itself (puppet-master info) and finds the same model
        runtime.STATE.models.models = []
        assert bpy.ops.puppet_master.models_refresh() == {"FINISHED"}
        deadline = time.monotonic() + 120
        while runtime.STATE.models.pending and time.monotonic() < deadline:
            runtime.tick(); time.sleep(0.05)
        refreshed = [m["name"] for m in runtime.STATE.models.models]
        emit(states=states, fractions=fractions, state=status.state, text=status.text, error=status.error,
             model=status.model, models=models, refreshed=refreshed, started=started)
        """,
        addon_zip, tmp_path, setup=PUMP, env=_env(tmp_path, url), timeout=400,
    )
    assert out["state"] == "DONE", out
    assert out["states"][0] == "RUNNING" and out["states"][-1] == "DONE"
    fractions = out["fractions"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any(0 < f < 1 for f in fractions)
    assert out["model"] == str(tmp_path / "home" / "models" / "puppet-master")
    assert out["models"][0].startswith("puppet-master (default): ") and "CC-BY-NC-SA-4.0" in out["models"][0]
    assert out["refreshed"] == ["puppet-master"]
    assert (tmp_path / "home" / "models" / "puppet-master" / "model_index.json").is_file()


def test_cancel_stops_the_download_and_a_refusal_is_shown_without_a_traceback(addon_zip, hub, tmp_path):
    import threading

    server, url = hub
    held = "ckpts/model.safetensors"
    server.hold[held] = threading.Event()
    try:
        out = run_blender(
            f"""
            assert bpy.ops.puppet_master.model_download() == {{"FINISHED"}}
            pump(lambda s: s.file == "{held}")
            file_seen = runtime.STATE.download.status.file
            assert bpy.ops.puppet_master.model_download_cancel() == {{"FINISHED"}}
            states, _ = pump(lambda s: not s.active)
            cancelled = runtime.STATE.download.status
            cancelled = dict(state=cancelled.state, text=cancelled.text, code=runtime.STATE.download.process.returncode)
            # a repository that does not exist: the error names it, the state says failed
            p.download_args = "--svd-repo stand-in/no-such-repo --checkpoint-repo {SPACE}"
            assert bpy.ops.puppet_master.model_download() == {{"FINISHED"}}
            pump(lambda s: not s.active)
            failed = runtime.STATE.download.status
            # no backend Python: the operator says what to set
            p.backend_python = ""
            try:
                bpy.ops.puppet_master.model_download()
                refused = ""
            except RuntimeError as exc:
                refused = str(exc)
            emit(file_seen=file_seen, states=states, cancelled=cancelled, failed_state=failed.state,
                 failed_error=failed.error, failed_text=failed.text, refused=refused)
            """,
            addon_zip, tmp_path, setup=PUMP, env=_env(tmp_path, url), timeout=400,
        )
    finally:
        server.hold[held].set()
        del server.hold[held]
    assert out["file_seen"] == held
    assert out["states"][-1] == "CANCELLED" and out["cancelled"]["code"] == 130
    assert "finished files are kept" in out["cancelled"]["text"]
    assert out["failed_state"] == "FAILED" and "stand-in/no-such-repo" in out["failed_error"]
    assert "Traceback" not in out["failed_error"]
    assert "set the Python executable of the backend" in out["refused"]
