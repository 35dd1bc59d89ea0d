"""experiments/tiny_model/train_tiny_model.sh end to end on tiny synthetic renders, a few steps per stage: components,
latent caches, U-Net, pipeline, held-out export and evaluation, archives; then a second run that reuses
the components, stops after the U-Net and fits a time budget."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "experiments" / "tiny_model" / "train_tiny_model.sh"
SMALL = {"VAE_STEPS": "2", "VAE_BATCH": "1", "VAE_FRAMES": "2", "ENCODER_STEPS": "2", "UNET_STEPS": "2",
         "UNET_BATCH": "1", "UNET_WARMUP": "1", "LOADER_WORKERS": "0", "CACHE_WORKERS": "1", "EVAL_STEPS": "2",
         "DEVICE": "cpu"}


def run_script(train: Path, heldout: Path, work: Path, **env: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", str(SCRIPT), str(train), str(heldout), str(work)], cwd=ROOT, text=True,
                          capture_output=True, timeout=900,
                          env={**os.environ, "PYTHON": sys.executable, **SMALL, **env})
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


def test_the_whole_recipe_then_a_budgeted_rerun(renders, tmp_path):
    work, archive = tmp_path / "work", tmp_path / "archive"
    run_script(renders, renders, work, ARCHIVE=str(archive))
    index = json.loads((work / "pipeline" / "model_index.json").read_text())
    assert index["_class_name"] == "PuppetMasterPipeline"
    results = json.loads((work / "eval" / "result" / "results.json").read_text())
    assert set(results["methods"]) == {"model", "static", "shift"}
    assert all(len(m["clips"]) == 2 for m in results["methods"].values())
    assert sorted(p.name for p in archive.iterdir()) == ["components.tar", "eval_heldout.tar", "eval_result.tar",
                                                          "unet_ema.tar"]
    with tarfile.open(archive / "unet_ema.tar") as tar:
        assert any(name.endswith("ema/diffusion_pytorch_model.safetensors") for name in tar.getnames())

    # reuse the trained components and U-Net (cropped steps: the 8x8 latents are one window here),
    # stop after the U-Net, within a time budget
    first = json.loads((work / "unet" / "checkpoints" / "latest.json").read_text())["checkpoint"]
    again = run_script(renders, renders, tmp_path / "work2", COMPONENTS=str(work / "components"),
                       STOP_AFTER="unet", TIME_BUDGET_S="600", UNET_STEPS="3",
                       UNET_INIT=str(work / "unet" / "checkpoints" / first / "ema"), UNET_CROP="8", UNET_CROP_P="0.5")
    assert "reusing" in again.stdout and "STOP_AFTER=unet" in again.stdout
    assert (tmp_path / "work2" / "unet" / "checkpoints" / "latest.json").is_file()
    run_config = json.loads((tmp_path / "work2" / "unet" / "config.json").read_text())
    assert run_config["model"]["init"] == "checkpoint" and run_config["model"]["checkpoint_path"].endswith("ema")
    assert (run_config["train"]["crop_size"], run_config["train"]["crop_probability"]) == (8, 0.5)
    assert not (tmp_path / "work2" / "pipeline").exists()
    before = (work / "unet" / "checkpoints" / "latest.json").read_text()
    spent = run_script(renders, renders, work, STOP_AFTER="unet", TIME_BUDGET_S="1")  # caches found, no time left
    assert "TIME_BUDGET_S spent before the U-Net" in spent.stdout
    assert (work / "unet" / "checkpoints" / "latest.json").read_text() == before
