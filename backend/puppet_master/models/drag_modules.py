"""The two per-layer drag modules: modulation tower (adaptive norm) and drag-token MLP.

Released names: ``flow_convs.<layer>`` (``conv_in``, ``blocks.<i>``, ``conv_out``) and
``drag_token_mlps.<layer>`` (``Sequential(Linear, SiLU, Linear)``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .drag_encoding import active_drag_mask, encode_drags

__all__ = ["DragContext", "DragEmbedder", "DragTokenMLP", "sample_at_points", "sincos_2d_grid"]


class DragEmbedder(nn.Module):
    """Conv tower: drag encoding ``(*, 6K, h, w)`` -> ``(*, 2C, h, w)`` = (scale, shift).

    ``conv_in`` (6K -> c0), then for each step c_i -> c_i -> c_{i+1}, each 3x3 conv followed by
    SiLU, and a zero-initialised 3x3 ``conv_out`` to ``2C`` so training starts from SVD's behaviour.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)
        blocks = []
        for c_in, c_out in itertools.pairwise(channels):
            blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(encoding))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)


class DragTokenMLP(nn.Sequential):
    """``Linear(2 * pos_embed_dim + 2 * C -> D)``, SiLU, ``Linear(D -> D)``: one token per drag."""

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__(nn.Linear(in_features, dim), nn.SiLU(), nn.Linear(dim, dim))


def sincos_2d_grid(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """2D sine-cosine embedding of every cell of an ``height x width`` map -> ``(dim, height, width)``.

    A cell at column ``i``, row ``j`` gets ``[sin(i w), cos(i w), sin(j w), cos(j w)]`` with the
    ``dim / 4`` frequencies ``w_k = 10000 ** (-k / (dim / 4))`` (cell indices, not normalised).
    """
    if dim % 4:
        raise ValueError(f"pos_embed_dim must be a multiple of 4, got {dim}")
    quarter = dim // 4
    omega = 10000.0 ** (-torch.arange(quarter, dtype=torch.float64, device=device) / quarter)

    def axis(size: int) -> torch.Tensor:
        angles = torch.arange(size, dtype=torch.float64, device=device)[:, None] * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1).float()  # (size, dim/2)

    x = axis(width).T[:, None, :].expand(-1, height, -1)
    y = axis(height).T[:, :, None].expand(-1, -1, width)
    return torch.cat([x, y], dim=0)


def sample_at_points(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (border padding) of ``features`` ``(M, C, h, w)`` at ``points`` ``(M, P, 2)``
    in normalised [0, 1] (x, y) -> ``(M, P, C)``."""
    grid = (points * 2 - 1).unsqueeze(2).to(features.dtype)  # (M, P, 1, 2)
    sampled = F.grid_sample(
        features, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled.squeeze(-1).transpose(1, 2)


@dataclass
class DragContext:
    """What every drag layer needs in one forward pass; encodings and position grids cached per size.

    ``drags`` ``(B, N, K, 4)`` padded to the model's slots; ``image_token`` ``(B*N, 1, D)``.
    With ``share_identical_maps`` the modulation towers run once per distinct drag encoding:
    frames whose encodings are equal (every frame of an undragged or unconditional CFG sample,
    frames where the drags stand still) share one result, which is the same function, cheaper.
    """

    drags: torch.Tensor
    pos_embed_dim: int
    image_token: torch.Tensor
    share_identical_maps: bool = True
    _cache: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        batch, frames, slots, _ = self.drags.shape
        flat = self.drags.reshape(batch * frames, slots, 4)
        self.mask = active_drag_mask(flat)  # (B*N, K)
        self.points = torch.cat([flat[..., :2], flat[..., 2:]], dim=1)  # (B*N, 2K, 2): starts, then currents
        self.representatives = self.inverse = None
        if self.share_identical_maps:
            # a frame's encoding is a function of its drag rows and its video's final points
            final = self.drags[:, -1:, :, 2:].expand(batch, frames, slots, 2)
            keys = torch.cat([self.drags, final], dim=-1).reshape(batch * frames, -1)
            keys = torch.where(self.mask.repeat_interleave(6, dim=1), keys, torch.zeros_like(keys))
            # a (B*N, 6K) table: found on the CPU, where torch.unique(dim=...) exists on every backend
            unique, inverse = torch.unique(keys.cpu(), dim=0, return_inverse=True)
            if unique.shape[0] < keys.shape[0]:
                representatives = torch.empty(unique.shape[0], dtype=torch.long)
                representatives.scatter_(0, inverse, torch.arange(inverse.shape[0]))
                self.inverse = inverse.to(keys.device)
                self.representatives = representatives.to(keys.device)

    def _inputs(self, height: int, width: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Drag encoding ``(B*N or distinct, 6K, h, w)`` and point position embeddings ``(B*N, 2K, P)``."""
        key = (height, width, dtype)
        if key not in self._cache:
            encoding = encode_drags(self.drags, height, width).flatten(0, 1).to(dtype)
            if self.representatives is not None:
                encoding = encoding[self.representatives]
            grid = sincos_2d_grid(height, width, self.pos_embed_dim, self.drags.device)
            rows, count = self.points.shape[:2]
            position = sample_at_points(grid[None], self.points.reshape(1, rows * count, 2))
            self._cache[key] = encoding, position.reshape(rows, count, -1).to(dtype)
        return self._cache[key]

    def modulate_and_tokens(
        self, hidden_states: torch.Tensor, embedder: DragEmbedder, token_mlp: DragTokenMLP
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Adaptive norm ``h * (1 + scale) + shift``, and the context [image token, drag tokens]."""
        encoding, position = self._inputs(*hidden_states.shape[-2:], hidden_states.dtype)
        scale, shift = embedder(encoding).chunk(2, dim=1)
        scale = 1 + scale
        if self.inverse is not None:  # one row per distinct encoding -> one per frame
            scale, shift = scale[self.inverse], shift[self.inverse]
        hidden_states = torch.addcmul(shift, hidden_states, scale)

        # one token per drag from [feature at start, feature at current point, their positions]
        features = sample_at_points(hidden_states.detach(), self.points)  # (B*N, 2K, C)
        slots = self.mask.shape[1]
        token_input = torch.cat(
            [features[:, :slots], features[:, slots:], position[:, :slots], position[:, slots:]], dim=-1
        )
        tokens = token_mlp(token_input) * self.mask.unsqueeze(-1).to(hidden_states.dtype)
        return hidden_states, torch.cat([self.image_token, tokens], dim=1)
