"""Forward behaviour of the U-Net: drag tokens, any frames/sizes, checkpointing, input errors."""

import pytest
import torch
from conftest import TINY_CONFIG, randomize_, tiny_inputs

import puppet_master
from puppet_master.models.drag_modules import DragContext, DragEmbedder, DragTokenMLP
from puppet_master.models.unet import PuppetMasterUNet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(PuppetMasterUNet(**TINY_CONFIG)).eval()


def test_lazy_export():
    assert puppet_master.PuppetMasterUNet is PuppetMasterUNet


def test_unused_drag_slot_gives_a_zero_token_and_used_slots_do_not():
    torch.manual_seed(0)
    drags = torch.rand(2, 3, 4, 4)
    drags[:, :, 1] = 0
    image_token = torch.randn(6, 1, 16)
    context = DragContext(drags, pos_embed_dim=8, image_token=image_token)
    embedder, mlp = randomize_(DragEmbedder(24, 2 * 32, (8, 8))), DragTokenMLP(2 * 8 + 2 * 32, 16)
    hidden, ctx = context.modulate_and_tokens(torch.randn(6, 32, 4, 4), embedder, mlp)
    assert hidden.shape == (6, 32, 4, 4) and ctx.shape == (6, 1 + 4, 16)
    assert torch.equal(ctx[:, :1], image_token)
    assert torch.count_nonzero(ctx[:, 2]) == 0
    assert torch.all(ctx[:, [1, 3, 4]].abs().sum(-1) > 0)


def test_any_number_of_frames_odd_sizes_and_scalar_timestep(model):
    for frames, size in [(1, 16), (5, 8), (2, 10), (3, 12)]:
        inputs = tiny_inputs(model, batch=1, frames=frames, size=size)
        inputs["timestep"] = 0.3
        with torch.no_grad():
            out = model(**inputs, return_dict=False)
        assert isinstance(out, tuple) and out[0].shape == (1, frames, 4, size, size)
        assert torch.isfinite(out[0]).all()


def test_fewer_drag_slots_are_padded_with_unused_slots(model):
    inputs = tiny_inputs(model, batch=1, used=2)
    with torch.no_grad():
        full = model(**inputs).sample
        trimmed = model(**{**inputs, "drags": inputs["drags"][:, :, :2]}).sample
    torch.testing.assert_close(trimmed, full, atol=1e-6, rtol=0)


def test_drags_change_only_their_own_sample(model):
    inputs = tiny_inputs(model, batch=2)
    with torch.no_grad():
        out = model(**inputs).sample
        inputs["drags"][1] = 0
        dropped = model(**inputs).sample
    torch.testing.assert_close(dropped[0], out[0], atol=1e-6, rtol=0)
    assert (dropped[1] - out[1]).abs().max() > 1e-4


def test_bfloat16_forward_close_to_float32(model):
    inputs = tiny_inputs(model, batch=1)
    low = PuppetMasterUNet(**TINY_CONFIG).eval()
    low.load_state_dict(model.state_dict())
    low = low.to(torch.bfloat16)
    with torch.no_grad():
        reference = model(**inputs).sample
        out = low(**{k: v.to(torch.bfloat16) if k != "drags" else v for k, v in inputs.items()}).sample
    assert out.dtype == torch.bfloat16
    assert (out.float() - reference).abs().mean() < 0.05 * reference.abs().mean() + 1e-3


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = randomize_(PuppetMasterUNet(**TINY_CONFIG), std=0.1)
    inputs = tiny_inputs(model, batch=1, frames=2)

    def gradients():
        model.zero_grad()
        (model(**inputs).sample ** 2).mean().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.enable_gradient_checkpointing()
    assert model.down_blocks[0].gradient_checkpointing
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    assert any(".flow_convs." in name for name in plain) and any(".drag_token_mlps." in name for name in plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def _bad(model, **changes):
    inputs = tiny_inputs(model, batch=2, frames=3)
    inputs.update(changes)
    return inputs


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"sample": torch.randn(2, 3, 8, 8)}, ValueError, "`sample` must have shape"),
        ({"sample": torch.randn(2, 3, 5, 8, 8)}, ValueError, "`sample` must have shape"),
        ({"sample": torch.zeros(2, 3, 4, 8, 8, dtype=torch.int64)}, TypeError, "floating-point"),
        ({"image_latents": torch.randn(2, 4, 4, 4)}, ValueError, "`image_latents` must have shape"),
        ({"encoder_hidden_states": torch.randn(2, 1, 32)}, ValueError, "`encoder_hidden_states` must have shape"),
        ({"drags": torch.rand(2, 3, 4, 4)}, ValueError, "4 drag slots but the model has only 3"),
        ({"drags": torch.rand(2, 2, 3, 4)}, ValueError, "`drags` must have shape"),
        ({"drags": torch.full((2, 3, 3, 4), float("inf"))}, ValueError, "`drags` contains NaN"),
        ({"sample": torch.full((2, 3, 4, 8, 8), float("nan"))}, ValueError, "`sample` contains NaN"),
        ({"timestep": torch.zeros(3)}, ValueError, "`timestep` must be a scalar"),
        ({"timestep": float("nan")}, ValueError, "`timestep` contains NaN"),
        ({"image_latents": None}, TypeError, "`image_latents` must be a torch.Tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(model, changes, error, message):
    with pytest.raises(error, match=message):
        model(**_bad(model, **changes))


def test_bad_configuration_names_the_values():
    with pytest.raises(ValueError, match="num_attention_heads"):
        PuppetMasterUNet(**{**TINY_CONFIG, "num_attention_heads": (1, 1)})
    with pytest.raises(ValueError, match="not divisible"):
        PuppetMasterUNet(**{**TINY_CONFIG, "num_attention_heads": (3, 1, 1, 1)})
    with pytest.raises(ValueError, match="pos_embed_dim"):
        PuppetMasterUNet(**{**TINY_CONFIG, "pos_embed_dim": 6})


def test_identical_drag_maps_are_computed_once_with_the_same_result(model):
    inputs = tiny_inputs(model, batch=2, frames=3)
    inputs["drags"][1] = 0  # the unconditional half of a CFG batch: three identical frames
    rows = []
    hook = model.down_blocks[0].flow_convs[0].register_forward_hook(lambda m, args, out: rows.append(len(args[0])))
    try:
        with torch.no_grad():
            shared = model(**inputs).sample
            model.share_identical_drag_maps = False
            separate = model(**inputs).sample
    finally:
        model.share_identical_drag_maps = True
        hook.remove()
    assert rows == [3 + 1, 2 * 3]
    torch.testing.assert_close(shared, separate, atol=1e-5, rtol=1e-5)


def test_sharing_identical_drag_maps_keeps_the_gradients():
    torch.manual_seed(0)
    model = randomize_(PuppetMasterUNet(**TINY_CONFIG), std=0.1)
    inputs = tiny_inputs(model, batch=2, frames=2)
    inputs["drags"][1] = 0

    def gradients(share: bool):
        model.share_identical_drag_maps = share
        model.zero_grad()
        (model(**inputs).sample ** 2).mean().backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    shared, separate = gradients(True), gradients(False)
    assert shared.keys() == separate.keys()
    for name, grad in separate.items():
        torch.testing.assert_close(shared[name], grad, atol=1e-6, rtol=1e-4, msg=name)
