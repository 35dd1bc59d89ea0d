"""``puppet-master submit``: send a job to ``puppet-master serve`` and write what ``generate`` writes."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from puppet_master import protocol
from puppet_master.cli import CLIError

CONNECT_TIMEOUT_S = 10.0  # wait this long for the server to accept the job
CANCEL_TIMEOUT_S = 10.0  # after Ctrl-C, wait this long for the cancellation to be confirmed
#: written into --out at acceptance: the job id and its token, so `submit --job ID --out DIR` can
#: fetch it again from a new connection (only the job's owner may)
JOB_FILE = "job.json"


def _saved_token(out_dir: Path, job_id: str) -> str | None:
    import json

    try:
        saved = json.loads((out_dir / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    return saved.get("token") if isinstance(saved, dict) and saved.get("job") == job_id else None


def _image_png(path: Path) -> bytes:
    from PIL import Image

    if not path.is_file():
        raise CLIError(f"image {path} does not exist")
    data = path.read_bytes()
    if data.startswith(protocol.PNG_SIGNATURE):
        return data
    try:
        with Image.open(path) as image:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return buffer.getvalue()
    except OSError as exc:
        raise CLIError(f"cannot read image {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from puppet_master import client as pm_client
    from puppet_master.drags import Drag, DragError, drags_to_array, parse_drag
    from puppet_master.outputs import write_bytes_atomic, write_json_atomic, write_result
    from puppet_master.server.security import SecurityError, load_public

    # 1. check inputs before connecting
    if not args.job and not args.image:
        raise CLIError("give --image (and --drag) to submit a job, or --job ID to fetch one")
    try:
        drags = [parse_drag(text) for text in args.drag or []]
        drags_to_array(drags)
        settings = protocol.JobSettings.from_json({
            "num_inference_steps": args.steps, "min_guidance_scale": args.min_guidance,
            "max_guidance_scale": args.max_guidance, "seed": args.seed,
            "preview_every": args.preview_every if args.preview_file else 0,
            "variants": args.variants, "segments": args.segments})
        key = load_public(args.server_key) if args.server_key else None
        args.endpoint = protocol.normalize_endpoint(args.endpoint)
    except (DragError, protocol.ProtocolError, protocol.EndpointError, SecurityError) as exc:
        raise CLIError(str(exc)) from None
    out_dir = Path(args.out)

    # 2. submit (or fetch) and follow the job
    client = pm_client.GenerationClient(args.endpoint, server_public_key=key)
    bar = None
    try:
        if args.job:
            job_id = args.job
            client.fetch(protocol.check_job_id(job_id), args.token or _saved_token(out_dir, job_id))
        else:
            client.submit(_image_png(Path(args.image)), drags, settings)
            event = client.wait_for(lambda e: isinstance(e, pm_client.Accepted | pm_client.Rejected), CONNECT_TIMEOUT_S)
            if event is None:
                raise CLIError(f"no answer from {args.endpoint} within {CONNECT_TIMEOUT_S:g} s: is `puppet-master "
                               "serve` running there (and is --server-key right)?")
            if isinstance(event, pm_client.Rejected):
                raise CLIError(f"the server rejected the job ({event.code}): {event.message}")
            job_id = event.job_id
            write_json_atomic(out_dir / JOB_FILE, {"job": job_id, "token": event.token, "endpoint": args.endpoint})
            print(f"job {job_id} accepted ({event.position} job(s) ahead); its id and token are in "
                  f"{out_dir / JOB_FILE}: `puppet-master submit --job {job_id} --out {out_dir}` fetches it again",
                  file=sys.stderr)
        bar = tqdm(total=settings.num_inference_steps, desc=f"job {job_id[:8]}", unit="step", file=sys.stderr)

        def on_event(event: pm_client.Event) -> None:
            if isinstance(event, pm_client.Progress):
                if args.preview_file and event.preview_png:
                    write_bytes_atomic(args.preview_file, event.preview_png)
                bar.total = event.total
                bar.n = event.step
                bar.set_postfix_str(f"ETA {event.eta_s:.1f} s" if event.eta_s is not None else "")
                bar.refresh()
            elif isinstance(event, pm_client.ConnectionLost):
                bar.write(f"lost the connection to {args.endpoint}; still waiting (the job keeps running there)")
            elif isinstance(event, pm_client.RequestFailed):
                raise CLIError(f"{event.code}: {event.message}")

        final = (pm_client.Result, pm_client.JobError, pm_client.Cancelled)
        try:
            event = client.wait_for(lambda e: isinstance(e, final), args.timeout, on_event)
        except KeyboardInterrupt:
            bar.write(f"cancelling job {job_id} ...")
            client.cancel(job_id)
            client.wait_for(lambda e: isinstance(e, final), CANCEL_TIMEOUT_S)
            raise
        if event is None:
            raise CLIError(f"job {job_id} did not finish within {args.timeout:g} s; fetch it later with --job {job_id}")
        if isinstance(event, pm_client.JobError):
            raise CLIError(f"job {job_id} failed ({event.code}): {event.message}")
        if isinstance(event, pm_client.Cancelled):
            raise CLIError(f"job {job_id} was cancelled")
        bar.n = bar.total
        bar.refresh()
    finally:
        if bar is not None:
            bar.close()
        client.close()

    # 3. write frames, preview.gif and settings.json (a folder per variant when there are several)
    from puppet_master.variants import VARIANT_FOLDER

    videos = event.variants()
    seeds = event.settings.get("seeds") or [event.settings.get("seed")]
    drag_list = [Drag.from_json(d) for d in event.drags]
    drag_array = drags_to_array(drag_list) if drag_list and len(videos[0]) == len(drag_list[0].trajectory()) else None
    for index, pngs in enumerate(videos):
        folder = out_dir if len(videos) == 1 else out_dir / VARIANT_FOLDER.format(index)
        settings_out = {**event.settings, "drags": event.drags, "job": job_id, "endpoint": args.endpoint,
                        **({"seed": seeds[index], "variant": index} if len(videos) > 1 else {})}
        write_result(folder, [Image.open(io.BytesIO(png)) for png in pngs], drag_array, settings_out,
                     untrained=bool(event.info.get("untrained")))
        print(f"wrote {len(pngs)} frames, preview.gif and settings.json to {folder}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = protocol.JobSettings()
    parser = subparsers.add_parser(
        "submit", help="send a generation job to `puppet-master serve` and write the frames",
        description="Submit an image and drags to a running server, show progress, and write frame_XXXX.png, "
                    "preview.gif and settings.json into --out (as `generate` does).",
    )
    parser.add_argument("--endpoint", default=protocol.DEFAULT_ENDPOINT, help="server endpoint (default %(default)s)")
    parser.add_argument("--server-key", help="the server's CURVE public key (Z85 text or .key file)")
    parser.add_argument("--image", help="input image (PNG, or any format Pillow reads)")
    parser.add_argument("--drag", action="append", metavar="X0,Y0:X1,Y1",
                        help="a drag in fractions of the image (x right, y down); repeat for up to 5")
    parser.add_argument("--job", help="fetch this job id instead of submitting (e.g. after a disconnect)")
    parser.add_argument("--token", help="the job's token, with --job (default: the one saved in --out/job.json at "
                                        "submission): only the job's owner may fetch it")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", type=int, default=defaults.num_inference_steps, help="denoising steps")
    parser.add_argument("--min-guidance", type=float, default=defaults.min_guidance_scale,
                        help="guidance of the first frame (default: the model's)")
    parser.add_argument("--max-guidance", type=float, default=defaults.max_guidance_scale,
                        help="guidance of the last frame (default: the model's; 5 for Puppet-Master)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the server picks one)")
    parser.add_argument("--variants", type=int, default=1,
                        help="videos to choose from, one per seed (SEED, SEED+1, ...), in variant_00/, ...")
    parser.add_argument("--segments", type=int, default=1,
                        help="a longer clip of S chained 14-frame segments (S x 13 + 1 frames)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up waiting after this many seconds")
    parser.add_argument("--preview-file", metavar="PNG",
                        help="keep the newest progress preview (the decoded estimate of the frames) in this file")
    parser.add_argument("--preview-every", type=int, default=defaults.preview_every,
                        help="a preview every N steps with --preview-file (default %(default)s)")
    parser.set_defaults(func=run)
