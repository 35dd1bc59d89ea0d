"""Which autocast precision a training run gets on the device it found (``train.mixed_precision``).

bf16 autocast pays on GPUs and on CPUs with native bf16 arithmetic (AMX, AVX512-BF16, Arm BF16),
where oneDNN runs bf16 matmuls in hardware: the tiny U-Net trained 1.20x faster for it. On CPUs
without it (an AVX2-only AMD EPYC here) every bf16 op is emulated and a step took 42 s instead of
the 7 s of plain float32, six times slower. ``"auto"`` picks what pays; an explicit ``"bf16"`` on
such a CPU is kept (someone may want its numerics) but logged as the slowdown it is.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

CHOICES = ("auto", "no", "fp16", "bf16")


class PrecisionError(ValueError):
    """A precision the device cannot run."""


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 in hardware on this CPU (False where PyTorch was built without it)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str, device_type: str, native_cpu_bf16: bool | None = None,
                      cuda_bf16: bool | None = None) -> str:
    """The accelerate ``mixed_precision`` for ``requested`` on ``device_type`` ("cpu", "cuda", ...).

    ``native_cpu_bf16`` and ``cuda_bf16`` default to what this machine reports.
    """
    if requested not in CHOICES:
        raise PrecisionError(f"train.mixed_precision must be one of {CHOICES}, got {requested!r}")
    if device_type == "cpu":
        native = cpu_has_native_bf16() if native_cpu_bf16 is None else native_cpu_bf16
        if requested == "fp16":
            raise PrecisionError("train.mixed_precision = 'fp16' needs a GPU; use 'auto', 'bf16' or 'no' on CPU")
        if requested == "auto":
            return "bf16" if native else "no"
        if requested == "bf16" and not native:
            logger.warning("train.mixed_precision = 'bf16' on a CPU without native bf16: every bf16 op is "
                           "emulated (about 6x slower a step than 'no' on an AVX2 CPU); 'auto' picks 'no' here")
        return requested
    if requested != "auto":
        return requested
    if device_type == "cuda":
        supported = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        return "bf16" if supported else "fp16"
    return "no"  # other accelerators (mps, xpu): plain precision until measured
