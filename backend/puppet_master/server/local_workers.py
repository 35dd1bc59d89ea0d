"""Worker processes started by ``serve`` on this machine, restarted when they exit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

MIN_UPTIME_S = 20.0  # a worker that exits sooner, never having become ready, counts as failing to start
MAX_QUICK_FAILURES = 3  # consecutive start failures after which a slot is given up
#: waits before replacing a worker that died after it became ready (its model loaded, jobs run):
#: such a death is not a start failure, it never stops the server, and repeats back off
RESTART_BACKOFF_S = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
STEADY_UPTIME_S = 300.0  # a worker that ran this long before dying starts the backoff afresh
STOP_TIMEOUT_S = 10.0  # wait this long for workers to exit before killing them


class LocalWorkers:
    """``count`` processes, each running ``argv(slot)`` (``puppet-master worker ...``) in ``env``
    (default: this process's environment)."""

    def __init__(self, argv: Callable[[int], Sequence[str]], count: int, env: dict[str, str] | None = None) -> None:
        self._argv = argv
        self._env = env
        self.count = count
        self.processes: list[subprocess.Popen | None] = [None] * count
        self._started = [0.0] * count
        self._quick_failures = [0] * count
        self._ready = [False] * count
        self._deaths_after_ready = [0] * count
        self._restart_at: list[float | None] = [None] * count

    def start(self) -> None:
        for slot in range(self.count):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        argv = list(self._argv(slot))
        self.processes[slot] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=self._env)
        self._started[slot] = time.monotonic()
        self._ready[slot] = False
        self._restart_at[slot] = None
        log.info("started worker %d (pid %d)", slot, self.processes[slot].pid)

    @property
    def gave_up(self) -> bool:
        """True when every slot failed to start MAX_QUICK_FAILURES times in a row."""
        return self.count > 0 and all(p is None and at is None for p, at in zip(self.processes, self._restart_at,
                                                                                  strict=True))

    def mark_ready(self, pid: int) -> None:
        """The worker with ``pid`` has loaded its model and joined the broker."""
        for slot, process in enumerate(self.processes):
            if process is not None and process.pid == pid:
                self._ready[slot] = True
                self._quick_failures[slot] = 0

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p is not None]

    def check(self) -> list[int]:
        """Restart exited workers (unless they keep failing to start); return the pids that exited."""
        exited = []
        now = time.monotonic()
        for slot, process in enumerate(self.processes):
            if process is None:
                if self._restart_at[slot] is not None and now >= self._restart_at[slot]:
                    self._spawn(slot)
                continue
            if process.poll() is None:
                continue
            exited.append(process.pid)
            uptime = now - self._started[slot]
            log.warning("worker %d (pid %d) exited with code %s after %.1f s%s", slot, process.pid,
                        process.returncode, uptime, "" if self._ready[slot] else " (before it became ready)")
            if self._ready[slot]:  # it worked: lost, not failing to start; replace it, backing off on repeats
                if uptime > STEADY_UPTIME_S:
                    self._deaths_after_ready[slot] = 0
                wait = RESTART_BACKOFF_S[min(self._deaths_after_ready[slot], len(RESTART_BACKOFF_S) - 1)]
                self._deaths_after_ready[slot] += 1
                self.processes[slot], self._restart_at[slot] = None, now + wait
                if wait:
                    log.info("replacing worker %d in %.0f s", slot, wait)
                else:
                    self._spawn(slot)
                continue
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
        self._restart_at = [None] * self.count


def worker_argv(connect: str, extra: Sequence[str], server_key: str | None = None) -> list[str]:
    """The command line of a local worker connecting to ``connect``; it exits when this process
    (its broker) is gone (``--parent-pid``)."""
    argv = [sys.executable, "-m", "puppet_master", "worker", "--connect", connect, "--parent-pid", str(os.getpid())]
    if server_key:
        argv += ["--server-key", server_key]
    return argv + list(extra)
