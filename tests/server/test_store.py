"""The results folder: records, results, the index, retention and what a restart finds."""

import json

from server_helpers import png_bytes

from puppet_master import protocol
from puppet_master.server.store import INDEX_NAME, ResultStore


def _record(seq: int, **fields) -> dict:
    return {"job": protocol.new_job_id(), "seq": seq, "state": protocol.QUEUED, "created": 1000.0 + seq,
            "drags": [], "settings": protocol.JobSettings().to_json(), **fields}


def test_result_round_trip_and_layout(tmp_path):
    store = ResultStore(tmp_path)
    record = _record(store.next_seq)
    store.create(record, png_bytes())
    frames = [png_bytes(32, (i * 10, 0, 0)) for i in range(3)]
    drags = [{"start": [0.2, 0.2], "end": [0.6, 0.4]}]
    store.save_result(record["job"], frames, {"seed": 5, "drags": drags}, b"GIF89a...")
    folder = tmp_path / record["job"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "frame_0000.png", "frame_0001.png", "frame_0002.png", "input.png", "job.json", "preview.gif", "settings.json"]
    assert store.result_frames(record["job"]) == frames
    assert (folder / "preview.gif").read_bytes() == b"GIF89a..."
    assert store.result_settings(record["job"])["seed"] == 5
    assert store.load(record["job"])["state"] == protocol.DONE
    assert store.next_seq == 1


def test_index_is_rebuilt_from_job_folders(tmp_path):
    store = ResultStore(tmp_path)
    records = [_record(i) for i in range(3)]
    for r in records:
        store.create(r, png_bytes())
    store.update(records[0]["job"], state=protocol.DONE, finished=2000.0)
    (tmp_path / INDEX_NAME).write_text("{broken")
    again = ResultStore(tmp_path)
    assert len(again) == 3 and again.next_seq == 3
    assert [r["job"] for r in again.unfinished()] == [records[1]["job"], records[2]["job"]]
    assert json.loads((tmp_path / INDEX_NAME).read_text())["jobs"][records[0]["job"]]["state"] == protocol.DONE


def test_retention_keeps_the_newest_jobs_or_recent_ones(tmp_path):
    store = ResultStore(tmp_path, keep_jobs=2, keep_s=100.0)
    records = [_record(i) for i in range(5)]
    for r in records:
        store.create(r, png_bytes(8))
    finished_at = [1.0, 1.0, 950.0, 1.0, 1.0]  # job 2 finished recently
    for r, t in zip(records, finished_at, strict=True):
        store.update(r["job"], state=protocol.DONE, finished=t)
    store.create(_record(5), png_bytes(8))  # unfinished: never pruned
    removed = store.prune(now=1000.0)
    assert sorted(removed) == sorted([records[0]["job"], records[1]["job"]])
    assert not (tmp_path / records[0]["job"]).exists()
    assert all((tmp_path / r["job"]).exists() for r in records[2:])
    assert store.load(records[0]["job"]) is None


def test_unknown_and_hostile_job_ids(tmp_path):
    store = ResultStore(tmp_path)
    assert store.load("0" * 32) is None
    assert store.load("../../etc/passwd") is None


def test_damaged_records_are_moved_aside_named_and_the_rest_serves(tmp_path):
    """A truncated job.json of a queued job, a seq of the wrong type, settings that are not an object
    and a broken index: `serve` starts, names each damaged job (log, status, fetch) and serves the rest."""
    from server_helpers import FAST, ServerProcess, run_job

    from puppet_master import client as pm

    results = tmp_path / "results"
    store = ResultStore(results)
    truncated, bad_seq, bad_settings, good = (_record(i) for i in range(4))
    for record in (truncated, bad_seq, bad_settings, good):
        store.create(record, png_bytes())
    store.save_result(good["job"], [png_bytes(16)], {"seed": 1, "drags": []})
    (results / truncated["job"] / "job.json").write_text(json.dumps(truncated)[:40])
    (results / bad_seq["job"] / "job.json").write_text(json.dumps({**bad_seq, "seq": "abc"}))
    (results / bad_settings["job"] / "job.json").write_text(json.dumps({**bad_settings, "settings": "x"}))
    index = json.loads((results / INDEX_NAME).read_text())
    index["jobs"][good["job"]]["seq"] = "abc"
    (results / INDEX_NAME).write_text(json.dumps(index))

    server = ServerProcess(results).start()
    try:
        with server.client() as c:
            c.status()
            status = c.wait_for(lambda e: isinstance(e, pm.StatusReply), 30)
            damaged = {d["job"]: d["reason"] for d in status.server["damaged"]}
            c.fetch(truncated["job"])
            missing = c.wait_for(lambda e: isinstance(e, pm.RequestFailed), 30)
            c.fetch(good["job"])
            result = c.wait_for(lambda e: isinstance(e, pm.Result), 30)
            assert isinstance(run_job(c, FAST), pm.Result)  # and new jobs run
        log = server.log()
    finally:
        server.stop()
    assert set(damaged) == {truncated["job"], bad_seq["job"], bad_settings["job"]}
    assert "cannot be read" in damaged[truncated["job"]] and "seq" in damaged[bad_seq["job"]]
    assert "settings" in damaged[bad_settings["job"]]
    assert missing.code == protocol.UNKNOWN_JOB and "record was damaged" in missing.message
    assert result is not None and result.job_id == good["job"]
    for job in damaged:
        assert job in log and (results / "damaged" / job / "input.png").is_file()  # nothing deleted
