import json
import shutil
import subprocess
import sys
from pathlib import Path

import puppet_master
from puppet_master.cli import main


def test_version_matches_package(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.strip() == f"puppet-master {puppet_master.__version__}"


def test_info_json_reports_device_and_weight_paths(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PUPPET_MASTER_HOME", str(tmp_path))
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["puppet-master"] == puppet_master.__version__
    assert info["device"].split()[0] in {"cpu", "cuda", "mps"}
    assert any(str(tmp_path) in entry["path"] for entry in info["weights"])


def test_console_script_is_installed():
    local = Path(sys.executable).with_name("puppet-master")
    exe = str(local) if local.exists() else shutil.which("puppet-master")
    assert exe, "the puppet-master console script is not installed"
    out = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch device:" in out.stdout


def test_light_import_does_not_pull_torch():
    code = "import sys, puppet_master.drags, puppet_master.paths; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
