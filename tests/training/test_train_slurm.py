"""cluster/slurm/train.sbatch on the private single-node Slurm: accelerate under srun with its
rendezvous from the allocation, two CPU processes (gloo), then the same command resumes."""

import json
import sys
from pathlib import Path

import pytest

from tests.training.conftest import tiny_overrides
from training.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slurm


@pytest.mark.timeout(600)
def test_train_sbatch_runs_accelerate_under_srun_and_resumes(slurm, latent_cache, tmp_path):
    out = tmp_path / "run"
    env = {"PM_REPO": str(ROOT), "PM_ACCELERATE": f"{sys.executable} -m accelerate.commands.launch",
           "PM_GPUS_PER_NODE": "2", "PM_ACCELERATE_ARGS": "--multi_gpu --mixed_precision no --dynamo_backend no",
           "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}

    def train(max_steps: int) -> str:
        extra = {"train.max_steps": max_steps, "train.checkpoint_every": 2, "train.resume": '"latest"'}
        sets = [x for o in tiny_overrides(out, latent_cache, extra) for x in ("--set", o)]
        done = slurm.run("sbatch", "--wait", "--parsable", "--nodes=1", "--cpus-per-task=2", "--mem=3G",
                         str(ROOT / "cluster" / "slurm" / "train.sbatch"),
                         "--config", str(ROOT / "training" / "configs" / "tiny.toml"), *sets, cwd=tmp_path, env=env)
        log = "\n".join(p.read_text() for p in tmp_path.glob("pm-train_*.out"))
        assert done.returncode == 0, done.stdout + done.stderr + log[-4000:]
        return log

    log = train(2)
    assert "training on 1 nodes x 2 processes" in log
    first = out / "checkpoints" / "checkpoint-00000002"
    state = json.loads((first / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["samples_seen"] == 4
    assert (first / "rng_state_0.safetensors").is_file() and (first / "rng_state_1.safetensors").is_file()
    train(4)  # the same command with more steps continues from checkpoint 2
    assert json.loads((out / "checkpoints" / "checkpoint-00000004" / "trainer_state.json").read_text())["step"] == 4
    steps = sorted({int(r["step"]) for r in read_metrics(out / "logs" / "metrics.csv") if r.get("loss") is not None})
    assert steps == [1, 2, 3, 4]
