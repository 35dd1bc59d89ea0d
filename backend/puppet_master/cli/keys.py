"""``puppet-master keys``: create a CurveZMQ key pair for `serve --curve-secret`, and the secret
that workers on other machines show to join (`serve --worker-secret`, `worker --worker-secret`)."""

from __future__ import annotations

import argparse

from puppet_master.cli import CLIError


def run(args: argparse.Namespace) -> int:
    import zmq.auth

    from puppet_master.server.security import SecurityError, create_keys, write_worker_secret

    try:
        public, secret = create_keys(args.out, args.name)
        worker_secret = write_worker_secret(args.out)
    except (SecurityError, OSError) as exc:
        raise CLIError(str(exc)) from None
    key, _ = zmq.auth.load_certificate(public)
    print(f"secret key (keep on the server): {secret}")
    print(f"public key file (give to clients): {public}")
    print(f"worker secret (for serve and remote workers, never clients): {worker_secret}")
    print(f"public key: {key.decode()}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="create CurveZMQ keys for `serve --curve-secret`")
    parser.add_argument("--out", required=True, help="folder for NAME.key (public) and NAME.key_secret")
    parser.add_argument("--name", default="server", help="file name stem (default %(default)s)")
    parser.set_defaults(func=run)
