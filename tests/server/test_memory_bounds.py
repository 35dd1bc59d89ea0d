"""Clients that never read cannot grow the broker's memory past its documented bound: 1,000 unread
fetches of a finished result, from one connection and from twenty, raise its resident memory by
less than ``MAX_UNREAD_RESULT_BYTES`` (plus allocator slack), and every fetch is answered."""

from __future__ import annotations

import itertools
import time

import pytest
import zmq
from server_helpers import DRAGS, FAST, ScriptedWorker, ServerProcess, noise_frames, png_bytes, rss_bytes

from puppet_master import client as pm
from puppet_master import protocol

FETCHES = 1000
SLACK = 48 * 1024 * 1024  # the allocator's and ZeroMQ's own buffers, beside the bound


@pytest.fixture
def finished_job(tmp_path):
    """A broker alone and one finished job (a result of 14 noise frames, ~2.7 MB), fetched once."""
    server = ServerProcess(tmp_path / "results", workers=0).start()
    worker = ScriptedWorker(server.worker_endpoint, server.worker_secret_file.read_text().strip())
    try:
        with server.client() as c:
            c.submit(png_bytes(), DRAGS, FAST)
            accepted = c.wait_for(lambda e: isinstance(e, pm.Accepted), 10)
            job = worker.next_message()
            worker.send(protocol.RESULT, {"job": accepted.job_id, "settings": {"seed": 1}}, noise_frames())
            result = c.wait_for(lambda e: isinstance(e, pm.Result), 10)
            c.fetch(accepted.job_id)  # warm: the broker has read and sent this result from disk once
            assert c.wait_for(lambda e: isinstance(e, pm.Result), 10)
        assert job.header["job"] == accepted.job_id and result is not None
        yield server, accepted, sum(len(f) for f in result.frames)
    finally:
        worker.close()
        server.stop()


def _handled(server: ServerProcess) -> int:
    return server.server_info(timeout_s=30)["requests"]


@pytest.mark.parametrize("connections", [1, 20])
def test_unread_fetches_raise_the_broker_memory_by_a_bounded_amount(finished_job, connections):
    server, accepted, result_bytes = finished_job
    context = zmq.Context.instance()
    sockets = []
    for _ in range(connections):
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1)  # like a stopped process: its own queue takes (almost) nothing
        sock.setsockopt(zmq.RCVBUF, 4096)
        sock.connect(server.endpoint)
        sockets.append(sock)
    try:
        before_requests = _handled(server)
        before = rss_bytes(server.process.pid)
        for i in range(FETCHES):
            sockets[i % connections].send_multipart(protocol.encode(
                protocol.FETCH, {"req": f"f{i}", "job": accepted.job_id, "token": accepted.token}))
        deadline = time.monotonic() + 120
        while _handled(server) < before_requests + FETCHES + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        info = server.server_info()
        assert info["requests"] >= before_requests + FETCHES, "the broker did not take every fetch"
        grown = rss_bytes(server.process.pid) - before
        print(f"{FETCHES} unread fetches on {connections} connection(s): the broker grew by {grown / 2**20:.1f} MiB, "
              f"{info['unread_result_bytes'] / 2**20:.1f} MiB of results unread")  # a figure, not asserted
        assert info["unread_result_bytes"] <= protocol.MAX_UNREAD_RESULT_BYTES
        assert grown < protocol.MAX_UNREAD_RESULT_BYTES + SLACK, f"{grown / 2**20:.0f} MiB"
        if connections == 1:  # one connection: its bound holds it to a handful of results
            assert grown < protocol.MAX_UNREAD_RESULT_BYTES_PER_CLIENT + SLACK, f"{grown / 2**20:.0f} MiB"

        # now read: every fetch got one answer, a result or `busy`
        answers: dict[str, str] = {}
        for sock in sockets:
            sock.setsockopt(zmq.RCVHWM, 1000)
        deadline = time.monotonic() + 60
        while len(answers) < FETCHES and time.monotonic() < deadline:
            for sock in sockets:
                while sock.poll(10):
                    message = protocol.decode(sock.recv_multipart(), protocol.SERVER_TYPES)
                    if message.get("req"):
                        answers[message.header["req"]] = message.get("code") or message.type
        assert len(answers) == FETCHES, f"{len(answers)} answers to {FETCHES} fetches"
        assert set(answers.values()) <= {protocol.RESULT, protocol.BUSY}, set(answers.values())
        assert answers["f0"] == protocol.RESULT and list(answers.values()).count(protocol.BUSY) > FETCHES // 2
        assert result_bytes > 1_000_000  # a realistic result (the bound is about results, not replies)
    finally:
        for sock in sockets:
            sock.close(linger=0)


