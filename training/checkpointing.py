"""Checkpoints for exact resume, in safetensors and JSON (no pickles).

``<output_dir>/checkpoints/checkpoint-<step>/``:

- ``model/``, ``ema/``: diffusers folders (``config.json`` + ``diffusion_pytorch_model.safetensors``),
  each loadable with ``PuppetMasterUNet.from_pretrained``;
- ``optimizer.safetensors``: the optimiser state tensors, its param groups as JSON metadata;
- ``rng_state_<rank>.safetensors``: torch (CPU and accelerator), NumPy and Python RNG states;
- ``trainer_state.json``, written last: step, samples seen (the data position), LR schedule and
  grad-scaler state, EMA update count.

``checkpoints/latest.json`` names the newest complete checkpoint; resume reads it instead of parsing
folder names. Older checkpoints beyond the configured limit are deleted.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from puppet_master.outputs import write_json_atomic

STATE_FILE = "trainer_state.json"
LATEST_FILE = "latest.json"
OPTIMIZER_FILE = "optimizer.safetensors"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SHARDED_DIR = "accelerate_state"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or resumed; the message names the file."""


@dataclass
class TrainerState:
    step: int
    samples_seen: int
    scheduler: dict
    scaler: dict | None
    ema_updates: int
    extra: dict


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"checkpoint-{step:08d}"


# -- optimiser -------------------------------------------------------------------------------------


