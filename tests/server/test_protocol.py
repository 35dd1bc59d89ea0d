"""The wire format: encoding, every rejection decode() makes, limits, and the client's own checks."""

import json
import struct
import subprocess
import sys
import time
import zlib

import pytest
from server_helpers import png_bytes

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.protocol import JobSettings, ProtocolError

JOB = "0123456789abcdef0123456789abcdef"


def _code(frames, accepted=protocol.CLIENT_TYPES) -> str:
    with pytest.raises(ProtocolError) as info:
        protocol.decode(frames, accepted)
    return info.value.code


def test_round_trip_keeps_header_and_binary_frames():
    frames = protocol.encode(protocol.SUBMIT, {"req": "r1", "drags": [], "settings": {}}, [b"\x00\xffpng"])
    message = protocol.decode(frames, protocol.CLIENT_TYPES)
    assert message.type == protocol.SUBMIT
    assert message.header["req"] == "r1" and message.header["v"] == protocol.PROTOCOL_VERSION
    assert message.blobs == [b"\x00\xffpng"]


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([], protocol.BAD_MESSAGE),
        ([b"{not json"], protocol.BAD_MESSAGE),
        ([b"\xff\xfe"], protocol.BAD_MESSAGE),
        ([b"[1, 2]"], protocol.BAD_MESSAGE),
        ([b'{"v": 1, "type": "ping", "req": NaN}'], protocol.BAD_MESSAGE),
        ([b"[" * 100_000], protocol.BAD_MESSAGE),
        ([json.dumps({"v": 3, "type": "ping"}).encode()], protocol.BAD_VERSION),
        ([json.dumps({"v": True, "type": "ping"}).encode()], protocol.BAD_VERSION),
        ([json.dumps({"type": "ping"}).encode()], protocol.BAD_VERSION),
        ([json.dumps({"v": 1, "type": "explode"}).encode()], protocol.UNKNOWN_TYPE),
        ([json.dumps({"v": 1, "type": 7}).encode()], protocol.UNKNOWN_TYPE),
        ([json.dumps({"v": 1, "type": "result", "job": JOB, "settings": {}}).encode(), b"x"], protocol.UNKNOWN_TYPE),
        ([json.dumps({"v": 1, "type": "cancel", "req": "a"}).encode()], protocol.BAD_FIELD),
        ([json.dumps({"v": 1, "type": "cancel", "req": "a", "job": 5}).encode()], protocol.BAD_FIELD),
        ([json.dumps({"v": 1, "type": "cancel", "req": "a", "job": "../../etc"}).encode()], protocol.BAD_FIELD),
        ([json.dumps({"v": 1, "type": "status", "req": "a b"}).encode()], protocol.BAD_FIELD),
        ([json.dumps({"v": 1, "type": "submit", "req": "a", "drags": []}).encode()], protocol.BAD_MESSAGE),
        ([json.dumps({"v": 1, "type": "ping"}).encode(), b"extra"], protocol.BAD_MESSAGE),
        ([b" " * (protocol.MAX_HEADER_BYTES + 1)], protocol.BAD_MESSAGE),
    ],
)
def test_decode_rejects_malformed_messages(frames, code):
    assert _code(frames) == code


def test_json_true_is_not_an_integer():
    frames = protocol.encode(protocol.ACCEPTED, {"req": "a", "job": JOB, "position": True, "seq": 0})
    assert _code(frames, protocol.SERVER_TYPES) == protocol.BAD_FIELD


def test_drag_checks():
    ok = protocol.drags_to_json([((0.1, 0.2), (0.3, 0.4)), {"start": [0, 0], "end": [1, 1]}])
    assert ok == [{"start": [0.1, 0.2], "end": [0.3, 0.4]}, {"start": [0.0, 0.0], "end": [1.0, 1.0]}]
    with pytest.raises(ProtocolError, match="at most 5"):
        protocol.drags_to_json([((0.1, 0.1), (0.2, 0.2))] * 6)
    with pytest.raises(ProtocolError, match="not finite"):
        protocol.drags_to_json([((float("nan"), 0.1), (0.2, 0.2))])
    with pytest.raises(ProtocolError, match="outside the image"):
        protocol.check_drags([{"start": [0.5, 1.5], "end": [0.5, 0.5]}])
    with pytest.raises(ProtocolError, match="must be"):
        protocol.check_drags([{"start": [0.5, 0.5]}])
    with pytest.raises(ProtocolError):
        protocol.check_drags([{"start": [True, 0.5], "end": [0.5, 0.5]}])


