"""Render animated assets into training clips: frames, cameras, surface-point tracks.

Run it with Blender or with the bpy module::

    blender -b -P dataset_tools/render.py -- assets/ --out renders/
    python dataset_tools/render.py assets/ --out renders/ --workers 2 --shard 0/4

Inputs are GLB/glTF/FBX/.blend files, folders of them, or list files (a JSON object id -> path,
as ``objaverse.load_objects`` returns). Each asset renders in its own Blender process (``--workers``
of them at a time, each with ``--timeout``); every asset gets a line in the JSONL report; finished
clips are skipped when the command runs again with the same settings (other settings are refused
unless ``--overwrite``). Ctrl-C or SIGTERM stops the workers too. docs/data.md describes the output.

Exit status: 0 every asset rendered or skipped (nothing to render, unsupported file); 1 at least
one asset failed (the report says why; the next run retries it); 2 the command cannot run as given
(bad arguments, or settings that differ from the ones the output root was rendered with);
130 cancelled.
Only the standard library, numpy and bpy are used, so Blender's own Python can run it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_INSIDE_BLENDER = "bpy" in sys.modules  # Blender preloads bpy; the bpy module is imported on demand
_HERE = Path(__file__).resolve().parent
# Blender runs this file with -P, where neither the checkout nor the installed package may be
# importable: the one script of dataset_tools/ that puts them on sys.path (the others run as
# `python -m dataset_tools.<name>` from the checkout)
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))
try:
    import puppet_master.cameras  # noqa: F401
except ImportError:
    sys.path.insert(0, str(_HERE.parent / "backend"))

from dataset_tools import render_plan, shard_status  # noqa: E402
from puppet_master import cameras  # noqa: E402

DEFAULT_TIMEOUT_S = 1800.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="render.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", help="GLB/glTF/FBX/.blend files, folders, or id -> path JSON list files")
    p.add_argument("--out", type=Path, help="output root (OUT/<asset_id>/<clip>/...)")
    g = p.add_argument_group("images")
    g.add_argument("--engine", choices=("cycles", "workbench", "eevee"), default="cycles")
    g.add_argument("--device", choices=("CPU", "GPU"), default="CPU", help="Cycles device (GPU falls back to CPU)")
    g.add_argument("--samples", type=int, default=8, help="Cycles/EEVEE samples per pixel")
    g.add_argument("--no-denoise", action="store_true", help="turn off Cycles denoising (OpenImageDenoise)")
    g.add_argument("--denoise-quality", choices=("FAST", "BALANCED", "HIGH"), default="FAST")
    g.add_argument("--resolution", type=int, default=256, help="square image size in pixels")
    g.add_argument("--supersample", type=int, default=1, help="render this many times larger and downscale")
    g.add_argument("--rgba", action="store_true", help="transparent background instead of white (alpha is always kept)")
    g.add_argument("--light-strength", type=float, default=0.7, help="strength of the even white environment light")
    g.add_argument("--key-light", type=float, default=1.0, help="strength of a soft sun from above the front-left (0 = off)")
    g = p.add_argument_group("cameras")
    g.add_argument("--views", type=int, default=12)
    g.add_argument("--distance", type=float, nargs=2, default=cameras.DEFAULT_DISTANCE_RANGE, metavar=("MIN", "MAX"))
    g.add_argument("--elevation", type=float, nargs=2, default=cameras.DEFAULT_ELEVATION_RANGE, metavar=("MIN", "MAX"))
    g.add_argument("--azimuth-offset", default="0", help="azimuth of view 0 in degrees, or 'random' (seeded)")
    g.add_argument("--focal", type=float, default=cameras.DEFAULT_FOCAL_MM, help="lens focal length, mm")
    g.add_argument("--sensor", type=float, default=cameras.DEFAULT_SENSOR_MM, help="sensor width, mm")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("clips")
    g.add_argument("--clips", default=None, help="comma-separated clip names to render (default: every clip)")
    g.add_argument("--frames", type=int, default=14, help="frames per clip (0 = all, with --stride)")
    g.add_argument("--stride", type=float, default=0.0, help="Blender frames between rendered frames (0 = spread --frames over the clip)")
    g.add_argument("--max-step", type=float, default=render_plan.DEFAULT_MAX_STEP,
                   help="longest step when spreading --frames; a longer clip renders its most moving window (0 = no cap)")
    g.add_argument("--points", type=int, default=4096, help="tracked surface points per clip")
    g.add_argument("--review-strip", action="store_true", help="also render four front-view frames at the quarters of the clip")
    g = p.add_argument_group("batch")
    g.add_argument("--workers", type=int, default=1, help="Blender processes at a time (0 = render in this process, no timeout)")
    g.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per asset before its process is killed")
    g.add_argument("--shard", default="0/1", help="render only shard i of n (stable hash of the asset id)")
    g.add_argument("--report", type=Path, default=None,
                   help="JSONL report (default OUT/report.jsonl; with --shard i/n, n > 1: OUT/reports/render_i-of-n.jsonl)")
    g.add_argument("--blender", default=None, help="Blender executable for the workers (default: this Blender or this Python with bpy)")
    g.add_argument("--list", action="store_true", help="print the assets of this shard and exit")
    g.add_argument("--overwrite", action="store_true",
                   help="re-render clips made with other settings (default: refuse to mix settings in one --out)")
    p.add_argument("--_worker", dest="worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_result", dest="result", default=None, help=argparse.SUPPRESS)
    return p


def job_dict(args: argparse.Namespace, asset: render_plan.Asset) -> dict:
    """The job without importing bpy (the worker rebuilds the RenderJob from its JSON)."""
    return {
        "asset_id": asset.asset_id, "source": str(asset.source), "out_root": str(args.out),
        "render": {"engine": args.engine, "device": args.device, "samples": args.samples,
                   "denoise": not args.no_denoise, "denoise_quality": args.denoise_quality, "resolution": args.resolution,
                   "supersample": args.supersample, "rgba": args.rgba, "light_strength": args.light_strength,
                   "key_light": args.key_light},
        "views": args.views, "frames": args.frames, "stride": args.stride, "points": args.points,
        "seed": args.seed, "distance_range": list(args.distance), "elevation_range": list(args.elevation),
        "azimuth_offset": None if args.azimuth_offset == "random" else float(args.azimuth_offset),
        "focal_mm": args.focal, "sensor_mm": args.sensor,
        "clips": _clip_filter(args),
        "review_strip": args.review_strip,
        "max_step": args.max_step,
    }


def job_json(args: argparse.Namespace, asset: render_plan.Asset) -> str:
    return json.dumps(job_dict(args, asset))


def run_settings(args: argparse.Namespace) -> dict:
    """This run's render settings (the same for every asset)."""
    return render_plan.job_settings(job_dict(args, render_plan.Asset("", Path())))


