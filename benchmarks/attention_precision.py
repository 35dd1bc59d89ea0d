"""CPU attention in bf16 against float32: each attention shape of a U-Net, then a whole training step.

    python benchmarks/attention_precision.py                       # tiny_trained recipe, batch 2, 1 thread
    python benchmarks/attention_precision.py --config training/configs/tiny.toml --threads 2

Under bf16 autocast PyTorch runs ``scaled_dot_product_attention`` in bf16, and its CPU kernels are
slow on short sequences with many rows (the temporal attention over 14 frames). The U-Net's
processors (``puppet_master.models.attention``) compute attention in float32 on the CPU instead.
Part 1 times forward + backward of every distinct attention shape of the configured U-Net in both
precisions; part 2 times a bf16-autocast training step of the U-Net with diffusers'
``AttnProcessor2_0`` on the temporal and cross-attentions (the baseline, attention in bf16) against
the model's own processors, alternating them in one process. Ratios are baseline / ours.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tomllib
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "backend"))

from puppet_master.models.unet import PuppetMasterUNet  # noqa: E402


def attention_shapes(unet: PuppetMasterUNet, inputs: tuple) -> dict[tuple, str]:
    """(rows, heads, query length, key length, head dim) -> a label, for each attention the U-Net runs
    on ``inputs`` (recorded by hooks during one forward pass)."""
    shapes: dict[tuple, str] = {}
    spatial = {name.removesuffix(".processor") for name in unet.spatial_self_attention_names()}

    def hook(name):
        def record(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            context = kwargs.get("encoder_hidden_states")
            rows, length = hidden.shape[:2]
            d = module.inner_dim // module.heads
            if name in spatial:  # all-to-first: every frame's queries against frame 0's keys
                frames = unet.config.num_frames
                shape, kind = (rows // frames, module.heads, frames * length, length, d), "all-to-first"
            else:
                keys = context.shape[1] if context is not None else length
                kind = ("temporal" if "temporal" in name else "spatial") + (" cross" if context is not None else " self")
                shape = (rows, module.heads, length, keys, d)
            shapes.setdefault(shape, f"{kind} ({name.split('.attentions')[0]})")
        return record

    handles = [module.register_forward_pre_hook(hook(name), with_kwargs=True)
               for name, module in unet.named_modules() if hasattr(module, "get_processor")]
    with torch.no_grad():
        unet(*inputs, return_dict=False)
    for handle in handles:
        handle.remove()
    return shapes


def time_attention(shape: tuple, dtype: torch.dtype, repeats: int) -> float:
    rows, heads, lq, lk, d = shape
    q = torch.randn(rows, heads, lq, d, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(rows, heads, lk, d, dtype=dtype, requires_grad=True) for _ in range(2))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v).float().sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "experiments" / "tiny_model" / "configs" / "tiny_trained.toml"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = tomllib.loads(Path(args.config).read_text())["model"]["unet_config"]
    unet = PuppetMasterUNet(**config).train()
    frames, size, channels = unet.config.num_frames, unet.config.sample_size, unet.config.in_channels // 2

    sample = torch.randn(args.batch, frames, channels, size, size)
    image = torch.randn(args.batch, channels, size, size)
    embeds = torch.randn(args.batch, 1, unet.config.cross_attention_dim)
    drags = torch.rand(args.batch, frames, unet.config.num_drags, 4) * size * 8
    sigma = torch.rand(args.batch)
    inputs = (sample, sigma, image, embeds, drags)

    print(f"# 1. attention forward + backward, {args.threads} thread(s), batch {args.batch}")
    print(f"{'attention':45s} {'rows x heads, q x k, d':26s} {'bf16 s':>8s} {'fp32 s':>8s} {'bf16/fp32':>9s}")
    for shape, name in attention_shapes(unet, inputs).items():
        half, full = (time_attention(shape, dtype, args.repeats) for dtype in (torch.bfloat16, torch.float32))
        label = f"{shape[0]}x{shape[1]}, {shape[2]}x{shape[3]}, {shape[4]}"
        print(f"{name:45s} {label:26s} {half:8.4f} {full:8.4f} {half / full:9.2f}")

    from diffusers.models.attention_processor import AttnProcessor2_0

    spatial = set(unet.spatial_self_attention_names())
    ours = unet.default_attn_processors()
    baseline = {name: ours[name] if name in spatial else AttnProcessor2_0() for name in ours}

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = unet(*inputs, return_dict=False)[0]
        out.float().square().mean().backward()
        unet.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"baseline": [], "ours": []}
    for _ in range(args.repeats):
        for name, processors in (("baseline", baseline), ("ours", ours)):
            unet.set_attn_processor(dict(processors))
            step()  # warm-up after the switch
            times[name].append(step())
    base, new = statistics.median(times["baseline"]), statistics.median(times["ours"])
    print(f"\n# 2. U-Net training step (forward + backward, bf16 autocast), batch {args.batch}")
    print(f"baseline (attention in bf16):  {base:.2f} s")
    print(f"ours (attention in float32):   {new:.2f} s   speed-up {base / new:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
