"""The tiny trained model's own VAE and image encoder: configurations, data and losses.

The VAE is ``puppet_master.models.vae.TemporalVAE`` (SVD's ``AutoencoderKLTemporalDecoder`` with 4
norm groups instead of 32, which over 32-64 channels normalise each channel on its own) at four
levels, like SVD's: 256x256 frames <-> 32 x 32 x 8 latents. A 16 x 16 grid cannot carry part motion
whatever its channels: the true held-out videos through a 16 x 16 grid (``evaluate_parts --methods
resample16``) keep Motion Error at the drag origins only 16% below the "static" baseline, through a
32 x 32 grid 60% below (experiments/tiny_model/README.md). The image encoder is a small ``CLIPVisionModelWithProjection`` whose
projection width is the U-Net's ``cross_attention_dim``.
Both are trained from scratch on rendered clips by ``experiments/tiny_model/train_tiny_components.py``.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dataset_tools import clip_folder
from puppet_master.edm import VAE_SCALING_FACTOR

TINY_CROSS_ATTENTION_DIM = 64
VAE_CONFIG = {
    "block_out_channels": (32, 64, 64, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "layers_per_block": 1,
    "latent_channels": 8,
    "norm_num_groups": 4,
}
CLIP_SIZE = 64
CLIP_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "image_size": CLIP_SIZE,
    "patch_size": 8,
    "projection_dim": TINY_CROSS_ATTENTION_DIM,
}
#: side of the RGB thumbnail the image encoder's embedding is trained to predict
THUMBNAIL = 8


def build_vae(seed: int = 0, latent_channels: int | None = None):
    from puppet_master.models.vae import TemporalVAE

    torch.manual_seed(seed)
    config = dict(VAE_CONFIG, **({"latent_channels": latent_channels} if latent_channels else {}))
    return TemporalVAE(**config)


def build_image_encoder(seed: int = 0):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_CONFIG))


def build_feature_extractor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE})


# ------------------------------------------------------------------------------------------- data
class FrameSource:
    """Random runs of consecutive frames (one view of one clip) from render clip folders."""

    def __init__(self, roots: list[str | Path], resolution: int = 256):
        self.resolution = resolution
        self._memory: dict[tuple[Path, int, int], torch.Tensor] = {}
        self.views: list[tuple[Path, int, list[int]]] = []
        for root in roots:
            for folder in clip_folder.find_clips(root, need_tracks=False):
                for view_dir in sorted(folder.glob("view_*")):
                    frames = sorted(int(p.stem) for p in view_dir.glob("*.png"))
                    if frames:
                        self.views.append((folder, int(view_dir.name.split("_")[1]), frames))
        if not self.views:
            raise ValueError(f"no rendered frames under {', '.join(map(str, roots))}")

    def __len__(self) -> int:
        return len(self.views)

    def _read(self, key: tuple[Path, int, int]) -> torch.Tensor:
        from training.cache_latents import composite_on_white

        folder, view, frame = key
        with Image.open(folder / clip_folder.FRAME_NAME.format(view=view, frame=frame)) as im:
            rgb = composite_on_white(im, self.resolution)
        return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)

    def preload(self, threads: int = 16, progress: bool = True) -> None:
        """Decode every frame once and keep it in memory (uint8): a GPU steps faster than PNGs decode."""
        from concurrent.futures import ThreadPoolExecutor

        from tqdm import tqdm

        keys = [(folder, view, f) for folder, view, frames in self.views for f in frames]
        with ThreadPoolExecutor(threads) as pool:
            for key, frame in tqdm(zip(keys, pool.map(self._read, keys), strict=True), total=len(keys),
                                   desc="frames", unit="frame", disable=not progress):
                self._memory[key] = frame

    def load(self, folder: Path, view: int, frame: int) -> torch.Tensor:
        key = (folder, view, frame)
        pixels = self._memory[key] if key in self._memory else self._read(key)
        return pixels.float() / 127.5 - 1.0

    def run(self, rng: random.Random, length: int, crop: int | None = None) -> torch.Tensor:
        """``(length, 3, H, W)`` consecutive frames in [-1, 1] of a random clip view, optionally a
        random ``crop`` x ``crop`` window of them (same window in every frame; cheaper steps)."""
        folder, view, frames = self.views[rng.randrange(len(self.views))]
        start = rng.randrange(max(1, len(frames) - length + 1))
        chosen = frames[start : start + length]
        chosen += [chosen[-1]] * (length - len(chosen))
        video = torch.stack([self.load(folder, view, f) for f in chosen])
        if crop is not None and crop < self.resolution:
            y, x = rng.randrange(self.resolution - crop + 1), rng.randrange(self.resolution - crop + 1)
            video = video[..., y : y + crop, x : x + crop]
        return video

    def runs(self, rng: random.Random, count: int, length: int, crop: int | None = None) -> torch.Tensor:
        """``count`` videos of :meth:`run` concatenated along the frame axis: ``(count * length, 3, H, W)``."""
        return torch.cat([self.run(rng, length, crop) for _ in range(count)])

    def firsts(self, rng: random.Random, count: int) -> torch.Tensor:
        """``(count, 3, H, W)`` first frames of random clip views (what the image encoder sees)."""
        picks = [self.views[rng.randrange(len(self.views))] for _ in range(count)]
        return torch.stack([self.load(folder, view, frames[0]) for folder, view, frames in picks])


# ------------------------------------------------------------------------------------------- losses
def foreground_weight(x: torch.Tensor, weight: float = 4.0) -> torch.Tensor:
    """1 on the white background, ``1 + weight`` on the object (pixels darker than 0.96 white)."""
    fg = (x < 0.92).any(dim=1, keepdim=True).float()
    return 1.0 + weight * F.max_pool2d(fg, 5, stride=1, padding=2)


def chroma_error(recon: torch.Tensor, frames: torch.Tensor, pool: int = 8) -> torch.Tensor:
    """Foreground-weighted L1 between the colours (RGB minus its grey level) of ``pool`` x ``pool``
    means of two batches of frames: zero for any change of brightness alone."""
    def chroma(x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, pool)
        return x - x.mean(dim=1, keepdim=True)

    weight = F.avg_pool2d(foreground_weight(frames), pool)
    return ((chroma(recon) - chroma(frames)).abs() * weight).mean()


def vae_loss(vae, frames: torch.Tensor, kl_weight: float, num_frames: int | None = None,
             chroma_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Foreground-weighted L1 reconstruction + ``kl_weight`` x KL of runs of frames: one video, or
    several of ``num_frames`` frames each concatenated along the first axis; plus ``chroma_weight``
    x :func:`chroma_error`. Without that term a short run learns brightness only: colour moves the
    per-pixel L1 little next to shape and shading (the first GPU VAE's latents held no colour)."""
    dist = vae.encode(frames).latent_dist
    z = dist.sample()
    recon = vae.decode(z, num_frames=num_frames or len(frames)).sample
    l1 = ((recon - frames).abs() * foreground_weight(frames)).mean()
    kl = dist.kl().mean() / z[0].numel()
    chroma = chroma_error(recon, frames)
    loss = l1 + kl_weight * kl + chroma_weight * chroma
    return loss, {"l1": l1.item(), "kl": kl.item(), "chroma": chroma.item()}


