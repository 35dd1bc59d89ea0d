"""``puppet-master convert``: SVD img2vid + the released weights -> one self-contained pipeline folder."""

from __future__ import annotations

import argparse

from puppet_master.cli import CLIError


def _drag_channels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 256,320,320, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"channels must be positive, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    from puppet_master.conversion import ConversionError, convert_to_folder
    from puppet_master.loading import ModelLoadError

    try:
        done = convert_to_folder(
            args.svd, args.checkpoint, args.out, dtype=args.dtype, overwrite=args.overwrite,
            num_drags=args.num_drags, pos_embed_dim=args.pos_embed_dim, drag_embedder_out_channels=args.drag_channels,
        )
    except (ConversionError, ModelLoadError) as exc:
        raise CLIError(str(exc)) from exc
    print(f"wrote the Puppet-Master pipeline ({done.unet_parameters / 1e9:.2f}B U-Net parameters) to {done.folder}")
    print(f"use it with: puppet-master generate --model {done.folder} --image IMG --drag X0,Y0:X1,Y1 --out DIR")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="combine Stable Video Diffusion and the released Puppet-Master weights into one pipeline folder",
        description=(
            "Build the Puppet-Master U-Net from the SVD img2vid U-Net's configuration, load the released "
            "model.safetensors strictly, and save a self-contained diffusers pipeline folder "
            "(VAE, CLIP image encoder, feature extractor, scheduler, U-Net) for --model."
        ),
    )
    parser.add_argument("--svd", required=True, metavar="DIR", help="stable-video-diffusion-img2vid in diffusers layout")
    parser.add_argument("--checkpoint", required=True, metavar="FILE", help="the released Puppet-Master model.safetensors")
    parser.add_argument("--out", required=True, metavar="DIR", help="the pipeline folder to write")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                        help="precision of the saved weights (default float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    drag = parser.add_argument_group("drag settings (default: the released model's, or the checkpoint's metadata)")
    drag.add_argument("--num-drags", type=int, help="drag slots K_max (5)")
    drag.add_argument("--pos-embed-dim", type=int, help="size of a drag point's position embedding (64)")
    drag.add_argument("--drag-channels", type=_drag_channels, metavar="C1,C2,...",
                      help="channels of the drag modulation tower (256,320,320)")
    parser.set_defaults(func=run)
