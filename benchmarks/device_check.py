"""The checks for a lent GPU in one run: figures as JSON and a Markdown table under ``--out``.

1. the environment (device, PyTorch, diffusers);
2. the full-size pipeline (random weights; SVD's VAE and ViT-H image encoder, the released U-Net
   configuration), 14 frames of 256x256, 50 steps, guidance 1 -> 5: seconds per video and peak
   memory of every memory preset (``benchmarks/generate.py``), each in its own process, and how far
   each preset's frames are from ``high``'s;
3. one full-size U-Net forward in bf16 and in fp32, the model's attention against the
   straightforward reference attention on the same card (``benchmarks/unet_forward.py``): time
   and memory ratios;
4. parity: the largest difference between the two attentions' outputs against the output's
   magnitude, within a tolerance per dtype.

Each step runs in its own process with its own time limit; a failed step is recorded and the
others still run. Exit status 0 when every step ran and parity holds, 1 otherwise.

    bash benchmarks/device_check.sh                 # on the GPU machine: everything, into $OUT
    python benchmarks/device_check.py --tiny --out /tmp/check   # the tiny model on this CPU (tests)
    python benchmarks/device_check.py --full-cpu --out /tmp/check   # full size on a CPU, 1 step
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRESETS = ("high", "balanced", "low")
#: largest |reference - ours| / max |reference| accepted, per dtype of the U-Net forward
PARITY_TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2}


def environment() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.machine()})"}
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    return info


def _run(name: str, argv: list[str], timeout: float, log: Path) -> dict:
    """Run one step's command; its status, seconds and output tail."""
    start = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        log.write_text(out)
        return {"status": "timeout", "seconds": round(time.monotonic() - start, 1), "limit_s": timeout}
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    status = "ok" if proc.returncode == 0 else "failed"
    step = {"status": status, "seconds": round(time.monotonic() - start, 1)}
    if status != "ok":
        step["error"] = proc.stderr[-2000:]
    print(f"{name}: {status} in {step['seconds']} s", flush=True)
    return step


def pipeline_presets(args: argparse.Namespace, out: Path) -> dict:
    import numpy as np

    frames_dir = Path(tempfile.mkdtemp(prefix="device_check_frames_"))
    figures = out / "pipeline_presets.json"
    argv = [str(HERE / "generate.py"), "--configs", ",".join(args.presets), "--repeats", "1",
            "--json", str(figures), "--save-frames", str(frames_dir)]
    if args.tiny:
        argv += ["--steps", "2", "--device", "cpu"]
    elif args.full_cpu:
        argv += ["--full-random", "--steps", "1", "--warmup", "0", "--device", "cpu"]
    else:
        argv += ["--full-random", "--steps", "50", "--dtype", "bfloat16"]
    step = _run("pipeline presets", argv, args.step_timeout, out / "pipeline_presets.log")
    if step["status"] == "ok":
        step["results"] = json.loads(figures.read_text())["results"]
        high = frames_dir / "high.npy"
        if high.is_file():
            reference = np.load(high)
            step["max_abs_frame_diff_vs_high"] = {
                p: float(np.abs(np.load(frames_dir / f"{p}.npy") - reference).max())
                for p in args.presets if (frames_dir / f"{p}.npy").is_file()}
    return step


def unet_forward(args: argparse.Namespace, out: Path, dtype: str) -> dict:
    figures = out / f"unet_forward_{dtype}.json"
    argv = [str(HERE / "unet_forward.py"), "--dtype", dtype, "--json", str(figures)]
    if args.tiny:
        argv += ["--configs", "small", "--device", "cpu", "--warmup", "1", "--repeats", "2"]
    elif args.full_cpu:
        argv += ["--configs", "full", "--device", "cpu", "--no-memory"]
    else:
        argv += ["--configs", "full", "--device", "cuda"]
    step = _run(f"U-Net forward {dtype}", argv, args.step_timeout, out / f"unet_forward_{dtype}.log")
    if step["status"] == "ok":
        report = json.loads(figures.read_text())
        config = next(iter(report["configs"].values()))
        relative = config["max_abs_diff"] / max(config["output_max"], 1e-12)
        step.update(report=report, parity={"relative_max_diff": relative, "tolerance": PARITY_TOLERANCE[dtype],
                                           "ok": relative <= PARITY_TOLERANCE[dtype]})
    return step


