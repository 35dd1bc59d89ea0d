"""A real single-node Slurm cluster (Debian's slurm-wlm and munge) for the tests, on loopback.

``SlurmCluster(folder).start()`` writes a munge key and a slurm.conf into ``folder``, starts munged,
slurmctld and slurmd in the foreground as child processes (each with its own socket, ports, state
and log files there, nothing system-wide), and waits until the node is idle. ``stop()`` ends them.
``why_not()`` says why a cluster cannot start here (the packages missing, not root), for a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel")
NODE = "pmnode"


def _sbin(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.exists()), None)


def why_not() -> str | None:
    missing = [d for d in DAEMONS if _sbin(d) is None]
    if missing:
        return f"Slurm/munge not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "a private slurmd runs jobs as root here: the tests need root"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SlurmCluster:
    def __init__(self, folder: Path, cpus: int = 2, memory_mb: int = 4000):
        self.folder = Path(folder)
        self.cpus, self.memory_mb = cpus, memory_mb
        self.processes: list[subprocess.Popen] = []
        self.env = dict(os.environ, SLURM_CONF=str(self.folder / "slurm.conf"))

    def _write_config(self) -> None:
        f = self.folder
        ctld_port, slurmd_port = _free_ports(2)
        host = socket.gethostname()
        (f / "state").mkdir(parents=True, exist_ok=True)
        (f / "spool").mkdir(exist_ok=True)
        (f / "slurm.conf").write_text(f"""\
ClusterName=pmtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
AuthInfo=socket={f / "munge.sock"}
CredType=cred/munge
StateSaveLocation={f / "state"}
SlurmdSpoolDir={f / "spool"}
SlurmctldPidFile={f / "slurmctld.pid"}
SlurmdPidFile={f / "slurmd.pid"}
SlurmctldLogFile={f / "slurmctld.log"}
SlurmdLogFile={f / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
MinJobAge=3600
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, *command: str) -> None:
        log = open(self.folder / f"{Path(command[0]).name}.stdout", "w")  # noqa: SIM115 (closed with the process)
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def start(self, timeout_s: float = 120.0) -> SlurmCluster:
        f = self.folder
        f.mkdir(parents=True, exist_ok=True)
        self._write_config()
        subprocess.run([_sbin("mungekey"), "--create", "--keyfile", str(f / "munge.key"), "--force"], check=True,
                       capture_output=True)
        os.chmod(f / "munge.key", 0o600)
        self._spawn(_sbin("munged"), "--foreground", "--force", f"--key-file={f / 'munge.key'}",
                    f"--socket={f / 'munge.sock'}", f"--pid-file={f / 'munged.pid'}", f"--log-file={f / 'munged.log'}",
                    f"--seed-file={f / 'munge.seed'}")
        self._wait(lambda: (f / "munge.sock").exists(), timeout_s, "munged did not create its socket")
        self._spawn(_sbin("slurmctld"), "-D", "-i")
        self._spawn(_sbin("slurmd"), "-D", "-N", NODE)
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%T").stdout.strip() == "idle", timeout_s,
                   "the node did not become idle")
        return self

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{what} ({'exited: ' + ', '.join(dead) if dead else 'timed out'}); "
                                   f"logs: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        tails = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log", "slurmctld.stdout", "slurmd.stdout"):
            path = self.folder / name
            if path.exists():
                tails.append(f"{name}: " + " | ".join(path.read_text(errors="replace").splitlines()[-5:]))
        return "\n".join(tails)

    def run(self, *command: str, cwd: Path | None = None, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(command, capture_output=True, text=True, env={**self.env, **(env or {})}, cwd=cwd,
                              check=check, timeout=120)

    def wait_for(self, job_ids: list[str], timeout_s: float = 900.0) -> None:
        """Until none of ``job_ids`` (arrays included) is pending, running or completing."""
        def ended() -> bool:
            listed = self.run("squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids))
            return listed.returncode == 0 and not listed.stdout.strip()
        self._wait(ended, timeout_s, f"jobs {job_ids} did not end")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
