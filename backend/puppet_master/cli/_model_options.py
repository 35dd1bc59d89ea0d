"""The model options shared by ``generate``, ``serve`` and friends, and turning them into a pipeline.

``--model DIR | --svd DIR --checkpoint FILE | --tiny``, ``--device``, ``--dtype``, ``--memory``.
"""

from __future__ import annotations

import argparse

from puppet_master.cli import CLIError
from puppet_master.memory import PRESET_NAMES

DTYPE_CHOICES = ("float32", "float16", "bfloat16")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "model", "where the model comes from (one of --model, --svd with --checkpoint, or --tiny)"
    )
    group.add_argument("--model", metavar="DIR", help="a pipeline folder written by `puppet-master convert` (or its name under the models folder)")
    group.add_argument("--svd", metavar="DIR", help="a Stable Video Diffusion img2vid folder in diffusers layout (with --checkpoint)")
    group.add_argument("--checkpoint", metavar="FILE", help="the released Puppet-Master model.safetensors (with --svd)")
    group.add_argument("--tiny", action="store_true", help="a small random-weight model, for testing (outputs are labelled untrained)")
    group.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda if available, else mps, else cpu)")
    group.add_argument("--dtype", choices=DTYPE_CHOICES, help="weights' precision (default: bfloat16/float16 on GPUs, float32 on the CPU)")
    group.add_argument(
        "--memory", choices=PRESET_NAMES,
        help="GPU memory preset: high (fastest), balanced (model offload, guidance branches in turn, chunked "
        "feed-forward and decode), low (layer-by-layer offload); default: picked from the free GPU memory")


def model_source(args: argparse.Namespace) -> dict:
    """The model options as JSON-ready settings (for settings.json); with no model option, the
    default model's folder (``default: true``)."""
    source = {
        key: getattr(args, key)
        for key in ("model", "svd", "checkpoint", "tiny", "device", "dtype", "memory")
        if getattr(args, key, None) not in (None, False)
    }
    if not any(source.get(key) for key in ("model", "svd", "tiny")):
        from puppet_master.loading import default_model

        found = default_model()
        if found is not None:
            source.update(model=str(found), default=True)
    return source


def pipeline_from_args(args: argparse.Namespace):
    """Load the pipeline the options name; a bad combination or a missing file is a :class:`CLIError`."""
    from puppet_master.loading import ModelLoadError, load_pipeline

    try:
        return load_pipeline(
            args.model,
            svd=args.svd,
            checkpoint=args.checkpoint,
            tiny=args.tiny,
            device=args.device,
            dtype=args.dtype,
            memory=args.memory,
        )
    except ModelLoadError as exc:
        raise CLIError(str(exc)) from exc
