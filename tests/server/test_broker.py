"""The broker without a model: queue limits, queued-job cancel/fetch, status, and resuming after a restart."""

from __future__ import annotations

import threading
import time

import pytest
import zmq
from server_helpers import DRAGS, png_bytes

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.protocol import JobSettings
from puppet_master.server.broker import Broker
from puppet_master.server.store import ResultStore

SETTINGS = JobSettings(num_inference_steps=2)


class RunningBroker:
    def __init__(self, results, **kwargs) -> None:
        self.context = zmq.Context()
        self.broker = Broker(ResultStore(results), frontend="tcp://127.0.0.1:*", context=self.context, **kwargs)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.broker.run, args=(self.stop.is_set,), daemon=True)
        self.thread.start()

    def client(self) -> pm.GenerationClient:
        return pm.GenerationClient(self.broker.frontend_endpoint, context=self.context)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.context.term()


@pytest.fixture
def broker(tmp_path):
    running = RunningBroker(tmp_path / "results", max_queue=2, allow_unload=True)
    yield running
    running.close()


def _submit(c: pm.GenerationClient) -> pm.Event:
    c.submit(png_bytes(), DRAGS, SETTINGS)
    return c.wait_for(lambda e: isinstance(e, pm.Accepted | pm.Rejected), 10)


def test_queue_limit_positions_status_and_queued_cancel(broker):
    with broker.client() as c:
        first, second, third = _submit(c), _submit(c), _submit(c)
        assert (first.position, second.position) == (0, 1) and second.seq == first.seq + 1
        assert isinstance(third, pm.Rejected) and third.code == protocol.QUEUE_FULL
        c.status()
        status = c.wait_for(lambda e: isinstance(e, pm.StatusReply), 10)
        assert status.queue == [first.job_id, second.job_id] and status.workers == []
        c.fetch(second.job_id)
        state = c.wait_for(lambda e: isinstance(e, pm.JobState), 10)
        assert (state.state, state.position) == (protocol.QUEUED, 1)
        c.cancel(first.job_id)
        assert c.wait_for(lambda e: isinstance(e, pm.Cancelled), 10).job_id == first.job_id
        assert isinstance(_submit(c), pm.Accepted)  # room again
        c.unload()
        assert c.wait_for(lambda e: isinstance(e, pm.Unloaded), 10).workers == 0


def test_server_side_checks_reject_what_a_raw_client_could_send(broker):
    sock = broker.context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(broker.broker.frontend_endpoint)
    corrupt = png_bytes()[:40]  # a PNG signature and header, then nothing
    cases = {
        "png": ([{"start": [0.1, 0.1], "end": [0.2, 0.2]}], {}, corrupt, protocol.BAD_IMAGE),
        "drags": ([{"start": [0.1, 0.1], "end": [0.2, 7]}], {}, png_bytes(), protocol.BAD_DRAGS),
        "settings": ([], {"num_inference_steps": 500}, png_bytes(), protocol.BAD_SETTINGS),
    }
    try:
        for req, (drags, settings, image, _) in cases.items():
            sock.send_multipart(protocol.encode(protocol.SUBMIT, {"req": req, "drags": drags, "settings": settings},
                                                [image]))
        for _ in cases:
            assert sock.poll(5000)
            reply = protocol.decode(sock.recv_multipart(), protocol.SERVER_TYPES)
            assert reply.type == protocol.REJECTED
            assert reply.header["code"] == cases[reply.header["req"]][3], reply.header
    finally:
        sock.close()


def test_unfinished_jobs_are_queued_again_after_a_restart(tmp_path):
    first = RunningBroker(tmp_path / "results")
    with first.client() as c:
        accepted = [_submit(c) for _ in range(3)]
    first.close()
    second = RunningBroker(tmp_path / "results")
    try:
        with second.client() as c:
            c.status()
            status = c.wait_for(lambda e: isinstance(e, pm.StatusReply), 10)
            assert status.server["queue"] == 3 and status.queue == []  # a new connection owns none of them
            for position, job in enumerate(accepted):  # their tokens own them, in their order
                c.fetch(job.job_id, job.token)
                state = c.wait_for(lambda e: isinstance(e, pm.JobState | pm.RequestFailed), 10)
                assert isinstance(state, pm.JobState) and (state.state, state.position) == ("queued", position), state
            c.status()
            status = c.wait_for(lambda e: isinstance(e, pm.StatusReply), 10)
            assert status.queue == [job.job_id for job in accepted]  # fetched with the token: watched, listed
            accepted = _submit(c)
            assert accepted.seq == 3  # acceptance order continues across restarts
    finally:
        second.close()


def _raw_worker(running: RunningBroker) -> zmq.Socket:
    """A worker written by hand on a DEALER socket: it says READY, then does only what the test makes it do."""
    sock = running.context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(running.broker.backend_endpoint)
    sock.send_multipart(protocol.encode(protocol.READY, {"worker": {"id": "remote-test", "host": "elsewhere"}}))
    return sock


def test_a_remote_worker_is_lost_only_after_the_worker_timeout_of_silence(tmp_path):
    running = RunningBroker(tmp_path / "results", worker_timeout_s=2.0)
    worker = _raw_worker(running)
    try:
        with running.client() as c:
            assert isinstance(_submit(c), pm.Accepted)
            assert worker.poll(5000), "the broker never sent the job"
            job = protocol.decode(worker.recv_multipart(), protocol.BROKER_TO_WORKER_TYPES)
            assert job.type == protocol.JOB
            # alive: heartbeats for twice the timeout keep the job running
            until = time.monotonic() + 4.0
            while time.monotonic() < until:
                worker.send_multipart(protocol.encode(protocol.HEARTBEAT))
                assert not c.wait_for(lambda e: isinstance(e, pm.JobError), 0.5)
            # silent: the job fails with worker_lost after the timeout, not before
            silent = time.monotonic()
            error = c.wait_for(lambda e: isinstance(e, pm.JobError), 10)
            waited = time.monotonic() - silent
            assert isinstance(error, pm.JobError) and error.code == protocol.WORKER_LOST, error
            assert waited >= 1.5, waited  # not before the timeout (how much later depends on the machine)
    finally:
        worker.close()
        running.close()