def test_a_client_asks_again_after_busy_until_it_gets_the_result():
    """The server's side is played by a ROUTER socket: two `busy` answers, then the result."""
    context = zmq.Context.instance()
    server = context.socket(zmq.ROUTER)
    server.setsockopt(zmq.LINGER, 0)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    job, frames = "a" * 32, noise_frames(count=2, side=16)
    try:
        with pm.GenerationClient(f"tcp://127.0.0.1:{port}", request_timeout_s=10, context=context) as c:
            c.fetch(job, "b" * 32)
            asked = []
            got = None
            deadline = time.monotonic() + 10
            while got is None and time.monotonic() < deadline:
                if server.poll(50):
                    identity, *message = server.recv_multipart()
                    request = protocol.decode(message, protocol.CLIENT_TYPES)
                    if request.type != protocol.FETCH:
                        continue
                    asked.append((time.monotonic(), request.header))
                    if len(asked) <= 2:
                        reply = protocol.encode(protocol.FAILED, {"req": request.header["req"], "code": protocol.BUSY,
                                                                  "message": "full", "job": job})
                    else:
                        reply = protocol.encode(protocol.RESULT, {"req": request.header["req"], "job": job,
                                                                  "settings": {}}, frames)
                    server.send_multipart([identity, *reply])
                got = next((e for e in c.poll(0) if isinstance(e, pm.Result | pm.RequestFailed)), None)
        assert isinstance(got, pm.Result) and got.frames == frames, got
        assert len(asked) == 3 and all(h["token"] == "b" * 32 and h["job"] == job for _, h in asked)
        assert len({h["req"] for _, h in asked}) == 1  # the same request, asked again
        assert all(later - earlier >= pm.BUSY_RETRY_S * 0.9
                   for (earlier, _), (later, _) in itertools.pairwise(asked))
    finally:
        server.close(linger=0)


def test_queued_images_wait_on_disk_not_in_the_broker(tmp_path):
    """Eight queued jobs of a 12 MB image each (no worker takes them): the broker does not hold their
    96 MB (receiving and checking each costs some allocator slack: bounded here by three images)."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (2048, 2048, 3), dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=0)
    image = buffer.getvalue()
    server = ServerProcess(tmp_path / "results", workers=0).start()
    try:
        with server.client() as c:
            c.submit(png_bytes(), DRAGS, FAST)  # warm
            assert isinstance(c.wait_for(lambda e: isinstance(e, pm.Accepted | pm.Rejected), 30), pm.Accepted)
            before = rss_bytes(server.process.pid)
            for _ in range(8):
                c.submit(image, DRAGS, FAST)
                assert isinstance(c.wait_for(lambda e: isinstance(e, pm.Accepted | pm.Rejected), 60), pm.Accepted)
            grown = rss_bytes(server.process.pid) - before
        print(f"8 queued jobs of {len(image) / 2**20:.1f} MB images: the broker grew by {grown / 2**20:.1f} MiB")
        assert grown < 3 * len(image), f"{grown / 2**20:.0f} MiB for {8 * len(image) / 2**20:.0f} MiB of images"
        assert all((server.results / d.name / "input.png").stat().st_size == len(image)
                   for d in server.results.iterdir() if d.is_dir() and d.name != "damaged"
                   and (server.results / d.name / "input.png").stat().st_size > 1_000_000)
    finally:
        server.stop()
