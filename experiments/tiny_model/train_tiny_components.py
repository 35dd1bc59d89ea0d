"""Train the tiny model's VAE and image encoder from scratch on rendered clips.

    python -m experiments.tiny_model.train_tiny_components --renders corpus/renders/train --out runs/tiny_components \
        --vae-steps 1500 --encoder-steps 400

Writes ``OUT/vae``, ``OUT/image_encoder`` and ``OUT/feature_extractor`` in diffusers layout: the
folder is what ``training.cache_latents --svd`` and ``training.evaluate --svd`` read. After the VAE
is trained its latent space is rescaled so that latents x 0.18215 have unit standard deviation, as
the U-Net's EDM noise levels assume. Progress is saved to ``OUT/state_<part>.pt`` every
``--save-every`` steps; re-running the same command resumes (a finished part is skipped).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from experiments.tiny_model import tiny_components as tc

logger = logging.getLogger("experiments.tiny_model.tiny_components")


def _state_path(out: Path, part: str) -> Path:
    return out / f"state_{part}.pt"


def _save_state(path: Path, step: int, model, optimizer, extra: torch.nn.Module | None = None) -> None:
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
    if extra is not None:
        state["extra"] = extra.state_dict()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _load_state(path: Path, model, optimizer, extra: torch.nn.Module | None = None) -> int:
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if extra is not None and "extra" in state:
        extra.load_state_dict(state["extra"])
    logger.info("resumed %s at step %d", path.name, state["step"])
    return int(state["step"])


def train_vae(source: tc.FrameSource, out: Path, *, steps: int, frames: int, crop: int | None, lr: float,
              kl_weight: float, save_every: int, seed: int, progress: bool = True,
              max_seconds: float | None = None, batch: int = 1, device: str = "cpu",
              chroma_weight: float = 0.0, latent_channels: int | None = None) -> dict:
    """Train (or resume) the VAE for ``steps`` steps of ``batch`` videos (or until ``max_seconds`` of
    this run have passed), rescale its latents and save it to ``out/vae``."""
    final = out / "vae"
    if (final / "config.json").is_file():
        logger.info("%s exists: VAE already trained", final)
        return json.loads((out / "vae_report.json").read_text())
    vae = tc.build_vae(seed, latent_channels).train().to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    state = _state_path(out, "vae")
    step = _load_state(state, vae, optimizer)
    rng = random.Random(f"{seed}:vae:{step}")
    start, logs = time.monotonic(), {}
    bar = tqdm(total=steps, initial=step, desc="vae", unit="step", disable=not progress)
    while step < steps:
        videos = source.runs(rng, batch, frames, crop).to(device, non_blocking=True)
        loss, logs = tc.vae_loss(vae, videos, kl_weight, num_frames=frames, chroma_weight=chroma_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        step += 1
        bar.update(1)
        bar.set_postfix(l1=f"{logs['l1']:.4f}", kl=f"{logs['kl']:.2f}", chroma=f"{logs['chroma']:.4f}")
        if not progress and step % 25 == 0:
            logger.info("vae step %d: l1 %.4f kl %.3f chroma %.4f", step, logs["l1"], logs["kl"], logs["chroma"])
        if step % save_every == 0 or step == steps:
            _save_state(state, step, vae, optimizer)
        if max_seconds is not None and time.monotonic() - start > max_seconds:
            _save_state(state, step, vae, optimizer)
            logger.info("VAE: time limit reached at step %d of %d; finishing with these steps", step, steps)
            break
    bar.close()
    vae.eval()
    check = torch.cat([source.run(random.Random(f"{seed}:scale:{i}"), frames) for i in range(8)]).to(device)
    factor = tc.normalise_latents(vae, check)
    with torch.no_grad():
        z = vae.encode(check[:frames]).latent_dist.mean
        recon = vae.decode(z, num_frames=frames).sample
        l1 = float((recon - check[:frames]).abs().mean())
        chroma = float(tc.chroma_error(recon, check[:frames]))
    vae.to("cpu").save_pretrained(final, safe_serialization=True)
    report = {"vae_steps": step, "latent_channels": vae.config.latent_channels, "vae_frames": frames, "vae_crop": crop, "vae_batch": batch, "latent_scale_folded": factor,
              "final_l1": logs.get("l1"), "check_l1_unweighted": l1, "check_chroma": chroma,
              "chroma_weight": chroma_weight, "vae_seconds_this_run": time.monotonic() - start}
    (out / "vae_report.json").write_text(json.dumps(report, indent=2))
    return report


def train_image_encoder(source: tc.FrameSource, out: Path, *, steps: int, batch: int, lr: float, save_every: int,
                        seed: int, progress: bool = True, device: str = "cpu") -> dict:
    """Train (or resume) the image encoder and save it with its feature extractor."""
    final = out / "image_encoder"
    feature_extractor = tc.build_feature_extractor()
    feature_extractor.save_pretrained(out / "feature_extractor")
    if (final / "config.json").is_file():
        logger.info("%s exists: image encoder already trained", final)
        return json.loads((out / "encoder_report.json").read_text())
    encoder = tc.build_image_encoder(seed).train().to(device)
    head = torch.nn.Linear(tc.TINY_CROSS_ATTENTION_DIM, 3 * tc.THUMBNAIL**2).to(device)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=lr)
    state = _state_path(out, "encoder")
    done = _load_state(state, encoder, optimizer, head)
    rng = random.Random(f"{seed}:encoder:{done}")
    start, first_loss, loss = time.monotonic(), None, torch.tensor(float("nan"))
    for step in tqdm(range(done, steps), desc="image encoder", unit="step", disable=not progress):
        loss = tc.encoder_loss(encoder, head, source.firsts(rng, batch).to(device), feature_extractor)
        first_loss = first_loss if first_loss is not None else loss.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % save_every == 0:
            _save_state(state, step + 1, encoder, optimizer, head)
    encoder.eval().to("cpu").save_pretrained(final, safe_serialization=True)
    report = {"encoder_steps": steps, "encoder_first_loss": first_loss, "encoder_final_loss": loss.item(),
              "encoder_seconds_this_run": time.monotonic() - start}
    (out / "encoder_report.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", action="append", required=True, help="render root (repeatable)")
    parser.add_argument("--out", required=True, help="components folder (vae/, image_encoder/, feature_extractor/)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--vae-frames", type=int, default=4, help="consecutive frames per VAE step")
    parser.add_argument("--vae-crop", type=int, default=128, help="random square window per VAE step (0: whole frame)")
    parser.add_argument("--vae-batch", type=int, default=1, help="videos per VAE step")
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--latent-channels", type=int, default=tc.VAE_CONFIG["latent_channels"],
                        help="channels of the 32x32 latent (the U-Net's in_channels is twice this)")
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--chroma-weight", type=float, default=2.0,
                        help="weight of the colour term of the VAE loss (0: brightness and shape only)")
    parser.add_argument("--encoder-steps", type=int, default=400)
    parser.add_argument("--encoder-batch", type=int, default=16)
    parser.add_argument("--encoder-lr", type=float, default=1e-3)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, help="train the VAE at most this long, then finish it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--preload", action="store_true", help="decode every frame into memory first (GPU runs)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        source = tc.FrameSource(args.renders, args.resolution)
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    logger.info("%d clip views", len(source))
    if args.preload:
        source.preload(progress=not args.no_progress)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        report = train_vae(source, out, steps=args.vae_steps, frames=args.vae_frames, crop=args.vae_crop or None,
                           lr=args.vae_lr,
                           kl_weight=args.kl_weight, save_every=args.save_every, seed=args.seed,
                           progress=not args.no_progress,
                           max_seconds=args.max_minutes * 60 if args.max_minutes else None,
                           batch=args.vae_batch, device=args.device, chroma_weight=args.chroma_weight,
                           latent_channels=args.latent_channels)
        report.update(train_image_encoder(source, out, steps=args.encoder_steps, batch=args.encoder_batch,
                                          lr=args.encoder_lr, save_every=args.save_every, seed=args.seed,
                                          progress=not args.no_progress, device=args.device))
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: progress is saved; run the same command again to resume\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
