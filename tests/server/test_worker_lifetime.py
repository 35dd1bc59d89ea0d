"""The workers `serve` starts do not outlive it: a SIGKILLed broker leaves no worker behind (on a
GPU such a ghost would hold a card's memory)."""

from __future__ import annotations

import os
import signal
import time

from server_helpers import ServerProcess


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its (dead) parent's reaper counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_sigkilled_broker_leaves_no_worker_behind(tmp_path):
    server = ServerProcess(tmp_path / "results", workers=2).start()
    try:
        deadline = time.monotonic() + 120
        pids: list[int] = []
        while len(pids) < 2 and time.monotonic() < deadline:
            pids = server.worker_pids()
            time.sleep(0.2)
        assert len(pids) == 2, server.log()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)], "workers outlived their broker"
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        server.stop()
