"""Validation during training: generate a few clips with the current (EMA) weights and write GIFs
with the drags drawn, from the first frames and drags of Drag-a-Move-format clips."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from puppet_master.outputs import save_preview_gif
from training import dragamove

logger = logging.getLogger(__name__)


@dataclass
class ValidationClip:
    name: str
    image: Image.Image  # the first true frame, 256x256 RGB
    drags: np.ndarray  # (N, K, 4)


def load_validation_clips(folder: str | Path, num_clips: int, size: int = 256) -> list[ValidationClip]:
    clips = []
    for path in dragamove.find_clips(folder)[:num_clips]:
        clip = dragamove.load_clip(path)
        first = dragamove.read_gif_frames(clip.gif_path, size)[0]
        clips.append(ValidationClip(path.stem, Image.fromarray(first), clip.drags.numpy()))
    return clips


def build_pipeline(model, *, svd_path: str | None, tiny: bool, device, residual_scale: float = 0.0):
    """A PuppetMasterPipeline around ``model`` (the training U-Net itself, not a copy), with SVD's
    VAE and image encoder from ``svd_path``, or puppet_master.tiny's random ones when ``tiny``;
    ``residual_scale``: the ``train.residual_scale`` the U-Net was trained with."""
    from puppet_master.pipeline import PuppetMasterPipeline, svd_scheduler

    if tiny:
        from puppet_master.tiny import tiny_components

        components = tiny_components()
        components.pop("unet")
    elif svd_path:
        from training.cache_latents import load_svd_encoders

        components = {**load_svd_encoders(svd_path), "scheduler": svd_scheduler()}
    else:
        raise ValueError("validation needs an SVD folder (validation.svd_path or model.svd_path)")
    width = components["image_encoder"].config.projection_dim
    if width != model.config.cross_attention_dim:
        raise ValueError(
            f"the image encoder gives {width}-d embeddings but the U-Net's cross_attention_dim is "
            f"{model.config.cross_attention_dim}: validation needs matching components"
        )
    pipe = PuppetMasterPipeline(**components, unet=model, untrained=tiny, latent_residual_scale=residual_scale)
    components["vae"].to(device)
    components["image_encoder"].to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Validator:
    """Builds the pipeline around the training model once, then writes GIFs on demand."""

    def __init__(self, clips: list[ValidationClip], out_dir: Path, *, svd_path: str | None, tiny: bool,
                 num_inference_steps: int, seed: int, residual_scale: float = 0.0):
        self.clips, self.out_dir = clips, out_dir
        self.residual_scale = residual_scale
        self.svd_path, self.tiny = svd_path, tiny
        self.num_inference_steps, self.seed = num_inference_steps, seed
        self.pipe = None

    def _pipeline(self, model, device):
        if self.pipe is None:
            self.pipe = build_pipeline(model, svd_path=self.svd_path, tiny=self.tiny, device=device,
                                       residual_scale=self.residual_scale)
        return self.pipe

    @torch.no_grad()
    def run(self, model, step: int, device) -> list[Path]:
        was_training = model.training
        model.eval()
        try:
            pipe = self._pipeline(model, device)
            folder = self.out_dir / f"step_{step:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            paths = []
            for clip in self.clips:
                generator = torch.Generator(device="cpu").manual_seed(self.seed)
                frames = pipe(clip.image, clip.drags, num_inference_steps=self.num_inference_steps,
                              generator=generator, output_type="pil").frames[0]
                paths.append(save_preview_gif(frames, clip.drags, folder / f"{clip.name}.gif"))
            logger.info("validation GIFs for step %d in %s", step, folder)
            return paths
        finally:
            model.train(was_training)
