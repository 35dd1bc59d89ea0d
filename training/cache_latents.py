"""Encode rendered clips once for training: per-frame VAE mean and std (fp16) and the first frame's
CLIP image embedding, with the clip's drag samples, into safetensors shards.

    python -m training.cache_latents --renders OUT/ --svd /models/svd --out cache/ [--shard-size 64]

Work items are the distinct ``(clip, view, frames)`` of every ``drags.json`` under ``--renders``.
The first run writes ``plan.json`` (the item list, in shard order); later runs keep it and append
new clips, so a shard always holds the same items. A shard is written to a temporary file and
renamed when complete: an interrupted run loses at most the shard in progress, and re-running
skips finished shards. ``--shard i/n`` takes the assets ``render.py --shard i/n`` rendered (one
assignment for every stage, so a job array's task i runs them all): it keeps its own plan
``plan_i-of-n.json`` and writes ``shard_i-of-n_KKKKK.safetensors``, so tasks never share a file,
and the trainer reads every ``shard_*.safetensors`` of the folder. At its end it writes
``shards/cache_i-of-n.json`` for ``python -m dataset_tools.shard_status``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from dataset_tools import clip_folder, drag_schema, render_plan, shard_status
from puppet_master.outputs import write_json_atomic

logger = logging.getLogger(__name__)

FORMAT = "puppet-master/latent-cache"
FORMAT_VERSION = "1"
PLAN_FILE = "plan.json"
SHARD_NAME = "shard_{:05d}.safetensors"


class CacheError(RuntimeError):
    """Something that stops caching; the message names the file or component."""


def composite_on_white(image: Image.Image, size: int) -> Image.Image:
    """An RGBA render composited over white, as RGB, resized to ``size`` x ``size``."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(background, rgba).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return rgb


