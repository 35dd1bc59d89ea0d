"""Warm-start a U-Net of a larger layout from a trained one, computing the same function at step 0.

    python -m experiments.tiny_model.grow_unet --from experiments/tiny_model/weights/tiny_unet/ema \
        --config experiments/tiny_model/configs/tiny_trained.toml --out runs/grown/unet

The new layout is the recipe's ``[model.unet_config]`` (or ``--set`` overrides of it). Every trained
parameter is carried over by name and shape; a layout that would drop or reshape one is refused,
so growing only adds modules: here, cross-attention blocks (a spatio-temporal transformer and the
drag modules) at a level that had plain blocks. Each added transformer's ``proj_out`` is zeroed, so
its residual branch adds nothing, and the drag modulation towers start at zero by construction
(``DragEmbedder``): the grown network's output equals the trained one's until training moves them
(up to the GroupNorm eps of the resnets: diffusers builds them with 1e-6 in cross-attention down blocks,
1e-5 in plain ones; on the committed tiny U-Net the outputs differ by under 1e-4).
The residual scale of the trained weights (their checkpoint's ``trainer_state.json``) is written beside
``--out`` the same way. Then train it with ``model.init = "checkpoint"`` and ``model.checkpoint_path``
set to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch


class GrowError(ValueError):
    """The new layout cannot carry every trained parameter over unchanged."""


def grow(trained, unet_config: dict):
    """A ``PuppetMasterUNet`` of ``unet_config`` holding every parameter of ``trained`` -> (model, added names)."""
    from puppet_master.models.unet import PuppetMasterUNet

    grown = PuppetMasterUNet(**unet_config)
    old, new = trained.state_dict(), grown.state_dict()
    lost = sorted(name for name in old if name not in new)
    reshaped = sorted(name for name in old if name in new and old[name].shape != new[name].shape)
    if lost or reshaped:
        raise GrowError(
            f"the new layout drops {len(lost)} trained parameters (first: {lost[:3]}) and reshapes "
            f"{len(reshaped)} (first: {reshaped[:3]}); growing may only add modules"
        )
    added = sorted(name for name in new if name not in old)
    new.update(old)
    for name in added:
        if ".proj_out." in name:
            new[name] = torch.zeros_like(new[name])
    grown.load_state_dict(new, strict=True)
    return grown.to(next(trained.parameters()).dtype), added


def main(argv: Sequence[str] | None = None) -> Path:
    from puppet_master.models.unet import PuppetMasterUNet
    from training.checkpointing import STATE_FILE, trained_residual_scale
    from training.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True, help="a trained PuppetMasterUNet folder")
    parser.add_argument("--config", type=Path, required=True, help="recipe whose [model.unet_config] is the new layout")
    parser.add_argument("--set", action="append", default=[], help="override of the recipe (as in training.train)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    if not (args.source / "config.json").is_file():
        raise SystemExit(f"--from {args.source}: no config.json (expected a PuppetMasterUNet folder)")
    layout = dict(load_config(args.config, args.set).model.unet_config)
    if not layout:
        raise SystemExit(f"{args.config} has no [model.unet_config] table to grow into")
    trained = PuppetMasterUNet.from_pretrained(args.source).float()
    try:
        grown, added = grow(trained, layout)
    except GrowError as exc:
        raise SystemExit(f"cannot grow {args.source} into the layout of {args.config}: {exc}") from None
    residual_scale = trained_residual_scale(args.source)
    grown.save_pretrained(args.out)
    if residual_scale:  # the residual space the weights were trained in, where assemble_pipeline reads it
        (args.out.parent / STATE_FILE).write_text(json.dumps({"extra": {"residual_scale": residual_scale}}))
    blocks = sorted({".".join(name.split(".")[:2]) for name in added})  # e.g. down_blocks.0
    state = grown.state_dict()
    count = sum(state[name].numel() for name in added)
    print(json.dumps({"out": str(args.out), "added_parameters": count, "added_in": blocks,
                      "parameters": sum(p.numel() for p in grown.parameters())}))
    return args.out


if __name__ == "__main__":
    main()
