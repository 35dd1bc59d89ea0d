"""Helpers for the server tests: `puppet-master serve --tiny` subprocesses on loopback, small inputs."""

from __future__ import annotations

import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.protocol import JobSettings
from puppet_master.server.security import write_worker_secret

START_TIMEOUT_S = 180.0  # importing torch and building the tiny model on a busy 2-core machine
JOB_TIMEOUT_S = 240.0
#: the cheapest real job: 2 steps, guidance 1 everywhere (no unconditional branch)
FAST = JobSettings(num_inference_steps=2, min_guidance_scale=1.0, max_guidance_scale=1.0, seed=1, preview_every=0)
DRAGS = [((0.5, 0.5), (0.7, 0.45))]


def png_bytes(size: int = 64, color: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


class ServerProcess:
    """`python -m puppet_master serve ...` with its endpoints read from its first lines of output."""

    def __init__(self, results: Path, *extra: str, bind: str = "tcp://127.0.0.1:*", workers: int = 1,
                 env: dict[str, str] | None = None, model: tuple[str, ...] = ("--tiny",)) -> None:
        self.results = results
        #: the worker secret, for workers a test starts by hand (`worker --worker-secret`)
        self.worker_secret_file = results.parent / f"worker-{results.name}.secret"
        if not self.worker_secret_file.exists():
            write_worker_secret(self.worker_secret_file.parent).rename(self.worker_secret_file)
        self.argv = [sys.executable, "-m", "puppet_master", "serve", "--bind", bind, "--results", str(results),
                     "--workers", str(workers), "--worker-secret", str(self.worker_secret_file), *model, *extra]
        self.log_path = results.parent / f"serve-{results.name}-{int(time.monotonic() * 1000)}.log"
        self.env = {**os.environ, "PUPPET_MASTER_HOME": str(results.parent / "home"), **(env or {})}
        self.process: subprocess.Popen | None = None
        self.endpoint = self.worker_endpoint = ""
        self._lines: queue.Queue[str] = queue.Queue()

    def start(self) -> ServerProcess:
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self._log, text=True, env=self.env)
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 60
        while not (self.endpoint and self.worker_endpoint):
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"serve did not print its endpoints; log:\n{self.log()}") from None
            if "clients connect to " in line:
                self.endpoint = line.split("clients connect to ", 1)[1].strip()
            if "workers connect to " in line:
                self.worker_endpoint = line.split("workers connect to ", 1)[1].strip()
        return self

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def client(self, **kwargs) -> pm.GenerationClient:
        return pm.GenerationClient(self.endpoint, **kwargs)

    def server_info(self, timeout_s: float = 5.0) -> dict | None:
        with self.client() as c:
            c.ping()
            pong = c.wait_for(lambda e: isinstance(e, pm.Pong), timeout_s)
        return pong.server if pong else None

    def wait_workers(self, count: int = 1, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited with {self.process.returncode}:\n{self.log()}"
            info = self.server_info()
            if info and info["workers"] >= count:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{count} worker(s) did not join within {timeout_s} s; log:\n{self.log()}")

    def worker_pids(self) -> list[int]:
        with self.client() as c:
            c.status()
            reply = c.wait_for(lambda e: isinstance(e, pm.StatusReply), 5)
        return [w["pid"] for w in reply.workers]

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def run_job(c: pm.GenerationClient, settings: JobSettings = FAST, image: bytes | None = None,
            timeout_s: float = JOB_TIMEOUT_S, on_event: Callable[[pm.Event], None] | None = None) -> pm.Event:
    """Submit and wait for the job's final event (Result, JobError or Cancelled) or a rejection."""
    c.submit(image or png_bytes(), DRAGS, settings)
    final = (pm.Result, pm.JobError, pm.Cancelled, pm.Rejected)
    event = c.wait_for(lambda e: isinstance(e, final), timeout_s, on_event)
    assert event is not None, "no final event"
    return event


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def noise_frames(count: int = 14, side: int = 256, seed: int = 0) -> list[bytes]:
    """``count`` PNGs of random pixels: a result as large as an untrained model's (~200 KB a frame)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buffer, format="PNG")
        frames.append(buffer.getvalue())
    return frames


class ScriptedWorker:
    """A worker written by hand on a DEALER socket (no model): it says READY (with ``secret``),
    then does only what the test makes it do."""

    def __init__(self, endpoint: str, secret: str | None, *, worker_id: str = "scripted", pid: int = 1,
                 host: str = "scripted-host") -> None:
        import zmq

        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(endpoint)
        self.info = {"id": worker_id, "host": host, "pid": pid, "model": "scripted"}
        self.send(protocol.READY, {"worker": self.info, "secret": secret})

    def send(self, type_: str, fields: dict | None = None, blobs: list[bytes] | tuple = ()) -> None:
        self.socket.send_multipart(protocol.encode(type_, {k: v for k, v in (fields or {}).items() if v is not None},
                                                   blobs))

    def next_message(self, timeout_s: float = 10.0) -> protocol.Message | None:
        """The next message from the broker other than a heartbeat, or None after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            if not self.socket.poll(int(remaining * 1000) + 1):
                return None
            message = protocol.decode(self.socket.recv_multipart(), protocol.BROKER_TO_WORKER_TYPES)
            if message.type != protocol.HEARTBEAT:
                return message
            self.send(protocol.HEARTBEAT)
        return None

    def close(self) -> None:
        self.socket.close(linger=0)
