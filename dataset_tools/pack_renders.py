"""Pack a render root into one compact file, and unpack it pixel for pixel.

    python -m dataset_tools.pack_renders pack corpus/renders/train train.pmpack [--skip tracks.npz]
    python -m dataset_tools.pack_renders unpack train.pmpack corpus/renders/train

Rendered clips are mostly still background and parts that move a little between frames, which PNG
(one frame at a time) cannot exploit. A pack stores each view's frames as one array, coded as the
first frame plus frame-to-frame differences and compressed with LZMA: about 4-5x smaller than the
PNGs of a Workbench corpus, small enough to send a whole corpus to a GPU machine. Every other file of
the clip folders (clip.json, cameras.json, drags.json, tracks.npz, logs) is stored as it is, unless
``--skip`` names it. Unpacking writes PNGs with exactly the original pixels (the PNG bytes may differ).

The pack is an uncompressed tar: ``views/<clip>/view_XX.npy.xz`` entries (uint8 ``(T, H, W, C)``
with differences modulo 256 along T) plus the other files under ``files/``; views are compressed and
decompressed in parallel.
"""

from __future__ import annotations

import argparse
import io
import lzma
import sys
import tarfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

FRAME_GLOB = "[0-9][0-9][0-9][0-9].png"


class PackError(ValueError):
    """A pack or a render root that cannot be read; the message names the file."""


def encode_view(frames: np.ndarray) -> bytes:
    """``(T, H, W, C)`` uint8 frames -> LZMA-compressed ``.npy`` of the first frame and differences."""
    coded = frames.copy()
    coded[1:] = frames[1:] - frames[:-1]  # uint8 arithmetic wraps: exact and reversible
    buffer = io.BytesIO()
    np.save(buffer, coded, allow_pickle=False)
    return lzma.compress(buffer.getvalue(), preset=6)


def decode_view(blob: bytes) -> np.ndarray:
    """Inverse of :func:`encode_view`."""
    coded = np.load(io.BytesIO(lzma.decompress(blob)), allow_pickle=False)
    if coded.dtype != np.uint8 or coded.ndim != 4:
        raise PackError(f"a packed view must be uint8 (T, H, W, C), got {coded.dtype} {coded.shape}")
    return np.cumsum(coded, axis=0, dtype=np.uint8)


def _read_view(view_dir: Path) -> tuple[list[str], np.ndarray]:
    from PIL import Image

    paths = sorted(view_dir.glob(FRAME_GLOB))
    arrays = []
    for path in paths:
        with Image.open(path) as im:
            arrays.append(np.asarray(im))
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise PackError(f"{view_dir}: frames differ in size or mode ({sorted(shapes)})")
    frames = np.stack(arrays)
    if frames.ndim == 3:
        frames = frames[..., None]
    return [p.name for p in paths], frames


def _pack_one(view_dir: str) -> tuple[str, list[str], bytes]:
    names, frames = _read_view(Path(view_dir))
    return view_dir, names, encode_view(frames)


def _unpack_one(job: tuple[bytes, str, list[str]]) -> int:
    from PIL import Image

    blob, out_dir, names = job
    frames = decode_view(blob)
    if len(names) != len(frames):
        raise PackError(f"{out_dir}: {len(frames)} packed frames for {len(names)} names")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, frames, strict=True):
        image = Image.fromarray(frame[..., 0] if frame.shape[-1] == 1 else frame)
        image.save(out / name, compress_level=1)
    return len(names)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def pack(root: str | Path, out: str | Path, *, skip: Iterable[str] = (), workers: int | None = None,
         progress: bool = True) -> dict[str, int]:
    """Pack every view folder (``*/view_XX`` with ``NNNN.png`` frames) and file under ``root``."""
    from tqdm import tqdm

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise PackError(f"{root}: no such render root")
    skip = set(skip)
    view_dirs = sorted(p for p in root.rglob("view_*") if p.is_dir() and any(p.glob(FRAME_GLOB)))
    frame_paths = {p for d in view_dirs for p in d.glob(FRAME_GLOB)}
    others = sorted(p for p in root.rglob("*") if p.is_file() and p not in frame_paths and p.name not in skip)
    tmp = out.with_name(out.name + ".partial")
    counts = {"views": 0, "frames": 0, "files": 0}
    with tarfile.open(tmp, "w") as tar, ProcessPoolExecutor(workers) as pool:
        _add_bytes(tar, "format", b"puppet-master-renders-pack 1\n")
        jobs = pool.map(_pack_one, map(str, view_dirs), chunksize=4)
        for view_dir, names, blob in tqdm(jobs, total=len(view_dirs), desc="pack", unit="view", disable=not progress):
            rel = Path(view_dir).relative_to(root).as_posix()
            _add_bytes(tar, f"views/{rel}.names", "\n".join(names).encode())
            _add_bytes(tar, f"views/{rel}.npy.xz", blob)
            counts["views"] += 1
            counts["frames"] += len(names)
        for path in others:
            _add_bytes(tar, f"files/{path.relative_to(root).as_posix()}", path.read_bytes())
            counts["files"] += 1
    tmp.replace(out)
    return counts


def _safe_target(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise PackError(f"pack entry {rel!r} would be written outside {root}")
    return target


def unpack(pack_file: str | Path, out: str | Path, *, workers: int | None = None,
           progress: bool = True) -> dict[str, int]:
    """Write the render root stored in ``pack_file`` under ``out`` (existing files are overwritten)."""
    from tqdm import tqdm

    pack_file, out = Path(pack_file), Path(out)
    try:
        tar = tarfile.open(pack_file, "r:")  # noqa: SIM115 (closed by the with below)
    except (OSError, tarfile.TarError) as exc:
        raise PackError(f"{pack_file}: not a renders pack ({exc})") from exc
    counts = {"views": 0, "frames": 0, "files": 0}
    with tar, ProcessPoolExecutor(workers) as pool:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        header = members.get("format")
        if header is None or not tar.extractfile(header).read().startswith(b"puppet-master-renders-pack 1"):
            raise PackError(f"{pack_file}: not a renders pack (no 'format' entry of version 1)")
        jobs = []
        for name, member in members.items():
            if name.startswith("files/"):
                target = _safe_target(out, name[len("files/"):])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
                counts["files"] += 1
            elif name.endswith(".npy.xz"):
                rel = name[len("views/"):-len(".npy.xz")]
                names_member = members.get(f"views/{rel}.names")
                if names_member is None:
                    raise PackError(f"{pack_file}: {name} has no frame names")
                names = tar.extractfile(names_member).read().decode().split("\n")
                jobs.append((tar.extractfile(member).read(), str(_safe_target(out, rel)), names))
        for n in tqdm(pool.map(_unpack_one, jobs, chunksize=4), total=len(jobs), desc="unpack", unit="view",
                      disable=not progress):
            counts["views"] += 1
            counts["frames"] += n
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="render root -> pack file")
    p.add_argument("root")
    p.add_argument("out")
    p.add_argument("--skip", action="append", default=[], help="file name to leave out (repeatable)")
    u = sub.add_parser("unpack", help="pack file -> render root")
    u.add_argument("pack")
    u.add_argument("out")
    for q in (p, u):
        q.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
        q.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            counts = pack(args.root, args.out, skip=args.skip, workers=args.workers, progress=not args.no_progress)
        else:
            counts = unpack(args.pack, args.out, workers=args.workers, progress=not args.no_progress)
    except PackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.command}: {counts['views']} views, {counts['frames']} frames, {counts['files']} other files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
