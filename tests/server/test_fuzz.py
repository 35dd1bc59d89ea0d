"""1,000 random and malformed messages: every one answered or dropped, no crash, then a real job works."""

from __future__ import annotations

import json
import random
import time

import zmq
from server_helpers import png_bytes, run_job

from puppet_master import client as pm
from puppet_master import protocol

N_MESSAGES = 1000
SEED = 1234


def _header(rng: random.Random) -> dict:
    """A header that is wrong in one random way (or several)."""
    type_ = rng.choice([*sorted(protocol.CLIENT_TYPES - {protocol.UNLOAD}), "result", "job", "", "PING", 7, None])
    header = {"v": rng.choice([1, 1, 1, 0, 2, "1", True, None, 1.0]), "type": type_,
              "req": rng.choice(["r1", "", "x" * 80, "bad id", 5, None, "ok-req"])}
    choices = [
        {"drags": rng.choice([[], "drags", [{"start": [0.1, 0.2], "end": [0.3]}], [{"start": [0.5, 0.5], "end": [2, 0]}],
                              [{"start": [0.1, 0.1], "end": [0.2, 0.2]}] * 6, [[0.1, 0.2, 0.3, 0.4]], None])},
        {"settings": rng.choice([{"num_inference_steps": 0}, {"num_inference_steps": 10**9}, {"seed": -5},
                                 {"max_guidance_scale": "high"}, {"colour": "red"}, [], "fast", None])},
        {"job": rng.choice(["0" * 32, "../../../etc/passwd", "A" * 32, 12, "", None])},
        {"position": True, "extra": {"nested": [1, 2, {"x": None}]}},
    ]
    for extra in rng.sample(choices, k=rng.randint(0, len(choices))):
        header.update(extra)
    return header


def _message(rng: random.Random) -> list[bytes]:
    kind = rng.randrange(8)
    if kind == 0:  # random bytes in random frames
        return [rng.randbytes(rng.randint(0, 200)) for _ in range(rng.randint(1, 4))]
    if kind == 1:  # broken JSON
        text = json.dumps(_header(rng))
        return [text[: rng.randint(0, max(0, len(text) - 1))].encode()]
    if kind == 2:  # JSON that is not an object, or deeply nested
        return [rng.choice([b"[]", b"null", b"42", b'"ping"', b"[" * 5000 + b"]" * 5000, b'{"v": 1, "type": NaN}'])]
    if kind == 3:  # header over the limit
        return [json.dumps({"v": 1, "type": "ping", "pad": "x" * (protocol.MAX_HEADER_BYTES + 10)}).encode()]
    if kind == 4:  # a submit with a corrupt or huge-claiming image
        image = png_bytes(16)
        broken = rng.choice([image[: len(image) // 2], image[:16] + b"\xff\xff\xff\xff" + image[20:],
                             rng.randbytes(300), b"", image[:33] + rng.randbytes(50)])
        header = {"v": 1, "type": "submit", "req": "fuzz", "drags": [], "settings": {"num_inference_steps": 2}}
        return [json.dumps(header).encode(), broken]
    if kind == 5:  # a submit with wrong frame counts
        header = {"v": 1, "type": "submit", "req": "fuzz", "drags": [], "settings": {}}
        return [json.dumps(header).encode(), *([png_bytes(8)] * rng.choice([0, 2, 3]))]
    # mostly-plausible headers with wrong fields, and random trailing frames
    frames = [json.dumps(_header(rng)).encode()]
    return frames + [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.choice([0, 0, 1, 2]))]


def test_thousand_malformed_messages_then_a_valid_job(server):
    rng = random.Random(SEED)
    context = zmq.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    replies: list[protocol.Message] = []
    try:
        for i in range(N_MESSAGES):
            sock.send_multipart(_message(rng))
            if i % 50 == 0:
                # an oversized frame (over ZMQ_MAXMSGSIZE) on its own connection: the server drops it
                huge = context.socket(zmq.DEALER)
                huge.setsockopt(zmq.LINGER, 0)
                huge.connect(server.endpoint)
                huge.send_multipart([b'{"v":1,"type":"submit","req":"huge","drags":[]}',
                                     b"\x89PNG" + b"\0" * (protocol.MAX_FRAME_BYTES + 10)])
                time.sleep(0.05)
                huge.close()
            while sock.poll(0):
                replies.append(protocol.decode(sock.recv_multipart(), protocol.SERVER_TYPES))
        deadline = time.monotonic() + 30
        while len(replies) < N_MESSAGES and time.monotonic() < deadline:
            if sock.poll(200):
                replies.append(protocol.decode(sock.recv_multipart(), protocol.SERVER_TYPES))
    finally:
        sock.close()
    assert server.process.poll() is None, f"the server died:\n{server.log()}"
    # every malformed message was answered with an error reply naming a known code
    errors = [m for m in replies if m.type in (protocol.FAILED, protocol.REJECTED)]
    assert len(replies) == N_MESSAGES, f"{len(replies)} replies to {N_MESSAGES} messages"
    assert {m.header["code"] for m in errors} <= protocol.ERROR_CODES
    assert len(errors) > 0.8 * N_MESSAGES
    assert not [m for m in replies if m.type == protocol.ACCEPTED]
    with server.client() as c:
        c.unload()  # the worker frees its model and loads it again for the next job
        assert c.wait_for(lambda e: isinstance(e, pm.Unloaded), 10).workers >= 1
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            c.status()
            status = c.wait_for(lambda e: isinstance(e, pm.StatusReply), 10)
            if not any(w["loaded"] for w in status.workers):
                break
            time.sleep(0.2)
        assert status.workers and not any(w["loaded"] for w in status.workers), status.workers
        assert isinstance(run_job(c), pm.Result)


