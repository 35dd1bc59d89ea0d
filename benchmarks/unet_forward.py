"""Forward time and peak memory of PuppetMasterUNet against the straightforward variant.

The straightforward variant computes keys and values of every frame in the spatial self-attention
and then keeps frame 0's (AllToFirstReferenceAttnProcessor), and runs the drag modulation towers
on every frame. Ours computes frame 0's keys/values only and runs the towers once per distinct
drag encoding. Both run on the same weights and inputs in the same process; outputs are compared.

    python benchmarks/unet_forward.py                    # small golden config + full config, CPU fp32
    python benchmarks/unet_forward.py --configs small    # quick
    python benchmarks/unet_forward.py --device cuda --dtype bf16 --configs full

Batch 2 = the CFG batch (sample 0 with 3 drags, sample 1 the unconditional branch: zero drags).
CPU peak memory is the largest resident-set growth during one forward, sampled every 2 ms, with
glibc told to give large blocks back to the system (the script re-executes itself once for that).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

MALLOC_ENV = "MALLOC_MMAP_THRESHOLD_"
if __name__ == "__main__" and MALLOC_ENV not in os.environ:
    os.environ[MALLOC_ENV] = "131072"  # large tensors via mmap, returned to the OS when freed
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402

from puppet_master.models.attention import AllToFirstAttnProcessor, AllToFirstReferenceAttnProcessor  # noqa: E402
from puppet_master.models.unet import PuppetMasterUNet  # noqa: E402

SMALL = {
    "block_out_channels": (32, 32, 64, 64),
    "num_attention_heads": (1, 1, 2, 2),
    "cross_attention_dim": 64,
    "pos_embed_dim": 16,
    "drag_embedder_out_channels": (16, 32, 32),
    "layers_per_block": 1,
}
CONFIGS = {"small": SMALL, "full": {}}
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


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory growth during the block: CUDA allocator statistics, or sampled RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start = self.peak_rss = _rss_bytes()
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak_rss = max(self.peak_rss, _rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self.running = False
            self.thread.join()
            self.peak = max(self.peak_rss, _rss_bytes()) - self.start


def set_variant(model: PuppetMasterUNet, straightforward: bool) -> None:
    processor = AllToFirstReferenceAttnProcessor if straightforward else AllToFirstAttnProcessor
    model.set_attn_processor(model.default_attn_processors(processor))
    model.share_identical_drag_maps = not straightforward


def measure(model, tensors, warmup: int, repeats: int) -> dict[bool, tuple[float, int, torch.Tensor]]:
    """Interleaved runs (straightforward, ours, straightforward, ...) so that load from other
    processes hits both alike; per variant the fastest forward, the largest memory peak, the output."""
    device = tensors["sample"].device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    results = {True: ([], [], None), False: ([], [], None)}
    with torch.no_grad():
        for step in range(warmup + repeats):
            for straightforward in (True, False):
                set_variant(model, straightforward)
                with PeakMemory(device) as memory:
                    sync()
                    start = time.perf_counter()
                    out = model(**tensors).sample
                    sync()
                    elapsed = time.perf_counter() - start
                if step >= warmup:
                    times, peaks, _ = results[straightforward]
                    results[straightforward] = ([*times, elapsed], [*peaks, memory.peak], out.float().cpu())
    return {key: (min(times), max(peaks), out) for key, (times, peaks, out) in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="small,full", help="comma-separated: small, full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=DTYPES, default=None, help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=14)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--warmup", type=int, default=None, help="default: 2 (small/CUDA), 0 (full on CPU)")
    parser.add_argument("--repeats", type=int, default=None, help="default: 10 (small/CUDA), 2 (full on CPU)")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; dtype {dtype}; batch {args.batch}, {args.frames} frames, {args.size}x{args.size} latents")
    print(f"{'config':<6} {'variant':<16} {'ms (best)':>11} {'peak MiB':>9} {'time ratio':>10} {'mem ratio':>9}")
    for config_name in args.configs.split(","):
        heavy = config_name == "full" and device.type == "cpu"
        warmup = args.warmup if args.warmup is not None else (0 if heavy else 2)
        repeats = args.repeats if args.repeats is not None else (2 if heavy else 10)
        model = build(CONFIGS[config_name], device, dtype)
        tensors = inputs(model, args.batch, args.frames, args.size, device, dtype)
        results = measure(model, tensors, warmup, repeats)
        (base_time, base_mem, base_out), (time_ours, mem_ours, out) = results[True], results[False]
        for label, seconds, memory in (("straightforward", base_time, base_mem), ("ours", time_ours, mem_ours)):
            print(
                f"{config_name:<6} {label:<16} {seconds * 1e3:>11.1f} {memory / 2**20:>9.0f} "
                f"{seconds / base_time:>10.3f} {memory / max(base_mem, 1):>9.3f}"
            )
        diff = (out - base_out).abs().max().item()
        scale = base_out.abs().max().item()
        print(f"{config_name:<6} max |ours - straightforward| = {diff:.2e} (output max {scale:.2e})")
        del model, tensors


if __name__ == "__main__":
    main()
