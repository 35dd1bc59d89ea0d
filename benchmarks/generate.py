"""Generation speed and peak memory of each memory preset, against ``high`` measured in the same run.

Each configuration runs in its own process (so peak memory is its own), after one warm-up call:
- ``high``, ``balanced``, ``low``: the presets of ``puppet_master.memory`` (``--memory``);
- ``no-guidance``: ``high`` with guidance weight 1 everywhere, the conditional branch alone (a lower
  bound on the time).

Seconds per video (median of the repeats) and peak memory (CPU: the process's peak resident set
size, and its rise above the loaded model; CUDA: ``torch.cuda.max_memory_allocated``), with ratios
against ``high``. On the CPU the ratios use CPU seconds (all threads of the process), which
other programs sharing the cores disturb far less than wall-clock seconds. With ``--save-frames
DIR`` each configuration writes its frames (``DIR/CONFIG.npy``), so runs can be compared.

    python benchmarks/generate.py                      # tiny random model on this CPU, 2 steps
    python benchmarks/generate.py --full-random --steps 50 --dtype bfloat16   # SVD-size random weights (GPU)
    python benchmarks/generate.py --model DIR --steps 50                      # real weights (GPU)
    python benchmarks/generate.py --full-random --steps 1 --configs high --device cpu   # full size on a CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = ("high", "balanced", "low", "no-guidance")
BASELINE = "high"


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def full_random_pipeline(device, dtype):
    """SVD-size components with random weights (timings do not depend on the values)."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from puppet_master.models.unet import PuppetMasterUNet
    from puppet_master.pipeline import PuppetMasterPipeline, svd_scheduler

    with torch.device(device):
        unet = PuppetMasterUNet(sample_size=32)
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2
        )
        clip = CLIPVisionModelWithProjection(  # OpenCLIP ViT-H/14, SVD's image encoder
            CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                             image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")
        )
    pipe = PuppetMasterPipeline(vae, clip, unet, svd_scheduler(), CLIPImageProcessor(), untrained=True)
    return pipe.to(dtype=dtype)


def worker(args: argparse.Namespace) -> dict:
    import torch
    from PIL import Image, ImageDraw

    from puppet_master.drags import Drag
    from puppet_master.loading import load_pipeline, resolve_device, resolve_dtype
    from puppet_master.memory import PRESETS, apply_memory_plan

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    preset = "high" if args.worker == "no-guidance" else args.worker
    if args.full_random:
        pipe = full_random_pipeline(device, dtype)
        apply_memory_plan(pipe, PRESETS[preset], device)
    else:
        pipe = load_pipeline(args.model, svd=args.svd, checkpoint=args.checkpoint, tiny=not (args.model or args.svd),
                             device=device, dtype=dtype, memory=preset)
    pipe.set_progress_bar_config(disable=True)
    guidance = (1.0, 1.0) if args.worker == "no-guidance" else (1.0, 5.0)
    frames = []

    image = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(image).rectangle([80, 60, 176, 200], fill=(90, 120, 200))
    drags = [Drag((0.5, 0.3), (0.65, 0.2))]

    def run(steps: int) -> None:
        out = pipe(image, drags, num_inference_steps=steps, min_guidance_scale=guidance[0],
                   max_guidance_scale=guidance[1], generator=torch.Generator().manual_seed(0), output_type="np")
        frames[:] = [out.frames[0]]
        if device.type == "cuda":
            torch.cuda.synchronize()

    loaded_mb = _rss_mb()
    for _ in range(args.warmup):
        run(1)  # warm-up: kernels, allocator
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds, cpu_seconds = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        run(args.steps)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    result = {
        "seconds": sorted(seconds)[len(seconds) // 2],
        "cpu_seconds": sorted(cpu_seconds)[len(cpu_seconds) // 2],
        "all_seconds": seconds,
    }
    if device.type == "cuda":
        result["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
        result["device"] = torch.cuda.get_device_name(device)
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result.update(peak_rss_mb=peak_mb, peak_above_model_mb=peak_mb - loaded_mb, device=platform.processor() or "cpu")
        result["threads"] = torch.get_num_threads()
    result["dtype"] = str(dtype).removeprefix("torch.")
    result["memory_plan"] = PRESETS[preset].as_settings()
    if args.save_frames:
        import numpy as np

        Path(args.save_frames).mkdir(parents=True, exist_ok=True)
        np.save(Path(args.save_frames) / f"{args.worker}.npy", frames[0])
    return result


def _worker_argv(args: argparse.Namespace, config: str) -> list[str]:
    argv = ["--steps", str(args.steps), "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--worker", config]
    for name in ("model", "svd", "checkpoint", "device", "dtype", "save_frames"):
        if getattr(args, name):
            argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return [*argv, "--full-random"] if args.full_random else argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="denoising steps per video (the paper: 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed videos per configuration")
    parser.add_argument("--warmup", type=int, default=1, help="untimed one-step calls first (default 1)")
    parser.add_argument("--save-frames", metavar="DIR", help="write each configuration's frames to DIR/CONFIG.npy")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {CONFIGS}")
    parser.add_argument("--model", help="a converted pipeline folder (default: the tiny random model)")
    parser.add_argument("--svd", help="SVD img2vid folder (with --checkpoint)")
    parser.add_argument("--checkpoint", help="the released model.safetensors (with --svd)")
    parser.add_argument("--full-random", action="store_true", help="SVD-size random weights (for a GPU)")
    parser.add_argument("--device")
    parser.add_argument("--dtype")
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args)))
        return

    results = {}
    for config in args.configs.split(","):
        if config not in CONFIGS:
            parser.error(f"unknown configuration {config!r}; choose from {CONFIGS}")
        proc = subprocess.run([sys.executable, __file__, *_worker_argv(args, config)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"{config} failed:\n{proc.stderr[-3000:]}")
        results[config] = json.loads(proc.stdout.strip().splitlines()[-1])

    base = results.get(BASELINE)
    model = "full-size random" if args.full_random else (args.model or args.svd or "tiny random")
    print(f"model: {model}, {args.steps} steps, 14 frames 256x256, device: {next(iter(results.values()))['device']}")
    timer = "seconds" if "peak_gb" in next(iter(results.values())) else "cpu_seconds"
    for config, r in results.items():
        line = f"{config:<14} {r['seconds']:7.2f} s/video ({r['cpu_seconds']:.2f} CPU s)"
        memory = r.get("peak_gb")
        if memory is not None:
            line += f"  peak {memory:6.2f} GB"
        else:
            line += f"  peak RSS {r['peak_rss_mb']:7.0f} MB ({r['peak_above_model_mb']:+.0f} MB above the loaded model)"
        if base and config != BASELINE:
            line += f"  {timer.replace('_', ' ')} x{r[timer] / base[timer]:.2f} vs {BASELINE}"
            key = "peak_gb" if memory is not None else "peak_above_model_mb"
            line += f", memory x{r[key] / base[key]:.2f}"
        print(line)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"model": model, "steps": args.steps, "results": results}, indent=2))


if __name__ == "__main__":
    main()
