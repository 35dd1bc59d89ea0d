"""Memory presets: how the pipeline trades speed for GPU memory.

Three presets, one switch (``--memory`` on ``generate``, ``serve`` and ``worker``; the add-on's
local backend option):

============  ==================  ===================  ====================  ===================
preset        offload (CUDA)      guidance branches    U-Net feed-forward    VAE decode
============  ==================  ===================  ====================  ===================
``high``      none                one batch            whole                 all 14 frames
``balanced``  model (one of       one after the other  chunked per frame     all 14 frames
              VAE/CLIP/U-Net on
              the GPU at a time)
``low``       sequential (layer   one after the other  chunked per frame     2 frames at a time
              by layer)
============  ==================  ===================  ====================  ===================

The weights' dtype is the device's default in every preset (bf16 where supported, else fp16, on
CUDA; fp32 on the CPU) unless ``--dtype`` says otherwise. Offload, running the guidance branches in
turn and feed-forward chunking change where and when the work runs, not what it computes:
feed-forward chunking splits only per-token layers, so the all-to-first attention (each frame
attends to the first frame's tokens) sees exactly the tokens it sees unchunked, and ``high`` and
``balanced`` give the same latents to rounding (the tests compare them). ``low``'s chunked decode
is the one trade of quality for memory: SVD's temporal decoder mixes neighbouring frames, and a
chunk of 2 sees fewer of them, as with ``decode_chunk_size`` in diffusers' SVD pipeline. With no
preset given, :func:`choose_preset` picks one from the free memory of the device and says why.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

PRESET_NAMES = ("high", "balanced", "low")
#: free GPU memory (GiB) at or above which a preset is picked when none is given. Estimates for
#: SVD's 1.5 B-parameter U-Net in half precision at 14 x 256 x 256; `benchmarks/device_check.sh`
#: measures each preset's peak on a real card.
AUTO_THRESHOLDS_GIB = {"high": 16.0, "balanced": 8.0}


@dataclass(frozen=True)
class MemoryPlan:
    """What a preset switches on; :func:`apply_memory_plan` applies it to a loaded pipeline."""

    name: str
    offload: str | None  # None, "model" or "sequential" (CUDA only)
    batch_guidance: bool
    forward_chunking: bool
    decode_chunk_size: int | None  # None: every frame of a video at once

    def as_settings(self) -> dict:
        return asdict(self)


PRESETS = {
    "high": MemoryPlan("high", offload=None, batch_guidance=True, forward_chunking=False, decode_chunk_size=None),
    "balanced": MemoryPlan("balanced", offload="model", batch_guidance=False, forward_chunking=True,
                           decode_chunk_size=None),
    "low": MemoryPlan("low", offload="sequential", batch_guidance=False, forward_chunking=True, decode_chunk_size=2),
}


def free_memory_gib(device: torch.device) -> float | None:
    """Free memory of a CUDA device in GiB; None for other devices or when it cannot be read."""
    import torch

    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except (RuntimeError, AssertionError):
        return None
    return free / 2**30


def choose_preset(name: str | None, device: torch.device) -> tuple[MemoryPlan, str]:
    """The plan for ``name``, or the one the device's free memory allows, and a line saying why."""
    if name is not None:
        if name not in PRESETS:
            raise ValueError(f"unknown memory preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
        return PRESETS[name], f"memory preset {name} (asked for)"
    free = free_memory_gib(device)
    if free is None:
        return PRESETS["high"], f"memory preset high (on {device}, nothing to offload to)"
    preset = preset_for_free_memory(free)
    return PRESETS[preset], (f"memory preset {preset} ({free:.1f} GiB free on {device}; "
                             f"--memory high|balanced|low to choose)")


def preset_for_free_memory(free_gib: float) -> str:
    """The preset :func:`choose_preset` picks for a CUDA device with ``free_gib`` GiB free."""
    return next((name for name in ("high", "balanced") if free_gib >= AUTO_THRESHOLDS_GIB[name]), "low")


def enable_forward_chunking(unet: torch.nn.Module, enabled: bool = True) -> int:
    """Run the feed-forward layers of every spatial and temporal transformer block one slice at a
    time: spatial blocks per frame, temporal blocks per frame of each token's sequence. Returns the
    number of blocks changed. Attention is untouched, so all-to-first attention is unaffected."""
    from diffusers.models.attention import BasicTransformerBlock, TemporalBasicTransformerBlock

    changed = 0
    for module in unet.modules():
        if isinstance(module, TemporalBasicTransformerBlock):
            module.set_chunk_feed_forward(1 if enabled else None)  # dim 1: the frames of a token's sequence
            changed += 1
        elif isinstance(module, BasicTransformerBlock):
            module.set_chunk_feed_forward(1 if enabled else None, dim=0)  # dim 0: batch x frames
            changed += 1
    return changed


def apply_memory_plan(pipe, plan: MemoryPlan, device: torch.device) -> None:
    """Place ``pipe`` on ``device`` as ``plan`` says (offload only applies to CUDA)."""
    pipe.batch_guidance = plan.batch_guidance
    pipe.decode_chunk_size = plan.decode_chunk_size
    if pipe.unet is not None:
        enable_forward_chunking(pipe.unet, plan.forward_chunking)
    if plan.offload and device.type == "cuda":
        if plan.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.enable_model_cpu_offload(device=device)
        return
    if plan.offload:
        logger.info("offload applies to CUDA only; everything stays on %s", device)
    pipe.to(device)