def clip_pixels(pixels: torch.Tensor, feature_extractor) -> torch.Tensor:
    """Frames in [-1, 1] -> the image encoder's input, as ``PuppetMasterPipeline.encode_image_embeddings``."""
    crop = feature_extractor.crop_size
    size = (crop, crop) if isinstance(crop, int) else (crop["height"], crop["width"])
    x = F.interpolate(pixels.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
    mean = torch.tensor(feature_extractor.image_mean, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(feature_extractor.image_std, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def encoder_loss(encoder, head: torch.nn.Module, pixels: torch.Tensor, feature_extractor) -> torch.Tensor:
    """MSE of an RGB thumbnail predicted from the projected embedding (what the U-Net attends to)."""
    embeds = encoder(clip_pixels(pixels, feature_extractor)).image_embeds
    target = F.adaptive_avg_pool2d(pixels, THUMBNAIL).flatten(1)
    return F.mse_loss(head(embeds), target)


# ------------------------------------------------------------------------------------------- latent scale
@torch.no_grad()
def latent_std(vae, frames: torch.Tensor) -> float:
    """Standard deviation of the latent means of ``frames`` (unscaled)."""
    means = torch.cat([vae.encode(chunk).latent_dist.mean for chunk in frames.split(8)])
    return float(means.std())


@torch.no_grad()
def fold_latent_scale(vae, factor: float) -> None:
    """Multiply the VAE's latent space by ``factor`` without changing what it reconstructs.

    The latent mean and log-variance come from ``quant_conv``: its mean half is scaled by ``factor``
    and ``2 ln factor`` is added to the log-variance; the decoder's first conv is divided by it.
    """
    c = vae.config.latent_channels
    vae.quant_conv.weight[:c] *= factor
    vae.quant_conv.bias[:c] *= factor
    vae.quant_conv.bias[c:] += 2 * math.log(factor)
    vae.decoder.conv_in.weight /= factor


def normalise_latents(vae, frames: torch.Tensor) -> float:
    """Rescale the latent space so that latents x 0.18215 (the pipeline's scaling) have unit std."""
    factor = 1.0 / (VAE_SCALING_FACTOR * latent_std(vae, frames))
    fold_latent_scale(vae, factor)
    return factor
