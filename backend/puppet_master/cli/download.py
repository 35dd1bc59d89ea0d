"""``puppet-master download``: the real model from the Hugging Face Hub, converted, in one command.

1. ask the hub which files and commits (or, with ``HF_HUB_OFFLINE=1``, find them in the cache);
2. check the disk space for the downloads and the converted folder, before any byte moves;
3. download each file with huggingface_hub (progress bars, resume, its cache), verify size and hash;
4. convert (strict load) into the default model folder atomically, with a manifest;
5. remove the raw downloads unless ``--keep-cache`` (or an own ``--cache-dir``).

Exit status: 0 done; 2 bad arguments; 3 log in; 4 accept the licence; 5 a repository, revision or
file does not exist; 6 not enough disk space; 7 a corrupt download; 8 offline and not cached;
9 the network or the hub failed; 1 the destination exists or the weights do not fit; 130
cancelled (Ctrl-C or SIGTERM; finished files are kept and the next run goes on from them).
``--progress json`` prints one JSON event per line instead (``cli/json_progress.py``).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
from pathlib import Path

from puppet_master import hub, paths
from puppet_master.cli.json_progress import PROGRESS_MODES, JsonLines

DEFAULT_MODEL_NAME = paths.DEFAULT_MODEL_NAME
EXIT_CANCELLED = 130


class _Output:
    """Where ``download`` reports: plain lines (with huggingface_hub's bars) or JSON lines."""

    def __init__(self, mode: str) -> None:
        self.json = JsonLines() if mode == "json" else None

    def say(self, message: str) -> None:
        if self.json:
            self.json.emit("message", text=message)
        else:
            print(message, flush=True)

    def event(self, event: str, **fields) -> None:
        if self.json:
            self.json.emit(event, **fields)

    def error(self, message: str, exit_code: int) -> int:
        print(f"puppet-master download: error: {message}", file=sys.stderr, flush=True)
        self.event("error", message=message, exit_code=exit_code)
        return exit_code

    def on_file(self, source: hub.Source, f: hub.RemoteFile, index: int, cached: bool) -> None:
        self.event("file", repo=source.repo_id, file=f.path, index=index, files=len(source.files), cached=cached,
                   bytes=f.size)


def _interrupt(signum, frame) -> None:  # SIGTERM (the add-on's Cancel, a job scheduler) stops like Ctrl-C
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    output = _Output(args.progress)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return _download(args, output)
    except KeyboardInterrupt:
        print("puppet-master download: cancelled; the finished files are kept, run the same command again to go on",
              file=sys.stderr, flush=True)
        output.event("cancelled", exit_code=EXIT_CANCELLED)
        return EXIT_CANCELLED
    finally:
        signal.signal(signal.SIGTERM, previous)


def _download(args: argparse.Namespace, output: _Output) -> int:
    from puppet_master.conversion import ConversionError, check_destination, convert_to_folder
    from puppet_master.loading import ModelLoadError

    out = Path(args.out).expanduser() if args.out else paths.models_dir() / DEFAULT_MODEL_NAME
    own_cache = args.cache_dir is None
    cache_dir = (paths.home_dir() / "downloads") if own_cache else Path(args.cache_dir).expanduser()
    tqdm_class = output.json.tqdm_class() if output.json else None
    try:
        check_destination(out, args.overwrite)
        # 1. what to fetch
        output.event("stage", stage="resolving")
        if hub.offline():
            output.say(f"offline (HF_HUB_OFFLINE): using the files cached in {cache_dir}")
            svd = hub.resolve_offline(args.svd_repo, "model", args.revision, cache_dir, select=hub.select_svd_files)
            ckpt = hub.resolve_offline(args.checkpoint_repo, args.checkpoint_repo_type, args.checkpoint_revision,
                                       cache_dir, wanted=[args.checkpoint_file])
        else:
            output.say(f"asking {hub.endpoint()} for {args.svd_repo} and {args.checkpoint_repo} ...")
            svd = hub.resolve(args.svd_repo, "model", args.revision, select=hub.select_svd_files)
            ckpt = hub.resolve(args.checkpoint_repo, args.checkpoint_repo_type, args.checkpoint_revision,
                               wanted=[args.checkpoint_file])
            # 2. the disk, before any byte moves
            cache_dir.mkdir(parents=True, exist_ok=True)
            figures = hub.check_disk([svd, ckpt], cache_dir, out, 4 if args.dtype == "float32" else 2)
            output.say(f"{len(svd.files) + len(ckpt.files)} files, {hub._gb(figures['download_bytes'])} to download "
                       f"into {cache_dir}, about {hub._gb(figures['converted_bytes'])} for the converted model in {out}"
                       + ("" if args.keep_cache or not own_cache else "; the downloads are removed after conversion"))
            if output.json:
                output.json.overall_total = figures["download_bytes"]
            output.event("plan", files=len(svd.files) + len(ckpt.files), download_bytes=figures["download_bytes"],
                         converted_bytes=figures["converted_bytes"], cache_dir=str(cache_dir), out=str(out))
        # 3. download and verify
        output.event("stage", stage="downloading")
        svd_dir = hub.fetch(svd, cache_dir, tqdm_class=tqdm_class, on_file=output.on_file)
        checkpoint = hub.fetch(ckpt, cache_dir, tqdm_class=tqdm_class, on_file=output.on_file) / args.checkpoint_file
        # 4. convert, with the manifest
        output.event("stage", stage="converting")
        output.say(f"converting into {out} ({args.dtype}) ...")
        manifest = {"sources": {
            "svd": {"repo": svd.repo_id, "repo_type": svd.repo_type, "revision": svd.revision,
                    "files": [f.path for f in svd.files], "licence": hub.LICENCES["svd"],
                    "page": svd.page(hub.endpoint())},
            "checkpoint": {"repo": ckpt.repo_id, "repo_type": ckpt.repo_type, "revision": ckpt.revision,
                           "files": [f.path for f in ckpt.files], "licence": hub.LICENCES["checkpoint"],
                           "page": ckpt.page(hub.endpoint())},
        }, "licences": [hub.LICENCES["svd"], hub.LICENCES["checkpoint"]], "endpoint": hub.endpoint()}
        done = convert_to_folder(svd_dir, checkpoint, out, dtype=args.dtype, overwrite=args.overwrite,
                                 manifest=manifest)
    except hub.DownloadError as exc:
        return output.error(str(exc), exc.exit_code)
    except (ConversionError, ModelLoadError) as exc:
        return output.error(str(exc), 1)
    # 5. the raw downloads
    if own_cache and not args.keep_cache:
        output.event("stage", stage="cleaning")
        shutil.rmtree(cache_dir, ignore_errors=True)
        output.say(f"removed the raw downloads in {cache_dir} (--keep-cache keeps them)")
    output.say(f"the Puppet-Master model ({done.unet_parameters / 1e9:.2f}B U-Net parameters, {done.dtype}) is in "
               f"{done.folder}")
    is_default = out == paths.models_dir() / DEFAULT_MODEL_NAME
    if is_default:
        output.say("it is the default model: `puppet-master generate --image IMG --drag X0,Y0:X1,Y1` and "
                   "`puppet-master serve` use it without --model")
    else:
        output.say(f"use it with --model {done.folder}")
    if output.json:
        from puppet_master.cli.info import installed_models

        output.event("done", model=str(done.folder), dtype=done.dtype, default=is_default, models=installed_models())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "download",
        help="download Stable Video Diffusion and the released Puppet-Master weights and convert them",
        description=__doc__.split("\n\n")[0] + " Gated repositories need `hf auth login` (or HF_TOKEN) and their "
        "licence accepted on the hub; HF_ENDPOINT points at a mirror.",
    )
    parser.add_argument("--svd-repo", default=hub.DEFAULT_SVD_REPO, help="Stable Video Diffusion img2vid repository")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of --svd-repo (default main)")
    parser.add_argument("--checkpoint-repo", default=hub.DEFAULT_CHECKPOINT_REPO,
                        help="repository holding the released checkpoint")
    parser.add_argument("--checkpoint-repo-type", choices=("space", "model"), default=hub.DEFAULT_CHECKPOINT_REPO_TYPE)
    parser.add_argument("--checkpoint-file", default=hub.DEFAULT_CHECKPOINT_FILE)
    parser.add_argument("--checkpoint-revision", default=None, help="branch, tag or commit of --checkpoint-repo")
    parser.add_argument("--out", default=None,
                        help=f"model folder (default $PUPPET_MASTER_HOME/models/{DEFAULT_MODEL_NAME}: the default model)")
    parser.add_argument("--dtype", choices=("float16", "bfloat16", "float32"), default="float16",
                        help="precision of the converted weights")
    parser.add_argument("--cache-dir", default=None,
                        help="hub cache for the raw downloads (default $PUPPET_MASTER_HOME/downloads, removed after "
                             "conversion; an own cache is never removed)")
    parser.add_argument("--keep-cache", action="store_true", help="keep the raw downloads after conversion")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    parser.add_argument("--progress", choices=PROGRESS_MODES, default="bars",
                        help="bars: progress bars and lines for a terminal; json: one JSON event per line (for programs)")
    parser.set_defaults(func=run)
