"""Parameter names of the released model, loading from SVD, released checkpoints and diffusers folders."""

import json

import pytest
import torch
from conftest import SPEC, TINY_CONFIG, randomize_, require, tiny_inputs
from diffusers import UNetSpatioTemporalConditionModel
from safetensors.torch import save_file

from puppet_master.models.loading import ModelLoadError
from puppet_master.models.unet import PuppetMasterUNet

SVD_TINY = {
    "block_out_channels": (32, 32, 32, 32),
    "num_attention_heads": (1, 1, 1, 1),
    "cross_attention_dim": 16,
    "layers_per_block": 1,
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 24,
    "num_frames": 3,
}
DRAG_TINY = {"num_drags": 3, "pos_embed_dim": 8, "drag_embedder_out_channels": (8, 8), "num_frames": 3}


def test_full_configuration_has_the_released_names_and_shapes():
    official = json.loads(require(SPEC / "official_unet_keys.json").read_text())
    with torch.device("meta"):
        model = PuppetMasterUNet()
    shapes = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    assert sorted(set(official) - set(shapes)) == []
    assert sorted(set(shapes) - set(official)) == []
    assert {name: shape for name, shape in shapes.items() if official[name] != shape} == {}
    assert sum(p.numel() for p in model.parameters()) == 1_675_809_962
    assert "add_embedding.linear_1.weight" not in shapes


@pytest.fixture
def svd_unet():
    torch.manual_seed(0)
    return randomize_(UNetSpatioTemporalConditionModel(**SVD_TINY), seed=3)


def _check_copied(model: PuppetMasterUNet, svd: torch.nn.Module) -> None:
    ours = model.state_dict()
    for name, tensor in svd.state_dict().items():
        if name.startswith("add_embedding."):
            assert name not in ours
        else:
            assert torch.equal(ours[name], tensor), name


def test_from_svd_copies_every_weight_and_leaves_new_modules_at_init(svd_unet):
    torch.manual_seed(7)
    model = PuppetMasterUNet.from_svd(svd_unet, **DRAG_TINY)
    _check_copied(model, svd_unet)
    assert model.config.block_out_channels == (32, 32, 32, 32)
    assert model.config.cross_attention_dim == 16

    torch.manual_seed(7)
    fresh = PuppetMasterUNet(**model.config).state_dict()
    new = {k: v for k, v in model.state_dict().items() if ".flow_convs." in k or ".drag_token_mlps." in k}
    assert len(new) == 9 * (2 * 4 + 2 * 2)  # 3 + 6 drag layers; 4 convs, 2 linears each (weight + bias)
    for name, tensor in new.items():
        assert torch.equal(tensor, fresh[name]), name
        if ".conv_out." in name:
            assert torch.count_nonzero(tensor) == 0, name


def test_from_svd_reads_a_unet_folder_or_a_pipeline_folder(svd_unet, tmp_path):
    svd_unet.save_pretrained(tmp_path / "pipeline" / "unet")
    for folder in (tmp_path / "pipeline", tmp_path / "pipeline" / "unet"):
        _check_copied(PuppetMasterUNet.from_svd(folder, **DRAG_TINY), svd_unet)
    with pytest.raises(FileNotFoundError, match="no SVD U-Net"):
        PuppetMasterUNet.from_svd(tmp_path / "nothing-here")


def test_from_svd_rejects_a_mismatching_configuration(svd_unet):
    with pytest.raises(ValueError, match="do not fit"):
        PuppetMasterUNet.from_svd(svd_unet, **DRAG_TINY, cross_attention_dim=32)


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return randomize_(PuppetMasterUNet(**TINY_CONFIG)).eval()


def test_save_pretrained_from_pretrained_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "unet")
    loaded = PuppetMasterUNet.from_pretrained(tmp_path / "unet").eval()
    def public(config):
        return json.loads(json.dumps({k: v for k, v in config.items() if not k.startswith("_")}))

    assert public(loaded.config) == public(tiny_model.config)
    inputs = tiny_inputs(tiny_model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).sample, tiny_model(**inputs).sample, atol=0, rtol=0)


def test_released_checkpoint_loads_strictly_with_or_without_prefix(tiny_model, tmp_path):
    state = {f"model.{k}": v.contiguous() for k, v in tiny_model.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    loaded = PuppetMasterUNet.from_released(tmp_path / "model.safetensors", **TINY_CONFIG)
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in loaded.state_dict().items())
    inputs = tiny_inputs(tiny_model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).sample, tiny_model(**inputs).sample, atol=0, rtol=0)

    del state["model.conv_in.bias"]
    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ModelLoadError, match=r"conv_in\.bias"):
        PuppetMasterUNet.from_released(tmp_path / "partial.safetensors", **TINY_CONFIG)


def test_released_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"missing\.safetensors"):
        PuppetMasterUNet.from_released(tmp_path / "missing.safetensors")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match=r"broken\.safetensors"):
        PuppetMasterUNet.from_released(tmp_path / "broken.safetensors")
