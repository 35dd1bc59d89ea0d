"""SVD's cross-attention down/up blocks with Puppet-Master's per-layer drag modules.

In every layer: resnet -> drag modulation of the hidden state -> spatio-temporal transformer whose
cross-attention context is the image token followed by this layer's drag tokens.
"""

from __future__ import annotations

import torch
from diffusers.models.unets.unet_3d_blocks import (
    CrossAttnDownBlockSpatioTemporal,
    CrossAttnUpBlockSpatioTemporal,
)
from torch import nn

from .drag_modules import DragContext, DragEmbedder, DragTokenMLP

__all__ = ["DragCrossAttnDownBlock", "DragCrossAttnUpBlock"]


class _DragLayers:
    """Mixin: builds ``flow_convs`` and ``drag_token_mlps`` (one per layer) and runs one layer."""

    def __init__(
        self,
        *,
        num_drags: int,
        pos_embed_dim: int,
        drag_embedder_out_channels: tuple[int, ...],
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)  # the diffusers block that follows this mixin in the MRO
        self._add_drag_modules(
            kwargs["out_channels"], num_drags, pos_embed_dim, drag_embedder_out_channels, kwargs["cross_attention_dim"]
        )

    def _add_drag_modules(
        self,
        channels: int,
        num_drags: int,
        pos_embed_dim: int,
        drag_embedder_out_channels: tuple[int, ...],
        cross_attention_dim: int,
    ) -> None:
        layers = len(self.resnets)
        self.flow_convs = nn.ModuleList(
            DragEmbedder(6 * num_drags, 2 * channels, tuple(drag_embedder_out_channels)) for _ in range(layers)
        )
        self.drag_token_mlps = nn.ModuleList(
            DragTokenMLP(2 * pos_embed_dim + 2 * channels, cross_attention_dim) for _ in range(layers)
        )

    def _layer(
        self,
        index: int,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_only_indicator: torch.Tensor,
        drag_context: DragContext,
    ) -> torch.Tensor:
        def resnet_and_drags(hidden_states, temb, image_only_indicator):
            hidden_states = self.resnets[index](hidden_states, temb, image_only_indicator=image_only_indicator)
            return drag_context.modulate_and_tokens(
                hidden_states, self.flow_convs[index], self.drag_token_mlps[index]
            )

        if torch.is_grad_enabled() and self.gradient_checkpointing:
            hidden_states, context = self._gradient_checkpointing_func(
                resnet_and_drags, hidden_states, temb, image_only_indicator
            )
        else:
            hidden_states, context = resnet_and_drags(hidden_states, temb, image_only_indicator)
        return self.attentions[index](
            hidden_states,
            encoder_hidden_states=context,
            image_only_indicator=image_only_indicator,
            return_dict=False,
        )[0]


class DragCrossAttnDownBlock(_DragLayers, CrossAttnDownBlockSpatioTemporal):
    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        image_only_indicator: torch.Tensor,
        drag_context: DragContext,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        output_states = ()
        for index in range(len(self.resnets)):
            hidden_states = self._layer(index, hidden_states, temb, image_only_indicator, drag_context)
            output_states += (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            output_states += (hidden_states,)
        return hidden_states, output_states


class DragCrossAttnUpBlock(_DragLayers, CrossAttnUpBlockSpatioTemporal):
    def forward(
        self,
        hidden_states: torch.Tensor,
        res_hidden_states_tuple: tuple[torch.Tensor, ...],
        temb: torch.Tensor,
        image_only_indicator: torch.Tensor,
        drag_context: DragContext,
        upsample_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        for index in range(len(self.resnets)):
            skip = res_hidden_states_tuple[-1 - index]
            hidden_states = torch.cat([hidden_states, skip], dim=1)
            hidden_states = self._layer(index, hidden_states, temb, image_only_indicator, drag_context)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states
