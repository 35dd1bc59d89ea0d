"""The U-Net's weights: the authors' released single-file checkpoint and Stable Video Diffusion's U-Net.

This module is the one place the released checkpoint is read. :func:`load_released_unet` builds the
U-Net on the meta device (no time or memory spent on a random initialisation) and loads the file
with ``strict=True``; a ``model.`` prefix, as in the authors' file, is stripped; the drag modules'
sizes come from the file's own shapes (:func:`checkpoint_drag_settings`). The pipeline loader,
``convert``, ``download`` and training's model builder all come through here.
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .unet import PuppetMasterUNet

__all__ = [
    "DRAG_MODULE_NAMES",
    "SVD_ONLY_PREFIXES",
    "ModelLoadError",
    "checkpoint_config",
    "checkpoint_drag_settings",
    "describe_mismatch",
    "load_released_state_dict",
    "load_released_unet",
    "unet_from_svd",
    "weight_variant",
]

DRAG_MODULE_NAMES = (".flow_convs.", ".drag_token_mlps.")
# SVD's fps / motion-bucket embedding, absent from Puppet-Master
SVD_ONLY_PREFIXES = ("add_embedding.",)
# the SVD config keys that shape the U-Net and carry over
_SVD_ARCH_KEYS = (
    "in_channels",
    "out_channels",
    "down_block_types",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "cross_attention_dim",
    "transformer_layers_per_block",
    "num_attention_heads",
)
_PREFIX = "model."
_MAX_LISTED = 8


class ModelLoadError(RuntimeError):
    """A model source that cannot be loaded; the message names the file and what was expected."""


def weight_variant(folder: str | PathLike) -> str | None:
    """``"fp16"`` when a component folder holds only fp16-variant weights (what ``download`` fetches)."""
    folder = Path(folder)
    names = [p.name for p in folder.glob("*.safetensors")] + [p.name for p in folder.glob("*.bin")]
    if names and all(".fp16." in n for n in names):
        return "fp16"
    return None


# ---------------------------------------------------------------------------- the released checkpoint
def load_released_state_dict(path: str | PathLike) -> dict[str, torch.Tensor]:
    """Read a released ``model.safetensors`` (or ``.ckpt``/``.bin``) and return its U-Net keys.

    A ``model.`` prefix is stripped. A missing or unreadable file is a :class:`ModelLoadError` that
    names the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"Puppet-Master checkpoint not found: {path} (run `puppet-master download`, or give "
                             "the released model.safetensors)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
    except Exception as error:  # corrupt/truncated files raise many different types
        raise ModelLoadError(f"could not read the Puppet-Master checkpoint {path}: {error}") from error
    if state and all(key.startswith(_PREFIX) for key in state):
        state = {key[len(_PREFIX) :]: value for key, value in state.items()}
    return state


def _safetensors_header(checkpoint: Path) -> tuple[dict, dict[str, tuple]]:
    """The metadata and ``name -> shape`` of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(checkpoint), "pt") as f:
            meta = f.metadata() or {}
            shapes = {key.removeprefix(_PREFIX): tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as exc:  # truncated or not a safetensors file
        raise ModelLoadError(f"cannot read the checkpoint {checkpoint}: {exc}") from exc
    return meta, shapes


def checkpoint_config(checkpoint: str | PathLike) -> dict:
    """The U-Net config stored in a safetensors file's metadata under ``config``, if any."""
    checkpoint = Path(checkpoint)
    if checkpoint.suffix != ".safetensors":
        return {}
    meta, _ = _safetensors_header(checkpoint)
    try:
        return json.loads(meta["config"]) if "config" in meta else {}
    except json.JSONDecodeError:
        return {}


def checkpoint_drag_settings(checkpoint: str | PathLike) -> dict:
    """The drag modules' sizes read off a released-layout checkpoint's own tensor shapes.

    From the first layer's modules: ``flow_convs.0.conv_in`` takes ``6 * num_drags`` channels and
    makes ``c0``; each pair of ``blocks`` steps to the next tower width; ``drag_token_mlps.0.0``
    takes ``2 * pos_embed_dim + 2 * C`` features, ``2 * C`` being ``conv_out``'s width. So any
    checkpoint in the released layout converts without drag flags. Empty when the file has no drag
    modules or is not safetensors (the caller's defaults then apply).
    """
    checkpoint = Path(checkpoint)
    if checkpoint.suffix != ".safetensors":
        return {}
    _, shapes = _safetensors_header(checkpoint)
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


def load_released_unet(
    checkpoint: str | PathLike, config: dict | None = None, dtype: torch.dtype | None = None,
    cls: type[PuppetMasterUNet] | None = None,
) -> PuppetMasterUNet:
    """Build the U-Net from ``config`` (default: the class's, which is the released one) with the
    drag sizes of the file, on the meta device, and load ``checkpoint`` strictly.

    Raises :class:`ModelLoadError` naming the file and the missing/unexpected keys or shape
    mismatches when the checkpoint does not fit. ``dtype`` None keeps the file's dtype.
    """
    if cls is None:
        from .unet import PuppetMasterUNet

        cls = PuppetMasterUNet
    checkpoint = Path(checkpoint).expanduser()
    state = load_released_state_dict(checkpoint)
    config = {**checkpoint_drag_settings(checkpoint), **(config or {})}
    try:
        with torch.device("meta"):
            unet = cls(**config)
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
    if dtype is not None and any(p.dtype != dtype for p in unet.parameters()):
        unet.to(dtype)
    return unet.eval()


# ---------------------------------------------------------------------------- SVD's U-Net (training init)
def _load_svd(svd_unet: str | PathLike | nn.Module) -> nn.Module:
    from diffusers import UNetSpatioTemporalConditionModel

    if isinstance(svd_unet, nn.Module):
        return svd_unet
    folder = Path(svd_unet)
    if (folder / "unet" / "config.json").is_file():  # a whole pipeline folder
        folder = folder / "unet"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no SVD U-Net at {folder}: expected a diffusers folder with config.json and weights "
            "(the `unet` folder of stable-video-diffusion-img2vid, or the pipeline folder above it)"
        )
    return UNetSpatioTemporalConditionModel.from_pretrained(folder, variant=weight_variant(folder))


def unet_from_svd(
    cls: type[PuppetMasterUNet], svd_unet: str | PathLike | nn.Module, **config_overrides
) -> PuppetMasterUNet:
    """Build ``cls`` with the SVD U-Net's architecture (plus overrides) and copy every SVD weight."""
    svd = _load_svd(svd_unet)
    config = {key: svd.config[key] for key in _SVD_ARCH_KEYS if key in svd.config}
    config.update(config_overrides)
    model = cls(**config)

    svd_state = {k: v for k, v in svd.state_dict().items() if not k.startswith(SVD_ONLY_PREFIXES)}
    try:
        result = model.load_state_dict(svd_state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(f"the SVD U-Net's weights do not fit the Puppet-Master U-Net: {error}") from error
    missing = [k for k in result.missing_keys if not any(name in k for name in DRAG_MODULE_NAMES)]
    if missing or result.unexpected_keys:
        raise ValueError(
            "the SVD U-Net does not match the Puppet-Master architecture: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}"
        )
    dtype = next(svd.parameters()).dtype
    return model if dtype == model.dtype else model.to(dtype)
