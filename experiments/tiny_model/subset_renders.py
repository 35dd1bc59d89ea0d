"""A smaller render root for a CPU budget: a few clips per asset family, one view each.

    python -m experiments.tiny_model.subset_renders --renders corpus/renders/train --out corpus/subset/train --per-family 12

Clip folders are linked (symlinks to their files), and each ``drags.json`` is rewritten with the
samples of one view only (chosen from a seeded hash of the clip id), so ``training.cache_latents``
encodes one (clip, view) item per clip. Families are read from the asset id prefix
(``<family>_<seed>``); clips are taken in a seeded random order, so every family is represented.
"""

from __future__ import annotations

import argparse
import json
import random
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from dataset_tools import clip_folder, drag_schema


def subset(renders: str | Path, out: str | Path, *, per_family: int, views_per_clip: int = 1, seed: int = 0) -> list[str]:
    renders, out = Path(renders), Path(out)
    by_family: dict[str, list[Path]] = defaultdict(list)
    for folder in clip_folder.find_clips(renders, need_tracks=False):
        if (folder / drag_schema.DRAGS_FILE).is_file():
            by_family[folder.parent.name.rsplit("_", 1)[0]].append(folder)
    chosen = []
    for family in sorted(by_family):
        folders = sorted(by_family[family])
        random.Random(f"{seed}:{family}").shuffle(folders)
        chosen.extend(folders[:per_family])
    kept = []
    for folder in chosen:
        rel = folder.relative_to(renders)
        doc = json.loads((folder / drag_schema.DRAGS_FILE).read_text())
        views = sorted({int(s["view"]) for s in doc["samples"]})
        rng = random.Random(zlib.crc32(f"{seed}:{rel}".encode()))
        keep = set(rng.sample(views, min(views_per_clip, len(views))))
        doc["samples"] = [s for s in doc["samples"] if int(s["view"]) in keep]
        target = out / rel
        target.mkdir(parents=True, exist_ok=True)
        for item in folder.iterdir():
            link = target / item.name
            if item.name != drag_schema.DRAGS_FILE and not link.exists():
                link.symlink_to(item.resolve())
        (target / drag_schema.DRAGS_FILE).write_text(json.dumps(doc))
        kept.append(str(rel))
    return kept


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--renders", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--per-family", type=int, required=True, help="clips per asset family")
    parser.add_argument("--views-per-clip", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    kept = subset(args.renders, args.out, per_family=args.per_family, views_per_clip=args.views_per_clip,
                  seed=args.seed)
    print(f"{len(kept)} clips linked under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