def optimizer_to_safetensors(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors, scalars = {}, {}
    for pid, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    groups = [dict(g) for g in state["param_groups"]]
    return tensors, {"param_groups": json.dumps(groups), "scalars": json.dumps(scalars)}


def optimizer_from_safetensors(path: Path) -> dict:
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for key, value in json.loads(metadata.get("scalars", "{}")).items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": json.loads(metadata["param_groups"])}


# -- RNG ---------------------------------------------------------------------------------------------


def rng_state_to_safetensors() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, py_state, gauss_next = random.getstate()
    metadata = {
        "numpy": json.dumps([kind, int(pos), int(has_gauss), float(gauss)]),
        "python": json.dumps([version, list(py_state), gauss_next]),
    }
    return tensors, metadata


def restore_rng_state(path: Path) -> None:
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    kind, pos, has_gauss, gauss = json.loads(metadata["numpy"])
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, gauss_next = json.loads(metadata["python"])
    random.setstate((version, tuple(py_state), gauss_next))


# -- whole checkpoints -------------------------------------------------------------------------------


def save_model_folder(model, folder: Path, state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """A diffusers folder of ``model`` (or of ``state_dict`` with the model's config)."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    if state_dict is not None:
        full = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        for name, value in state_dict.items():
            full[name] = value.detach().to(full[name].dtype).cpu().contiguous()
        save_file(full, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})


def save_checkpoint(
    root: Path,
    *,
    step: int,
    samples_seen: int,
    model,
    ema,
    optimizer,
    scheduler,
    scaler=None,
    process_index: int = 0,
    is_main: bool = True,
    wait=lambda: None,
    extra: dict | None = None,
    total_limit: int | None = None,
    save_sharded=None,
) -> Path:
    """Write a checkpoint (every process calls this; ``wait`` is a barrier between processes).

    With FSDP or DeepSpeed, ``save_sharded(folder)`` (accelerate's ``save_state``) writes the sharded
    model and optimiser into ``accelerate_state/`` and each process writes its own EMA shard.
    """
    folder = checkpoint_dir(root, step)
    if is_main:
        if folder.exists():
            shutil.rmtree(folder)  # a half-written checkpoint of the same step from a crashed run
        folder.mkdir(parents=True)
    wait()
    tensors, metadata = rng_state_to_safetensors()
    save_file(tensors, str(folder / f"rng_state_{process_index}.safetensors"), metadata=metadata)
    if save_sharded is not None:
        save_sharded(folder / SHARDED_DIR)
        save_file({k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()},
                  str(folder / f"ema_rank{process_index}.safetensors"))
    elif is_main:
        save_model_folder(model, folder / "model")
        save_model_folder(model, folder / "ema", ema.state_dict())
        tensors, metadata = optimizer_to_safetensors(optimizer.state_dict())
        save_file(tensors, str(folder / OPTIMIZER_FILE), metadata=metadata)
    wait()
    if is_main:
        state = {
            "step": step,
            "samples_seen": samples_seen,
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema_updates": ema.num_updates,
            "extra": extra or {},
        }
        write_json_atomic(folder / STATE_FILE, state)
        write_json_atomic(root / LATEST_FILE, {"checkpoint": folder.name, "step": step})
        if total_limit:
            prune(root, total_limit)
    wait()
    return folder


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint with a trainer_state.json, oldest first."""
    found = []
    for state_file in root.glob(f"*/{STATE_FILE}"):
        try:
            found.append((int(json.loads(state_file.read_text())["step"]), state_file.parent))
        except (json.JSONDecodeError, KeyError, ValueError):
            continue
    return sorted(found)


def prune(root: Path, limit: int) -> None:
    for _, folder in complete_checkpoints(root)[:-limit]:
        shutil.rmtree(folder, ignore_errors=True)


def resolve_resume(root: Path, resume: str) -> Path | None:
    """The checkpoint folder to resume from: ``latest`` (None when there is none yet) or a path."""
    if not resume:
        return None
    if resume == "latest":
        latest = root / LATEST_FILE
        if latest.is_file():
            folder = root / json.loads(latest.read_text())["checkpoint"]
            if (folder / STATE_FILE).is_file():
                return folder
        done = complete_checkpoints(root) if root.is_dir() else []
        return done[-1][1] if done else None
    folder = Path(resume)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"cannot resume from {folder}: no {STATE_FILE} (not a complete checkpoint)")
    return folder


def load_checkpoint(
    folder: Path, *, model, ema, optimizer, scheduler, scaler=None, process_index: int = 0, load_sharded=None
) -> TrainerState:
    """Restore everything saved by ``save_checkpoint`` into live objects; return the trainer state."""
    state = json.loads((folder / STATE_FILE).read_text())
    if load_sharded is not None:
        load_sharded(folder / SHARDED_DIR)
        ema_weights = load_file(str(folder / f"ema_rank{process_index}.safetensors"))
    else:
        weights = load_file(str(folder / "model" / WEIGHTS_NAME))
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"{folder / 'model'} does not match the model: missing {list(missing)[:3]}, "
                f"unexpected {list(unexpected)[:3]}"
            )
        ema_weights = load_file(str(folder / "ema" / WEIGHTS_NAME))
        optimizer.load_state_dict(optimizer_from_safetensors(folder / OPTIMIZER_FILE))
    missing = [k for k in ema.shadow if k not in ema_weights]
    if missing:
        raise CheckpointError(f"{folder}: EMA weights lack {missing[:3]}")
    ema.load_state_dict({k: ema_weights[k] for k in ema.shadow}, num_updates=state["ema_updates"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    rng = folder / f"rng_state_{process_index}.safetensors"
    if rng.is_file():
        restore_rng_state(rng)
    return TrainerState(state["step"], state["samples_seen"], state["scheduler"], state.get("scaler"),
                        state["ema_updates"], state.get("extra", {}))


def trained_residual_scale(model_folder: str | Path) -> float:
    """The ``train.residual_scale`` a checkpoint's ``model/`` or ``ema/`` folder was trained with
    (its ``trainer_state.json``); 0 for folders outside a checkpoint or from older runs."""
    state_file = Path(model_folder).parent / STATE_FILE
    if not state_file.is_file():
        return 0.0
    try:
        return float(json.loads(state_file.read_text()).get("extra", {}).get("residual_scale", 0.0))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{state_file}: unreadable trainer state ({exc})") from exc
