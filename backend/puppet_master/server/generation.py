"""Running one job through a loaded ``PuppetMasterPipeline`` (the only server module using torch).

Progress comes from ``callback_on_step_end``; when the job is cancelled that callback calls the
pipeline's ``interrupt()``, which stops the denoising loop before the next step (the pipeline then
raises ``GenerationCancelled``, turned into :class:`JobCancelledError` here).
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from puppet_master import protocol
from puppet_master.protocol import JobSettings, ProtocolError

#: progress callback: (step done, total steps, eta seconds or None, elapsed seconds, preview PNG or None)
ProgressFn = Callable[[int, int, float | None, float, bytes | None], None]


class JobCancelledError(Exception):
    """The job was cancelled before its frames were decoded."""


@dataclass
class GenerationResult:
    frames_png: list[bytes]
    settings: dict[str, Any]
    #: seconds inside the pipeline call (image preparation, denoising, VAE decode)
    model_s: float
    #: seconds encoding the frames as PNG
    encode_s: float


def decode_image(png: bytes) -> Any:
    """The submitted PNG as a PIL image (RGB or RGBA); ProtocolError(BAD_IMAGE) if corrupt."""
    from PIL import Image

    protocol.png_size(png)
    try:
        image = Image.open(io.BytesIO(png))
        image.load()
    except Exception as exc:
        raise ProtocolError(protocol.BAD_IMAGE, f"the PNG cannot be decoded: {exc}") from None
    return image if image.mode in ("RGB", "RGBA") else image.convert("RGBA")


def encode_png(image: Any, *, compress_level: int = 1) -> bytes:
    """PNG bytes of a PIL image; level 1 is fast and still lossless."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def preview_gif(frames_png: list[bytes], drags: list[dict[str, list[float]]]) -> bytes:
    """``preview.gif`` (frames with the drags drawn, as ``generate`` writes it) as bytes."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    from puppet_master.drags import Drag, drags_to_array
    from puppet_master.outputs import save_preview_gif

    images = [Image.open(io.BytesIO(data)) for data in frames_png]
    array = drags_to_array([Drag.from_json(d) for d in drags]) if drags else None
    with tempfile.TemporaryDirectory() as tmp:
        return save_preview_gif(images, array, Path(tmp) / "preview.gif").read_bytes()


def latent_preview(latents: Any, side: int = protocol.MAX_PREVIEW_SIDE) -> bytes:
    """A small PNG from the current latents (last frame, channels 0-2 stretched to 0-255):
    a cheap impression of the motion, without a VAE decode."""
    import numpy as np
    from PIL import Image

    array = latents.detach().float().cpu().numpy()
    while array.ndim > 3:  # (B, N, C, h, w) -> last frame of the first sample
        array = array[0] if array.ndim == 5 else array[-1]
    rgb = array[:3].transpose(1, 2, 0)
    low, high = rgb.min(axis=(0, 1)), rgb.max(axis=(0, 1))
    rgb = (rgb - low) / np.maximum(high - low, 1e-6)
    image = Image.fromarray((rgb * 255).astype(np.uint8), "RGB")
    scale = max(1, side // max(image.size))
    return encode_png(image.resize((image.width * scale, image.height * scale), Image.NEAREST))


def run_job(
    pipe: Any,
    image_png: bytes,
    drags: list[dict[str, list[float]]],
    settings: JobSettings,
    *,
    on_progress: ProgressFn,
    cancel: threading.Event,
    on_variant: Callable[[int, int, list[bytes]], None] | None = None,
) -> GenerationResult:
    """Generate the frames of one job: every variant (one run per seed), each of ``settings.segments``
    chained segments, one after another; ``on_variant(index, seed, frames_png)`` as each variant of a
    several-variant job finishes. Raises JobCancelledError, ProtocolError or the pipeline's error."""
    from puppet_master.drags import Drag
    from puppet_master.pipeline import GenerationCancelled
    from puppet_master.variants import generate_videos, variant_seeds

    # 1. check and decode the inputs
    image = decode_image(image_png)
    drag_list = [Drag.from_json(d) for d in drags]
    seed = settings.seed if settings.seed is not None else secrets.randbelow(2**31)
    seeds = variant_seeds(seed, settings.variants)
    per_call = settings.num_inference_steps
    total = per_call * settings.variants * settings.segments  # progress counts over every pipeline call
    calls = [0]  # pipeline calls finished
    started = time.monotonic()

    # 2. report each step; stop between steps when cancelled
    def callback(pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
        if cancel.is_set():
            pipeline.interrupt()
            return {}
        done = calls[0] * per_call + step_index + 1
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done)
        preview = None
        latents = callback_kwargs.get("latents")
        if settings.preview_every and done % settings.preview_every == 0 and done < total and latents is not None:
            preview = latent_preview(latents)
        on_progress(done, total, eta, elapsed, preview)
        return {}

    def finished_call(*_: Any) -> None:
        calls[0] += 1

    # 3. denoise and decode each variant (and its segments); encode each as it finishes
    frames: list[bytes] = []
    encode_s = [0.0]

    def variant_done(index: int, video: Any) -> None:
        encoding = time.monotonic()
        pngs = [encode_png(frame) for frame in video.frames]
        encode_s[0] += time.monotonic() - encoding
        frames.extend(pngs)
        if on_variant is not None and settings.variants > 1:
            on_variant(index, video.seed, pngs)
        if cancel.is_set():
            raise JobCancelledError()

    if cancel.is_set():
        raise JobCancelledError()
    try:
        videos = generate_videos(pipe, image, drag_list, seeds, settings.segments, on_variant=variant_done,
                                 on_call=finished_call, num_inference_steps=per_call,
                                 min_guidance_scale=settings.min_guidance_scale,
                                 max_guidance_scale=settings.max_guidance_scale, callback_on_step_end=callback)
    except GenerationCancelled:
        raise JobCancelledError() from None
    segment_inputs = [v.segment_inputs for v in videos if v.segment_inputs]

    # 4. what was used
    low, high = pipe.resolve_guidance(settings.min_guidance_scale, settings.max_guidance_scale)
    used = {**settings.to_json(), "seed": seed, "min_guidance_scale": low, "max_guidance_scale": high,
            "variants": settings.variants, "segments": settings.segments, "seeds": seeds,
            "frames_per_variant": settings.frames_per_variant,
            **({"segment_inputs": segment_inputs} if segment_inputs else {})}
    return GenerationResult(frames, used, time.monotonic() - started - encode_s[0], encode_s[0])
