"""PuppetMasterPipeline: one image + drags -> a 14-frame video of the dragged parts moving.

Stable Video Diffusion's img2vid components (``vae``, ``image_encoder``, ``feature_extractor``,
``scheduler``) with Puppet-Master's drag-conditioned ``unet``. Sampling follows the paper: SVD's
Euler EDM scheduler, classifier-free guidance with a per-frame weight ramp and a zero unconditional
branch, the first frame's VAE latent (distribution mean, unscaled, no noise augmentation) joined to
every frame.

Progress and cancellation: ``callback_on_step_end(pipe, step_index, timestep, callback_kwargs)``
runs after every step and may return new ``latents``. Call :meth:`PuppetMasterPipeline.interrupt`
(from the callback or another thread), or raise :class:`GenerationCancelled` in the callback, to
stop: ``__call__`` then raises :class:`GenerationCancelled` without decoding anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder, DiffusionPipeline, EulerDiscreteScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

from puppet_master import edm
from puppet_master.drags import Drag, DragError, drags_to_array, validate_drag_array
from puppet_master.guidance import GUIDANCE_DROPS, combine_guidance, guidance_weights, needs_unconditional
from puppet_master.image_prep import CROP_MODES, FRAME_SIZE, SquareWindow, prepare_frame
from puppet_master.models.unet import PuppetMasterUNet
from puppet_master.models.vae import TemporalVAE

#: Stable Video Diffusion img2vid's scheduler (v-prediction, continuous c_noise timesteps, Karras sigmas)
SVD_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def svd_scheduler() -> EulerDiscreteScheduler:
    """A fresh scheduler with Stable Video Diffusion's configuration."""
    return EulerDiscreteScheduler(**SVD_SCHEDULER_CONFIG)


class GenerationCancelled(Exception):  # noqa: N818 (the name the server and docs use)
    """Raised by ``__call__`` when generation was interrupted before the last step finished."""

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"generation cancelled after {step} of {total} steps")
        self.step = step
        self.total = total


@dataclass
class PuppetMasterPipelineOutput(BaseOutput):
    """``frames``: per video a list of PIL frames (``"pil"``), ``(videos, N, H, W, 3)`` floats in
    [0, 1] (``"np"``), ``(videos, N, 3, H, W)`` (``"pt"``) or the latents (``"latent"``).
    ``drags``: the ``(videos, N, K, 4)`` drag arrays in frame coordinates that conditioned each video.
    ``window``: where the frame was cut from the input image.
    """

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor
    drags: np.ndarray
    window: SquareWindow