def test_settings_ranges_and_unknown_keys():
    assert JobSettings.from_json({}) == JobSettings()
    assert JobSettings().max_guidance_scale is None  # the model's own guidance unless a job names one
    named = JobSettings.from_json({"min_guidance_scale": 1, "max_guidance_scale": 3.5})
    assert (named.min_guidance_scale, named.max_guidance_scale) == (1.0, 3.5)
    assert JobSettings.from_json(named.to_json()) == named
    assert JobSettings.from_json({"num_inference_steps": 200, "seed": 0}).num_inference_steps == 200
    for bad in ({"num_inference_steps": 0}, {"num_inference_steps": 201}, {"num_inference_steps": 2.5},
                {"seed": -1}, {"min_guidance_scale": float("inf")}, {"max_guidance_scale": "5"}, {"colour": 1}):
        with pytest.raises(ProtocolError) as info:
            JobSettings.from_json(bad)
        assert info.value.code == protocol.BAD_SETTINGS


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return protocol.PNG_SIGNATURE + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def test_png_size_limits_without_decoding():
    assert protocol.png_size(png_bytes(48)) == (48, 48)
    assert protocol.png_size(_png_header(4096, 4096)) == (4096, 4096)
    for data, code in ((b"GIF89a" + b"\0" * 30, protocol.BAD_IMAGE), (_png_header(4097, 16), protocol.IMAGE_TOO_LARGE),
                       (_png_header(0, 16), protocol.BAD_IMAGE),
                       (b"\0" * (protocol.MAX_IMAGE_BYTES + 1), protocol.IMAGE_TOO_LARGE)):
        with pytest.raises(ProtocolError) as info:
            protocol.png_size(data)
        assert info.value.code == code


def test_client_refuses_bad_input_before_sending():
    with pm.GenerationClient("tcp://127.0.0.1:9") as c:
        with pytest.raises(ProtocolError):
            c.submit(b"not a png", [])
        with pytest.raises(ProtocolError):
            c.submit(png_bytes(), [((0.1, 0.1), (2.0, 0.1))])
        with pytest.raises(ProtocolError):
            c.submit(png_bytes(), [], {"num_inference_steps": 0})
        with pytest.raises(ProtocolError):
            c.fetch("not-a-job")


def test_client_without_server_reports_lost_connection_and_times_out_requests():
    with pm.GenerationClient("tcp://127.0.0.1:9", server_timeout_s=0.3, request_timeout_s=0.5) as c:
        req = c.submit(png_bytes(), [], JobSettings(num_inference_steps=2))
        started = time.monotonic()
        events = []
        while time.monotonic() - started < 2.0 and not any(isinstance(e, pm.Rejected) for e in events):
            events += c.poll(timeout_ms=50)
        assert c.poll(0) == []  # nothing will ever come from port 9: a waiting poll(0) would hang here
    assert any(isinstance(e, pm.ConnectionLost) for e in events)
    rejected = [e for e in events if isinstance(e, pm.Rejected)]
    assert rejected and rejected[0].req == req and rejected[0].code == protocol.TIMEOUT
    assert c.connected is False


def test_light_modules_import_without_torch():
    code = "import sys, puppet_master.client, puppet_master.protocol; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_client_and_protocol_import_only_relative_project_modules():
    from pathlib import Path

    for module in (pm, protocol):
        text = Path(module.__file__).read_text()
        assert "from puppet_master" not in text and "import puppet_master" not in text, module.__name__


def test_endpoints_are_normalised_or_refused_with_the_expected_form():
    from puppet_master.client import GenerationClient

    assert protocol.normalize_endpoint(" localhost:5555") == "tcp://localhost:5555"
    assert protocol.normalize_endpoint("tcp://[::1]:5555\n") == "tcp://[::1]:5555"
    assert protocol.normalize_endpoint("tcp://*:5555", bind=True) == "tcp://*:5555"
    assert protocol.normalize_endpoint("tcp://127.0.0.1:*", bind=True) == "tcp://127.0.0.1:*"
    for bad, why in [("tcp://127.0.0.1", "no port"), ("tcp://127.0.0.1:0", "no port"), ("", "empty"),
                     ("udp://host:1", "transport 'udp'"), ("tcp://:5555", "no usable host"),
                     ("tcp://*:5555", "no usable host")]:
        with pytest.raises(protocol.EndpointError, match=why) as caught:
            protocol.normalize_endpoint(bad)
        assert "expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:5555" in str(caught.value)
    client = GenerationClient(" 127.0.0.1:5555")
    assert client.endpoint == "tcp://127.0.0.1:5555"
    client.close()
    with pytest.raises(protocol.EndpointError, match="no port"):
        GenerationClient("tcp://127.0.0.1")


def test_a_zero_length_drag_is_refused_not_sent_as_no_drag():
    with pytest.raises(protocol.ProtocolError, match="drag 1 has no length") as caught:
        protocol.check_drags([{"start": [0, 0], "end": [0, 0]}])
    assert caught.value.code == protocol.BAD_DRAGS
