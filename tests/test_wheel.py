"""The built wheel, installed (not editable) into a fresh virtual environment, is a working
``puppet-master`` with its example assets.

The fresh environment gets the dependencies of this one through a ``.pth`` line (so no download),
but not this checkout: the test checks that ``puppet_master`` is imported from the installed wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # build from a copy of what the wheel is made of, so setuptools' build/ never lands in the checkout
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "backend", source / "backend", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
                           str(source)], capture_output=True, text=True, timeout=600, cwd=out)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (found,) = out.glob("puppet_master-*.whl")
    return found


def test_the_wheel_holds_the_package_its_assets_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "puppet_master/assets/examples/cabinet.png" in names and "puppet_master/py.typed" in names
    assert "puppet_master/cli/download.py" in names and "puppet_master/models/loading.py" in names
    tops = {n.split("/")[0] for n in names}
    assert tops == {"puppet_master", wheel.name.split("-py3")[0] + ".dist-info"}, tops  # no tests, tools, training


def test_installed_wheel_runs_in_a_fresh_environment(wheel, tmp_path):
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    fresh_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                     capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies of this environment (torch, diffusers, ...), not its editable puppet_master
    (fresh_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                           "--no-compile", str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PUPPET_MASTER_MODEL")}
    env["PUPPET_MASTER_HOME"] = str(tmp_path / "home")
    where = subprocess.run([str(python), "-c", "import puppet_master, puppet_master.paths as p; "
                            "print(puppet_master.__file__); print(p.EXAMPLES_DIR)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.split()
    assert Path(where[0]).is_relative_to(env_dir), where  # the installed copy, not the checkout
    assert (Path(where[1]) / "cabinet.png").is_file()

    script = env_dir / "bin" / "puppet-master"
    info = subprocess.run([str(script), "info", "--json"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert info.returncode == 0, info.stderr[-2000:]
    report = json.loads(info.stdout)
    assert report["models"] == [] and report["examples"] == [str(Path(where[1]) / "cabinet.png")]
    out = tmp_path / "result"
    gen = subprocess.run([str(script), "generate", "--tiny", "--image", str(Path(where[1]) / "cabinet.png"),
                          "--drag", "0.5,0.5:0.6,0.5", "--steps", "1", "--out", str(out), "--device", "cpu"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert gen.returncode == 0, gen.stdout[-2000:] + gen.stderr[-2000:]
    assert len(list(out.glob("frame_*.png"))) == 14
    # with no model installed, the error names the one command that installs it
    none = subprocess.run([str(script), "generate", "--image", str(Path(where[1]) / "cabinet.png"), "--drag",
                           "0.5,0.5:0.6,0.5", "--out", str(tmp_path / "r2")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert none.returncode == 1 and "puppet-master download" in none.stderr and "Traceback" not in none.stderr