class PuppetMasterPipeline(DiffusionPipeline):
    r"""Drag-conditioned part-level motion generation (Puppet-Master, Li et al. 2024).

    Args:
        vae: SVD's ``AutoencoderKLTemporalDecoder``, or a :class:`~puppet_master.models.vae.TemporalVAE`
            (the tiny trained model's; this module imports it so that pipeline folders naming it load).
        image_encoder: the frozen CLIP image encoder (``CLIPVisionModelWithProjection``).
        unet: a :class:`~puppet_master.models.unet.PuppetMasterUNet`.
        scheduler: ``EulerDiscreteScheduler`` with SVD's configuration (see :func:`svd_scheduler`).
        feature_extractor: ``CLIPImageProcessor`` (its mean, std and crop size prepare CLIP's input).
        untrained: True for random-weight pipelines (``--tiny``); their outputs are labelled so.
        default_min_guidance_scale / default_max_guidance_scale: the guidance a call uses when it names none.
        latent_residual_scale: 0 (SVD and the paper): the U-Net denoises the video latents. ``k > 0``:
            it denoises ``k * (latents - first-frame latent)`` (:func:`puppet_master.edm.to_residual`),
            the space a U-Net trained with ``train.residual_scale = k`` learned (the tiny model).
        guidance_drops: what the unconditional branch of the guidance drops: ``"all"`` (SVD and the
            paper: zero first-frame latent, CLIP embedding and drags) or ``"drags"`` (zero drags only,
            the input drag dropout trains; the guidance then amplifies only what the drags change).
    """

    model_cpu_offload_seq = "image_encoder->unet->vae"
    _callback_tensor_inputs = ("latents", "noise_pred")

    def __init__(
        self,
        vae: AutoencoderKLTemporalDecoder | TemporalVAE,
        image_encoder: CLIPVisionModelWithProjection,
        unet: PuppetMasterUNet,
        scheduler: EulerDiscreteScheduler,
        feature_extractor: CLIPImageProcessor,
        untrained: bool = False,
        default_min_guidance_scale: float = 1.0,
        default_max_guidance_scale: float = 5.0,
        latent_residual_scale: float = 0.0,
        guidance_drops: str = "all",
    ):
        super().__init__()
        if guidance_drops not in GUIDANCE_DROPS:
            raise ValueError(f"guidance_drops must be one of {', '.join(GUIDANCE_DROPS)}, got {guidance_drops!r}")
        if not np.isfinite(latent_residual_scale) or latent_residual_scale < 0:
            raise ValueError(f"latent_residual_scale must be a finite number >= 0, got {latent_residual_scale!r}")
        channels = vae.config.latent_channels if vae is not None else None
        if unet is not None and channels is not None and (unet.config.in_channels, unet.config.out_channels) != (2 * channels, channels):
            raise ValueError(
                f"the U-Net takes {unet.config.in_channels} input and gives {unet.config.out_channels} output "
                f"channels, but the VAE's latents have {channels}: a U-Net for it needs {2 * channels} in "
                f"(noisy latent + first-frame latent) and {channels} out")
        self.register_modules(
            vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler, feature_extractor=feature_extractor
        )
        # the guidance a call uses when it names none: the paper's 1 -> 5, or what a model was trained for
        self.register_to_config(untrained=bool(untrained), default_min_guidance_scale=float(default_min_guidance_scale),
                                default_max_guidance_scale=float(default_max_guidance_scale),
                                latent_residual_scale=float(latent_residual_scale), guidance_drops=guidance_drops)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        #: run the two guidance branches as one batch (False: one after the other, less peak memory)
        self.batch_guidance = True
        #: frames the VAE decodes at once when a call names none (None: every frame of a video)
        self.decode_chunk_size: int | None = None
        self._interrupt = False

    # ------------------------------------------------------------------ control
    def interrupt(self) -> None:
        """Ask a running ``__call__`` to stop; it raises :class:`GenerationCancelled` before the next step."""
        self._interrupt = True

    @property
    def frame_size(self) -> int:
        """Side of the square frames: the U-Net's latent ``sample_size`` times the VAE's scale (256)."""
        sample_size = getattr(self.unet.config, "sample_size", None) if self.unet is not None else None
        return sample_size * self.vae_scale_factor if sample_size else FRAME_SIZE

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    # ------------------------------------------------------------------ inputs
    def resolve_guidance(self, min_scale: float | None, max_scale: float | None) -> tuple[float, float]:
        """The guidance of the first and last frame a call uses: the given one, else the model's default."""
        return (self.config.default_min_guidance_scale if min_scale is None else min_scale,
                self.config.default_max_guidance_scale if max_scale is None else max_scale)

    def check_inputs(
        self,
        num_frames: int,
        num_inference_steps: int,
        min_guidance_scale: float,
        max_guidance_scale: float,
        num_videos_per_prompt: int,
        decode_chunk_size: int | None,
        output_type: str,
        crop: str,
        callback_on_step_end: Callable | None,
        callback_on_step_end_tensor_inputs: Sequence[str],
    ) -> None:
        if not isinstance(num_frames, int) or num_frames < 2:
            raise ValueError(f"num_frames must be an integer >= 2, got {num_frames!r}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        for name, value in (("min_guidance_scale", min_guidance_scale), ("max_guidance_scale", max_guidance_scale)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(num_videos_per_prompt, int) or num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be an integer >= 1, got {num_videos_per_prompt!r}")
        if decode_chunk_size is not None and (not isinstance(decode_chunk_size, int) or decode_chunk_size < 1):
            raise ValueError(f"decode_chunk_size must be None or an integer >= 1, got {decode_chunk_size!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
        if callback_on_step_end is not None and not callable(callback_on_step_end):
            raise TypeError("callback_on_step_end must be callable")
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"callback_on_step_end_tensor_inputs {sorted(unknown)} are not available; "
                f"choose from {list(self._callback_tensor_inputs)}"
            )

    def prepare_drags(
        self, drags: Sequence[Drag] | np.ndarray | torch.Tensor | None, window: SquareWindow, num_frames: int
    ) -> np.ndarray:
        """User drags (fractions of the input image) -> ``(B, N, K_max, 4)`` float32 in frame coordinates.

        ``drags`` is a list of :class:`~puppet_master.drags.Drag` (start -> end, at most ``K_max``,
        inside the image), a ``(N, K, 4)`` / ``(B, N, K, 4)`` array of trajectories, or None.
        """
        max_drags = self.unet.config.num_drags
        if drags is None:
            drags = []
        if isinstance(drags, torch.Tensor):
            drags = drags.detach().cpu().numpy()
        if isinstance(drags, np.ndarray):
            arr = validate_drag_array(drags, max_drags=max_drags, num_frames=num_frames)
        else:
            drags = list(drags)
            if not all(isinstance(d, Drag) for d in drags):
                raise DragError("drags must be a list of puppet_master.drags.Drag or a (N, K, 4) array")
            arr = drags_to_array(drags, num_frames=num_frames, max_drags=max_drags)
        arr = arr if arr.ndim == 4 else arr[None]
        arr = np.pad(arr, ((0, 0), (0, 0), (0, max_drags - arr.shape[2]), (0, 0)))
        return window.map_drag_array(arr)

    @staticmethod
    def frame_to_tensor(frame: PIL.Image.Image) -> torch.Tensor:
        """An RGB frame -> ``(1, 3, H, W)`` float32 in [-1, 1]."""
        pixels = torch.from_numpy(np.asarray(frame.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
        return pixels.permute(2, 0, 1).unsqueeze(0)

    # ------------------------------------------------------------------ encoders (shared with training)
    @torch.no_grad()
    def encode_image_embeddings(self, pixels: torch.Tensor) -> torch.Tensor:
        """CLIP image embedding ``(B, 1, D)`` of frames ``(B, 3, H, W)`` in [-1, 1]."""
        crop = self.feature_extractor.crop_size
        size = (crop, crop) if isinstance(crop, int) else (crop["height"], crop["width"])
        dtype = self.image_encoder.dtype
        x = F.interpolate(pixels.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
        x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)
        mean = torch.tensor(self.feature_extractor.image_mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.feature_extractor.image_std, device=x.device).view(1, -1, 1, 1)
        x = ((x - mean) / std).to(device=self._execution_device, dtype=dtype)
        return self.image_encoder(x).image_embeds.unsqueeze(1)

    @torch.no_grad()
    def encode_image_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """The VAE latent distribution mean ``(B, 4, H/8, W/8)`` of frames in [-1, 1], unscaled."""
        upcast = self.vae.dtype == torch.float16 and self.vae.config.force_upcast
        if upcast:
            self.vae.to(dtype=torch.float32)
        try:
            x = pixels.to(device=self._execution_device, dtype=self.vae.dtype)
            return self.vae.encode(x).latent_dist.mean
        finally:
            if upcast:
                self.vae.to(dtype=torch.float16)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, decode_chunk_size: int | None = None) -> torch.Tensor:
        """Scaled video latents ``(B, N, 4, h, w)`` -> frames ``(B, N, 3, H, W)`` float32 in [-1, 1].

        Each video is decoded on its own, ``decode_chunk_size`` frames at a time (the temporal
        decoder mixes the frames of one chunk, never those of two videos).
        """
        num_frames = latents.shape[1]
        chunk = decode_chunk_size or num_frames
        videos = []
        for video in latents / self.vae.config.scaling_factor:
            parts = [
                self.vae.decode(video[i : i + chunk].to(self.vae.dtype), num_frames=len(video[i : i + chunk])).sample
                for i in range(0, num_frames, chunk)
            ]
            videos.append(torch.cat(parts).float())
        return torch.stack(videos)

    # ------------------------------------------------------------------ sampling
    def _predict(
        self, latents: torch.Tensor, t: torch.Tensor, image_latents: torch.Tensor, embeds: torch.Tensor,
        drags: torch.Tensor, guided: bool,
    ) -> torch.Tensor:
        """The network output for a batch, in one call or one guidance branch at a time (``batch_guidance``)."""
        if self.batch_guidance or not guided:
            return self.unet(latents, t, image_latents, embeds, drags, return_dict=False)[0]
        outs = [
            self.unet(*args, return_dict=False)[0]
            for args in zip(
                latents.chunk(2), (t, t), image_latents.chunk(2), embeds.chunk(2), drags.chunk(2), strict=True
            )
        ]
        return torch.cat(outs)

    @torch.no_grad()
    def __call__(
        self,
        image: str | Path | PIL.Image.Image,
        drags: Sequence[Drag] | np.ndarray | torch.Tensor | None = None,
        *,
        num_frames: int = 14,
        num_inference_steps: int = 50,
        min_guidance_scale: float | None = None,
        max_guidance_scale: float | None = None,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        decode_chunk_size: int | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        crop: str = "none",
        return_dict: bool = True,
    ) -> PuppetMasterPipelineOutput | tuple:
        r"""Generate ``num_frames`` frames in which the dragged parts follow the drags.

        Args:
            image: a path or PIL image (RGB, or RGBA composited on white).
            drags: start -> end :class:`~puppet_master.drags.Drag` list in fractions of the image
                (x right, y down), or ``(N, K, 4)`` / ``(B, N, K, 4)`` trajectories (a batch of B drag
                sets makes B videos); None or [] for no drags.
            num_inference_steps: Euler steps (the paper uses 50).
            min_guidance_scale / max_guidance_scale: guidance weight of the first / last frame, linear
                in between (1 -> 5 in the paper); 1 and 1 skip the unconditional branch. None: the
                model's ``default_min_guidance_scale`` / ``default_max_guidance_scale`` (config).
            num_videos_per_prompt: videos per drag set.
            generator: torch generator(s) for the initial noise (one per video when a list).
            decode_chunk_size: frames decoded at once (default: the pipeline's ``decode_chunk_size``,
                which the memory preset sets; None there means all frames of a video).
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``.
            callback_on_step_end: called as ``callback(pipe, step_index, timestep, callback_kwargs)``
                after each step; may return ``{"latents": ...}`` to replace the latents.
            crop: ``"none"`` (whole image) or ``"object"`` (square around the alpha bounding box).
        """
        # 1. check inputs
        min_guidance_scale, max_guidance_scale = self.resolve_guidance(min_guidance_scale, max_guidance_scale)
        self.check_inputs(
            num_frames, num_inference_steps, min_guidance_scale, max_guidance_scale, num_videos_per_prompt,
            decode_chunk_size, output_type, crop, callback_on_step_end, callback_on_step_end_tensor_inputs,
        )
        self._interrupt = False

        # 2. prepare the first frame and the drags in frame coordinates
        frame, window = prepare_frame(image, crop, size=self.frame_size)
        frame_drags = np.repeat(self.prepare_drags(drags, window, num_frames), num_videos_per_prompt, axis=0)
        batch = frame_drags.shape[0]
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"got {len(generator)} generators for {batch} videos; pass one per video")
        device = self._execution_device
        do_guidance = needs_unconditional(min_guidance_scale, max_guidance_scale)

        # 3. encode the first frame: CLIP embedding and VAE latent, zeros for the unconditional branch
        pixels = self.frame_to_tensor(frame)
        embeds = self.encode_image_embeddings(pixels).repeat(batch, 1, 1)
        first_latent = self.encode_image_latents(pixels).float()
        image_latents = first_latent.to(self.unet.dtype).repeat(batch, 1, 1, 1)
        residual_scale = self.config.latent_residual_scale
        anchor = (first_latent * self.vae.config.scaling_factor).repeat(batch, 1, 1, 1) if residual_scale > 0 else None
        drag_tensor = torch.from_numpy(frame_drags).to(device)
        if do_guidance:
            drop_image = self.config.guidance_drops == "all"
            embeds = torch.cat([torch.zeros_like(embeds) if drop_image else embeds, embeds])
            image_latents = torch.cat([torch.zeros_like(image_latents) if drop_image else image_latents, image_latents])
            drag_tensor = torch.cat([torch.zeros_like(drag_tensor), drag_tensor])

        # 4. timesteps (c_noise = 0.25 ln sigma)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 5. initial noise, kept in float32 whatever the U-Net's dtype
        height, width = image_latents.shape[-2:]
        shape = (batch, num_frames, self.vae.config.latent_channels, height, width)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        latents = latents * self.scheduler.init_noise_sigma

        # 6. per-frame guidance weights
        weights = guidance_weights(min_guidance_scale, max_guidance_scale, num_frames, device=device)

        # 7. denoising loop
        try:
            with self.progress_bar(total=len(timesteps)) as progress_bar:
                for i, t in enumerate(timesteps):
                    if self._interrupt:
                        raise GenerationCancelled(i, len(timesteps))
                    model_input = torch.cat([latents] * 2) if do_guidance else latents
                    model_input = self.scheduler.scale_model_input(model_input, t)
                    noise_pred = self._predict(model_input, t, image_latents, embeds, drag_tensor, do_guidance).float()
                    if do_guidance:
                        noise_pred = combine_guidance(*noise_pred.chunk(2), weights)
                    latents = self.scheduler.step(noise_pred, t, latents).prev_sample

                    if callback_on_step_end is not None:
                        local = {"latents": latents, "noise_pred": noise_pred}
                        kwargs = {name: local[name] for name in callback_on_step_end_tensor_inputs}
                        outputs = callback_on_step_end(self, i, t, kwargs) or {}
                        latents = outputs.pop("latents", latents)
                    progress_bar.update()
            if self._interrupt:
                raise GenerationCancelled(len(timesteps), len(timesteps))

            # 8. back from the residual space, then decode
            if anchor is not None:
                latents = edm.from_residual(latents, anchor, residual_scale)
            if output_type == "latent":
                frames = latents
            else:
                frames = self._postprocess(self.decode_latents(latents, decode_chunk_size or self.decode_chunk_size), output_type)
        finally:
            self.maybe_free_model_hooks()

        if not return_dict:
            return frames, frame_drags, window
        return PuppetMasterPipelineOutput(frames=frames, drags=frame_drags, window=window)

    @staticmethod
    def _postprocess(videos: torch.Tensor, output_type: str):
        """Frames ``(B, N, 3, H, W)`` in [-1, 1] -> the requested output type, values in [0, 1]."""
        videos = ((videos + 1.0) / 2.0).clamp(0.0, 1.0)
        if output_type == "pt":
            return videos
        array = videos.permute(0, 1, 3, 4, 2).cpu().numpy()
        if output_type == "np":
            return array
        uint8 = (array * 255.0).round().astype(np.uint8)
        return [[PIL.Image.fromarray(f) for f in video] for video in uint8]
