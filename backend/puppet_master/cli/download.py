"""``puppet-master download``: the real model from the Hugging Face Hub, converted, in one command.

1. ask the hub which files and commits (or, with ``HF_HUB_OFFLINE=1``, find them in the cache);
2. check the disk space for the downloads and the converted folder, before any byte moves;
3. download each file with huggingface_hub (progress bars, resume, its cache), verify size and hash;
4. convert (strict load) into the default model folder atomically, with a manifest;
5. remove the raw downloads unless ``--keep-cache`` (or an own ``--cache-dir``).

Exit status: 0 done; 2 bad arguments; 3 log in; 4 accept the licence; 5 a repository, revision or
file does not exist; 6 not enough disk space; 7 a corrupt download; 8 offline and not cached;
9 the network or the hub failed; 1 the destination exists or the weights do not fit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from puppet_master import hub, paths

DEFAULT_MODEL_NAME = paths.DEFAULT_MODEL_NAME


def _say(message: str) -> None:
    print(message, flush=True)


def run(args: argparse.Namespace) -> int:
    from puppet_master.conversion import ConversionError, check_destination, convert_to_folder
    from puppet_master.loading import ModelLoadError

    out = Path(args.out).expanduser() if args.out else paths.models_dir() / DEFAULT_MODEL_NAME
    own_cache = args.cache_dir is None
    cache_dir = (paths.home_dir() / "downloads") if own_cache else Path(args.cache_dir).expanduser()
    try:
        check_destination(out, args.overwrite)
        # 1. what to fetch
        if hub.offline():
            _say(f"offline (HF_HUB_OFFLINE): using the files cached in {cache_dir}")
            svd = hub.resolve_offline(args.svd_repo, "model", args.revision, cache_dir, select=hub.select_svd_files)
            ckpt = hub.resolve_offline(args.checkpoint_repo, args.checkpoint_repo_type, args.checkpoint_revision,
                                       cache_dir, wanted=[args.checkpoint_file])
        else:
            _say(f"asking {hub.endpoint()} for {args.svd_repo} and {args.checkpoint_repo} ...")
            svd = hub.resolve(args.svd_repo, "model", args.revision, select=hub.select_svd_files)
            ckpt = hub.resolve(args.checkpoint_repo, args.checkpoint_repo_type, args.checkpoint_revision,
                               wanted=[args.checkpoint_file])
            # 2. the disk, before any byte moves
            cache_dir.mkdir(parents=True, exist_ok=True)
            figures = hub.check_disk([svd, ckpt], cache_dir, out, 4 if args.dtype == "float32" else 2)
            _say(f"{len(svd.files) + len(ckpt.files)} files, {hub._gb(figures['download_bytes'])} to download into "
                 f"{cache_dir}, about {hub._gb(figures['converted_bytes'])} for the converted model in {out}"
                 + ("" if args.keep_cache or not own_cache else "; the downloads are removed after conversion"))
        # 3. download and verify
        svd_dir = hub.fetch(svd, cache_dir)
        checkpoint = hub.fetch(ckpt, cache_dir) / args.checkpoint_file
        # 4. convert, with the manifest
        _say(f"converting into {out} ({args.dtype}) ...")
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
        print(f"puppet-master download: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ConversionError, ModelLoadError) as exc:
        print(f"puppet-master download: error: {exc}", file=sys.stderr)
        return 1
    # 5. the raw downloads
    if own_cache and not args.keep_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
        _say(f"removed the raw downloads in {cache_dir} (--keep-cache keeps them)")
    _say(f"the Puppet-Master model ({done.unet_parameters / 1e9:.2f}B U-Net parameters, {done.dtype}) is in {done.folder}")
    if out == paths.models_dir() / DEFAULT_MODEL_NAME:
        _say("it is the default model: `puppet-master generate --image IMG --drag X0,Y0:X1,Y1` and "
             "`puppet-master serve` use it without --model")
    else:
        _say(f"use it with --model {done.folder}")
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
    parser.set_defaults(func=run)