# --- valid messages, mutated one field at a time ---------------------------------------------
HUGE = "__HUGE__"  # written into the JSON text as 1e400 (Python reads it as infinity)
MUTATIONS = [None, True, 0, -1, 1.5, HUGE, 10**30, "", "x" * 100, "\n", [], {}, [[0.5, 0.5]], {"a": 1}]


def _valid(job: str, token: str) -> list[tuple[dict, list[bytes]]]:
    drag = {"start": [0.5, 0.5], "end": [0.7, 0.4]}
    settings = {"num_inference_steps": 2, "seed": 1, "max_guidance_scale": 1.0, "preview_every": 0}
    return [
        ({"v": 2, "type": "ping", "req": "p"}, []),
        ({"v": 2, "type": "heartbeat"}, []),
        ({"v": 2, "type": "status", "req": "s"}, []),
        ({"v": 2, "type": "unload", "req": "u"}, []),
        ({"v": 2, "type": "fetch", "req": "f", "job": job, "token": token}, []),
        ({"v": 2, "type": "cancel", "req": "c", "job": job, "token": token}, []),
        ({"v": 2, "type": "submit", "req": "sub", "drags": [drag], "settings": settings}, [png_bytes(32)]),
    ]


def _paths(value, prefix=()):
    """Every place in a header a mutation can go: keys, list items, nested values."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _mutated(header: dict, path: tuple, new) -> bytes:
    import copy

    header = copy.deepcopy(header)
    target = header
    for key in path[:-1]:
        target = target[key]
    if new is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return json.dumps(header).replace(f'"{HUGE}"', "1e400").encode()


_DELETE = object()


def _frames_mutated(frames: list[bytes], rng: random.Random) -> list[bytes]:
    png = png_bytes(32)
    choice = rng.randrange(5)
    if choice == 0:
        return []
    if choice == 1:
        return [*frames, png]
    if choice == 2:
        return [png[: rng.randint(8, len(png) - 1)]]
    if choice == 3:  # a header that claims a huge picture
        return [png[:16] + (100_000).to_bytes(4, "big") * 2 + png[24:]]
    return [rng.randbytes(40)]


def test_mutated_valid_messages_are_each_answered_once_and_memory_stays_bounded(tmp_path):
    from server_helpers import ServerProcess, rss_bytes

    server = ServerProcess(tmp_path / "results", "--max-queue", "4", workers=0).start()
    rng = random.Random(SEED)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.endpoint)
    try:
        sock.send_multipart(protocol.encode(protocol.SUBMIT, {"req": "own", "drags": [{"start": [0.5, 0.5],
                            "end": [0.6, 0.5]}]}, [png_bytes(32)]))
        assert sock.poll(10_000)
        accepted = protocol.decode(sock.recv_multipart(), protocol.SERVER_TYPES)
        templates = _valid(accepted.header["job"], accepted.header["token"])
        messages = []
        for header, frames in templates:
            for path in list(_paths(header))[1:]:
                if path == ("v",) or path == ("type",):
                    continue
                for new in [*MUTATIONS, _DELETE]:
                    messages.append([_mutated(header, path, new), *frames])
            messages += [[json.dumps(header).encode(), *_frames_mutated(frames, rng)] for _ in range(20)]
        messages = (messages * (3000 // len(messages) + 1))[:3000]
        rng.shuffle(messages)
        before = rss_bytes(server.process.pid)
        replies = []
        for message in messages:
            sock.send_multipart(message)
            while sock.poll(0):
                replies.append(protocol.decode(sock.recv_multipart(), protocol.SERVER_TYPES))
        deadline = time.monotonic() + 60
        while len(replies) < len(messages) and time.monotonic() < deadline:
            if sock.poll(200):
                replies.append(protocol.decode(sock.recv_multipart(), protocol.SERVER_TYPES))
        grown = rss_bytes(server.process.pid) - before
    finally:
        sock.close()
        server.stop()
    assert len(replies) == len(messages) == 3000, f"{len(replies)} replies to {len(messages)} messages"
    codes = {m.header["code"] for m in replies if m.type in (protocol.FAILED, protocol.REJECTED)}
    assert codes <= protocol.ERROR_CODES and protocol.INTERNAL not in codes, codes
    assert "Traceback" not in server.log()  # nothing a client sends reaches the log as a crash
    assert grown < 64 * 2**20, f"the broker grew by {grown / 2**20:.0f} MiB"
