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
