"""A temporal-decoder VAE whose group normalisation is configurable (the tiny trained model's VAE).

diffusers' ``AutoencoderKLTemporalDecoder`` (SVD's VAE) normalises with 32 groups everywhere. At
SVD's widths (128+ channels) each group holds several channels; at the tiny model's 32-64 channels a
group holds one or two, so every norm is an instance norm that removes each channel's own mean and
scale per image. ``norm_num_groups`` sets how many groups every norm layer has (the tiny VAE: 4,
which reconstructed with half the L1 of 32 groups after the same 300 steps; experiments/tiny_model/README.md).
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path

from diffusers import AutoencoderKLTemporalDecoder
from diffusers.configuration_utils import register_to_config

# a pipeline folder names this module for its VAE; diffusers' loader looks up ModelMixin in it
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401
from torch import nn


class TemporalVAE(AutoencoderKLTemporalDecoder):
    """``AutoencoderKLTemporalDecoder`` with ``norm_num_groups`` groups in every GroupNorm; same
    encoder, temporal decoder, parameters and API (32 groups builds exactly diffusers' model)."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        latent_channels: int = 4,
        sample_size: int = 32,
        scaling_factor: float = 0.18215,
        force_upcast: bool = True,
        norm_num_groups: int = 32,
    ):
        super().__init__(
            in_channels=in_channels, out_channels=out_channels, down_block_types=down_block_types,
            block_out_channels=block_out_channels, layers_per_block=layers_per_block,
            latent_channels=latent_channels, sample_size=sample_size, scaling_factor=scaling_factor,
            force_upcast=force_upcast,
        )
        if norm_num_groups < 1 or any(c % norm_num_groups for c in block_out_channels):
            raise ValueError(f"norm_num_groups {norm_num_groups} must divide every block width {block_out_channels}")
        for parent in list(self.modules()):
            for name, child in parent.named_children():
                if isinstance(child, nn.GroupNorm) and child.num_groups != norm_num_groups:
                    setattr(parent, name, nn.GroupNorm(norm_num_groups, child.num_channels, eps=child.eps,
                                                       affine=child.affine))


def load_vae(folder: str | PathLike, **kwargs) -> AutoencoderKLTemporalDecoder:
    """The VAE saved in ``folder``: a :class:`TemporalVAE` when its ``config.json`` names that class
    (SVD's own ``AutoencoderKLTemporalDecoder`` otherwise), so its group count is never lost."""
    config = Path(folder).expanduser() / "config.json"
    name = json.loads(config.read_text()).get("_class_name") if config.is_file() else None
    cls = TemporalVAE if name == TemporalVAE.__name__ else AutoencoderKLTemporalDecoder
    return cls.from_pretrained(Path(folder).expanduser(), **kwargs)
