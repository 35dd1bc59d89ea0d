"""The U-Net's attention processors: all-to-first spatial self-attention, and plain attention.

Every frame's queries attend to the keys and values of frame 0 of the same video. The spatial
transformer blocks see hidden states ``(batch * frames, tokens, channels)`` and cannot know the
number of frames, so the model sets ``processor.num_frames`` before each forward pass.

Both processors compute attention through :func:`attention`, which on the CPU runs it in float32
even under bf16 autocast: PyTorch's CPU kernels in half precision are far slower on this model's
short sequences (``benchmarks/attention_precision.py``: 12x for the temporal attention over 14
frames), and float32 is never much slower on the long ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

__all__ = ["AllToFirstAttnProcessor", "AllToFirstReferenceAttnProcessor", "PlainAttnProcessor", "attention"]


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """``scaled_dot_product_attention`` of ``(batch, heads, seq, d)`` tensors, in float32 on the CPU.

    The result has the query's dtype. On other devices this is the plain call.
    """
    if query.device.type != "cpu" or (query.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")):
        return F.scaled_dot_product_attention(query, key, value, scale=scale)
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(query.float(), key.float(), value.float(), scale=scale)
    return out.to(query.dtype)


class _FramesAwareProcessor:
    """Shared argument checks; ``num_frames`` is set by the model before each forward pass."""

    def __init__(self, num_frames: int | None = None) -> None:
        self.num_frames = num_frames

    def _split(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states, attention_mask):
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError(f"{type(self).__name__} is for self-attention only (no context, no mask)")
        if attn.spatial_norm is not None or attn.group_norm is not None or hidden_states.ndim != 3:
            raise ValueError(f"{type(self).__name__} expects plain self-attention on (batch*frames, tokens, channels)")
        if self.num_frames is None:
            raise RuntimeError(f"{type(self).__name__}.num_frames was not set by the model")
        batch_frames, tokens, channels = hidden_states.shape
        if batch_frames % self.num_frames:
            raise ValueError(f"{batch_frames} rows of hidden states are not a multiple of {self.num_frames} frames")
        return batch_frames // self.num_frames, tokens, channels

    @staticmethod
    def _heads(attn: Attention, x: torch.Tensor, batch: int) -> torch.Tensor:
        """(batch, seq, heads * d) -> (batch, heads, seq, d)"""
        return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

    @staticmethod
    def _finish(attn: Attention, out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class AllToFirstAttnProcessor(_FramesAwareProcessor):
    """All-to-first attention on ``scaled_dot_product_attention``, keys/values of frame 0 only.

    Attention rows are independent, so the queries of all frames of a video are laid end to end
    in one sequence ``(batch, heads, frames * tokens, d)`` that attends to frame 0's
    ``(batch, heads, tokens, d)``: no per-frame copies of keys or values are made.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        batch, tokens, channels = self._split(attn, hidden_states, encoder_hidden_states, attention_mask)
        first = hidden_states.view(batch, self.num_frames, tokens, channels)[:, 0]

        query = self._heads(attn, attn.to_q(hidden_states).view(batch, self.num_frames * tokens, -1), batch)
        key = self._heads(attn, attn.to_k(first), batch)
        value = self._heads(attn, attn.to_v(first), batch)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        out = attention(query, key, value, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch * self.num_frames, tokens, -1).to(query.dtype)
        return self._finish(attn, out, hidden_states)


class AllToFirstReferenceAttnProcessor(_FramesAwareProcessor):
    """The straightforward all-to-first attention: keys/values of every frame, then frame 0's copied.

    Kept as the baseline for tests and benchmarks; use :class:`AllToFirstAttnProcessor`.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        batch, tokens, _ = self._split(attn, hidden_states, encoder_hidden_states, attention_mask)
        frames = self.num_frames
        batch_frames = batch * frames

        def first_frame_everywhere(x: torch.Tensor) -> torch.Tensor:
            x = x.view(batch, frames, tokens, -1)[:, :1]
            return x.repeat(1, frames, 1, 1).view(batch_frames, tokens, -1)

        query = self._heads(attn, attn.to_q(hidden_states), batch_frames)
        key = self._heads(attn, first_frame_everywhere(attn.to_k(hidden_states)), batch_frames)
        value = self._heads(attn, first_frame_everywhere(attn.to_v(hidden_states)), batch_frames)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        out = attention(query, key, value, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch_frames, tokens, -1).to(query.dtype)
        return self._finish(attn, out, hidden_states)


class PlainAttnProcessor:
    """Self- or cross-attention as diffusers' ``AttnProcessor2_0`` computes it, through :func:`attention`.

    For the temporal self-attention and the cross-attentions of the spatio-temporal transformers:
    ``(batch, seq, channels)`` hidden states, no mask, no spatial or group norm.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if attention_mask is not None or attn.spatial_norm is not None or attn.group_norm is not None:
            raise ValueError("PlainAttnProcessor takes no attention mask, spatial norm or group norm")
        if hidden_states.ndim != 3:
            raise ValueError(f"PlainAttnProcessor expects (batch, seq, channels) hidden states, got {tuple(hidden_states.shape)}")
        batch = hidden_states.shape[0]
        context = hidden_states
        if encoder_hidden_states is not None:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
        query = _FramesAwareProcessor._heads(attn, attn.to_q(hidden_states), batch)
        key = _FramesAwareProcessor._heads(attn, attn.to_k(context), batch)
        value = _FramesAwareProcessor._heads(attn, attn.to_v(context), batch)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = attention(query, key, value, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[3]).to(query.dtype)
        return _FramesAwareProcessor._finish(attn, out, hidden_states)
