"""``puppet-master worker``: a model worker joining a server's backend (another GPU or machine)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from puppet_master.cli import CLIError

log = logging.getLogger("puppet_master.worker")


def run(args: argparse.Namespace) -> int:
    from puppet_master.server import security

    server_key = None
    if args.server_key:
        try:
            server_key = security.load_public(args.server_key)
        except security.SecurityError as exc:
            raise CLIError(str(exc)) from None
    elif not security.endpoint_is_local(args.connect):
        log.warning("connecting to %s without --server-key: the link is not encrypted", args.connect)
    try:
        secret = (security.read_worker_secret(args.worker_secret) if args.worker_secret
                  else os.environ.get(security.WORKER_SECRET_ENV))
    except security.SecurityError as exc:
        raise CLIError(str(exc)) from None

    from puppet_master.cli._model_options import pipeline_from_args
    from puppet_master.server.worker import WorkerLoop

    def load_pipeline():
        pipe = pipeline_from_args(args)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    model = args.model or ("tiny" if args.tiny else Path(args.checkpoint).name if args.checkpoint else "default")
    info = {"model": model,
            "device": getattr(args, "device", None), "dtype": getattr(args, "dtype", None),
            "untrained": bool(getattr(args, "tiny", False))}
    loop = WorkerLoop(args.connect, load_pipeline, info, server_public_key=server_key, secret=secret)
    stop = threading.Event()
    loading = True

    def on_signal(signum: int, frame: object) -> None:
        if loading:  # nothing to finish yet: do not hold a GPU while a model loads for nobody
            raise SystemExit(0)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    parent_gone = _watch_parent(args.parent_pid)
    if parent_gone():
        return 0
    loop.load()
    loading = False
    pipe = loop.pipe
    loop.info["device"] = str(getattr(pipe, "device", info["device"]))
    loop.info["dtype"] = str(getattr(pipe, "dtype", info["dtype"])).replace("torch.", "")
    loop.info["untrained"] = bool(getattr(getattr(pipe, "config", None), "untrained", info["untrained"]))
    loop.run(lambda: stop.is_set() or parent_gone())
    if parent_gone():
        log.info("the server that started this worker is gone: exiting")
    if loop.refused:
        raise CLIError(f"the server at {args.connect} refused this worker: {loop.refused}")
    return 0


def _watch_parent(parent_pid: int | None):
    """A check that is true once the process that started this worker (``serve``) has died. On
    Linux the kernel also sends SIGTERM at that moment (parent-death signal), so a worker loading
    its model stops too; a remote worker (no ``--parent-pid``) never stops for this."""
    if parent_pid is None:
        return lambda: False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            log.debug("no parent-death signal on this system; the loop checks the parent instead")
    return lambda: os.getppid() != parent_pid


def register(subparsers: argparse._SubParsersAction) -> None:
    from puppet_master.cli._model_options import add_model_arguments

    parser = subparsers.add_parser(
        "worker", help="run a model worker that joins `puppet-master serve` (scale-out to more GPUs/machines)",
        description="Load the model and take jobs from a server's worker endpoint (printed by `serve` as "
                    "'workers connect to ...'; set it with `serve --worker-bind`).",
    )
    parser.add_argument("--connect", required=True, help="the server's worker endpoint, e.g. tcp://gpu-box:5556")
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # set by `serve`
    parser.add_argument("--server-key", help="the server's CURVE public key (Z85 text or .key file) when it uses "
                                             "--curve-secret")
    parser.add_argument("--worker-secret", metavar="FILE",
                        help="the server's worker secret (worker.secret from `puppet-master keys`, the file given "
                             "to `serve --worker-secret`)")
    add_model_arguments(parser)
    parser.set_defaults(func=run)