def _fmt(value, spec: str = ".2f", missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# Device check: {env['device']}", "",
             f"{report['mode']}; torch {env['torch']} (CUDA {env['cuda']}), diffusers {env['diffusers']}, "
             f"Python {env['python']}; {report['seconds']:.0f} s in all.", "",
             "## Pipeline, per memory preset", "",
             "| preset | s/video | peak memory | time vs high | memory vs high | max frame diff vs high |",
             "|---|---|---|---|---|---|"]
    step = report["steps"]["pipeline_presets"]
    results = step.get("results", {})
    base = results.get("high", {})
    for preset, r in results.items():
        peak_key = "peak_gb" if "peak_gb" in r else "peak_rss_mb"
        unit = "GiB" if peak_key == "peak_gb" else "MiB RSS"
        lines.append(
            f"| {preset} | {r['seconds']:.2f} | {r[peak_key]:.2f} {unit} | "
            f"{_fmt(r['seconds'] / base['seconds'] if base else None)} | "
            f"{_fmt(r[peak_key] / base[peak_key] if base else None)} | "
            f"{_fmt(step.get('max_abs_frame_diff_vs_high', {}).get(preset), '.2e')} |")
    if step["status"] != "ok":
        lines.append(f"\npipeline presets: {step['status']}")
    lines += ["", "## U-Net forward: the model's attention against the reference", "",
              "| dtype | reference ms | ours ms | time ratio | memory ratio | max diff / output max | parity |",
              "|---|---|---|---|---|---|---|"]
    for dtype in ("bf16", "fp32"):
        step = report["steps"].get(f"unet_forward_{dtype}")
        if step is None:
            continue
        if step["status"] != "ok":
            lines.append(f"| {dtype} | {step['status']} | | | | | |")
            continue
        config = next(iter(step["report"]["configs"].values()))
        parity = step["parity"]
        lines.append(
            f"| {dtype} | {config['ms']['straightforward']:.1f} | {config['ms']['ours']:.1f} | "
            f"{config['time_ratio']:.3f} | {_fmt(config['memory_ratio'], '.3f')} | "
            f"{parity['relative_max_diff']:.2e} | {'ok' if parity['ok'] else 'FAILED'} (<= {parity['tolerance']:.0e}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for device_check.json, device_check.md and the logs")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--tiny", action="store_true", help="the tiny model on the CPU (a smoke run of this script)")
    mode.add_argument("--full-cpu", action="store_true", help="full size on the CPU, one step, high preset only")
    parser.add_argument("--presets", default=None, help="comma-separated presets (default: all; --full-cpu: high)")
    parser.add_argument("--step-timeout", type=float, default=300.0, help="seconds each step may take")
    args = parser.parse_args(argv)
    args.presets = (args.presets.split(",") if args.presets else (["high"] if args.full_cpu else list(PRESETS)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    mode_name = ("tiny model, CPU, 2 steps" if args.tiny else "full size, CPU, 1 step" if args.full_cpu
                 else "full size (random weights), 14x256x256, 50 steps, guidance 1 -> 5")
    report = {"mode": mode_name, "environment": environment(), "steps": {}}
    report["steps"]["pipeline_presets"] = pipeline_presets(args, out)
    for dtype in ("bf16", "fp32"):
        report["steps"][f"unet_forward_{dtype}"] = unet_forward(args, out, dtype)
    report["seconds"] = time.monotonic() - start
    steps = report["steps"].values()
    report["ok"] = all(s["status"] == "ok" for s in steps) and all(s.get("parity", {}).get("ok", True) for s in steps)
    (out / "device_check.json").write_text(json.dumps(report, indent=2))
    (out / "device_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
