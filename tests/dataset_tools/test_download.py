"""download.py: id lists -> local GLBs in the objaverse cache layout (no network here)."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_tools import download, render_plan
from tests.shared_data import SHARED

ROOT = Path(__file__).resolve().parents[2]
UIDS = [f"{i:032x}" for i in range(1, 7)]


def make_cache(root: Path, uids: list[str]) -> Path:
    """A folder laid out like ~/.objaverse after objaverse.load_objects."""
    for n, uid in enumerate(uids):
        path = root / "hf-objaverse-v1" / "glbs" / f"000-{n % 2:03d}" / f"{uid}.glb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"glTF")
    return root


def test_released_id_lists_read():
    path = SHARED / "data" / "objaverse-animation-HQ.json"
    if not path.is_file():
        pytest.skip(f"shared data not found at {path}")
    ids = download.read_ids(path)
    assert len(ids) == 8069 and sum(len(i) == 32 for i in ids) >= 8000


def test_read_ids_formats_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("# comment\nabc\n\ndef.glb\nabc\n")
    assert download.read_ids(tmp_path / "a.txt") == ["abc", "def"]
    (tmp_path / "b.json").write_text(json.dumps({"x": "p", "y": "q"}))
    assert download.read_ids(tmp_path / "b.json") == ["x", "y"]
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(download.DownloadError, match="list of id strings"):
        download.read_ids(tmp_path / "c.json")
    with pytest.raises(download.DownloadError, match="cannot read"):
        download.read_ids(tmp_path / "missing.json")


def test_resolve_finds_cached_files_and_ignores_partial_ones(tmp_path):
    cache = make_cache(tmp_path / "cache", UIDS[:4])
    partial = cache / "hf-objaverse-v1" / "glbs" / "000-000" / f"{UIDS[4]}.glb.tmp"
    partial.write_bytes(b"half")
    found, missing = download.resolve(UIDS, cache)
    assert list(found) == UIDS[:4] and missing == UIDS[4:]
    assert Path(found[UIDS[1]]) == cache / "hf-objaverse-v1" / "glbs" / "000-001" / f"{UIDS[1]}.glb"


def test_resolve_uses_the_object_paths_table(tmp_path):
    cache = tmp_path / "cache"
    target = cache / "hf-objaverse-v1" / "glbs" / "123-456" / "renamed.glb"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"glTF")
    with gzip.open(cache / "hf-objaverse-v1" / "object-paths.json.gz", "wt") as handle:
        json.dump({UIDS[0]: "glbs/123-456/renamed.glb", UIDS[1]: "glbs/000-000/absent.glb"}, handle)
    found, missing = download.resolve(UIDS[:2], cache)
    assert found == {UIDS[0]: str(target)} and missing == [UIDS[1]]


def test_download_resumes_and_survives_failures(tmp_path):
    cache = make_cache(tmp_path / "cache", UIDS[:2])
    asked: list[list[str]] = []

    def fetch(uids, cache_dir, processes):
        """Stands in for the network: writes files where objaverse would; one chunk fails."""
        asked.append(list(uids))
        if UIDS[4] in uids:
            raise ConnectionError("network unreachable")
        made = make_cache(cache_dir, uids)
        return {u: str(next((made / "hf-objaverse-v1" / "glbs").glob(f"*/{u}.glb"))) for u in uids}

    out = tmp_path / "paths.json"
    found, failures = download.download(UIDS, cache, out=out, chunk_size=2, fetch=fetch)
    assert asked == [UIDS[2:4], UIDS[4:6]], "files already in the cache are not fetched again"
    assert set(found) == set(UIDS[:4]) and set(failures) == set(UIDS[4:])
    assert "network unreachable" in failures[UIDS[4]]
    assert json.loads(out.read_text()) == found
    assert set(json.loads((tmp_path / "paths.missing.json").read_text())) == set(UIDS[4:])
    # the list file is what render.py reads
    assets = render_plan.collect_assets([out])
    assert [a.asset_id for a in assets] == list(found) and all(a.source.is_file() for a in assets)
    # a second run only asks for what is still missing
    asked.clear()
    download.download(UIDS, cache, out=out, chunk_size=2, fetch=fetch)
    assert asked == [UIDS[4:6]]


def test_cli_offline(tmp_path):
    cache = make_cache(tmp_path / "cache", UIDS[:3])
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(UIDS))
    out = tmp_path / "paths.json"
    result = subprocess.run(
        [sys.executable, "-m", "dataset_tools.download", "--ids", str(ids), "--out", str(out),
         "--cache-dir", str(cache), "--offline"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "3/6 GLBs available" in result.stdout
    assert list(json.loads(out.read_text())) == UIDS[:3]
