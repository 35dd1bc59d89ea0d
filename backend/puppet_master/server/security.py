"""Who may connect: loopback by default, CurveZMQ (encryption + server authentication) otherwise;
and who may be a worker: only a process that shows the worker secret.

Key files use pyzmq's certificate format (``zmq.auth.create_certificates``): ``NAME.key`` holds the
public key, ``NAME.key_secret`` both keys. Give clients the public key (the 40-character Z85 text
``puppet-master keys`` prints, or the ``.key`` file); keep ``.key_secret`` on the server.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

import zmq
import zmq.auth


class SecurityError(ValueError):
    """A bind or a key that cannot be used; the message says why and what to do."""


def endpoint_is_local(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback address (127.x, ::1, localhost)."""
    transport, _, rest = endpoint.partition("://")
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp" or not rest:
        return False
    host = rest.rsplit(":", 1)[0] if not rest.startswith("[") else rest[1:].split("]", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: not provably loopback
        return False


def check_bind(endpoint: str, curve_secret: str | None, what: str = "--bind") -> str:
    """``endpoint`` in ZeroMQ's form; refuse a malformed one, and a non-loopback bind without CURVE
    keys, saying why."""
    from puppet_master.protocol import EndpointError, normalize_endpoint

    try:
        endpoint = normalize_endpoint(endpoint, bind=True)
    except EndpointError as exc:
        raise SecurityError(f"{what}: {exc}") from None
    if not endpoint_is_local(endpoint) and not curve_secret:
        raise SecurityError(
            f"refusing to listen on {endpoint} ({what}) without encryption: anyone who can reach this "
            "address could use the GPU and read results. Create keys with `puppet-master keys --out DIR` "
            "and pass --curve-secret DIR/server.key_secret (clients then need DIR/server.key), or bind "
            "tcp://127.0.0.1:PORT"
        )
    return endpoint


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SecurityError(f"CURVE secret key file {path} does not exist (create it with `puppet-master keys`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise SecurityError(f"cannot read CURVE keys from {path}: {exc}") from exc
    if not secret:
        raise SecurityError(f"{path} holds no secret key (pass the .key_secret file, not the .key file)")
    return public, secret


def load_public(key_or_path: str | bytes) -> bytes:
    """A server public key from its Z85 text or from a ``.key``/``.key_secret`` file
    (:func:`puppet_master.client.read_public_key`, the one reader the add-on uses too)."""
    from puppet_master.client import ServerKeyError, read_public_key

    try:
        key = read_public_key(key_or_path)
    except ServerKeyError as exc:
        raise SecurityError(str(exc)) from None
    if key is None:
        raise SecurityError("the server key is empty: give the 40-character public key or its .key file")
    return key


def create_keys(out_dir: str | Path, name: str = "server") -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` into ``out_dir``; return their paths."""
    if not zmq.has("curve"):
        raise SecurityError("this libzmq was built without CURVE support")
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(out_dir, name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


#: the environment variable through which `serve` hands the worker secret to the workers it starts
WORKER_SECRET_ENV = "PUPPET_MASTER_WORKER_SECRET"
WORKER_SECRET_NAME = "worker.secret"
_SECRET_CHARS = 64  # hex digits: 256 bits


def new_worker_secret() -> str:
    return secrets.token_hex(_SECRET_CHARS // 2)


def write_worker_secret(out_dir: str | Path) -> Path:
    """Write a new worker secret to ``out_dir/worker.secret`` (readable by its owner only)."""
    path = Path(out_dir).expanduser() / WORKER_SECRET_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(new_worker_secret() + "\n")
    return path


def read_worker_secret(path: str | Path) -> str:
    """The worker secret in ``path`` (as `puppet-master keys` writes it)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise SecurityError(f"cannot read the worker secret {path}: {exc.strerror or exc} (create one with "
                            "`puppet-master keys --out DIR`, which writes DIR/worker.secret)") from None
    if len(text) < 32 or any(c not in "0123456789abcdef" for c in text):
        raise SecurityError(f"{path} does not hold a worker secret (at least 32 hex digits, as "
                            "`puppet-master keys` writes it)")
    return text
