"""Drag paths (protocol version 2) end to end, and a version-1 client on the same server."""

from __future__ import annotations

import json
import math
import time

import zmq
from server_helpers import FAST, JOB_TIMEOUT_S, png_bytes

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.drags import NUM_FRAMES, Drag

#: a curved path: a quarter circle, eased (slow at both ends)
CURVE = [(0.5 + 0.2 * math.sin(t), 0.3 + 0.2 * math.cos(t))
         for t in [math.pi / 2 * (3 * s**2 - 2 * s**3) for s in (k / (NUM_FRAMES - 1) for k in range(NUM_FRAMES))]]


def test_a_path_drag_runs_and_comes_back_with_its_path(server):
    with server.client() as c:
        c.submit(png_bytes(), [Drag.from_path(CURVE), ((0.3, 0.6), (0.3, 0.4))], FAST)
        event = c.wait_for(lambda e: isinstance(e, pm.Result | pm.JobError | pm.Rejected), JOB_TIMEOUT_S)
    assert isinstance(event, pm.Result), event
    assert len(event.frames) == NUM_FRAMES
    curved, straight = event.drags
    assert [tuple(p) for p in curved["path"]] == [tuple(map(float, p)) for p in CURVE]
    assert curved["start"] == list(CURVE[0]) and curved["end"] == list(CURVE[-1])
    assert "path" not in straight


def _v1_round_trip(endpoint: str, drags: list, timeout_s: float = JOB_TIMEOUT_S) -> list[dict]:
    """Speak version 1 on a bare DEALER socket, as a client built before paths existed; every header
    it receives, decoded."""
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        header = {"v": 1, "type": protocol.SUBMIT, "req": "old-1", "drags": drags,
                  "settings": FAST.to_json()}
        sock.send_multipart([json.dumps(header).encode(), png_bytes()])
        received, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sock.poll(200):
                frames = sock.recv_multipart()
                received.append(json.loads(frames[0]))
                if received[-1]["type"] in (protocol.RESULT, protocol.ERROR, protocol.REJECTED):
                    break
        return received
    finally:
        sock.close()


def test_a_version_1_client_is_served_and_answered_in_version_1(server):
    received = _v1_round_trip(server.endpoint, [{"start": [0.5, 0.5], "end": [0.7, 0.45]}])
    assert received[0]["type"] == protocol.ACCEPTED and received[-1]["type"] == protocol.RESULT
    assert {h["v"] for h in received} == {1}  # it could not read a version-2 header
    assert received[-1]["drags"] == [{"start": [0.5, 0.5], "end": [0.7, 0.45]}]


def test_a_version_1_client_cannot_send_a_path(server):
    received = _v1_round_trip(server.endpoint, [{"path": [list(p) for p in CURVE]}], timeout_s=30)
    assert received[-1]["type"] == protocol.REJECTED and received[-1]["v"] == 1
    assert received[-1]["code"] == protocol.BAD_DRAGS and "paths need protocol version 2" in received[-1]["message"]
