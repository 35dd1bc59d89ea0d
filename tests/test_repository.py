"""The repository's promises: README commands, CI script, manifest and package versions agree."""

import re
import tomllib
from pathlib import Path

import puppet_master

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Setup", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", setup, flags=re.S)]


def test_readme_setup_is_two_commands_and_ci_runs_the_test_command():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci, f"CI must run the README's test command {commands[1]!r}"


def test_versions_agree():
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    assert manifest["version"] == puppet_master.__version__
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
