"""Forward time and peak memory of PuppetMasterUNet against the straightforward variant.

The straightforward variant computes keys and values of every frame in the spatial self-attention
and then keeps frame 0's (AllToFirstReferenceAttnProcessor), and runs the drag modulation towers
on every frame. Ours computes frame 0's keys/values only and runs the towers once per distinct
drag encoding. Both run on the same weights and inputs in the same process; outputs are compared.

    python benchmarks/unet_forward.py                    # small golden config + full config, CPU fp32
    python benchmarks/unet_forward.py --configs small    # quick
    python benchmarks/unet_forward.py --device cuda --dtype bf16 --configs full

Batch 2 = the CFG batch (sample 0 with 3 drags, sample 1 the unconditional branch: zero drags).
Time: both variants on the same model in this process, alternately, the fastest forward of each.
Peak memory: one forward per variant in a fresh process (same seed, weights and inputs): growth of
the peak resident set (CPU, VmHWM, kernel-tracked, so allocator caching counts) or of the CUDA
allocator's peak.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

from puppet_master.models.attention import AllToFirstAttnProcessor, AllToFirstReferenceAttnProcessor
from puppet_master.models.unet import PuppetMasterUNet

SMALL = {
    "block_out_channels": (32, 32, 64, 64),
    "num_attention_heads": (1, 1, 2, 2),
    "cross_attention_dim": 64,
    "pos_embed_dim": 16,
    "drag_embedder_out_channels": (16, 32, 32),
    "layers_per_block": 1,
}
CONFIGS = {"small": SMALL, "full": {}}
VARIANTS = ("straightforward", "ours")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build(config: dict, device: torch.device, dtype: torch.dtype, seed: int = 0) -> PuppetMasterUNet:
    """A model with random weights (drag output convs included), built on the meta device first."""
    with torch.device("meta"):
        model = PuppetMasterUNet(**config)
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 1:
                parameter.fill_(1.0 if "norm" in name else 0.0)
            else:
                fan_in = parameter[0].numel()
                parameter.normal_(0.0, fan_in**-0.5, generator=generator)
    return model.eval() if dtype == torch.float32 else model.to(dtype).eval()


def inputs(model: PuppetMasterUNet, batch: int, frames: int, size: int, device, dtype) -> dict:
    generator = torch.Generator().manual_seed(1)
    drags = torch.zeros(batch, frames, model.config.num_drags, 4)
    start = torch.rand(3, 2, generator=generator) * 0.6 + 0.2
    end = start + torch.randn(3, 2, generator=generator) * 0.15
    t = torch.linspace(0, 1, frames)[:, None, None]
    drags[0, :, :3] = torch.cat([start.expand(frames, 3, 2), start + t * (end - start)], dim=-1)
    tensors = {
        "sample": torch.randn(batch, frames, 4, size, size, generator=generator),
        "timestep": torch.full((batch,), 0.25),
        "image_latents": torch.randn(batch, 4, size, size, generator=generator),
        "encoder_hidden_states": torch.randn(batch, 1, model.config.cross_attention_dim, generator=generator),
    }
    tensors = {k: v.to(device=device, dtype=dtype if k != "timestep" else torch.float32) for k, v in tensors.items()}
    return {**tensors, "drags": drags.to(device)}


def _peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it does not inherit the parent's)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (peak memory on CPU needs Linux)")


def set_variant(model: PuppetMasterUNet, straightforward: bool) -> None:
    processor = AllToFirstReferenceAttnProcessor if straightforward else AllToFirstAttnProcessor
    model.set_attn_processor(model.default_attn_processors(processor))
    model.share_identical_drag_maps = not straightforward


def time_interleaved(model, tensors, warmup: int, repeats: int) -> dict[str, tuple[float, torch.Tensor]]:
    """Fastest forward of each variant, run alternately so that load from other processes hits both
    alike, and each variant's output. Ours goes first: a cold start (no warm-up) counts against it."""
    cuda = tensors["sample"].device.type == "cuda"
    best, outputs = {v: float("inf") for v in VARIANTS}, {}
    with torch.no_grad():
        for step in range(warmup + repeats):
            for variant in reversed(VARIANTS):
                set_variant(model, variant == "straightforward")
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = model(**tensors).sample
                if cuda:
                    torch.cuda.synchronize()
                if step >= warmup:
                    best[variant] = min(best[variant], time.perf_counter() - start)
                outputs[variant] = out.float().cpu()
    return {v: (best[v], outputs[v]) for v in VARIANTS}


