"""Edge values the protocol must refuse with its own codes, never ``internal`` (and never a
traceback in the server's log a client could grow)."""

from __future__ import annotations

import json

import pytest
import zmq
from server_helpers import png_bytes

from puppet_master import protocol

VALID_DRAGS = [{"start": [0.5, 0.5], "end": [0.6, 0.5]}]
CASES = [
    ("drag coordinate 1e400", protocol.SUBMIT,
     '{"v":2,"type":"submit","req":"a","drags":[{"start":[1e400,0.5],"end":[0.5,0.6]}],"settings":{}}',
     protocol.REJECTED, protocol.BAD_DRAGS),
    ("guidance 1e400", protocol.SUBMIT,
     '{"v":2,"type":"submit","req":"b","drags":' + json.dumps(VALID_DRAGS) + ',"settings":{"max_guidance_scale":1e400}}',
     protocol.REJECTED, protocol.BAD_SETTINGS),
    ("seed 1e400", protocol.SUBMIT,
     '{"v":2,"type":"submit","req":"c","drags":' + json.dumps(VALID_DRAGS) + ',"settings":{"seed":1e400}}',
     protocol.REJECTED, protocol.BAD_SETTINGS),
    ("heartbeat with a number as req", protocol.HEARTBEAT, '{"v":2,"type":"heartbeat","req":1.5}',
     protocol.FAILED, protocol.BAD_FIELD),
    ("req with a trailing newline", protocol.PING, json.dumps({"v": 2, "type": "ping", "req": "abc\n"}),
     protocol.FAILED, protocol.BAD_FIELD),
    ("job id with a trailing newline", protocol.FETCH, json.dumps({"v": 2, "type": "fetch", "req": "d", "job": "a" * 32 + "\n"}),
     protocol.FAILED, protocol.BAD_FIELD),
]


@pytest.mark.parametrize("name, type_, header, reply_type, code", CASES, ids=[c[0] for c in CASES])
def test_edge_values_get_their_own_error_code(server, name, type_, header, reply_type, code):
    log_before = len(server.log())
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    try:
        frames = [header.encode()] + ([png_bytes()] if type_ == protocol.SUBMIT else [])
        sock.send_multipart(frames)
        assert sock.poll(10_000), f"no answer to {name}"
        reply = protocol.decode(sock.recv_multipart(), protocol.SERVER_TYPES)
    finally:
        sock.close()
    assert (reply.type, reply.header["code"]) == (reply_type, code), reply.header
    assert "Traceback" not in server.log()[log_before:]
