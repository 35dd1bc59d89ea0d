"""Where the project looks for model weights and writes its outputs (no torch import)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: weights that ship inside the package (the trained tiny model, once it exists)
BUNDLED_WEIGHTS_DIR = PACKAGE_DIR / "weights"
#: example input images that ship with the package (``puppet-master info`` prints the folder)
EXAMPLES_DIR = PACKAGE_DIR / "assets" / "examples"
#: the folder name `puppet-master download` converts into, under models_dir(): the default model
DEFAULT_MODEL_NAME = "puppet-master"


def home_dir() -> Path:
    """The user's Puppet-Master folder: ``$PUPPET_MASTER_HOME`` or ``$XDG_DATA_HOME/puppet-master``."""
    env = os.environ.get("PUPPET_MASTER_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "puppet-master"


def models_dir() -> Path:
    """Converted pipeline folders (``puppet-master convert --out``) are looked up here by name."""
    return home_dir() / "models"


def results_dir() -> Path:
    """Default folder where the server keeps finished jobs."""
    return home_dir() / "results"


def weight_search_paths() -> list[tuple[str, Path]]:
    """Every place a model may come from, in the order they are tried, with a label."""
    return [
        ("PUPPET_MASTER_MODEL (environment)", Path(os.environ.get("PUPPET_MASTER_MODEL", "")).expanduser())
        if os.environ.get("PUPPET_MASTER_MODEL")
        else ("PUPPET_MASTER_MODEL (environment)", Path("<unset>")),
        ("converted pipelines", models_dir()),
        ("bundled weights", BUNDLED_WEIGHTS_DIR),
    ]
