"""PuppetMasterUNet: SVD's spatio-temporal U-Net with drag modulation, drag tokens and all-to-first attention.

Parameter names equal the authors' released checkpoint, so ``load_state_dict(released, strict=True)``
works; :meth:`PuppetMasterUNet.from_svd` starts from Stable Video Diffusion's U-Net weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from typing import ClassVar

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_3d_blocks import (
    DownBlockSpatioTemporal,
    UNetMidBlockSpatioTemporal,
    UpBlockSpatioTemporal,
)
from diffusers.utils import BaseOutput
from torch import nn

from .attention import AllToFirstAttnProcessor, PlainAttnProcessor
from .blocks import DragCrossAttnDownBlock, DragCrossAttnUpBlock
from .drag_encoding import check_drags, pad_drags
from .drag_modules import DragContext

__all__ = ["PuppetMasterUNet", "PuppetMasterUNetOutput"]

_CROSS_DOWN, _PLAIN_DOWN = "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"
_CROSS_UP, _PLAIN_UP = "CrossAttnUpBlockSpatioTemporal", "UpBlockSpatioTemporal"


@dataclass
class PuppetMasterUNetOutput(BaseOutput):
    """``sample``: the network output ``(batch, frames, 4, height, width)`` (EDM ``F_theta``)."""

    sample: torch.Tensor = None


def _per_block(value, count: int, name: str) -> tuple:
    if isinstance(value, int):
        return (value,) * count
    if len(value) != count:
        raise ValueError(f"`{name}` has {len(value)} entries but there are {count} blocks (`block_out_channels`)")
    return tuple(value)


class PuppetMasterUNet(ModelMixin, AttentionMixin, ConfigMixin):
    r"""Puppet-Master's U-Net (Li et al. 2024) on diffusers' SVD building blocks.

    Parameters:
        in_channels: noisy latent (4) + first-frame latent (4) channels.
        out_channels: output latent channels.
        down_block_types / up_block_types: SVD's blocks; the cross-attention ones carry the drag modules.
        block_out_channels: channels of each resolution level.
        layers_per_block: resnet(+transformer) layers per down block (up blocks have one more).
        cross_attention_dim: width of the image token and of the drag tokens.
        transformer_layers_per_block: transformer blocks per spatio-temporal transformer.
        num_attention_heads: heads per level.
        num_frames: frames the model was trained with (any number works at inference).
        num_drags: drag slots K_max (the drag encoding has ``6 * num_drags`` channels).
        pos_embed_dim: size of the 2D sin-cos position embedding of a drag point.
        drag_embedder_out_channels: channels of the drag modulation conv tower.
    """

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns: ClassVar[list[str]] = ["time_embedding", "norm"]

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 8,
        out_channels: int = 4,
        down_block_types: tuple[str, ...] = (_CROSS_DOWN, _CROSS_DOWN, _CROSS_DOWN, _PLAIN_DOWN),
        up_block_types: tuple[str, ...] = (_PLAIN_UP, _CROSS_UP, _CROSS_UP, _CROSS_UP),
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int | tuple[int, ...] = 2,
        cross_attention_dim: int = 1024,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        num_attention_heads: int | tuple[int, ...] = (5, 10, 20, 20),
        num_frames: int = 14,
        num_drags: int = 5,
        pos_embed_dim: int = 64,
        drag_embedder_out_channels: tuple[int, ...] = (256, 320, 320),
    ):
        super().__init__()
        # 1. check the configuration
        levels = len(block_out_channels)
        if len(down_block_types) != levels or len(up_block_types) != levels:
            raise ValueError(
                f"`down_block_types` ({len(down_block_types)}) and `up_block_types` ({len(up_block_types)}) "
                f"must have one entry per `block_out_channels` entry ({levels})"
            )
        unknown = set(down_block_types) - {_CROSS_DOWN, _PLAIN_DOWN} | set(up_block_types) - {_CROSS_UP, _PLAIN_UP}
        if unknown:
            raise ValueError(f"unsupported block types {sorted(unknown)}")
        if not isinstance(cross_attention_dim, int):
            raise ValueError(f"`cross_attention_dim` must be one int (drag tokens share it), got {cross_attention_dim}")
        heads = _per_block(num_attention_heads, levels, "num_attention_heads")
        layers = _per_block(layers_per_block, levels, "layers_per_block")
        transformer_layers = _per_block(transformer_layers_per_block, levels, "transformer_layers_per_block")
        for channels, head in zip(block_out_channels, heads, strict=True):
            if channels % head:
                raise ValueError(f"block_out_channels {channels} is not divisible by num_attention_heads {head}")
        if num_drags < 1 or pos_embed_dim % 4 or not drag_embedder_out_channels:
            raise ValueError(
                f"need num_drags >= 1 (got {num_drags}), pos_embed_dim a multiple of 4 (got {pos_embed_dim}) "
                f"and at least one drag_embedder_out_channels entry (got {drag_embedder_out_channels})"
            )
        drag_kwargs = {
            "num_drags": num_drags,
            "pos_embed_dim": pos_embed_dim,
            "drag_embedder_out_channels": tuple(drag_embedder_out_channels),
        }

        # 2. input and time embedding (no fps / motion-bucket embedding in Puppet-Master)
        self.conv_in = nn.Conv2d(in_channels, block_out_channels[0], kernel_size=3, padding=1)
        time_embed_dim = block_out_channels[0] * 4
        self.time_proj = Timesteps(block_out_channels[0], True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(block_out_channels[0], time_embed_dim)

        # 3. down blocks
        self.down_blocks = nn.ModuleList()
        output_channel = block_out_channels[0]
        for i, block_type in enumerate(down_block_types):
            input_channel, output_channel = output_channel, block_out_channels[i]
            common = {
                "in_channels": input_channel,
                "out_channels": output_channel,
                "temb_channels": time_embed_dim,
                "num_layers": layers[i],
                "add_downsample": i < levels - 1,
            }
            if block_type == _CROSS_DOWN:
                block = DragCrossAttnDownBlock(
                    **common,
                    **drag_kwargs,
                    transformer_layers_per_block=transformer_layers[i],
                    cross_attention_dim=cross_attention_dim,
                    num_attention_heads=heads[i],
                )
            else:
                block = DownBlockSpatioTemporal(**common)
            self.down_blocks.append(block)

        # 4. mid block
        self.mid_block = UNetMidBlockSpatioTemporal(
            block_out_channels[-1],
            temb_channels=time_embed_dim,
            transformer_layers_per_block=transformer_layers[-1],
            cross_attention_dim=cross_attention_dim,
            num_attention_heads=heads[-1],
        )

        # 5. up blocks
        self.up_blocks = nn.ModuleList()
        reversed_channels = list(reversed(block_out_channels))
        output_channel = reversed_channels[0]
        for i, block_type in enumerate(up_block_types):
            prev_output_channel, output_channel = output_channel, reversed_channels[i]
            common = {
                "in_channels": reversed_channels[min(i + 1, levels - 1)],
                "out_channels": output_channel,
                "prev_output_channel": prev_output_channel,
                "temb_channels": time_embed_dim,
                "resolution_idx": i,
                "num_layers": layers[levels - 1 - i] + 1,
                "add_upsample": i < levels - 1,
            }
            if block_type == _CROSS_UP:
                block = DragCrossAttnUpBlock(
                    **common,
                    **drag_kwargs,
                    transformer_layers_per_block=transformer_layers[levels - 1 - i],
                    cross_attention_dim=cross_attention_dim,
                    num_attention_heads=heads[levels - 1 - i],
                )
            else:
                block = UpBlockSpatioTemporal(**common)
            self.up_blocks.append(block)
        self.num_upsamplers = levels - 1

        # 6. output
        self.conv_norm_out = nn.GroupNorm(num_channels=block_out_channels[0], num_groups=32, eps=1e-5)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(block_out_channels[0], out_channels, kernel_size=3, padding=1)

        # 7. all-to-first attention in every spatial self-attention
        self.set_attn_processor(self.default_attn_processors())
        # run the modulation towers once per distinct drag encoding (same outputs, less work)
        self.share_identical_drag_maps = True

    # ------------------------------------------------------------------ attention processors
    def spatial_self_attention_names(self) -> list[str]:
        """Processor keys of the spatial self-attentions (``attn1`` of the spatial transformer blocks)."""
        return [name for name in self.attn_processors if ".transformer_blocks." in name and ".attn1." in name]

    def default_attn_processors(self, all_to_first_cls: type = AllToFirstAttnProcessor) -> dict:
        """All-to-first processors on the spatial self-attentions, plain attention everywhere else."""
        spatial = set(self.spatial_self_attention_names())
        return {
            name: all_to_first_cls() if name in spatial else PlainAttnProcessor() for name in self.attn_processors
        }

    def set_attn_processor(self, processor) -> None:
        super().set_attn_processor(processor)
        self._frame_aware_processors = None

    def _set_num_frames(self, num_frames: int) -> None:
        """Tell the processors that need it (all-to-first) how many frames a video has."""
        if getattr(self, "_frame_aware_processors", None) is None:
            modules = [m for m in self.modules() if hasattr(m, "get_processor")]
            self._frame_aware_processors = [m for m in modules if hasattr(m.get_processor(), "num_frames")]
        for module in self._frame_aware_processors:
            module.get_processor().num_frames = num_frames

    # ------------------------------------------------------------------ forward
    def check_inputs(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        image_latents: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        drags: torch.Tensor,
    ) -> None:
        """Raise a clear error for any input of the wrong type, shape, dtype or with NaN/inf values."""
        tensors = {"sample": sample, "image_latents": image_latents, "encoder_hidden_states": encoder_hidden_states}
        for name, value in tensors.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
            if not value.is_floating_point():
                raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {value.dtype}")
        latent_channels = self.config.in_channels // 2
        if sample.ndim != 5 or sample.shape[2] != latent_channels:
            raise ValueError(
                f"`sample` must have shape (batch, frames, {latent_channels}, height, width), got {tuple(sample.shape)}"
            )
        batch, frames, _, height, width = sample.shape
        if image_latents.shape != (batch, self.config.in_channels - latent_channels, height, width):
            raise ValueError(
                f"`image_latents` must have shape {(batch, self.config.in_channels - latent_channels, height, width)} "
                f"to match `sample` {tuple(sample.shape)}, got {tuple(image_latents.shape)}"
            )
        expected_ehs = (batch, 1, self.config.cross_attention_dim)
        if encoder_hidden_states.shape != expected_ehs:
            raise ValueError(
                f"`encoder_hidden_states` must have shape {expected_ehs}, got {tuple(encoder_hidden_states.shape)}"
            )
        check_drags(drags, self.config.num_drags)
        if drags.shape[:2] != (batch, frames):
            raise ValueError(
                f"`drags` must have shape ({batch}, {frames}, K, 4) to match `sample`, got {tuple(drags.shape)}"
            )
        timestep = torch.as_tensor(timestep)
        if timestep.ndim > 1 or (timestep.ndim == 1 and timestep.shape[0] not in (1, batch)):
            raise ValueError(f"`timestep` must be a scalar or have shape ({batch},), got {tuple(timestep.shape)}")
        for name, value in {**tensors, "timestep": timestep}.items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise ValueError(f"`{name}` contains NaN or infinite values")

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        image_latents: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        drags: torch.Tensor,
        return_dict: bool = True,
    ) -> PuppetMasterUNetOutput | tuple[torch.Tensor]:
        r"""Predict ``F_theta`` for a batch of noisy latent videos.

        Args:
            sample: noisy latents already scaled by ``c_in``, ``(batch, frames, 4, height, width)``.
            timestep: ``c_noise = 0.25 * ln(sigma)``, a scalar or ``(batch,)``.
            image_latents: the first frame's VAE latent ``(batch, 4, height, width)``, joined to every frame.
            encoder_hidden_states: the CLIP image embedding ``(batch, 1, cross_attention_dim)``.
            drags: ``(batch, frames, K, 4)`` with ``K <= num_drags``; all-zero rows are unused slots.
            return_dict: return a :class:`PuppetMasterUNetOutput` instead of a tuple.
        """
        # 1. check inputs
        self.check_inputs(sample, timestep, image_latents, encoder_hidden_states, drags)
        batch, frames = sample.shape[:2]
        dtype = self.conv_in.weight.dtype

        # 2. time embedding
        timesteps = torch.as_tensor(timestep, device=sample.device).float().reshape(-1).expand(batch)
        emb = self.time_embedding(self.time_proj(timesteps).to(dtype))
        emb = emb.repeat_interleave(frames, dim=0, output_size=batch * frames)

        # 3. inputs: first-frame latent joined to every frame, frames folded into the batch
        image = image_latents.unsqueeze(1).expand(-1, frames, -1, -1, -1)
        hidden = torch.cat([sample, image], dim=2).flatten(0, 1).to(dtype)
        image_token = encoder_hidden_states.to(dtype).repeat_interleave(frames, dim=0, output_size=batch * frames)
        drag_context = DragContext(
            pad_drags(drags.float(), self.config.num_drags),
            self.config.pos_embed_dim,
            image_token,
            share_identical_maps=self.share_identical_drag_maps,
        )
        image_only_indicator = torch.zeros(batch, frames, dtype=dtype, device=sample.device)
        self._set_num_frames(frames)

        # 4. down
        hidden = self.conv_in(hidden)
        skips = (hidden,)
        for block in self.down_blocks:
            if isinstance(block, DragCrossAttnDownBlock):
                hidden, states = block(hidden, emb, image_only_indicator, drag_context)
            else:
                hidden, states = block(hidden, temb=emb, image_only_indicator=image_only_indicator)
            skips += states

        # 5. mid
        hidden = self.mid_block(
            hidden, temb=emb, encoder_hidden_states=image_token, image_only_indicator=image_only_indicator
        )

        # 6. up (sizes that are not multiples of 2**num_upsamplers upsample to the skip's size)
        factor = 2**self.num_upsamplers
        forward_upsample_size = sample.shape[-2] % factor != 0 or sample.shape[-1] % factor != 0
        for i, block in enumerate(self.up_blocks):
            states, skips = skips[-len(block.resnets) :], skips[: -len(block.resnets)]
            last = i == len(self.up_blocks) - 1
            upsample_size = skips[-1].shape[2:] if forward_upsample_size and not last else None
            if isinstance(block, DragCrossAttnUpBlock):
                hidden = block(hidden, states, emb, image_only_indicator, drag_context, upsample_size)
            else:
                hidden = block(
                    hidden,
                    res_hidden_states_tuple=states,
                    temb=emb,
                    image_only_indicator=image_only_indicator,
                    upsample_size=upsample_size,
                )

        # 7. output
        hidden = self.conv_out(self.conv_act(self.conv_norm_out(hidden)))
        hidden = hidden.reshape(batch, frames, *hidden.shape[1:])
        if not return_dict:
            return (hidden,)
        return PuppetMasterUNetOutput(sample=hidden)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_svd(cls, svd_unet: str | PathLike | nn.Module, **config_overrides) -> PuppetMasterUNet:
        """Build a Puppet-Master U-Net from an SVD U-Net (folder in diffusers layout or model).

        Every SVD weight is copied; the drag modules keep their initialisation (zero output convs).
        """
        from .loading import unet_from_svd

        return unet_from_svd(cls, svd_unet, **config_overrides)

    @classmethod
    def from_released(cls, checkpoint: str | PathLike, **config) -> PuppetMasterUNet:
        """Load the authors' released ``model.safetensors`` (strict names and shapes) into a new model.

        ``config`` overrides the default (released) configuration; the drag sizes come from the file.
        """
        from .loading import load_released_unet

        return load_released_unet(checkpoint, config, cls=cls)
