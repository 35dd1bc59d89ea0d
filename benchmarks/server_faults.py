"""Soak and fault benchmark of `puppet-master serve`, bounded in time and count, loopback only.

N clients each submit M real tiny jobs (2 steps) and follow them to their end, some cancelled at a
random moment; meanwhile a worker is SIGKILLed every K ended jobs, the broker is SIGKILLed once and
started again on the same port and results folder, the results disk (a tmpfs of --disk-mb, when
this machine lets us mount one) is filled for a few seconds, and a raw connection sends fetches it
never reads.

    python benchmarks/server_faults.py [--clients 4] [--jobs 5] [--kill-every 4] [--unread-fetches 500]
                                       [--disk-mb 20] [--time-limit 600] [--json FILE]

Prints: jobs submitted (accepted), ended exactly once, lost (no ending), duplicated (an ending
twice), how they ended, submits refused by code, p50/p99 submit latency, broker resident memory
(start, before and after the unread fetches, end) and job folders left out of the index. Exits 1
when a job was lost or duplicated or a folder is unindexed, so it doubles as a check.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import zmq
from PIL import Image

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.protocol import JobSettings
from puppet_master.server.security import write_worker_secret

FAST = JobSettings(num_inference_steps=2, min_guidance_scale=1.0, max_guidance_scale=1.0, preview_every=0)
DRAGS = [((0.5, 0.5), (0.7, 0.45))]
FINAL = (pm.Result, pm.JobError, pm.Cancelled)
MiB = 2**20


def rss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mount_disk(path: Path, size_mb: int) -> str | None:
    """Mount a tmpfs of ``size_mb`` at ``path``; None, or why not."""
    path.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                         capture_output=True, text=True)
    return None if out.returncode == 0 else (out.stderr.strip() or f"mount exited with {out.returncode}")


class Serve:
    """`puppet-master serve --tiny` on a fixed port, started again after a kill."""

    def __init__(self, results: Path, port: int, secret: Path, log: Path) -> None:
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.argv = [sys.executable, "-m", "puppet_master", "serve", "--tiny", "--bind", self.endpoint,
                     "--results", str(results), "--worker-secret", str(secret), "--workers", "1",
                     "--keep-jobs", "4", "--keep-hours", "0"]  # a small disk keeps only the newest results
        self.log = open(log, "a")  # noqa: SIM115 (closed in stop)
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180) -> None:
        self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=self.log,
                                        env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + timeout_s
        with pm.GenerationClient(self.endpoint) as c:
            while time.monotonic() < deadline:
                c.ping()
                pong = c.wait_for(lambda e: isinstance(e, pm.Pong), 2)
                if pong and pong.server["workers"] >= 1:
                    return
        raise RuntimeError(f"serve did not get a worker within {timeout_s} s (log: {self.log.name})")

    def info(self) -> dict:
        with pm.GenerationClient(self.endpoint) as c:
            c.ping()
            pong = c.wait_for(lambda e: isinstance(e, pm.Pong), 30)
        return pong.server if pong else {}

    def kill_worker(self) -> bool:
        workers = children(self.process.pid)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return bool(workers)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Ledger:
    """What the clients saw, from all their threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: set[str] = set()
        self.endings: dict[str, list[str]] = defaultdict(list)
        self.refused: Counter[str] = Counter()
        self.latencies: list[float] = []

    def event(self, event: pm.Event) -> None:
        if isinstance(event, FINAL):
            kind = type(event).__name__ + (f" {event.code}" if isinstance(event, pm.JobError) else "")
            with self.lock:
                self.endings[event.job_id].append(kind)

    def ended(self) -> int:
        with self.lock:
            return sum(1 for job in self.accepted if self.endings.get(job))

    def a_result(self) -> str | None:
        with self.lock:
            return next((job for job in self.accepted if self.endings.get(job, [""])[0] == "Result"), None)


def follow(c: pm.GenerationClient, ledger: Ledger, until, timeout_s: float) -> pm.Event | None:
    """Poll until an event matches ``until``, recording every event in ``ledger``."""
    found, end = None, time.monotonic() + timeout_s
    while found is None and time.monotonic() < end:
        for event in c.poll(100):
            ledger.event(event)
            if found is None and until(event):
                found = event
    return found


