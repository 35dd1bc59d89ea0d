"""Objaverse ids -> local GLB files, with the ``objaverse`` package and its usual cache layout.

The cache is ``<cache>/hf-objaverse-v1/glbs/<000-xxx>/<uid>.glb`` (``<cache>`` defaults to
``~/.objaverse``, as the package uses). Files already there are never downloaded again, so an
interrupted run resumes where it stopped. The result is a list file ``{uid: path}`` that
``render.py`` takes as input, plus the ids that could not be found::

    python -m dataset_tools.download --ids ../shared/data/objaverse-animation-HQ.json --out glbs.json
    python -m dataset_tools.download --ids ids.json --out glbs.json --offline   # resolve only
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

VERSION_DIR = "hf-objaverse-v1"
OBJECT_PATHS_FILE = "object-paths.json.gz"
DEFAULT_CACHE = Path("~/.objaverse").expanduser()

#: fetch(uids, cache_dir, processes) -> {uid: local path}: downloads into the cache layout
Fetcher = Callable[[list[str], Path, int], dict[str, str]]


class DownloadError(RuntimeError):
    """Downloading cannot start (no objaverse package, unreadable id list); the message says why."""


def read_ids(path: str | Path) -> list[str]:
    """Ids from a JSON list (the released id lists), a JSON object (its keys) or a text file (one per line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DownloadError(f"{path}: cannot read the id list ({exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DownloadError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            data = list(data)
        if not isinstance(data, list) or not all(isinstance(i, str) for i in data):
            raise DownloadError(f"{path}: expected a JSON list of id strings")
        ids = data
    else:
        ids = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(dict.fromkeys(i.removesuffix(".glb") for i in ids))


def versioned_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir).expanduser() / VERSION_DIR


def local_index(cache_dir: str | Path) -> dict[str, Path]:
    """Every complete GLB in the cache, uid -> path (partial ``.tmp`` downloads are ignored)."""
    root = versioned_dir(cache_dir)
    index: dict[str, Path] = {}
    paths_file = root / OBJECT_PATHS_FILE
    if paths_file.is_file():  # the package's own uid -> relative path table, when it was fetched
        with gzip.open(paths_file, "rt") as handle:
            for uid, rel in json.load(handle).items():
                candidate = root / rel
                if candidate.is_file():
                    index[uid] = candidate
    for glb in (root / "glbs").glob("*/*.glb"):
        index.setdefault(glb.stem, glb)
    return index


def resolve(ids: Iterable[str], cache_dir: str | Path) -> tuple[dict[str, str], list[str]]:
    """``({uid: path} of the ids already in the cache, [missing ids])``, in the order of ``ids``."""
    index = local_index(cache_dir)
    found, missing = {}, []
    for uid in ids:
        if uid in index:
            found[uid] = str(index[uid])
        else:
            missing.append(uid)
    return found, missing


def objaverse_fetch(uids: list[str], cache_dir: Path, processes: int) -> dict[str, str]:
    """Download with the ``objaverse`` package into ``cache_dir`` (its module paths redirected there)."""
    try:
        import objaverse
    except ImportError as exc:
        raise DownloadError(
            "the 'objaverse' package is not installed: `pip install objaverse` (or use --offline to "
            "only resolve files already in the cache)"
        ) from exc
    objaverse.BASE_PATH = str(Path(cache_dir).expanduser())
    objaverse._VERSIONED_PATH = str(versioned_dir(cache_dir))
    return objaverse.load_objects(uids, download_processes=processes)


def _progress(total: int, initial: int):
    try:
        from tqdm import tqdm
    except ImportError:  # Blender's Python: plain lines instead of a bar
        return None
    return tqdm(total=total, initial=initial, unit="glb", desc="download")


def download(
    ids: list[str],
    cache_dir: str | Path = DEFAULT_CACHE,
    *,
    out: Path | None = None,
    chunk_size: int = 50,
    processes: int = 1,
    fetch: Fetcher = objaverse_fetch,
    max_failed_chunks: int = 3,
) -> tuple[dict[str, str], dict[str, str]]:
    """Make every id available locally; returns ``({uid: path}, {uid: why it is missing})``.

    Works in chunks; after each one the list file ``out`` is rewritten, so stopping at any time
    loses nothing. Gives up after ``max_failed_chunks`` chunks in a row fail (e.g. no network).
    """
    found, missing = resolve(ids, cache_dir)
    failures: dict[str, str] = {}
    bar = _progress(len(ids), len(found))
    failed_in_row = 0
    for start in range(0, len(missing), chunk_size):
        chunk = missing[start:start + chunk_size]
        try:
            got = fetch(chunk, Path(cache_dir).expanduser(), processes)
            failed_in_row = 0
        except DownloadError:
            raise
        except Exception as exc:  # network errors: note them and go on with the next chunk
            got = {}
            failed_in_row += 1
            for uid in chunk:
                failures[uid] = f"{type(exc).__name__}: {exc}"
        for uid in chunk:
            path = got.get(uid)
            if path and Path(path).is_file():
                found[uid] = str(path)
            else:
                failures.setdefault(uid, "not in Objaverse (unknown uid) or download failed")
        if bar is not None:
            bar.update(len(chunk))
        else:
            print(f"download: {len(found)}/{len(ids)} available", flush=True)
        if out is not None:
            write_list(out, found, failures)
        if failed_in_row >= max_failed_chunks:
            for uid in missing[start + chunk_size:]:
                failures[uid] = f"not attempted: {max_failed_chunks} chunks failed in a row"
            break
    if bar is not None:
        bar.close()
    if out is not None:
        write_list(out, found, failures)
    return found, failures


def write_list(out: Path, found: dict[str, str], failures: dict[str, str]) -> None:
    """The ``{uid: path}`` list file and, beside it, ``<name>.missing.json`` ``{uid: reason}``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path, data in ((out, found), (out.with_suffix(".missing.json"), failures)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset_tools.download", description="Objaverse ids -> local GLB files.")
    parser.add_argument("--ids", required=True, type=Path, help="id list: JSON list/object or text, one per line")
    parser.add_argument("--out", required=True, type=Path, help="list file to write: {uid: path}")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="objaverse cache root")
    parser.add_argument("--limit", type=int, default=0, help="only the first N ids (0 = all)")
    parser.add_argument("--processes", type=int, default=4, help="parallel downloads")
    parser.add_argument("--chunk", type=int, default=50, help="ids per download call (list file saved after each)")
    parser.add_argument("--offline", action="store_true", help="only resolve files already in the cache")
    args = parser.parse_args(argv)
    try:
        ids = read_ids(args.ids)
        if args.limit > 0:
            ids = ids[: args.limit]
        if args.offline:
            found, missing = resolve(ids, args.cache_dir)
            failures = dict.fromkeys(missing, "not in the local cache (offline)")
            write_list(args.out, found, failures)
        else:
            found, failures = download(
                ids, args.cache_dir, out=args.out, chunk_size=max(1, args.chunk), processes=max(1, args.processes)
            )
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(found)}/{len(ids)} GLBs available, list in {args.out}; "
          f"{len(failures)} missing (see {args.out.with_suffix('.missing.json')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
