"""What the broker sends to clients: each message in the protocol version its client speaks,
never blocking, and within memory bounds when a client does not read.

ZeroMQ queues outgoing messages per client connection until the client takes them. Small
messages (answers, progress) are bounded by the socket's send high-water mark
(``protocol.CLIENT_SNDHWM`` per connection; beyond it ZeroMQ drops them). A result is a few MB of
PNG frames, so results are sent zero-copy and *tracked*: ZeroMQ tells when it has written a
result's frames out and let go of them. Until then the result counts as unread, and a FETCH that
would take the unread bytes of its client over ``MAX_UNREAD_RESULT_BYTES_PER_CLIENT``, or of all
clients over ``MAX_UNREAD_RESULT_BYTES``, or that asks again for a result still on its way to the
same client, is answered ``busy`` instead. A job's end is always sent to its watchers (their
count per job is bounded by ``MAX_WATCHERS``, and only owners watch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import zmq

from puppet_master import protocol

log = logging.getLogger(__name__)

MAX_OLD_CLIENTS = 10_000  # clients of an older protocol version remembered, to answer each in its version
MiB = 1024 * 1024


@dataclass
class _Unread:
    identity: bytes
    job: str
    nbytes: int
    tracker: zmq.MessageTracker


class ClientSender:
    """Sends on the broker's client socket (a ROUTER), remembering versions and unread results."""

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket
        #: clients that speak an older protocol version, answered in it (bounded: oldest dropped)
        self._old_clients: dict[bytes, int] = {}
        self._unread: list[_Unread] = []

    def note_version(self, identity: bytes, version: int) -> None:
        if version == protocol.PROTOCOL_VERSION:
            self._old_clients.pop(identity, None)
            return
        self._old_clients[identity] = version
        while len(self._old_clients) > MAX_OLD_CLIENTS:
            self._old_clients.pop(next(iter(self._old_clients)))

    def send(self, identity: bytes, type_: str, fields: dict[str, Any] | None = None,
             blobs: list[bytes] | tuple = (), *, result_of: str | None = None) -> None:
        """Send a message (fields that are None are left out). ``result_of``: the blobs are job
        ``result_of``'s frames, tracked until ZeroMQ has written them out."""
        fields = {k: v for k, v in (fields or {}).items() if v is not None}
        version = self._old_clients.get(identity, protocol.PROTOCOL_VERSION)
        header = protocol.encode(type_, fields, (), version)[0]
        payload = list(blobs)
        tracked = [zmq.Frame(blob, copy=False, track=True) for blob in payload] if result_of else payload
        try:
            self.socket.send_multipart([identity, header, *tracked], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # a client that is gone or not reading: its loss
            log.debug("could not send %s to client %r: %s", type_, identity, exc)
            return
        if result_of and tracked:
            self._unread.append(_Unread(identity, result_of, sum(len(b) for b in payload),
                                        zmq.MessageTracker(*tracked)))

    def fail(self, identity: bytes, req: str, code: str, message: str, job_id: str | None = None) -> None:
        self.send(identity, protocol.FAILED, {"req": req, "code": code, "message": message, "job": job_id})

    def unread_bytes(self, identity: bytes | None = None) -> int:
        """Bytes of results sent to ``identity`` (None: to anyone) that ZeroMQ still holds."""
        self._unread = [u for u in self._unread if not u.tracker.done]
        return sum(u.nbytes for u in self._unread if identity is None or u.identity == identity)

    def fetch_refusal(self, identity: bytes, job_id: str, nbytes: int) -> str | None:
        """Why a FETCH of a ``nbytes`` result must wait (answered ``busy``), or None to send it."""
        mine, everyone = self.unread_bytes(identity), self.unread_bytes()
        if any(u.identity == identity and u.job == job_id for u in self._unread):
            return f"job {job_id}'s result is already on its way to this client: read it before asking again"
        if mine and mine + nbytes > protocol.MAX_UNREAD_RESULT_BYTES_PER_CLIENT:
            return (f"{mine / MiB:.1f} MiB of results sent to this client are not read yet (bound "
                    f"{protocol.MAX_UNREAD_RESULT_BYTES_PER_CLIENT // MiB} MiB): read them, then fetch again")
        if everyone and everyone + nbytes > protocol.MAX_UNREAD_RESULT_BYTES:
            return (f"the server holds {everyone / MiB:.1f} MiB of results clients have not read yet (bound "
                    f"{protocol.MAX_UNREAD_RESULT_BYTES // MiB} MiB): try again in a moment")
        return None
