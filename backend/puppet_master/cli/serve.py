"""``puppet-master serve``: the generation server (broker + local model workers) over ZeroMQ."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from puppet_master import paths, protocol
from puppet_master.cli import CLIError

log = logging.getLogger("puppet_master.serve")


def model_option_argv(args: argparse.Namespace) -> list[str]:
    """The model options of ``args`` (as added by ``add_model_arguments``) back as a command line,
    to start workers with the same model."""
    from puppet_master.cli._model_options import add_model_arguments

    probe = argparse.ArgumentParser(add_help=False)
    add_model_arguments(probe)
    argv: list[str] = []
    for action in probe._actions:
        if not action.option_strings or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if value is None or value == action.default:
            continue
        flag = action.option_strings[-1] if action.option_strings[-1].startswith("--") else action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def run(args: argparse.Namespace) -> int:
    from puppet_master.server import security

    # 1. refuse unsafe binds before anything else starts
    try:
        args.bind = security.check_bind(args.bind, args.curve_secret, "--bind")
        args.worker_bind = security.check_bind(args.worker_bind, args.curve_secret, "--worker-bind")
        curve_keys = security.load_secret(args.curve_secret) if args.curve_secret else None
        if args.worker_secret:
            worker_secret = security.read_worker_secret(args.worker_secret)
        elif not security.endpoint_is_local(args.worker_bind):
            raise security.SecurityError(
                f"workers on other machines join {args.worker_bind} only with the worker secret: create it with "
                "`puppet-master keys --out DIR` and pass --worker-secret DIR/worker.secret here and to each "
                "`puppet-master worker`")
        else:  # only the workers this process starts: a fresh secret, handed over in their environment
            worker_secret = security.new_worker_secret()
    except security.SecurityError as exc:
        raise CLIError(str(exc)) from None
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else []
    count = len(devices) if devices else args.workers
    if count < 0:
        raise CLIError(f"--workers must be 0 or more, got {count}")
    if args.max_queue < 1:
        raise CLIError(f"--max-queue must be at least 1, got {args.max_queue}")

    # 2. results folder and sockets
    from puppet_master.server.broker import Broker
    from puppet_master.server.local_workers import LocalWorkers, worker_argv
    from puppet_master.server.store import ResultStore

    store = ResultStore(args.results or paths.results_dir(), keep_jobs=args.keep_jobs, keep_s=args.keep_hours * 3600)
    try:
        broker = Broker(store, frontend=args.bind, backend=args.worker_bind, curve_keys=curve_keys,
                        max_queue=args.max_queue, worker_timeout_s=args.worker_timeout,
                        worker_secret=worker_secret, allow_unload=args.allow_unload)
    except OSError as exc:
        raise CLIError(str(exc)) from None

    # 3. local workers
    model_argv = model_option_argv(args)
    server_key = curve_keys[0].decode() if curve_keys else None

    def argv(slot: int) -> list[str]:
        extra = list(model_argv)
        if devices:
            extra += ["--device", devices[slot]]
        return worker_argv(broker.backend_endpoint, extra, server_key)

    workers = LocalWorkers(argv, count, env={**os.environ, security.WORKER_SECRET_ENV: worker_secret})
    broker.supervisor = workers
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("received signal %d: shutting down", signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"puppet-master serve: clients connect to {broker.frontend_endpoint}", flush=True)
    print(f"puppet-master serve: workers connect to {broker.backend_endpoint}", flush=True)
    print(f"puppet-master serve: results in {store.root}", flush=True)
    workers.start()
    gave_up = False

    def should_stop() -> bool:
        nonlocal gave_up
        gave_up = workers.gave_up and not broker.workers
        return stop.is_set() or gave_up

    try:
        broker.run(should_stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if gave_up:
        raise CLIError("the model workers keep failing to start (see their errors above); unfinished jobs "
                       "are kept and run at the next start")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from puppet_master.cli._model_options import add_model_arguments

    parser = subparsers.add_parser(
        "serve", help="run the generation server (ZeroMQ) for Blender and `puppet-master submit`",
        description="Serve generation jobs over ZeroMQ: a broker with a bounded FIFO queue and model "
                    "workers (one per --devices entry, or --workers on --device). See docs/protocol.md.",
    )
    parser.add_argument("--bind", default=protocol.DEFAULT_ENDPOINT,
                        help="client endpoint (default %(default)s; `tcp://127.0.0.1:*` picks a free port). "
                             "A non-loopback address needs --curve-secret")
    parser.add_argument("--worker-bind", default="tcp://127.0.0.1:*",
                        help="endpoint workers connect to (default: a free loopback port); bind a reachable "
                             "address to let `puppet-master worker` on other machines join")
    parser.add_argument("--curve-secret", metavar="FILE",
                        help="CurveZMQ server key (.key_secret from `puppet-master keys`): encrypts both sockets; "
                             "clients and workers need the matching public key")
    parser.add_argument("--worker-secret", metavar="FILE",
                        help="the secret workers show to join (worker.secret from `puppet-master keys`); needed when "
                             "--worker-bind lets other machines in. Default: a new one per start, given to the "
                             "workers this command starts")
    parser.add_argument("--allow-unload", action="store_true",
                        help="let clients ask the workers to free the model's memory (`unload`); off by default, "
                             "since on a shared server one client would slow everyone's next job")
    parser.add_argument("--workers", type=int, default=1, help="local model worker processes (default 1; 0: only "
                                                                "remote workers)")
    parser.add_argument("--devices", help="one local worker per device, e.g. cuda:0,cuda:1 (overrides --workers)")
    parser.add_argument("--results", help=f"results folder (default {paths.results_dir()})")
    parser.add_argument("--max-queue", type=int, default=protocol.DEFAULT_MAX_QUEUE,
                        help="jobs that may wait (default %(default)s); more are rejected with queue_full")
    parser.add_argument("--keep-jobs", type=int, default=100, help="finished jobs always kept (default %(default)s)")
    parser.add_argument("--keep-hours", type=float, default=24.0,
                        help="finished jobs younger than this are kept too (default %(default)s)")
    parser.add_argument("--worker-timeout", type=float, default=protocol.WORKER_TIMEOUT_S,
                        help="seconds without a worker heartbeat before its job fails (default %(default)s)")
    add_model_arguments(parser)
    parser.set_defaults(func=run)
