"""Turn cached rendered clips into Drag-a-Move-format test clips, for ``training.evaluate``.

    python -m training.export_dragamove --cache cache/heldout --renders corpus/renders/heldout --out eval/heldout

For every clip of a latent cache (``training.cache_latents``) this writes ``NNNNN.pkl`` (the
Drag-a-Move fields: ``latents`` (1, N, 4, h, w) scaled by 0.18215, ``cond_latent``, ``embedding``,
``drags`` (1, N, K, 4), ``category`` ...), ``NNNNN.gif`` (the true frames, 256x256 on white) and
``NNNNN.png`` (the first frame with the drags drawn), plus ``index.json`` naming the source of each.
One view and one drag sample per clip by default (the first cached ones); ``--all-views`` keeps every
cached view.
"""

from __future__ import annotations

import argparse
import json
import pickle
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open

from dataset_tools import clip_folder
from puppet_master.edm import VAE_SCALING_FACTOR
from puppet_master.outputs import draw_drags, write_json_atomic
from training.cache_latents import composite_on_white
from training.data import SHARD_GLOB

GIF_SIZE = 256


def cache_entries(cache: Path) -> list[tuple[Path, dict]]:
    """``(shard, entry)`` of every cached item, in shard order."""
    shards = sorted(Path(cache).glob(SHARD_GLOB))
    if not shards:
        raise FileNotFoundError(f"no cache shards ({SHARD_GLOB}) in {cache}")
    found = []
    for shard in shards:
        with safe_open(shard, framework="pt") as f:
            found.extend((shard, e) for e in json.loads(f.metadata()["entries"]))
    return found


def export(cache: str | Path, renders: str | Path, out: str | Path, *, all_views: bool = False,
           max_drags: int = 5) -> list[dict]:
    cache, renders, out = Path(cache), Path(renders), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    folders = {}
    for folder in clip_folder.find_clips(renders, need_tracks=False):
        meta = json.loads((folder / clip_folder.CLIP_FILE).read_text())
        folders[f"{meta.get('asset_id', folder.parent.name)}/{meta.get('clip', folder.name)}"] = folder
        folders.setdefault(f"{folder.parent.name}/{folder.name}", folder)
    index, seen = [], set()
    for shard, entry in cache_entries(cache):
        if not all_views and entry["clip_id"] in seen:
            continue
        seen.add(entry["clip_id"])
        folder = folders.get(entry["clip_id"])
        if folder is None:
            raise FileNotFoundError(f"clip {entry['clip_id']} of {shard.name} is not under {renders}")
        with safe_open(shard, framework="pt") as f:
            mean = f.get_tensor(f"{entry['key']}.mean").float()
            embedding = f.get_tensor(f"{entry['key']}.embedding").float()
        drags = torch.zeros(len(entry["frames"]), max_drags, 4)
        sample = torch.tensor(entry["drags"][0], dtype=torch.float32)[:, :max_drags]
        drags[:, : sample.shape[1]] = sample
        name = f"{len(index):05d}"
        record = {
            "latents": (mean * VAE_SCALING_FACTOR)[None], "cond_latent": mean[:1].clone(),
            "embedding": embedding[None], "drags": drags[None], "category": [entry.get("category") or "other"],
            "instance_idx": [entry["clip_id"]], "camera_idx": [int(entry["view"])],
        }
        with (out / f"{name}.pkl").open("wb") as f:
            pickle.dump(record, f)
        frames = []
        for frame in entry["frames"]:
            with Image.open(folder / clip_folder.FRAME_NAME.format(view=entry["view"], frame=frame)) as im:
                frames.append(composite_on_white(im, GIF_SIZE))
            # GIF writers merge identical consecutive frames (a part that starts moving late): one
            # corner pixel alternates 255/254 so that the GIF keeps every frame
            frames[-1].putpixel((0, 0), (255 - len(frames) % 2,) * 3)
        frames[0].save(out / f"{name}.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
        draw_drags(frames[0].copy(), drags.numpy()).save(out / f"{name}.png")
        index.append({"name": name, "clip_id": entry["clip_id"], "view": entry["view"], "frames": entry["frames"]})
    write_json_atomic(out / "index.json", {"cache": str(cache), "renders": str(renders), "clips": index})
    return index


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True, help="latent cache of the clips (training.cache_latents)")
    parser.add_argument("--renders", required=True, help="their render root (for the true frames)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--all-views", action="store_true", help="every cached view (default: one per clip)")
    args = parser.parse_args(argv)
    try:
        index = export(args.cache, args.renders, args.out, all_views=args.all_views)
    except (FileNotFoundError, OSError, clip_folder.ClipError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"{len(index)} clips written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
