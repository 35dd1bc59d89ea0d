"""Put a trained U-Net together with its VAE and image encoder into one pipeline folder.

    python -m training.assemble_pipeline --components /models/svd \
        --unet runs/paper/checkpoints/checkpoint-00012500/ema --out ~/pm-model

``--components`` is a folder with ``vae/``, ``image_encoder/`` and ``feature_extractor/`` (diffusers
layout: an SVD img2vid folder, or the components an experiment trained, e.g.
``experiments.tiny_model.train_tiny_components``). The result is
a ``PuppetMasterPipeline`` folder (``model_index.json``, safetensors weights) that ``--model`` and
``load_pipeline`` read; with ``--fp16`` the weights are stored in half precision (loaded back to the
requested dtype). A U-Net trained with ``train.residual_scale`` (its checkpoint's
``trainer_state.json`` says so) gets the same ``latent_residual_scale`` in the pipeline's config;
``--residual-scale`` overrides it for folders outside a checkpoint.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from puppet_master.guidance import GUIDANCE_DROPS


def assemble(components: str | Path, unet: str | Path, out: str | Path, *, fp16: bool = False,
             guidance: tuple[float, float] = (1.0, 5.0), residual_scale: float | None = None,
             guidance_drops: str = "all") -> Path:
    """Write the pipeline folder; ``guidance`` (first, last frame) becomes its default guidance and
    ``guidance_drops`` what its unconditional branch drops; ``residual_scale`` None: the one the
    U-Net's checkpoint was trained with."""
    from puppet_master.models.unet import PuppetMasterUNet
    from puppet_master.pipeline import PuppetMasterPipeline, svd_scheduler
    from training.cache_latents import load_svd_encoders
    from training.checkpointing import trained_residual_scale

    out = Path(out)
    parts = load_svd_encoders(components)
    model = PuppetMasterUNet.from_pretrained(unet)
    if residual_scale is None:
        residual_scale = trained_residual_scale(unet)
    width = parts["image_encoder"].config.projection_dim
    if width != model.config.cross_attention_dim:
        raise ValueError(f"image encoder width {width} != U-Net cross_attention_dim {model.config.cross_attention_dim}")
    pipe = PuppetMasterPipeline(**parts, unet=model.eval(), scheduler=svd_scheduler(),
                                default_min_guidance_scale=guidance[0], default_max_guidance_scale=guidance[1],
                                latent_residual_scale=residual_scale, guidance_drops=guidance_drops)
    if fp16:
        pipe.to(dtype=torch.float16)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    for name in ("model_index.json", "vae", "image_encoder", "feature_extractor", "scheduler", "unet"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        out.mkdir(parents=True, exist_ok=True)
        (tmp / name).replace(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--components", required=True, help="folder with vae/, image_encoder/, feature_extractor/")
    parser.add_argument("--unet", required=True, help="PuppetMasterUNet folder (e.g. a checkpoint's ema/)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--fp16", action="store_true", help="store the weights in half precision")
    parser.add_argument("--guidance", type=float, nargs=2, default=(1.0, 5.0), metavar=("FIRST", "LAST"),
                        help="the pipeline's default guidance of the first and last frame (default: 1 5, the paper's)")
    parser.add_argument("--guidance-drops", choices=GUIDANCE_DROPS, default="all",
                        help="what the guidance's unconditional branch drops: all (the paper) or only the drags")
    parser.add_argument("--residual-scale", type=float, default=None,
                        help="the U-Net's train.residual_scale (default: read from its checkpoint, else 0)")
    args = parser.parse_args(argv)
    try:
        folder = assemble(args.components, args.unet, args.out, fp16=args.fp16, guidance=tuple(args.guidance),
                          residual_scale=args.residual_scale, guidance_drops=args.guidance_drops)
    except (OSError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"pipeline written to {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
