"""Variants: N videos of one job, each exactly the one-video run of its seed (tiny model, real pipeline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from puppet_master.cli import main
from puppet_master.drags import Drag
from puppet_master.variants import MAX_VARIANTS, generate_variants, variant_seeds

DRAGS = [Drag((0.5, 0.5), (0.7, 0.4))]


def test_three_variants_differ_and_each_equals_the_run_of_its_seed(tiny_pipe, rgb_image):
    seen = []
    outputs = generate_variants(tiny_pipe, rgb_image, DRAGS, variant_seeds(5, 3), num_inference_steps=2,
                                output_type="np", on_variant=lambda i, seed, _: seen.append((i, seed)))
    assert seen == [(0, 5), (1, 6), (2, 7)]
    videos = [np.asarray(o.frames[0]) for o in outputs]
    assert all(v.shape == (14, 256, 256, 3) for v in videos)
    assert not np.array_equal(videos[0], videos[1]) and not np.array_equal(videos[1], videos[2])
    import torch

    for seed, video in zip((5, 6, 7), videos, strict=True):
        alone = tiny_pipe(rgb_image, DRAGS, num_inference_steps=2, output_type="np",
                          generator=torch.Generator().manual_seed(seed)).frames[0]
        assert np.array_equal(video, np.asarray(alone))  # bit for bit
    with pytest.raises(ValueError, match="variants must be 1-8"):
        variant_seeds(0, MAX_VARIANTS + 1)


def test_generate_variants_writes_one_folder_per_seed(tmp_path, object_image):
    image = tmp_path / "object.png"
    object_image.save(image)
    base = ["generate", "--tiny", "--image", str(image), "--drag", "0.5,0.5:0.7,0.4", "--steps", "1", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "three"), "--seed", "5", "--variants", "3"]) == 0
    assert main([*base, "--out", str(tmp_path / "alone"), "--seed", "6"]) == 0
    folders = sorted(p.name for p in (tmp_path / "three").iterdir())
    assert folders == ["variant_00", "variant_01", "variant_02"]
    for index, folder in enumerate(folders):
        settings = json.loads((tmp_path / "three" / folder / "settings.json").read_text())
        assert (settings["seed"], settings["variant"], settings["variants"]) == (5 + index, index, 3)
        assert len(list((tmp_path / "three" / folder).glob("frame_*.png"))) == 14
    for i in range(14):
        name = f"frame_{i:04d}.png"
        assert np.array_equal(np.asarray(Image.open(tmp_path / "three" / "variant_01" / name)),
                              np.asarray(Image.open(tmp_path / "alone" / name)))
    assert main([*base, "--out", str(tmp_path / "both"), "--variants", "2", "--num-videos", "2"]) == 1
    assert main([*base, "--out", str(tmp_path / "many"), "--variants", "9"]) == 1
