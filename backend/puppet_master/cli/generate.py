"""``puppet-master generate``: one image + drags -> frames, preview.gif and settings.json."""

from __future__ import annotations

import argparse
import logging
import secrets
import time
from pathlib import Path

from puppet_master import __version__
from puppet_master.cli import CLIError
from puppet_master.cli._model_options import add_model_arguments, model_source, pipeline_from_args
from puppet_master.drags import (
    NUM_FRAMES,
    Drag,
    DragError,
    drags_to_array,
    load_drags_file,
    parse_drag,
    pixels_to_normalized,
    validate_drags,
)
from puppet_master.image_prep import CROP_MODES, ImageError, crop_window, load_image
from puppet_master.protocol import MAX_SEGMENTS
from puppet_master.segments import segment_drags, segment_frames
from puppet_master.variants import VARIANT_FOLDER, Video, generate_videos, variant_seeds

logger = logging.getLogger(__name__)


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CLIError(f"--out {out} is not empty; choose a new folder or pass --overwrite")


def read_drags(texts: list[str], width: int, height: int, pixels: bool, files: list[str] = (),
               frames: int = NUM_FRAMES) -> list[Drag]:
    """Parse ``--drag`` values and ``--drags-file`` files (fractions, or pixels of a ``width x
    height`` image) and validate them; a path has 14 points, or ``frames`` (a longer clip's)."""
    drags = [parse_drag(text) for text in texts] + [d for f in files for d in load_drags_file(f)]
    if pixels:
        drags = [pixels_to_normalized(d, width, height) for d in drags]
    validate_drags(drags, path_points=(NUM_FRAMES, frames))
    return drags


