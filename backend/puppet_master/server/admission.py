"""Which workers the broker trusts: those that show the worker secret, under an id of their own."""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Iterable
from typing import Any

import zmq

from puppet_master import protocol

log = logging.getLogger(__name__)


def worker_refusal(info: dict[str, Any], secret: object, expected: str | None,
                   others: Iterable[dict[str, Any]]) -> str | None:
    """Why a worker's READY (``info``, ``secret``) must be refused, or None to accept it.

    ``expected``: the worker secret (None accepts any worker: a broker tested alone). ``others``:
    the info of the other connected workers; one of them with the same id is the same process
    reconnecting only when its host and pid match too."""
    if expected is not None and not (isinstance(secret, str) and hmac.compare_digest(secret.encode(),
                                                                                      expected.encode())):
        return "it did not show the worker secret (give `puppet-master worker` the server's --worker-secret file)"
    for other in others:
        if info.get("id") is not None and other.get("id") == info.get("id") and (
                (other.get("host"), other.get("pid")) != (info.get("host"), info.get("pid"))):
            return f"its worker id {info.get('id')!r} is in use by another process"
    return None


class WorkerGate:
    """The broker's door for workers: the secret they must show, and the refusals so far."""

    def __init__(self, secret: str | None) -> None:
        self.secret = secret
        self.refused = 0

    def refusal(self, info: dict[str, Any], secret: object, others: Iterable[dict[str, Any]]) -> str | None:
        return worker_refusal(info, secret, self.secret, others)

    def refuse(self, backend: zmq.Socket, identity: bytes, reason: str) -> None:
        """Tell a would-be worker why it gets no jobs (it exits); logged sparingly, it may be a flood."""
        self.refused += 1
        if self.refused in (1, 10, 100) or self.refused % 1000 == 0:
            log.warning("refused a worker (%d so far): %s", self.refused, reason)
        with contextlib.suppress(zmq.ZMQError):
            backend.send_multipart([identity, *protocol.encode(protocol.SHUTDOWN, {"reason": reason})], zmq.NOBLOCK)
