"""Jobs belong to the client that submitted them: another client cannot list, fetch or cancel them,
the owner can (also from a new connection, with the job's token), unload is the operator's, and
every request is answered. The broker runs alone (`serve --workers 0`) with a scripted worker."""

from __future__ import annotations

import pytest
from server_helpers import DRAGS, FAST, ScriptedWorker, ServerProcess, noise_frames, png_bytes

from puppet_master import client as pm
from puppet_master import protocol


@pytest.fixture
def broker_only(tmp_path):
    server = ServerProcess(tmp_path / "results", workers=0).start()
    yield server
    server.stop()


def _answer(c: pm.GenerationClient, req: str, timeout_s: float = 10) -> pm.Event:
    """The answer to request ``req`` (a job's final event answers a fetch or cancel: it names no request)."""
    event = c.wait_for(lambda e: getattr(e, "req", None) == req or isinstance(e, pm.Result | pm.JobError | pm.Cancelled),
                       timeout_s)
    assert event is not None, "the request got no answer"
    return event


def test_another_client_cannot_list_fetch_or_cancel_a_job_and_its_owner_can(broker_only):
    a, b = broker_only.client(), broker_only.client()
    try:
        a.submit(png_bytes(), DRAGS, FAST)
        accepted = a.wait_for(lambda e: isinstance(e, pm.Accepted), 10)
        assert accepted is not None and len(accepted.token) == 32
        job = accepted.job_id

        # B sees that a job waits, not which
        status = _answer(b, b.status())
        assert status.server["queue"] == 1 and status.queue == [] and status.running == []
        assert _answer(a, a.status()).queue == [job]
        for request in (b.fetch, b.cancel):
            refused = _answer(b, request(job))
            assert isinstance(refused, pm.RequestFailed) and refused.code == protocol.NOT_OWNER, refused
        wrong = _answer(b, b.fetch(job, "0" * 32))  # a made-up token is no better
        assert isinstance(wrong, pm.RequestFailed) and wrong.code == protocol.NOT_OWNER
        unload = _answer(b, b.unload())
        assert isinstance(unload, pm.RequestFailed) and unload.code == protocol.NOT_ALLOWED
        assert "--allow-unload" in unload.message

        # a worker runs it; only A hears of it
        worker = ScriptedWorker(broker_only.worker_endpoint, broker_only.worker_secret_file.read_text().strip())
        try:
            message = worker.next_message()
            assert message.type == protocol.JOB and message.header["job"] == job
            status = _answer(b, b.status())
            assert [w["job"] for w in status.workers] == [None] and status.workers[0]["busy"]
            assert _answer(a, a.status()).workers[0]["job"] == job
            frames = noise_frames()
            worker.send(protocol.RESULT, {"job": job, "settings": {"seed": 1}, "info": {}}, frames)
            result = a.wait_for(lambda e: isinstance(e, pm.Result), 10)
            assert result.frames == frames
            assert not [e for e in b.poll(200) if getattr(e, "job_id", None) == job]

            # A again from a new connection: the token owns the job, nothing else does
            with broker_only.client() as a2:
                refused = _answer(a2, a2.fetch(job))
                assert isinstance(refused, pm.RequestFailed) and refused.code == protocol.NOT_OWNER
                again = _answer(a2, a2.fetch(job, accepted.token))
                assert isinstance(again, pm.Result) and again.frames == frames
                finished = _answer(a2, a2.cancel(job, accepted.token))
                assert isinstance(finished, pm.RequestFailed) and finished.code == protocol.JOB_FINISHED

            # a running job cancelled by its owner from a new connection: that request is answered
            a.submit(png_bytes(), DRAGS, FAST)
            second = a.wait_for(lambda e: isinstance(e, pm.Accepted), 10)
            assert worker.next_message().header["job"] == second.job_id
            with broker_only.client() as a3:
                req = a3.cancel(second.job_id, second.token)
                cancel = worker.next_message()
                assert cancel.type == protocol.CANCEL and cancel.header["job"] == second.job_id
                worker.send(protocol.CANCELLED, {"job": second.job_id})
                assert isinstance(_answer(a3, req), pm.Cancelled)
            assert a.wait_for(lambda e: isinstance(e, pm.Cancelled) and e.job_id == second.job_id, 10)
        finally:
            worker.close()
    finally:
        a.close()
        b.close()


def test_unload_is_answered_when_the_operator_allows_it(tmp_path):
    server = ServerProcess(tmp_path / "results", "--allow-unload", workers=0).start()
    try:
        with server.client() as c:
            answer = _answer(c, c.unload())
            assert isinstance(answer, pm.Unloaded) and answer.workers == 0
    finally:
        server.stop()
