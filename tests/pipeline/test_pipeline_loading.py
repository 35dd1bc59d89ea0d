"""save_pretrained/from_pretrained, `convert` from an SVD-layout folder + released-layout weights, load_pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DRAG_A, generate, released_layout
from safetensors.torch import save_file

from puppet_master import paths
from puppet_master.cli import main
from puppet_master.loading import ModelLoadError, load_pipeline, resolve_dtype
from puppet_master.pipeline import PuppetMasterPipeline
from tests.shared_data import SHARED

GOLDEN_MODEL = SHARED / "golden" / "unet_small.model.safetensors"
TINY_DRAG_OPTIONS = ["--pos-embed-dim", "8", "--drag-channels", "16,16"]


@pytest.fixture(scope="module")
def saved_tiny(tiny_pipe, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "pipeline"
    tiny_pipe.save_pretrained(folder)
    return folder


def test_save_and_from_pretrained_give_identical_frames(tiny_pipe, saved_tiny, rgb_image):
    loaded = PuppetMasterPipeline.from_pretrained(saved_tiny)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.untrained is True
    assert type(loaded.unet).__name__ == "PuppetMasterUNet"
    before = generate(tiny_pipe, rgb_image, [DRAG_A], seed=4, num_inference_steps=1)
    after = generate(loaded, rgb_image, [DRAG_A], seed=4, num_inference_steps=1)
    np.testing.assert_array_equal(after.frames, before.frames)


def test_convert_writes_a_pipeline_that_runs_like_the_original(
    svd_folder, released_checkpoint, tiny_pipe, tmp_path, rgb_image, capsys
):
    out = tmp_path / "converted"
    argv = ["convert", "--svd", str(svd_folder), "--checkpoint", str(released_checkpoint), "--out", str(out)]
    assert main(argv + TINY_DRAG_OPTIONS) == 0
    assert "wrote the Puppet-Master pipeline" in capsys.readouterr().out
    assert json.loads((out / "model_index.json").read_text())["unet"][1] == "PuppetMasterUNet"
    assert not list(tmp_path.glob(".converted.*"))

    pipe = load_pipeline(out, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.config.untrained is False
    assert pipe.unet.config.num_frames == 14 and pipe.unet.config.sample_size == 16  # not SVD's 25 frames
    for key, value in tiny_pipe.unet.state_dict().items():
        assert torch.equal(pipe.unet.state_dict()[key], value), key
    expected = generate(tiny_pipe, rgb_image, [DRAG_A], seed=2, num_inference_steps=1, output_type="latent")
    got = generate(pipe, rgb_image, [DRAG_A], seed=2, num_inference_steps=1, output_type="latent")
    torch.testing.assert_close(got.frames, expected.frames, atol=0, rtol=0)

    # an existing result is never overwritten by accident
    assert main(argv + TINY_DRAG_OPTIONS) == 1
    assert "not empty" in capsys.readouterr().err


def test_wrong_checkpoint_names_the_file_and_the_keys(svd_folder, tiny_pipe, tmp_path, capsys):
    state = dict(tiny_pipe.unet.state_dict())
    state.pop("conv_in.bias")
    state["add_embedding.linear_1.weight"] = torch.zeros(4, 4)
    state["conv_out.weight"] = torch.zeros(4, 32, 1, 1)
    bad = tmp_path / "not-puppet-master.safetensors"
    save_file(released_layout(state), str(bad))
    argv = ["convert", "--svd", str(svd_folder), "--checkpoint", str(bad), "--out", str(tmp_path / "out")]
    assert main(argv + TINY_DRAG_OPTIONS) == 1
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "1 missing keys: conv_in.bias" in err
    assert "1 unexpected keys: add_embedding.linear_1.weight" in err
    assert "conv_out.weight (checkpoint [4, 32, 1, 1], model [4, 32, 3, 3])" in err
    assert not (tmp_path / "out").exists()

    # without drag options the drag sizes are read off the checkpoint's shapes: the same three problems
    with pytest.raises(ModelLoadError, match=r"1 missing keys: conv_in.bias") as raised:
        load_pipeline(svd=svd_folder, checkpoint=bad, device="cpu")
    assert "flow_convs" not in str(raised.value) and '"pos_embed_dim": 8' in str(raised.value)
    # given drag options still win: the released sizes do not fit this small checkpoint, and the error says how
    capsys.readouterr()
    assert main([*argv, "--pos-embed-dim", "64", "--drag-channels", "256,320,320"]) == 1
    assert "shape mismatches" in (err := capsys.readouterr().err) and "flow_convs" in err


def test_drag_sizes_are_read_off_the_checkpoint(released_checkpoint, tiny_pipe):
    from puppet_master.loading import checkpoint_drag_settings

    assert checkpoint_drag_settings(released_checkpoint) == {
        "num_drags": tiny_pipe.unet.config.num_drags, "pos_embed_dim": tiny_pipe.unet.config.pos_embed_dim,
        "drag_embedder_out_channels": tuple(tiny_pipe.unet.config.drag_embedder_out_channels)}


def test_missing_files_are_named(svd_folder, released_checkpoint, tmp_path):
    with pytest.raises(ModelLoadError, match=r"missing\.safetensors"):
        load_pipeline(svd=svd_folder, checkpoint=tmp_path / "missing.safetensors", device="cpu")
    with pytest.raises(ModelLoadError, match=r"no-svd.*does not exist"):
        load_pipeline(svd=tmp_path / "no-svd", checkpoint=released_checkpoint, device="cpu")
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    with pytest.raises(ModelLoadError, match=r"partial/vae/config.json is missing"):
        load_pipeline(svd=partial, checkpoint=released_checkpoint, device="cpu")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(released_checkpoint.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match=r"truncated\.safetensors"):
        load_pipeline(svd=svd_folder, checkpoint=truncated, device="cpu")


@pytest.mark.skipif(not GOLDEN_MODEL.exists(), reason="../shared/golden is absent")
def test_convert_reads_the_configuration_stored_in_a_checkpoint(svd_folder, tmp_path):
    """The golden small released-architecture file carries its config in the metadata: no options needed."""
    from safetensors.torch import load_file

    out = tmp_path / "golden-pipeline"
    argv = ["convert", "--svd", str(svd_folder), "--checkpoint", str(GOLDEN_MODEL), "--out", str(out)]
    assert main(argv) == 0
    unet = PuppetMasterPipeline.from_pretrained(out).unet
    assert list(unet.config.block_out_channels) == [32, 32, 64, 64]
    golden = load_file(str(GOLDEN_MODEL))
    for key, value in unet.state_dict().items():
        assert torch.equal(value, golden[f"model.{key}"]), key


def test_load_pipeline_sources(saved_tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("PUPPET_MASTER_MODEL", raising=False)
    monkeypatch.setenv("PUPPET_MASTER_HOME", str(tmp_path))
    monkeypatch.setattr(paths, "BUNDLED_WEIGHTS_DIR", tmp_path / "no-bundled-weights")
    with pytest.raises(ModelLoadError, match=r"--model DIR.*--svd DIR --checkpoint.*--tiny"):
        load_pipeline()
    with pytest.raises(ModelLoadError, match="not model and tiny"):
        load_pipeline(saved_tiny, tiny=True)
    with pytest.raises(ModelLoadError, match="go together"):
        load_pipeline(svd=tmp_path)
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        load_pipeline("no-such-model")

    # by name under the models folder, and as the default from $PUPPET_MASTER_MODEL
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "mine").symlink_to(saved_tiny)
    assert load_pipeline("mine", device="cpu").config.untrained is True
    # the default: $PUPPET_MASTER_MODEL, else the bundled weights (the trained tiny model, once shipped)
    monkeypatch.setattr(paths, "BUNDLED_WEIGHTS_DIR", saved_tiny)
    assert load_pipeline(device="cpu").config.untrained is True
    monkeypatch.setattr(paths, "BUNDLED_WEIGHTS_DIR", tmp_path / "no-bundled-weights")
    monkeypatch.setenv("PUPPET_MASTER_MODEL", str(saved_tiny))
    assert load_pipeline(device="cpu").unet.config.cross_attention_dim == 32


def test_tiny_is_deterministic_and_dtype_choices():
    a = load_pipeline(tiny=True, device="cpu")
    b = load_pipeline(tiny=True, device="cpu")
    assert a.device.type == "cpu" and a.dtype == torch.float32
    for (key, x), y in zip(a.unet.state_dict().items(), b.unet.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    assert load_pipeline(tiny=True, device="cpu", dtype="bfloat16").unet.dtype == torch.bfloat16
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        resolve_dtype("int8", torch.device("cpu"))