def image_png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (seed * 40 % 256, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def client_loop(index: int, endpoint: str, jobs: int, cancel_fraction: float, ledger: Ledger,
                deadline: float, tokens: dict[str, str]) -> None:
    rng = random.Random(index)
    with pm.GenerationClient(endpoint, request_timeout_s=30) as c:
        done = 0
        while done < jobs and time.monotonic() < deadline:
            started = time.perf_counter()
            c.submit(image_png(index), DRAGS, FAST)
            answer = follow(c, ledger, lambda e: isinstance(e, pm.Accepted | pm.Rejected), 60)
            if answer is None or isinstance(answer, pm.Rejected):
                with ledger.lock:
                    ledger.refused[answer.code if answer else "no answer"] += 1
                time.sleep(1.0)  # a full disk or queue, or the broker restarting: try again
                continue
            with ledger.lock:
                ledger.latencies.append(time.perf_counter() - started)
                ledger.accepted.add(answer.job_id)
                tokens[answer.job_id] = answer.token
            if rng.random() < cancel_fraction:
                time.sleep(rng.uniform(0.0, 1.5))
                c.cancel(answer.job_id)
            job = answer.job_id
            follow(c, ledger, lambda e, job=job: isinstance(e, FINAL) and e.job_id == job,
                   max(0.0, deadline - time.monotonic()))
            done += 1
        follow(c, ledger, lambda e: False, 3.0)  # anything arriving late would be a second ending


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=5, help="jobs per client")
    parser.add_argument("--kill-every", type=int, default=4, help="SIGKILL the worker every K ended jobs")
    parser.add_argument("--cancel-fraction", type=float, default=0.2)
    parser.add_argument("--unread-fetches", type=int, default=500)
    parser.add_argument("--disk-mb", type=int, default=20)
    parser.add_argument("--time-limit", type=float, default=600.0)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pm-faults-"))
    disk = work / "disk"
    no_disk = mount_disk(disk, args.disk_mb)
    secret = write_worker_secret(work)
    serve = Serve(disk / "results", free_port(), secret, work / "serve.log")
    ledger, tokens, figures = Ledger(), {}, {}
    total = args.clients * args.jobs
    deadline = time.monotonic() + args.time_limit
    try:
        serve.start()
        figures["rss_start_mb"] = rss(serve.process.pid) / MiB
        threads = [threading.Thread(target=client_loop, args=(i, serve.endpoint, args.jobs, args.cancel_fraction,
                                                               ledger, deadline, tokens)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        kills, restarted, filled, flooded, next_kill = 0, False, False, False, args.kill_every
        filler: tuple[Path, float] | None = None
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            if ledger.ended() >= next_kill and serve.kill_worker():
                kills, next_kill = kills + 1, next_kill + args.kill_every
            if not flooded and (job := ledger.a_result()):
                flooded = True
                figures.update(flood(serve, job, tokens[job], args.unread_fetches))
            if not restarted and len(ledger.accepted) >= total // 2:
                restarted = True
                serve.stop(signal.SIGKILL)
                time.sleep(1.0)
                serve.start()
            if restarted and not filled and no_disk is None and len(ledger.accepted) >= 2 * total // 3:
                filled, filler = True, fill(disk)
            if filler is not None and time.monotonic() - filler[1] > 5.0:
                filler[0].unlink()
                filler = None
        figures["rss_end_mb"] = rss(serve.process.pid) / MiB
    finally:
        serve.stop()
        index = json.loads((disk / "results" / "index.json").read_text()).get("jobs", {}) if (
            disk / "results" / "index.json").is_file() else {}
        folders = [p.name for p in (disk / "results").iterdir() if p.is_dir() and len(p.name) == 32] if (
            disk / "results").is_dir() else []
        if no_disk is None:
            subprocess.run(["umount", str(disk)], check=False)
    counts = Counter(len(ledger.endings.get(job, [])) for job in ledger.accepted)
    latencies = sorted(ledger.latencies) or [0.0]
    figures.update({
        "clients": args.clients, "jobs_per_client": args.jobs, "worker_kills": kills, "broker_restarts": 1,
        "disk_filled": bool(filled) if no_disk is None else f"no ({no_disk})",
        "submitted": len(ledger.accepted), "ended_exactly_once": counts[1], "lost": counts[0],
        "duplicated": sum(n for k, n in counts.items() if k > 1),
        "endings": dict(Counter(e for job in ledger.accepted for e in ledger.endings.get(job, [])[:1])),
        "refused": dict(ledger.refused), "unindexed_folders": len(set(folders) - set(index)),
        "submit_p50_ms": 1000 * statistics.median(latencies),
        "submit_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    })
    for key, value in figures.items():
        print(f"{key:>26}: {value:.1f}" if isinstance(value, float) else f"{key:>26}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    bad = figures["lost"] or figures["duplicated"] or figures["unindexed_folders"]
    return 1 if bad else 0


def flood(serve: Serve, job: str, token: str, count: int) -> dict[str, float]:
    """``count`` fetches of a finished job on a connection that never reads; the broker's growth."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.connect(serve.endpoint)
    handled = serve.info().get("requests", 0)
    before = rss(serve.process.pid)
    for i in range(count):
        sock.send_multipart(protocol.encode(protocol.FETCH, {"req": f"f{i}", "job": job, "token": token}))
    end = time.monotonic() + 60
    while serve.info().get("requests", 0) < handled + count and time.monotonic() < end:
        time.sleep(0.2)
    after = rss(serve.process.pid)
    sock.close(linger=0)
    return {"unread_fetches": count, "rss_before_unread_mb": before / MiB, "rss_after_unread_mb": after / MiB}


def fill(disk: Path) -> tuple[Path, float]:
    """Fill ``disk`` to 2 MiB short of full (below the broker's 8 MiB floor)."""
    stat = os.statvfs(disk)
    size = max(0, stat.f_bavail * stat.f_frsize - 2 * MiB)
    path = disk / "filler"
    with open(path, "wb") as f:
        f.write(b"\0" * size)
    return path, time.monotonic()


if __name__ == "__main__":
    sys.exit(main())