def run(args: argparse.Namespace) -> int:
    import torch

    from puppet_master.outputs import write_result
    from puppet_master.pipeline import GenerationCancelled

    # 1. check every input before a model is loaded
    out = Path(args.out).expanduser()
    _check_out_dir(out, args.overwrite)
    for name in ("steps", "num_videos"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be at least 1")
    if (args.variants > 1 or args.segments > 1) and args.num_videos > 1:
        raise CLIError("--num-videos (one batch) cannot be combined with --variants or --segments (one run per "
                       "seed and segment)")
    try:
        image = load_image(args.image)
        frames = segment_frames(args.segments) if 1 <= args.segments <= MAX_SEGMENTS else NUM_FRAMES
        drags = read_drags(args.drag, image.width, image.height, args.pixels, args.drags_file, frames)
        crop_window(image, args.crop).map_drag_array(drags_to_array(drags, num_frames=frames))
    except (ImageError, DragError) as exc:
        raise CLIError(str(exc)) from exc
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    try:
        seeds = variant_seeds(seed, args.variants)
        segment_drags(drags, args.segments)
    except (ValueError, DragError) as exc:
        raise CLIError(f"--variants/--segments: {exc}") from None

    # 2. load the model and generate
    pipe = pipeline_from_args(args)
    call = {"num_inference_steps": args.steps, "min_guidance_scale": args.min_guidance,
            "max_guidance_scale": args.guidance, "decode_chunk_size": args.decode_chunk_size, "crop": args.crop}
    start = time.monotonic()
    try:
        if args.num_videos > 1:  # one batch
            generators = [torch.Generator().manual_seed(seed + i) for i in range(args.num_videos)]
            result = pipe(image, drags, num_videos_per_prompt=args.num_videos, generator=generators, **call)
            videos = [Video(f, d, result.window, seed + i) for i, (f, d) in enumerate(zip(result.frames, result.drags,
                                                                                          strict=True))]
        else:
            videos = generate_videos(pipe, image, drags, seeds, args.segments, **call)
    except (ImageError, DragError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    except GenerationCancelled as exc:
        raise CLIError(str(exc)) from exc
    seconds = time.monotonic() - start
    guidance = pipe.resolve_guidance(args.min_guidance, args.guidance)

    # 3. write frames, preview and settings (one folder per video when there are several)
    settings = {
        "command": "generate",
        "puppet_master": __version__,
        "image": str(Path(args.image).expanduser().resolve()),
        "image_size": [image.width, image.height],
        "crop": args.crop,
        "window": videos[0].window.to_json(),
        "drags": [d.to_json() for d in drags],
        "num_frames": len(videos[0].frames),
        "num_inference_steps": args.steps,
        "min_guidance_scale": guidance[0],
        "max_guidance_scale": guidance[1],
        "decode_chunk_size": args.decode_chunk_size or pipe.decode_chunk_size,
        "model": model_source(args),
        "memory": pipe.memory_plan.name,
        "device": str(pipe.device),
        "dtype": str(pipe.dtype).removeprefix("torch."),
        "seconds": round(seconds, 3),
    }
    for i, video in enumerate(videos):
        if args.variants > 1:
            folder, extra = out / VARIANT_FOLDER.format(i), {"variant": i, "variants": args.variants}
        else:
            folder, extra = (out if args.num_videos == 1 else out / f"video_{i:02d}"), {}
        if video.segment_inputs:
            extra.update(segments=args.segments, segment_inputs=video.segment_inputs)
        write_result(folder, video.frames, video.drags, {**settings, "seed": video.seed, **extra},
                     untrained=pipe.config.untrained)
        print(f"wrote {len(video.frames)} frames, preview.gif and settings.json to {folder}")
    if pipe.config.untrained:
        print("note: the model is untrained (random weights); the frames are noise")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate the frames of a drag-conditioned motion from one image",
        description=(
            "Generate 14 frames in which the dragged parts of the object in IMAGE move along the drags. "
            "Drag points are fractions of the image's width and height (0 to 1, x to the right, y down) "
            "unless --pixels is given."
        ),
    )
    parser.add_argument("--image", required=True, help="the input image (RGB, or RGBA composited on white)")
    parser.add_argument(
        "--drag", action="append", default=[], metavar="X0,Y0:X1,Y1",
        help="a drag from (X0, Y0) to (X1, Y1); repeat for up to 5 drags",
    )
    parser.add_argument(
        "--drags-file", action="append", default=[], metavar="FILE",
        help="drags from a JSON file: a list of {\"start\": [x, y], \"end\": [x, y]} or {\"path\": [[x, y], ...14 points]} "
        "(a result's settings.json works too); with --drag, both are used")
    parser.add_argument("--pixels", action="store_true", help="drag points are pixels of the image, not fractions")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for frame_0000.png..., preview.gif, settings.json")
    parser.add_argument("--crop", choices=CROP_MODES, default="none",
                        help="none: the whole image; object: a square around the alpha bounding box (2.2x)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps (default 50)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="guidance weight of the last frame (default: the model's; 5 for Puppet-Master)")
    parser.add_argument("--min-guidance", type=float, default=None,
                        help="guidance weight of the first frame (default: the model's; 1 for Puppet-Master)")
    parser.add_argument("--seed", type=int, help="random seed (default: a random one, written to settings.json)")
    parser.add_argument("--variants", type=int, default=1,
                        help="videos to choose from, one run per seed (SEED, SEED+1, ...; at most 8), in "
                             "variant_00/, variant_01/, ...: each is exactly what --seed of its own gives")
    parser.add_argument("--segments", type=int, default=1,
                        help="a longer clip: S segments of 14 frames, each starting from the last frame of the one "
                             "before, S x 13 + 1 frames in all (at most 8; see docs/generate.md for what to expect)")
    parser.add_argument("--num-videos", type=int, default=1,
                        help="videos in one batch (seeds SEED, SEED+1, ...; faster on a large GPU, but not "
                             "bit-identical to one-video runs), in video_00/, ...")
    parser.add_argument("--decode-chunk-size", type=int, help="frames the VAE decodes at once (less memory)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out folder")
    add_model_arguments(parser)
    parser.set_defaults(func=run)
