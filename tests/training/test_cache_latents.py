"""training.cache_latents on tiny rendered clips with puppet_master.tiny's VAE and CLIP encoder."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from tests.training.conftest import NUM_FRAMES, RENDER_SIZE, write_clip
from training.cache_latents import PLAN_FILE, CacheError, Encoders, cache, composite_on_white, to_tensor


def _entries(shard):
    with safe_open(shard, framework="pt") as f:
        return json.loads(f.metadata()["entries"]), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118


def test_cache_holds_fp16_mean_std_and_clip_embedding_with_the_drag_samples(latent_cache, renders, tiny_svd):
    plan = json.loads((latent_cache / PLAN_FILE).read_text())["items"]
    assert [(i["clip_id"], i["view"]) for i in plan] == [
        ("asset_a/clip_0", 0), ("asset_a/clip_0", 1), ("asset_b/clip_0", 0), ("asset_b/clip_0", 1)
    ]
    shards = sorted(latent_cache.glob("shard_*.safetensors"))
    assert len(shards) == 2  # shard size 3
    entries, tensors = _entries(shards[0])
    assert len(entries) == 3 and len(_entries(shards[1])[0]) == 1
    first = entries[0]
    assert first["category"] == "Animals" and first["frames"] == list(range(NUM_FRAMES))
    assert len(first["drags"]) == 2 and len(first["drags"][1][0]) == 5  # two samples, padded to 5 slots
    mean, std, emb = (tensors[f"{first['key']}.{n}"] for n in ("mean", "std", "embedding"))
    assert mean.dtype == std.dtype == emb.dtype == torch.float16
    assert mean.shape[:2] == (NUM_FRAMES, 4) and std.shape == mean.shape and (std > 0).all()
    assert emb.shape == (1, 32)

    # the cached values are the VAE and CLIP encodings of the frames composited on white
    encoders = Encoders.from_svd(tiny_svd)
    folder = renders / "asset_a" / "clip_0" / "view_00"
    images = []
    for t in range(NUM_FRAMES):
        with Image.open(folder / f"{t:04d}.png") as im:
            images.append(composite_on_white(im, RENDER_SIZE))
    assert images[0].getpixel((0, 0)) == (255, 255, 255)  # transparent background became white
    pixels = to_tensor(images)
    ref_mean, ref_std = encoders.encode_frames(pixels)
    torch.testing.assert_close(mean.float(), ref_mean, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(std.float(), ref_std, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(emb.float(), encoders.encode_image(pixels[:1]), atol=2e-3, rtol=2e-3)


def test_caching_resumes_and_appends_new_clips(tmp_path, latent_cache, renders, tiny_svd):
    out = tmp_path / "cache"
    shutil.copytree(latent_cache, out)
    kept = out / "shard_00000.safetensors"
    before = kept.stat().st_mtime_ns
    (out / "shard_00001.safetensors").unlink()  # as if the run had stopped before this shard
    encoders = Encoders.from_svd(tiny_svd)
    root = tmp_path / "renders"
    shutil.copytree(renders, root)
    shards = cache(root, out, encoders, shard_size=3, resolution=RENDER_SIZE, progress=False)
    assert [p.name for p in shards] == ["shard_00000.safetensors", "shard_00001.safetensors"]
    assert kept.stat().st_mtime_ns == before  # finished shards are not redone
    redone, _ = _entries(out / "shard_00001.safetensors")
    assert [e["clip_id"] for e in redone] == ["asset_b/clip_0"]

    write_clip(root, "asset_c", "clip_0", views=1)
    cache(root, out, encoders, shard_size=3, resolution=RENDER_SIZE, progress=False)
    plan = json.loads((out / PLAN_FILE).read_text())["items"]
    assert [i["clip_id"] for i in plan][-1] == "asset_c/clip_0" and len(plan) == 5  # appended, order kept
    assert kept.stat().st_mtime_ns == before
    assert [e["clip_id"] for e in _entries(out / "shard_00001.safetensors")[0]] == ["asset_b/clip_0", "asset_c/clip_0"]


def test_unreadable_frame_is_named_and_finished_shards_survive(tmp_path, tiny_svd):
    root = tmp_path / "renders"
    write_clip(root, "asset_a", "clip_0", views=1)
    write_clip(root, "asset_b", "clip_0", views=1)
    (root / "asset_b" / "clip_0" / "view_00" / "0005.png").write_bytes(b"broken")
    with pytest.raises(CacheError, match=r"0005\.png"):
        cache(root, tmp_path / "cache", Encoders.from_svd(tiny_svd), shard_size=1, resolution=RENDER_SIZE,
              progress=False)
    assert (tmp_path / "cache" / "shard_00000.safetensors").is_file()
    assert not (tmp_path / "cache" / "shard_00001.safetensors").exists()
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_shards_split_by_asset_like_the_renders_and_together_equal_one_run(tmp_path, latent_cache, renders, tiny_svd):
    from dataset_tools import render_plan, shard_status

    encoders = Encoders.from_svd(tiny_svd)
    out = tmp_path / "cache"
    for index in range(3):  # asset_a falls in task 2, asset_b in task 0, task 1 has none
        cache(renders, out, encoders, shard_size=3, resolution=RENDER_SIZE, shard=(index, 3), progress=False)
        assert shard_status.read_status(out, "cache", index, 3)["status"] == "done"
    assert shard_status.merge(out, "cache", 3)["exit_status"] == shard_status.EXIT_OK
    assert not (out / PLAN_FILE).exists()
    files = sorted(out.glob("shard_*.safetensors"))
    assert files and all(f.name.startswith(("shard_0-of-3_", "shard_2-of-3_")) for f in files)
    entries = {}
    for f in files:
        task = int(f.name.split("_")[1].split("-")[0])
        for entry in _entries(f)[0]:
            asset = entry["clip_id"].split("/")[0]
            assert render_plan.in_shard(asset, task, 3), (asset, f.name)  # the render's assignment
            entries[(entry["clip_id"], entry["view"])] = entry["drags"]
    whole = {}
    for f in sorted(latent_cache.glob("shard_*.safetensors")):
        whole.update({(e["clip_id"], e["view"]): e["drags"] for e in _entries(f)[0]})
    assert entries == whole  # the two tasks together cached exactly what one run caches
