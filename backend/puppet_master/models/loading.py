"""Loading weights: the authors' released checkpoint and Stable Video Diffusion's U-Net."""

from __future__ import annotations

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
    "load_released_state_dict",
    "unet_from_released",
    "unet_from_svd",
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


def load_released_state_dict(path: str | PathLike) -> dict[str, torch.Tensor]:
    """Read a released ``model.safetensors`` (or ``.ckpt``/``.bin``) and return U-Net keys.

    A ``model.`` prefix (as in the authors' file) is stripped; a missing or unreadable file is an
    error that names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Puppet-Master checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state)
    except Exception as error:  # corrupt/truncated files raise many different types
        raise ValueError(f"could not read the Puppet-Master checkpoint {path}: {error}") from error
    prefix = "model."
    if state and all(key.startswith(prefix) for key in state):
        state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


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
    return UNetSpatioTemporalConditionModel.from_pretrained(folder)


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


def unet_from_released(
    cls: type[PuppetMasterUNet], checkpoint: str | PathLike, **config
) -> PuppetMasterUNet:
    """Build ``cls`` (default: the released configuration) on the meta device and load ``checkpoint``
    with ``strict=True``, so no time or memory goes into a random initialisation first."""
    state = load_released_state_dict(checkpoint)
    with torch.device("meta"):
        model = cls(**config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ValueError(f"{checkpoint} is not a Puppet-Master U-Net checkpoint for this configuration: {error}") from error
    return model.eval()
