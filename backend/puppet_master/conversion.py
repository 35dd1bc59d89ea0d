"""SVD img2vid + the released weights -> one self-contained pipeline folder, written atomically.

``convert_to_folder`` is what ``puppet-master convert`` and ``puppet-master download`` run: the
pipeline is built with the strict loader (``loading.pipeline_from_svd``), saved into a temporary
sibling of the destination and moved into place, so a folder at ``out`` is always complete. A
manifest (``manifest.json``: its sources, licences, date and the sha256 of every weight file) is
written inside it when given.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

from puppet_master.outputs import write_json_atomic

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "puppet-master/model-manifest"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class ConversionError(RuntimeError):
    """The destination cannot be written; the message says why and what to do."""


@dataclass
class Converted:
    folder: Path
    unet_parameters: int
    dtype: str


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def weight_hashes(folder: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every weight file under ``folder``."""
    return {p.relative_to(folder).as_posix(): sha256_of(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in WEIGHT_SUFFIXES}


def check_destination(out: str | PathLike, overwrite: bool) -> Path:
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConversionError(f"{out} already exists and is not empty; choose a new folder or pass --overwrite")
    return out


def convert_to_folder(
    svd: str | PathLike, checkpoint: str | PathLike, out: str | PathLike, *, dtype: str = "float32",
    overwrite: bool = False, manifest: dict | None = None, **drag_settings,
) -> Converted:
    """Build the pipeline from ``svd`` + ``checkpoint`` and write it to ``out`` (see the module docstring).

    Raises ``ConversionError`` for an existing destination and ``loading.ModelLoadError`` for
    weights that do not fit, before anything is written.
    """
    import torch

    from puppet_master.loading import pipeline_from_svd, resolve_dtype

    # 1. the destination, before any heavy loading
    out = check_destination(out, overwrite)
    # 2. the pipeline (the U-Net loads the checkpoint strictly)
    torch_dtype = resolve_dtype(dtype, torch.device("cpu"))
    pipe = pipeline_from_svd(svd, checkpoint, dtype=torch_dtype, **drag_settings)
    # 3. a temporary sibling, then moved into place (never a half-written folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.converting-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if manifest is not None:
            write_json_atomic(tmp / MANIFEST_FILE, {
                "format": MANIFEST_FORMAT, "version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "dtype": str(torch_dtype).removeprefix("torch."), **manifest, "weights": weight_hashes(tmp),
            })
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    params = sum(p.numel() for p in pipe.unet.parameters())
    return Converted(out, params, str(torch_dtype).removeprefix("torch."))
