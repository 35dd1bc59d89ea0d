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
_MAX_LISTED = 8


class ModelLoadError(RuntimeError):
    """A model source that cannot be loaded; the message names the file and what was expected."""


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


def _variant(folder: Path) -> str | None:
    """``"fp16"`` when a component folder only holds fp16-variant weights (a common partial download)."""
    names = [p.name for p in folder.glob("*.safetensors")] + [p.name for p in folder.glob("*.bin")]
    if names and all(".fp16." in n for n in names):
        return "fp16"
    return None


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


def _checkpoint_config(checkpoint: Path) -> dict:
    """The U-Net config stored in a safetensors file's metadata under ``config``, if any."""
    if checkpoint.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), "pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # truncated or not a safetensors file
        raise ModelLoadError(f"cannot read the checkpoint {checkpoint}: {exc}") from exc
    try:
        return json.loads(meta["config"]) if "config" in meta else {}
    except json.JSONDecodeError:
        return {}


def checkpoint_drag_settings(checkpoint: Path) -> dict:
    """The drag modules' sizes read off a released-layout checkpoint's own tensor shapes.

    From the first layer's modules: ``flow_convs.0.conv_in`` takes ``6 * num_drags`` channels and
    makes ``c0``; each pair of ``blocks`` steps to the next tower width; ``drag_token_mlps.0.0``
    takes ``2 * pos_embed_dim + 2 * C`` features, ``2 * C`` being ``conv_out``'s width. So any
    checkpoint in the released layout converts without drag flags. Empty when the file has no drag
    modules or is not safetensors (the caller's defaults then apply).
    """
    if checkpoint.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), "pt") as f:
            names = list(f.keys())
            shapes = {key.removeprefix("model."): tuple(f.get_slice(key).get_shape()) for key in names}
    except Exception as exc:  # truncated or not a safetensors file
        raise ModelLoadError(f"cannot read the checkpoint {checkpoint}: {exc}") from exc
    tower = next((k.removesuffix("conv_in.weight") for k in sorted(shapes) if k.endswith(".flow_convs.0.conv_in.weight")),
                 None)
    mlp = tower.replace(".flow_convs.0.", ".drag_token_mlps.0.") + "0.weight" if tower else None
    if tower is None or mlp not in shapes or f"{tower}conv_out.weight" not in shapes:
        return {}
    channels = [shapes[f"{tower}conv_in.weight"][0]]
    step = 1
    while f"{tower}blocks.{step}.weight" in shapes:
        channels.append(shapes[f"{tower}blocks.{step}.weight"][0])
        step += 2
    in_channels, two_c = shapes[f"{tower}conv_in.weight"][1], shapes[f"{tower}conv_out.weight"][0]
    if in_channels % 6 or (shapes[mlp][1] - two_c) % 2:
        return {}
    return {"num_drags": in_channels // 6, "pos_embed_dim": (shapes[mlp][1] - two_c) // 2,
            "drag_embedder_out_channels": tuple(channels)}


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _MAX_LISTED else "")


def describe_mismatch(expected: dict[str, tuple], found: dict[str, tuple]) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches between two ``name -> shape`` maps."""
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"{k} (checkpoint {list(found[k])}, model {list(expected[k])})"
        for k in sorted(set(expected) & set(found))
        if tuple(found[k]) != tuple(expected[k])
    ]
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {_listing(shapes)}")
    return problems


def load_released_unet(checkpoint: str | PathLike, config: dict, dtype: torch.dtype = torch.float32):
    """Build the U-Net from ``config`` without initialising it and load ``checkpoint`` strictly.

    Raises :class:`ModelLoadError` naming the file and the missing/unexpected keys or shape
    mismatches when the checkpoint does not fit.
    """
    from puppet_master.models.loading import load_released_state_dict
    from puppet_master.models.unet import PuppetMasterUNet

    checkpoint = Path(checkpoint).expanduser()
    try:
        state = load_released_state_dict(checkpoint)
    except (FileNotFoundError, ValueError) as exc:
        raise ModelLoadError(str(exc)) from exc
    try:
        with torch.device("meta"):
            unet = PuppetMasterUNet(**config)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"invalid U-Net configuration {config}: {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    problems = describe_mismatch(expected, {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise ModelLoadError(
            f"{checkpoint} does not fit the Puppet-Master U-Net (config {json.dumps(config, sort_keys=True)}): "
            + "; ".join(problems)
            + ". Is it the released Puppet-Master model.safetensors, and do the drag settings match?"
        )
    unet.load_state_dict(state, strict=True, assign=True)
    if any(p.dtype != dtype for p in unet.parameters()):
        unet.to(dtype)
    return unet.eval()


def pipeline_from_svd(
    svd: str | PathLike, checkpoint: str | PathLike, *, dtype: torch.dtype = torch.float32, **drag_settings
):
    """SVD img2vid's VAE, CLIP encoder, feature extractor and scheduler + the released U-Net weights."""
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from puppet_master.models.vae import load_vae
    from puppet_master.pipeline import PuppetMasterPipeline

    folder = check_svd_folder(svd)
    checkpoint = _require(Path(checkpoint).expanduser(), "the released Puppet-Master model.safetensors")
    config = {**checkpoint_drag_settings(checkpoint), **_checkpoint_config(checkpoint),
              **{k: v for k, v in drag_settings.items() if v is not None}}
    unet = load_released_unet(checkpoint, unet_config_from_svd(folder, **config), dtype)
    try:
        vae = load_vae(folder / "vae", dtype=dtype, variant=_variant(folder / "vae"))
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            folder / "image_encoder", dtype=dtype, variant=_variant(folder / "image_encoder")
        )
        feature_extractor = CLIPImageProcessor.from_pretrained(folder / "feature_extractor")
        scheduler = EulerDiscreteScheduler.from_pretrained(folder / "scheduler")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load Stable Video Diffusion from {folder}: {exc}") from exc
    return PuppetMasterPipeline(
        vae=vae.eval(), image_encoder=image_encoder.eval(), unet=unet, scheduler=scheduler,
        feature_extractor=feature_extractor,
    )


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
    cpu_offload: bool = False,
):
    """Load a :class:`~puppet_master.pipeline.PuppetMasterPipeline` ready to run.

    Exactly one source: ``model`` (a folder written by ``convert``, or its name under the models
    folder), ``svd`` + ``checkpoint`` (an SVD img2vid folder and the released ``model.safetensors``),
    or ``tiny`` (small random weights, deterministic, labelled untrained). ``device`` defaults to
    CUDA, else MPS, else CPU; ``dtype`` to bf16/fp16 on GPUs and fp32 on the CPU. ``cpu_offload``
    keeps each model on the CPU until it runs (CUDA only; less GPU memory, slower).
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

    if cpu_offload and torch_device.type == "cuda":
        pipe.enable_model_cpu_offload(device=torch_device)
    else:
        if cpu_offload:
            logger.warning("CPU offload only applies to CUDA; running everything on %s", torch_device)
        pipe.to(torch_device)
    logger.info("loaded %s pipeline on %s (%s)", sources[0] if sources else "default", torch_device, torch_dtype)
    return pipe
