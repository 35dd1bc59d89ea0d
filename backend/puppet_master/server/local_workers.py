"""Worker processes started by ``serve`` on this machine, restarted when they exit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

MIN_UPTIME_S = 20.0  # a worker that exits sooner counts as failing to start
MAX_QUICK_FAILURES = 3  # consecutive quick exits after which a slot is given up
STOP_TIMEOUT_S = 10.0  # wait this long for workers to exit before killing them


class LocalWorkers:
    """``count`` processes, each running ``argv(slot)`` (``puppet-master worker ...``)."""

    def __init__(self, argv: Callable[[int], Sequence[str]], count: int) -> None:
        self._argv = argv
        self.count = count
        self.processes: list[subprocess.Popen | None] = [None] * count
        self._started = [0.0] * count
        self._quick_failures = [0] * count

    def start(self) -> None:
        for slot in range(self.count):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        argv = list(self._argv(slot))
        self.processes[slot] = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self._started[slot] = time.monotonic()
        log.info("started worker %d (pid %d)", slot, self.processes[slot].pid)

    @property
    def gave_up(self) -> bool:
        """True when every slot failed to start MAX_QUICK_FAILURES times in a row."""
        return self.count > 0 and all(p is None for p in self.processes)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p is not None]

    def check(self) -> list[int]:
        """Restart exited workers (unless they keep failing); return the pids that exited."""
        exited = []
        for slot, process in enumerate(self.processes):
            if process is None or process.poll() is None:
                continue
            exited.append(process.pid)
            uptime = time.monotonic() - self._started[slot]
            log.warning("worker %d (pid %d) exited with code %s after %.1f s",
                        slot, process.pid, process.returncode, uptime)
            self._quick_failures[slot] = self._quick_failures[slot] + 1 if uptime < MIN_UPTIME_S else 0
            if self._quick_failures[slot] >= MAX_QUICK_FAILURES:
                log.error("worker %d failed to start %d times in a row; not restarting it (see its errors above)",
                          slot, MAX_QUICK_FAILURES)
                self.processes[slot] = None
            else:
                self._spawn(slot)
        return exited

    def stop(self) -> None:
        """Terminate every worker (they get SHUTDOWN first from the broker), then kill stragglers."""
        alive = [p for p in self.processes if p is not None and p.poll() is None]
        for process in alive:
            process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in alive:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop; killing it", process.pid)
                process.kill()
                process.wait()
        self.processes = [None] * self.count


def worker_argv(connect: str, extra: Sequence[str], server_key: str | None = None) -> list[str]:
    """The command line of a local worker connecting to ``connect``; it exits when this process
    (its broker) is gone (``--parent-pid``)."""
    argv = [sys.executable, "-m", "puppet_master", "worker", "--connect", connect, "--parent-pid", str(os.getpid())]
    if server_key:
        argv += ["--server-key", server_key]
    return argv + list(extra)
