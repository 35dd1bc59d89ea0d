"""Build the procedural training corpus: animated GLBs + manifest, then renders, drags and id lists.

    python -m dataset_tools.build_corpus OUT --train 125 --heldout 13 --render --workers 2

For every family (cabinet, box, lamp, creature) ``--train`` assets come from seeds
``--train-seed-start ...`` and ``--heldout`` assets from seeds ``--heldout-seed-start ...``: the
split is decided by the seed range alone. Stages (each resumable, each shardable with
``--shard i/n`` by a stable hash of the asset id, the same rule render.py uses):

1. generate: bpy worker processes (``--gen-workers``) write ``OUT/glb/<split>/<id>.glb`` and
   ``OUT/records/<split>/<id>.json``; assets with a record are skipped. Then ``OUT/manifest.json``.
2. ``--render``: ``render.py`` per split into ``OUT/renders/<split>/`` (its own resume and report).
3. drags (with ``--render``, unless ``--no-drags``): ``drags.json`` per clip (sample_drags).
4. lists: ``OUT/lists/<split>.json`` (asset ids) and ``<split>_clips.json`` (clip ids with drag
   samples), in the released id-list format, and ``OUT/categories.json`` (asset id -> family).

``--extra FILE.glb`` adds animated assets of other sources (``../shared/assets/RobotExpressive.glb``)
to the training split as family ``external``: copied to ``OUT/glb/train/``, rendered and
drag-sampled with the rest.

docs/corpus.md describes the families, the manifest and the layout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dataset_tools.corpus.families import FAMILIES, asset_id
from dataset_tools.id_lists import write_id_list
from dataset_tools.render_plan import InputError, in_shard, parse_shard

ROOT = Path(__file__).resolve().parent.parent

MANIFEST = "manifest.json"
FORMAT = "puppet-master/procedural-corpus"
VERSION = 1
SPLITS = ("train", "heldout")
EXTERNAL = "external"  # the family of --extra assets
CHUNK = 25  # assets per generator process (a crash loses at most its unfinished ones; rerun resumes)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dataset_tools.build_corpus", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("out", type=Path, help="corpus folder")
    g = p.add_argument_group("assets")
    g.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    g.add_argument("--train", type=int, default=125, help="training assets per family")
    g.add_argument("--heldout", type=int, default=13, help="held-out assets per family")
    g.add_argument("--train-seed-start", type=int, default=0)
    g.add_argument("--heldout-seed-start", type=int, default=900_000, help="held-out seeds start here")
    g.add_argument("--frames", type=int, default=24, help="frames per clip (24 fps)")
    g.add_argument("--max-clips", type=int, default=2, help="clips per asset at most")
    g.add_argument("--gen-workers", type=int, default=1, help="generator processes at a time")
    g.add_argument("--extra", action="append", type=Path, default=[], metavar="GLB",
                   help="an animated GLB of another source for the training split (repeatable)")
    g.add_argument("--shard", default="0/1", help="only assets with crc32(id) %% n == i")
    g = p.add_argument_group("rendering (render.py)")
    g.add_argument("--render", action="store_true", help="render the assets, sample drags and write the lists")
    g.add_argument("--workers", type=int, default=1, help="Blender render processes at a time")
    g.add_argument("--engine", choices=("cycles", "workbench", "eevee"), default="cycles")
    g.add_argument("--samples", type=int, default=4, help="Cycles samples per pixel")
    g.add_argument("--resolution", type=int, default=128)
    g.add_argument("--views", type=int, default=4)
    g.add_argument("--azimuth-offset", default="random",
                   help="azimuth of view 0 in degrees, or 'random' (seeded per asset and clip)")
    g.add_argument("--render-frames", type=int, default=14, help="rendered frames per clip")
    g.add_argument("--points", type=int, default=2048, help="tracked surface points per clip")
    g.add_argument("--timeout", type=float, default=900.0, help="seconds per asset render")
    g.add_argument("--seed", type=int, default=0, help="camera and drag sampling seed")
    g.add_argument("--render-arg", action="append", default=[], metavar="ARG",
                   help="extra argument passed to render.py (repeatable), e.g. --render-arg=--review-strip")
    g.add_argument("--no-drags", action="store_true", help="render only; no drags.json and no lists")
    p.add_argument("--no-progress", action="store_true")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[int, int]:
    problems = []
    if args.train < 0 or args.heldout < 0:
        problems.append("--train and --heldout must be >= 0")
    if args.frames < 4:
        problems.append("--frames must be at least 4")
    if args.max_clips < 1 or args.gen_workers < 1 or args.workers < 1:
        problems.append("--max-clips, --gen-workers and --workers must be at least 1")
    train = range(args.train_seed_start, args.train_seed_start + args.train)
    heldout = range(args.heldout_seed_start, args.heldout_seed_start + args.heldout)
    if train and heldout and train.start < heldout.stop and heldout.start < train.stop:
        problems.append(f"the train seeds {train.start}..{train.stop - 1} overlap the held-out seeds "
                        f"{heldout.start}..{heldout.stop - 1}; move --heldout-seed-start")
    procedural = {a["id"] for a in planned_assets(args) if a["family"] != EXTERNAL}
    stems = [path.stem for path in args.extra]
    for path in args.extra:
        if path.suffix.lower() != ".glb":
            problems.append(f"--extra {path}: only .glb files (one file holds the whole asset)")
        elif not path.is_file():
            problems.append(f"--extra {path}: no such file")
        if path.stem in procedural or stems.count(path.stem) > 1:
            problems.append(f"--extra {path}: asset id {path.stem!r} is already taken; rename the file")
    try:
        shard = parse_shard(args.shard)
    except InputError as exc:
        problems.append(str(exc))
        shard = (0, 1)
    if problems:
        parser.error("; ".join(problems))
    return shard


def planned_assets(args: argparse.Namespace) -> list[dict]:
    """Every asset of the corpus (all shards): id, family, seed, split."""
    assets = []
    for split, start, count in (("train", args.train_seed_start, args.train),
                                ("heldout", args.heldout_seed_start, args.heldout)):
        for family in args.families:
            for seed in range(start, start + count):
                assets.append({"id": asset_id(family, seed), "family": family, "seed": seed, "split": split})
    for path in args.extra:
        assets.append({"id": path.stem, "family": EXTERNAL, "seed": None, "split": "train", "source": path})
    return assets


def paths(out: Path, asset: dict) -> tuple[Path, Path]:
    return out / "glb" / asset["split"] / f"{asset['id']}.glb", out / "records" / asset["split"] / f"{asset['id']}.json"


def add_external(out: Path, asset: dict) -> None:
    """Copy an ``--extra`` asset into the corpus with its record (again when the source changed)."""
    import hashlib
    import shutil

    from puppet_master.outputs import write_json_atomic

    glb, record = paths(out, asset)
    source = Path(asset["source"])
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if record.is_file() and glb.is_file():
        if json.loads(record.read_text()).get("sha256") == digest:
            return
        shutil.rmtree(out / "renders" / asset["split"] / asset["id"], ignore_errors=True)  # renders of the old file
    glb.parent.mkdir(parents=True, exist_ok=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, glb)
    write_json_atomic(record, {"id": asset["id"], "family": EXTERNAL, "split": asset["split"], "seed": None,
                               "source": str(source.resolve()), "sha256": digest,
                               "glb": str(glb.relative_to(out))})


def _progress(total: int, desc: str, disable: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="asset", disable=disable)


def generate(args: argparse.Namespace, assets: list[dict]) -> list[dict]:
    """Build the assets without a record, in ``--gen-workers`` bpy processes; returns the failures."""
    todo = []
    for asset in assets:
        glb, record = paths(args.out, asset)
        if asset["family"] == EXTERNAL:
            add_external(args.out, asset)
        elif not (glb.is_file() and record.is_file()):
            todo.append(asset)
    print(f"generate: {len(assets) - len(todo)} of {len(assets)} assets done before, {len(todo)} to build", flush=True)
    if not todo:
        return []
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    failures: list[dict] = []
    lock = threading.Lock()
    bar = _progress(len(todo), "generate", args.no_progress)
    chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]

    def run_chunk(number_and_chunk) -> None:
        number, chunk = number_and_chunk
        seen = set()
        with tempfile.TemporaryDirectory(prefix="pm_corpus_jobs_") as tmp:
            jobs = Path(tmp) / "jobs.jsonl"
            lines = []
            for asset in chunk:
                glb, record = paths(args.out, asset)
                record.parent.mkdir(parents=True, exist_ok=True)
                lines.append(json.dumps({"family": asset["family"], "seed": asset["seed"], "glb": str(glb),
                                         "record": str(record), "frames": args.frames, "max_clips": args.max_clips,
                                         "extra": {"split": asset["split"],
                                                   "glb": str(glb.relative_to(args.out))}}))
            jobs.write_text("\n".join(lines) + "\n")
            command = [sys.executable, "-m", "dataset_tools.corpus.generate", str(jobs)]
            with open(logs / f"generate_{number:05d}.log", "w") as log:
                process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           text=True)
                for line in process.stdout:
                    if not line.startswith("CORPUS "):
                        log.write(line)
                        continue
                    status = json.loads(line[len("CORPUS "):])
                    seen.add(status["id"])
                    with lock:
                        if status["status"] != "ok":
                            failures.append(status)
                            bar.write(f"failed: {status['id']}: {status['reason']}")
                        bar.update(1)
                code = process.wait()
        for asset in chunk:
            if asset["id"] not in seen:
                with lock:
                    failures.append({"id": asset["id"], "status": "failed",
                                     "reason": f"generator process exited with code {code} (see logs/)"})
                    bar.update(1)

    with ThreadPoolExecutor(max_workers=args.gen_workers) as pool:
        list(pool.map(run_chunk, enumerate(chunks)))
    bar.close()
    if failures:
        with open(args.out / "generate_failures.jsonl", "a") as f:
            for failure in failures:
                f.write(json.dumps({**failure, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
    return failures


def write_manifest(args: argparse.Namespace, assets: list[dict]) -> dict:
    """``OUT/manifest.json`` from every record on disk for the planned assets (all shards)."""
    records, missing = [], []
    for asset in assets:
        glb, record_path = paths(args.out, asset)
        if glb.is_file() and record_path.is_file():
            records.append(json.loads(record_path.read_text()))
        else:
            missing.append(asset["id"])
    manifest = {
        "format": FORMAT, "version": VERSION,
        "settings": {"families": args.families, "frames": args.frames, "max_clips": args.max_clips,
                     "extra": [str(path) for path in args.extra]},
        "splits": {
            "train": {"seed_range": [args.train_seed_start, args.train_seed_start + args.train]},
            "heldout": {"seed_range": [args.heldout_seed_start, args.heldout_seed_start + args.heldout]},
        },
        "assets": records,
        "missing": missing,
    }
    from puppet_master.outputs import write_json_atomic

    write_json_atomic(args.out / MANIFEST, manifest)
    return manifest


def render(args: argparse.Namespace, split: str) -> int:
    source = args.out / "glb" / split
    if not source.is_dir():
        return 0
    command = [sys.executable, str(ROOT / "dataset_tools" / "render.py"), str(source),
               "--out", str(args.out / "renders" / split), "--shard", args.shard, "--workers", str(args.workers),
               "--engine", args.engine, "--samples", str(args.samples), "--resolution", str(args.resolution),
               "--views", str(args.views), "--azimuth-offset", args.azimuth_offset, "--frames", str(args.render_frames), "--points", str(args.points),
               "--timeout", str(args.timeout), "--seed", str(args.seed), *args.render_arg]
    print(f"render {split}: {' '.join(command[1:])}", flush=True)
    return subprocess.run(command, cwd=ROOT).returncode


def sample_drags(args: argparse.Namespace, split: str, ids: list[str]) -> dict[str, int]:
    """drags.json for every rendered clip of ``ids`` (resumable: finished clips are skipped)."""
    from tqdm import tqdm

    from dataset_tools import sample_drags as sd
    from dataset_tools.clip_folder import find_clips

    settings = sd.settings_from_args(sd.build_parser().parse_args([str(args.out), "--seed", str(args.seed)]))
    folders = []
    for asset in ids:
        folder = args.out / "renders" / split / asset
        if folder.is_dir():
            folders += list(find_clips(folder))
    counts: dict[str, int] = {}
    with open(args.out / "drags_report.jsonl", "a") as report:
        for folder in tqdm(folders, desc=f"drags {split}", unit="clip", disable=args.no_progress):
            try:
                record = sd.process_clip(folder, settings, args.seed, overwrite=False, visualize=False)
            except Exception as exc:  # an unreadable clip is reported; the batch goes on
                record = {"clip": str(folder), "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            report.write(json.dumps(record) + "\n")
    print(f"drags {split}: {len(folders)} clips: {counts}", flush=True)
    return counts


def write_lists(args: argparse.Namespace, manifest: dict) -> dict[str, tuple[int, int]]:
    """Per split, the assets and clips that have drag samples; and asset id -> family."""
    from dataset_tools.drag_schema import DragFileError, read_drags_json

    sizes = {}
    for split in SPLITS:
        assets, clips = [], []
        for record in manifest["assets"]:
            if record["split"] != split:
                continue
            folder = args.out / "renders" / split / record["id"]
            for drags in sorted(folder.glob("*/drags.json")):
                try:
                    doc = read_drags_json(drags)
                except DragFileError:
                    continue
                if doc["samples"]:
                    clips.append(f"{record['id']}/{drags.parent.name}")
                    assets.append(record["id"])
        write_id_list(args.out / "lists" / f"{split}.json", assets)
        write_id_list(args.out / "lists" / f"{split}_clips.json", clips)
        sizes[split] = (len(dict.fromkeys(assets)), len(clips))
    from puppet_master.outputs import write_json_atomic

    write_json_atomic(args.out / "categories.json", {r["id"]: r["family"] for r in manifest["assets"]})
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    index, count = check_args(parser, args)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    assets = planned_assets(args)
    mine = [a for a in assets if in_shard(a["id"], index, count)]
    failures = generate(args, mine)
    manifest = write_manifest(args, assets)
    print(f"manifest: {len(manifest['assets'])} assets ({len(manifest['missing'])} missing) "
          f"in {time.monotonic() - started:.1f}s: {args.out / MANIFEST}", flush=True)
    code = 1 if failures else 0
    if not args.render:
        return code
    built = {r["id"] for r in manifest["assets"]}
    for split in SPLITS:
        code |= render(args, split)
        if not args.no_drags:
            ids = [a["id"] for a in mine if a["split"] == split and a["id"] in built]
            counts = sample_drags(args, split, ids)
            code |= 1 if counts.get("failed") else 0
    if not args.no_drags:
        for split, (n_assets, n_clips) in write_lists(args, manifest).items():
            print(f"lists {split}: {n_assets} assets, {n_clips} clips with drags", flush=True)
    print(f"done in {time.monotonic() - started:.1f}s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