def memory_worker(args: argparse.Namespace) -> None:
    """One forward of one variant in a fresh process; prints the growth of the peak memory."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model = build(CONFIGS[args.configs], device, DTYPES[args.dtype])
    tensors = inputs(model, args.batch, args.frames, args.size, device, DTYPES[args.dtype])
    set_variant(model, args.memory_worker == "straightforward")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else _peak_rss_bytes()
    with torch.no_grad():
        model(**tensors)
    if cuda:
        torch.cuda.synchronize()
    print((torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()) - before)


def peak_memory(args: argparse.Namespace, config: str, variant: str) -> int:
    command = [
        sys.executable, __file__, "--memory-worker", variant, "--configs", config, "--device", args.device,
        "--dtype", args.dtype, "--batch", str(args.batch), "--frames", str(args.frames), "--size", str(args.size),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="small,full", help="comma-separated: small, full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=14)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--warmup", type=int, default=None, help="default: 2, none for the full config on CPU")
    parser.add_argument("--repeats", type=int, default=None, help="default: 10, 1 for the full config on CPU")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--memory-worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        memory_worker(args)
        return

    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; {args.dtype}; batch {args.batch}, {args.frames} frames, {args.size}x{args.size} latents")
    print(f"{'config':<6} {'variant':<16} {'ms (best)':>11} {'peak MiB':>9} {'time ratio':>10} {'mem ratio':>9}")
    report = {"device": name, "dtype": args.dtype, "batch": args.batch, "frames": args.frames, "size": args.size,
              "configs": {}}
    for config in args.configs.split(","):
        heavy = config == "full" and device.type == "cpu"
        warmup = args.warmup if args.warmup is not None else (0 if heavy else 2)
        repeats = args.repeats if args.repeats is not None else (1 if heavy else 10)
        model = build(CONFIGS[config], device, DTYPES[args.dtype])
        tensors = inputs(model, args.batch, args.frames, args.size, device, DTYPES[args.dtype])
        results = time_interleaved(model, tensors, warmup, repeats)
        del model, tensors
        memory = {v: (0 if args.no_memory else peak_memory(args, config, v)) for v in VARIANTS}
        base_time, base_memory = results["straightforward"][0], max(memory["straightforward"], 1)
        for variant in VARIANTS:
            seconds = results[variant][0]
            print(
                f"{config:<6} {variant:<16} {seconds * 1e3:>11.1f} {memory[variant] / 2**20:>9.0f} "
                f"{seconds / base_time:>10.3f} {memory[variant] / base_memory:>9.3f}"
            )
        ours, reference = results["ours"][1], results["straightforward"][1]
        diff = (ours - reference).abs().max().item()
        print(f"{config:<6} max |ours - straightforward| = {diff:.2e} (output max {reference.abs().max().item():.2e})")
        report["configs"][config] = {
            "ms": {v: results[v][0] * 1e3 for v in VARIANTS},
            "peak_mib": None if args.no_memory else {v: memory[v] / 2**20 for v in VARIANTS},
            "time_ratio": results["ours"][0] / base_time,
            "memory_ratio": None if args.no_memory else memory["ours"] / base_memory,
            "max_abs_diff": diff, "output_max": reference.abs().max().item(),
        }
    if args.json:
        import json
        from pathlib import Path

        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
