"""Fixtures of the server tests (helpers live in server_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_helpers import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    """One shared tiny server (one local worker) for the tests that do not restart or kill it."""
    results = tmp_path_factory.mktemp("shared") / "results"
    proc = ServerProcess(results, "--allow-unload").start()
    try:
        proc.wait_workers(1)
        yield proc
    finally:
        proc.stop()