def _clip_filter(args: argparse.Namespace) -> list[str] | None:
    return [c.strip() for c in args.clips.split(",") if c.strip()] or None if args.clips else None


def worker_command(args: argparse.Namespace) -> list[str]:
    script = str(Path(__file__).resolve())
    if args.blender:
        return [args.blender, "-b", "--factory-startup", "-noaudio", "-P", script, "--"]
    if _INSIDE_BLENDER:
        import bpy

        if bpy.app.binary_path and Path(bpy.app.binary_path).name.lower().startswith("blender"):
            return [bpy.app.binary_path, "-b", "--factory-startup", "-noaudio", "-P", script, "--"]
    return [sys.executable, script]


class _Running:
    """Worker processes alive right now, so a cancelled batch can stop them (and only them)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.processes: set[subprocess.Popen] = set()
        self.cancelled = False

    def kill_all(self) -> None:
        with self.lock:
            self.cancelled = True
            for process in self.processes:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


RUNNING = _Running()


def run_asset_process(args: argparse.Namespace, asset: render_plan.Asset) -> dict:
    """Render one asset in its own Blender process, killed after ``--timeout`` seconds."""
    asset_dir = args.out / asset.asset_id
    asset_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pm_render_") as tmp:
        result_path = Path(tmp) / "result.json"
        command = [*worker_command(args), "--_worker", job_json(args, asset), "--_result", str(result_path)]
        with open(asset_dir / "render.log", "w") as log_file:
            process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            with RUNNING.lock:
                RUNNING.processes.add(process)
            try:
                code = process.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                _kill(process)
                return _failure(asset, started, f"timeout after {args.timeout:g}s (finished clips are kept)")
            except BaseException:  # cancelled while waiting (Ctrl-C, SIGTERM): the worker stops with us
                _kill(process)
                raise
            finally:
                with RUNNING.lock:
                    RUNNING.processes.discard(process)
        if result_path.is_file():
            return json.loads(result_path.read_text())
    tail = (asset_dir / "render.log").read_text(errors="replace").strip().splitlines()[-3:]
    return _failure(asset, started, f"worker exited with code {code}: {' | '.join(tail)[:400]}")


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _failure(asset: render_plan.Asset, started: float, reason: str) -> dict:
    return {"asset_id": asset.asset_id, "source": str(asset.source), "status": "failed", "reason": reason,
            "clips": [], "seconds": round(time.monotonic() - started, 2)}


def run_asset_inline(args: argparse.Namespace, asset: render_plan.Asset) -> dict:
    from dataset_tools import render_worker

    return render_worker.render_asset(render_worker.RenderJob.from_json(job_json(args, asset)))


def run_batch(args: argparse.Namespace, assets: list[render_plan.Asset], unsupported: list[Path] = ()) -> int:
    """Render ``assets`` (and report ``unsupported`` files as skipped); returns the exit status.

    The shard's status file (``shard_status``) records how the batch ended, for the merge of a job array.
    """
    index, count = render_plan.parse_shard(args.shard)
    report_path = args.report or (args.out / "report.jsonl" if count == 1
                                  else args.out / "reports" / f"render_{index}-of-{count}.jsonl")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    failed: list[dict] = []
    done = [0]
    started = time.monotonic()
    settings = run_settings(args)
    total = len(assets) + len(unsupported)

    def finish(record: dict) -> None:
        if RUNNING.cancelled:  # a worker killed by the cancellation is not a failed asset
            return
        record.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%S"))
        with lock:
            with open(report_path, "a") as report:
                report.write(json.dumps(record) + "\n")
            counts[record["status"]] = counts.get(record["status"], 0) + 1
            if record["status"] == "failed":
                failed.append({"id": record["asset_id"], "reason": record.get("reason", "")})
            done[0] += 1
            elapsed = time.monotonic() - started
            eta = elapsed / done[0] * (total - done[0])
            why = f" ({record['reason']})" if record.get("reason") else ""
            print(f"[{done[0]}/{total}] {record['asset_id']}: {record['status']}{why}, "
                  f"{len(record.get('clips', []))} clips, {record.get('seconds', 0):.1f}s; eta {eta:.0f}s",
                  flush=True)

    def one(asset: render_plan.Asset) -> None:
        previous = render_plan.finished_asset(args.out / asset.asset_id, _clip_filter(args), settings)
        if previous is not None:
            finish({**previous, "resumed": True, "seconds": 0.0, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
            return
        runner = run_asset_inline if args.workers == 0 else run_asset_process
        try:
            finish(runner(args, asset))
        except Exception as exc:  # one broken asset never stops the batch
            finish(_failure(asset, time.monotonic(), f"{type(exc).__name__}: {exc}"))

    for path in unsupported:
        finish(render_plan.unsupported_record(path))
    pool = ThreadPoolExecutor(max_workers=max(1, args.workers))
    try:
        if args.workers <= 1:
            for asset in assets:
                one(asset)
        else:
            for future in [pool.submit(one, asset) for asset in assets]:
                future.result()
    except KeyboardInterrupt:
        RUNNING.kill_all()
        pool.shutdown(wait=True, cancel_futures=True)
        print("cancelled: finished clips are kept; run the same command again to resume", flush=True)
        shard_status.write_status(args.out, "render", index, count, exit_status=EXIT_CANCELLED, counts=counts,
                                  failed=failed, cancelled=True)
        return EXIT_CANCELLED
    pool.shutdown()
    print(f"done: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed "
          f"in {time.monotonic() - started:.1f}s; report: {report_path}", flush=True)
    code = EXIT_FAILED if counts["failed"] else EXIT_OK
    if code:
        print(f"{counts['failed']} assets failed (see the report); the same command retries them", flush=True)
    shard_status.write_status(args.out, "render", index, count, exit_status=code, counts=counts, failed=failed)
    return code


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    problems = []
    if args.out is None:
        problems.append("--out is required")
    if args.views < 1:
        problems.append("--views must be at least 1")
    if args.resolution < 8:
        problems.append("--resolution must be at least 8")
    if args.samples < 1:
        problems.append("--samples must be at least 1")
    if args.points < 1:
        problems.append("--points must be at least 1")
    if args.frames < 0 or (args.frames == 0 and args.stride <= 0):
        problems.append("--frames must be positive (or 0 with a positive --stride)")
    if args.max_step < 0:
        problems.append("--max-step must be >= 0 (0 = no cap)")
    if args.supersample < 1:
        problems.append("--supersample must be at least 1")
    if not 0 < args.distance[0] <= args.distance[1]:
        problems.append("--distance MIN MAX must satisfy 0 < MIN <= MAX")
    if not -90 <= args.elevation[0] <= args.elevation[1] <= 90:
        problems.append("--elevation MIN MAX must lie in [-90, 90] with MIN <= MAX")
    if args.azimuth_offset != "random":
        try:
            float(args.azimuth_offset)
        except ValueError:
            problems.append("--azimuth-offset must be a number or 'random'")
    if args.workers < 0 or args.timeout <= 0:
        problems.append("--workers must be >= 0 and --timeout > 0")
    if problems:
        parser.error("; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker is not None:
        from dataset_tools import render_worker

        return render_worker.main(args.worker, args.result)
    check_args(parser, args)
    try:
        index, count = render_plan.parse_shard(args.shard)
        found, unsupported = render_plan.collect_inputs(args.inputs)
    except render_plan.InputError as exc:
        parser.error(str(exc))
    assets = [a for a in found if render_plan.in_shard(a.asset_id, index, count)]
    unsupported = [p for p in unsupported if render_plan.in_shard(p.name, index, count)]
    if args.list:
        for asset in assets:
            print(f"{asset.asset_id}\t{asset.source}")
        return EXIT_OK
    if not assets and not unsupported:
        print("nothing to render: no assets in the inputs (for this shard)", flush=True)
        shard_status.write_status(args.out, "render", index, count, exit_status=EXIT_OK, counts={}, failed=[])
        return EXIT_OK
    differences = render_plan.check_root_settings(args.out, run_settings(args), args.overwrite)
    if differences:
        print(f"render.py: error: {args.out} was rendered with other settings ({'; '.join(differences)}); "
              "resuming would mix them. Use the same settings, another --out, or --overwrite to re-render "
              "its clips with these settings.", file=sys.stderr, flush=True)
        return EXIT_USAGE
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C and `kill` both cancel and stop the workers; set explicitly, since a shell that starts
        # this in the background without job control would otherwise leave SIGINT ignored
        signal.signal(signal.SIGINT, _interrupt)
        signal.signal(signal.SIGTERM, _interrupt)
    print(f"rendering {len(assets)} assets into {args.out} (shard {args.shard}, {args.workers} workers)", flush=True)
    return run_batch(args, assets, unsupported)


if __name__ == "__main__":
    code = main()
    if not _INSIDE_BLENDER:
        sys.exit(code)
