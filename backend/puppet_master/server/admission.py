"""Which workers the broker trusts: those that show the worker secret, under an id of their own."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any


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
