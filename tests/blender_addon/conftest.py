"""Fixtures for the Blender extension tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from addon_helpers import build, start_tiny_server


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory) -> Path:
    """The extension zip, built (and validated by Blender's CLI) once per session."""
    return build.build(tmp_path_factory.mktemp("addon_zip"))


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory):
    """The endpoint of a real `puppet-master serve --tiny` on loopback (one per test module)."""
    yield from start_tiny_server(tmp_path_factory.mktemp("tiny_server"))