def to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """RGB images as a ``(T, 3, H, W)`` float tensor in [-1, 1]."""
    arr = np.stack([np.asarray(im, dtype=np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def load_svd_encoders(folder: str | Path) -> dict:
    """``vae``, ``image_encoder`` and ``feature_extractor`` of a local SVD folder (diffusers layout),
    read by the pipeline's own loader (so fp16-only folders, as ``puppet-master download`` keeps
    them, load too; the encoders run in the dtype ``Encoders`` is given)."""
    from puppet_master.loading import ModelLoadError, load_svd_part

    try:
        return {part: load_svd_part(folder, part) for part in ("vae", "image_encoder", "feature_extractor")}
    except ModelLoadError as exc:
        raise CacheError(str(exc)) from exc


class Encoders:
    """The SVD VAE and CLIP image encoder, wrapped in a ``PuppetMasterPipeline`` without U-Net so that
    the CLIP preprocessing is exactly the one used at inference."""

    def __init__(self, vae, image_encoder, feature_extractor, device: str = "cpu", dtype=torch.float32):
        from puppet_master.pipeline import PuppetMasterPipeline, svd_scheduler

        self.pipe = PuppetMasterPipeline(vae=vae.eval(), image_encoder=image_encoder.eval(), unet=None,
                                         scheduler=svd_scheduler(), feature_extractor=feature_extractor)
        self.pipe.to(device, dtype)
        self.vae = self.pipe.vae
        self.device, self.dtype = device, dtype

    @classmethod
    def from_svd(cls, folder: str | Path, device: str = "cpu", dtype=torch.float32) -> Encoders:
        return cls(**load_svd_encoders(folder), device=device, dtype=dtype)

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor, batch: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame latent mean and std (unscaled) of ``(T, 3, H, W)`` frames in [-1, 1]."""
        means, stds = [], []
        for chunk in frames.split(batch):
            dist = self.vae.encode(chunk.to(self.device, self.dtype)).latent_dist
            means.append(dist.mean.float().cpu())
            stds.append(dist.std.float().cpu())
        return torch.cat(means), torch.cat(stds)

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """The ``(1, D)`` CLIP image embedding of one ``(1, 3, H, W)`` frame in [-1, 1]."""
        return self.pipe.encode_image_embeddings(pixels)[:, 0].float().cpu()


def plan_items(renders: Path, shard: tuple[int, int] = (0, 1)) -> list[dict]:
    """Every distinct (clip, view, frames) of the drag samples under ``renders`` whose asset is in
    ``shard``, with its samples (other shards' drag files are not read)."""
    items = []
    for folder in clip_folder.find_clips(renders, need_tracks=False):
        if not render_plan.in_shard(folder.parent.name, *shard):
            continue
        drags_path = folder / drag_schema.DRAGS_FILE
        if not drags_path.is_file():
            logger.warning("%s: no %s, clip skipped (run dataset_tools.sample_drags)", folder, drag_schema.DRAGS_FILE)
            continue
        document = drag_schema.read_drags_json(drags_path)
        meta = json.loads((folder / clip_folder.CLIP_FILE).read_text())
        # the clip folder name, as in dataset_tools' label files and clip lists (ClipFolder.clip_id)
        clip_id = f"{document['asset_id']}/{folder.name}"
        groups: dict[tuple, dict] = {}
        for sample in document["samples"]:
            key = (int(sample["view"]), tuple(int(f) for f in sample["frames"]))
            item = groups.setdefault(key, {
                "clip_id": clip_id,
                "folder": str(folder.relative_to(renders)),
                "view": key[0],
                "frames": list(key[1]),
                "category": str(meta.get("category", "")),
                "drags": [],
            })
            item["drags"].append(drag_schema.sample_array(sample).tolist())
        items.extend(groups[k] for k in sorted(groups))
    return items


def _item_key(item: dict) -> str:
    return f"{item['clip_id']}#{item['view']}#{','.join(map(str, item['frames']))}"


def plan_name(shard: tuple[int, int]) -> str:
    index, count = shard
    return PLAN_FILE if count == 1 else f"plan_{index}-of-{count}.json"


def shard_name(shard: tuple[int, int], number: int) -> str:
    index, count = shard
    return SHARD_NAME.format(number) if count == 1 else f"shard_{index}-of-{count}_{number:05d}.safetensors"


def update_plan(out: Path, renders: Path, shard: tuple[int, int] = (0, 1)) -> list[dict]:
    """Load this shard's plan (keeping its order) and append items of its assets not yet planned."""
    plan_path = out / plan_name(shard)
    planned = json.loads(plan_path.read_text())["items"] if plan_path.is_file() else []
    known = {_item_key(i) for i in planned}
    new = [i for i in plan_items(renders, shard) if _item_key(i) not in known]
    if new or not plan_path.is_file():
        planned = planned + new
        write_json_atomic(plan_path, {"format": FORMAT, "version": FORMAT_VERSION, "renders": str(renders),
                                      "items": planned})
    return planned


def shard_complete(path: Path, expected: int) -> bool:
    if not path.is_file():
        return False
    try:
        with safe_open(path, framework="pt") as f:
            return len(json.loads(f.metadata()["entries"])) == expected
    except Exception:  # a damaged shard is re-encoded
        return False


def encode_item(encoders: Encoders, renders: Path, item: dict, resolution: int) -> dict[str, torch.Tensor]:
    folder = renders / item["folder"]
    images = []
    for frame in item["frames"]:
        path = folder / clip_folder.FRAME_NAME.format(view=item["view"], frame=frame)
        try:
            with Image.open(path) as im:
                images.append(composite_on_white(im, resolution))
        except (FileNotFoundError, OSError) as exc:
            raise CacheError(f"{path}: cannot read frame ({exc})") from exc
    pixels = to_tensor(images)
    mean, std = encoders.encode_frames(pixels)
    embedding = encoders.encode_image(pixels[:1])
    return {"mean": mean.half(), "std": std.half(), "embedding": embedding.half()}


def write_shard(path: Path, tensors: dict[str, torch.Tensor], entries: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    metadata = {"format": FORMAT, "version": FORMAT_VERSION, "entries": json.dumps(entries)}
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cache(
    renders: str | Path,
    out: str | Path,
    encoders: Encoders,
    *,
    shard_size: int = 64,
    resolution: int = 256,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
) -> list[Path]:
    """Encode every planned item of this shard's assets not yet in a finished file; return its files."""
    renders, out = Path(renders), Path(out)
    if shard_size < 1 or not 0 <= shard[0] < shard[1]:
        raise CacheError(f"need shard_size >= 1 and a shard i/n with 0 <= i < n, got {shard_size}, {shard}")
    out.mkdir(parents=True, exist_ok=True)
    items = update_plan(out, renders, shard)
    shards = [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
    mine = list(range(len(shards)))
    todo = [i for i in mine if not shard_complete(out / shard_name(shard, i), len(shards[i]))]
    logger.info("shard %d/%d: %d items in %d files, %d to encode", *shard, len(items), len(shards), len(todo))
    bar = tqdm(total=sum(len(shards[i]) for i in todo), unit="clip", disable=not progress, desc="caching latents")
    for index in todo:
        tensors, entries = {}, []
        for j, item in enumerate(shards[index]):
            key = f"e{j:04d}"
            for name, value in encode_item(encoders, renders, item, resolution).items():
                tensors[f"{key}.{name}"] = value
            entries.append({"key": key, **{k: item[k] for k in ("clip_id", "view", "frames", "category", "drags")}})
            bar.update(1)
        write_shard(out / shard_name(shard, index), tensors, entries)
    bar.close()
    shard_status.write_status(out, "cache", *shard, exit_status=0, counts={"items": len(items), "files": len(shards)},
                              failed=[])
    return [out / shard_name(shard, i) for i in mine]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", required=True, help="render root (clip folders with drags.json)")
    parser.add_argument("--svd", required=True, help="local SVD img2vid folder (diffusers layout)")
    parser.add_argument("--out", required=True, help="cache folder")
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--shard", default="0/1", help="i/n: the assets render.py --shard i/n rendered")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        shard = render_plan.parse_shard(args.shard)
    except render_plan.InputError as exc:
        parser.error(str(exc))
    try:
        encoders = Encoders.from_svd(args.svd, args.device, getattr(torch, args.dtype))
        cache(args.renders, args.out, encoders, shard_size=args.shard_size, resolution=args.resolution, shard=shard)
    except (CacheError, clip_folder.ClipError, drag_schema.DragFileError) as exc:
        parser.exit(2, f"error: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: finished shards are kept; run again to continue\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
