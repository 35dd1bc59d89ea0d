"""Where a :class:`PuppetMasterPipeline` comes from: a converted folder, SVD + the released weights, or tiny.

Nothing is downloaded: every source is a local folder or file. ``load_pipeline`` also picks the
device (CUDA, else MPS, else CPU) and dtype (bf16 on CUDA where supported, else fp16 on GPUs;
fp32 on the CPU) and can enable diffusers' model CPU offload.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from os import PathLike
from pathlib import Path

import torch

from puppet_master import paths
from puppet_master.drags import NUM_FRAMES
from puppet_master.image_prep import FRAME_SIZE
from puppet_master.memory import apply_memory_plan, choose_preset
from puppet_master.models.loading import (
    ModelLoadError,
    checkpoint_config,
    checkpoint_drag_settings,
    weight_variant,
)

__all__ = [
    "SVD_PARTS",
    "ModelLoadError",
    "check_svd_folder",
    "checkpoint_drag_settings",
    "default_model",
    "find_model_folder",
    "load_pipeline",
    "load_svd_part",
    "pipeline_from_folder",
    "pipeline_from_svd",
    "resolve_device",
    "resolve_dtype",
    "unet_from_svd_and_checkpoint",
]

logger = logging.getLogger(__name__)

#: the sub-folders of a Stable Video Diffusion img2vid folder (diffusers layout) we use, and their config files
SVD_PARTS = {
    "vae": "config.json",
    "image_encoder": "config.json",
    "feature_extractor": "preprocessor_config.json",
    "scheduler": "scheduler_config.json",
    "unet": "config.json",
}
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
}  # fmt: skip
DTYPE_NAMES = ("float32", "float16", "bfloat16")


# ---------------------------------------------------------------------------- device and dtype
def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device``, or CUDA if available, else MPS, else the CPU."""
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ModelLoadError(f"unknown device {device!r} (use cpu, cuda, cuda:1 or mps)") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` (a torch dtype or a name), or the default for ``device``."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_NAMES)}") from None


# ---------------------------------------------------------------------------- SVD + released checkpoint
def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise ModelLoadError(f"{path} is missing: expected {what}")
    return path


def check_svd_folder(svd: str | PathLike) -> Path:
    """``svd`` as a Path after checking it holds the parts of SVD img2vid in diffusers layout."""
    folder = Path(svd).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"SVD folder {folder} does not exist (expected stable-video-diffusion-img2vid in diffusers layout)")
    for part, config in SVD_PARTS.items():
        _require(folder / part / config, f"the {part} of Stable Video Diffusion img2vid (diffusers layout)")
    return folder


def unet_config_from_svd(svd: str | PathLike, **drag_settings) -> dict:
    """The PuppetMasterUNet config: SVD's U-Net architecture, Puppet-Master's frames and drag settings."""
    from puppet_master.models.unet import PuppetMasterUNet

    path = _require(Path(svd).expanduser() / "unet" / "config.json", "the SVD U-Net's config.json")
    try:
        svd_config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    accepted = set(inspect.signature(PuppetMasterUNet.__init__).parameters) - {"self", "num_frames", "sample_size"}
    config = {key: value for key, value in svd_config.items() if key in accepted}
    vae_config = Path(svd).expanduser() / "vae" / "config.json"
    levels = len(json.loads(vae_config.read_text())["block_out_channels"]) if vae_config.is_file() else 4
    config.update(num_frames=NUM_FRAMES, sample_size=FRAME_SIZE // 2 ** (levels - 1))
    config.update({key: value for key, value in drag_settings.items() if value is not None})
    return config


def unet_from_svd_and_checkpoint(
    svd: str | PathLike, checkpoint: str | PathLike, *, dtype: torch.dtype | None = None, **drag_settings
):
    """The released U-Net: SVD's U-Net config for the architecture, the checkpoint's shapes (and
    stored config) for the drag modules, ``drag_settings`` over both, loaded strictly."""
    from puppet_master.models.loading import load_released_unet

    checkpoint = _require(Path(checkpoint).expanduser(), "the released Puppet-Master model.safetensors")
    config = {**checkpoint_drag_settings(checkpoint), **checkpoint_config(checkpoint),
              **{k: v for k, v in drag_settings.items() if v is not None}}
    return load_released_unet(checkpoint, unet_config_from_svd(svd, **config), dtype)


def load_svd_part(folder: str | PathLike, part: str, *, dtype: torch.dtype = torch.float32):
    """One component of an SVD img2vid folder (diffusers layout), reading fp16-only folders too.

    ``part`` is one of ``vae``, ``image_encoder``, ``feature_extractor`` or ``scheduler``.
    """
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from puppet_master.models.vae import load_vae

    folder = Path(folder).expanduser()
    where = _require(folder / part / SVD_PARTS[part], f"the {part} of Stable Video Diffusion img2vid (diffusers layout)")
    try:
        if part == "vae":
            return load_vae(folder / part, dtype=dtype, variant=weight_variant(folder / part)).eval()
        if part == "image_encoder":
            return CLIPVisionModelWithProjection.from_pretrained(
                folder / part, dtype=dtype, variant=weight_variant(folder / part)
            ).eval()
        if part == "feature_extractor":
            return CLIPImageProcessor.from_pretrained(folder / part)
        if part == "scheduler":
            return EulerDiscreteScheduler.from_pretrained(folder / part)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load the {part} of Stable Video Diffusion from {where.parent}: {exc}") from exc
    raise ValueError(f"unknown SVD part {part!r}")


def pipeline_from_svd(
    svd: str | PathLike, checkpoint: str | PathLike, *, dtype: torch.dtype = torch.float32, **drag_settings
):
    """SVD img2vid's VAE, CLIP encoder, feature extractor and scheduler + the released U-Net weights."""
    from puppet_master.pipeline import PuppetMasterPipeline

    folder = check_svd_folder(svd)
    unet = unet_from_svd_and_checkpoint(folder, checkpoint, dtype=dtype, **drag_settings)
    parts = {part: load_svd_part(folder, part, dtype=dtype)
             for part in ("vae", "image_encoder", "feature_extractor", "scheduler")}
    return PuppetMasterPipeline(unet=unet, **parts)


# ---------------------------------------------------------------------------- converted folders
def find_model_folder(model: str | PathLike) -> Path:
    """A converted pipeline folder given as a path, or as a name under :func:`paths.models_dir`."""
    path = Path(model).expanduser()
    candidates = [path] if path.is_absolute() or path.exists() else [path, paths.models_dir() / path]
    for candidate in candidates:
        if (candidate / "model_index.json").is_file():
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise ModelLoadError(
        f"no Puppet-Master pipeline at {where}: expected a folder with model_index.json "
        "(written by `puppet-master convert --svd DIR --checkpoint FILE --out DIR`)"
    )


def pipeline_from_folder(model: str | PathLike, *, dtype: torch.dtype = torch.float32):
    from puppet_master.pipeline import PuppetMasterPipeline

    folder = find_model_folder(model)
    try:
        return PuppetMasterPipeline.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"cannot load the pipeline in {folder}: {exc}") from exc


def default_model() -> Path | None:
    """``$PUPPET_MASTER_MODEL``, else the model `puppet-master download` installed, else the bundled
    weights when they hold a pipeline, else None."""
    env = os.environ.get("PUPPET_MASTER_MODEL")
    if env:
        return Path(env).expanduser()
    for folder in (paths.models_dir() / paths.DEFAULT_MODEL_NAME, paths.BUNDLED_WEIGHTS_DIR):
        if (folder / "model_index.json").is_file():
            return folder
    return None


NO_MODEL_MESSAGE = (
    "no model given and none installed: run `puppet-master download` once (it fetches and converts the real "
    "model into the default folder), or pass a converted pipeline folder (--model DIR, made by `puppet-master convert`), "
    "Stable Video Diffusion img2vid plus the released weights (--svd DIR --checkpoint model.safetensors), "
    "or --tiny for a small untrained model (for testing); $PUPPET_MASTER_MODEL may name a default folder"
)


# ---------------------------------------------------------------------------- the entry point
def load_pipeline(
    model: str | PathLike | None = None,
    *,
    svd: str | PathLike | None = None,
    checkpoint: str | PathLike | None = None,
    tiny: bool = False,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    memory: str | None = None,
):
    """Load a :class:`~puppet_master.pipeline.PuppetMasterPipeline` ready to run.

    Exactly one source: ``model`` (a folder written by ``convert``, or its name under the models
    folder), ``svd`` + ``checkpoint`` (an SVD img2vid folder and the released ``model.safetensors``),
    or ``tiny`` (small random weights, deterministic, labelled untrained). ``device`` defaults to
    CUDA, else MPS, else CPU; ``dtype`` to bf16/fp16 on GPUs and fp32 on the CPU. ``memory`` is a
    preset of :mod:`puppet_master.memory` (``high``, ``balanced``, ``low``; None picks one from
    the device's free memory); the plan used is ``pipe.memory_plan``.
    """
    sources = [name for name, given in (("model", model), ("svd/checkpoint", svd or checkpoint), ("tiny", tiny)) if given]
    if len(sources) > 1:
        raise ModelLoadError(f"give one model source, not {' and '.join(sources)}")
    if (svd is None) != (checkpoint is None):
        raise ModelLoadError("--svd DIR and --checkpoint FILE go together: the SVD folder and the released weights")
    if not sources:
        model = default_model()
        if model is None:
            raise ModelLoadError(NO_MODEL_MESSAGE)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)

    if tiny:
        from puppet_master.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline()
        if torch_dtype != torch.float32:
            pipe.to(dtype=torch_dtype)
    elif svd is not None:
        pipe = pipeline_from_svd(svd, checkpoint, dtype=torch_dtype)
    else:
        pipe = pipeline_from_folder(model, dtype=torch_dtype)

    try:
        plan, why = choose_preset(memory, torch_device)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from exc
    apply_memory_plan(pipe, plan, torch_device)
    pipe.memory_plan = plan
    logger.info("loaded %s pipeline on %s (%s); %s", sources[0] if sources else "default", torch_device,
                str(torch_dtype).removeprefix("torch."), why)
    return pipe
