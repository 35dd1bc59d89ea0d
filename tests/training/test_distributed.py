"""Two processes through ``accelerate launch`` on the CPU (gloo) train, checkpoint, and match one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.training.conftest import ROOT, tiny_config, tiny_overrides
from training.tracking import read_metrics
from training.train import Trainer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_two_process_run_trains_checkpoints_and_matches_one_process(tmp_path, latent_cache):
    extra = {"train.max_steps": 2, "train.checkpoint_every": 2, "optim.learning_rate": "1e-3"}
    out = tmp_path / "ddp"
    overrides = tiny_overrides(out, latent_cache, extra)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           "-m", "training.train", "--config", str(ROOT / "training" / "configs" / "tiny.toml")]
    for item in overrides:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]

    folder = out / "checkpoints" / "checkpoint-00000002"
    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["samples_seen"] == 4
    assert (folder / "rng_state_0.safetensors").is_file() and (folder / "rng_state_1.safetensors").is_file()
    assert (folder / "ema" / "diffusion_pytorch_model.safetensors").is_file()
    ddp = {int(r["step"]): r["loss"] for r in read_metrics(out / "logs" / "metrics.csv")}

    # one process with two accumulation micro-steps sees the same samples and draws
    single = Trainer(tiny_config(tmp_path / "single", latent_cache, extra)).train()
    assert ddp[1] == pytest.approx(single.losses[1], rel=1e-5)
    assert ddp[2] == pytest.approx(single.losses[2], rel=1e-3)
