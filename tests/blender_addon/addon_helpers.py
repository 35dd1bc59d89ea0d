"""Helpers for the Blender extension tests: the built zip, Blender scripts in subprocesses, a tiny server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))  # build_extension.py
import build_extension as build  # noqa: E402, F401 (re-exported for conftest)

sys.path.pop(0)

#: seconds a Blender subprocess may run
BLENDER_TIMEOUT_S = 150

# Installs the built zip into a fresh user folder, enables it and gives scripts `pm` (the add-on
# package), `ext` (import one of its modules), `emit(**values)` (report back to the test), `prefs()`
# and `make_scene()` (a camera looking at a unit cube).
PRELUDE = """
import importlib, json, os, sys, time
import bpy
_r = bpy.ops.extensions.package_install_files(filepath=os.environ["PM_TEST_ZIP"], repo="user_default",
                                               enable_on_install=True)
assert _r == {"FINISHED"}, _r
ADDON = "bl_ext.user_default.puppet_master"
pm = importlib.import_module(ADDON)
def ext(name):
    return importlib.import_module(ADDON + "." + name)
_OUT = {}
def emit(**values):
    _OUT.update(values)
    print("PM_RESULT:" + json.dumps(_OUT), flush=True)
def prefs():
    return bpy.context.preferences.addons[ADDON].preferences

def make_scene(resolution=(64, 64), engine="BLENDER_WORKBENCH"):
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = engine
    scene.render.resolution_x, scene.render.resolution_y = resolution
    scene.render.resolution_percentage = 100
    if engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.samples = 1
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, 0.0))
    cube = bpy.context.active_object
    cam_data = bpy.data.cameras.new("Cam")
    cam = bpy.data.objects.new("Cam", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (0.0, -4.0, 0.0)
    cam.rotation_euler = (1.5707963267948966, 0.0, 0.0)
    scene.camera = cam
    return scene, cam, cube
"""


def run_blender(script: str, zip_path: Path, workdir: Path, *, setup: str = "", env: dict | None = None,
                timeout: float = BLENDER_TIMEOUT_S, check: bool = True) -> dict:
    """Run ``script`` (after PRELUDE and ``setup``) in a fresh Python with bpy; return what it ``emit``-ted.

    ``check=False`` accepts a non-zero exit (a script that simulates a crash)."""
    resources = workdir / "blender_user"
    resources.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "BLENDER_USER_RESOURCES": str(resources), "PM_TEST_ZIP": str(zip_path),
                "PM_WORKDIR": str(workdir), **(env or {})}
    code = PRELUDE + setup + textwrap.dedent(script)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env,
                            timeout=timeout, cwd=workdir)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PM_RESULT:")]
    if result.returncode != 0 and (check or not lines):
        raise AssertionError(f"Blender script failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return json.loads(lines[-1][len("PM_RESULT:"):]) if lines else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_available() -> bool:
    return (ROOT / "backend" / "puppet_master" / "cli" / "serve.py").exists()


def start_tiny_server(tmp_path):
    """A real `puppet-master serve --tiny` on a loopback port (a generator: killed when closed)."""
    if not serve_available():
        pytest.fail("`puppet-master serve` has not landed yet (backend/puppet_master/cli/serve.py)")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    home = tmp_path / "pm_home"
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "PUPPET_MASTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "puppet_master", "serve", "--bind", endpoint, "--tiny",
                                    "--worker-timeout", "60"],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for_pong(endpoint, process, log_path)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_pong(endpoint: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 90.0) -> None:
    from puppet_master.client import GenerationClient, Pong

    deadline = time.monotonic() + timeout_s
    with GenerationClient(endpoint) as client:
        next_ping = 0.0
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"serve exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() >= next_ping:
                client.ping()
                next_ping = time.monotonic() + 2.0
            if any(isinstance(event, Pong) for event in client.poll(200)):
                return
    raise AssertionError(f"serve did not answer a ping within {timeout_s} s:\n{log_path.read_text()}")
