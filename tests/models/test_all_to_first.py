"""The attention processors: all-to-first equal to the straightforward all-frames-K/V variant (frame 0
only); plain attention equal to diffusers' processor; float32 attention on the CPU under autocast."""

import pytest
import torch
from conftest import TINY_CONFIG, randomize_, tiny_inputs
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from puppet_master.models.attention import (
    AllToFirstAttnProcessor,
    AllToFirstReferenceAttnProcessor,
    PlainAttnProcessor,
    attention,
)
from puppet_master.models.unet import PuppetMasterUNet


def _attention(seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(query_dim=16, heads=2, dim_head=8).eval()


def _run(attn: Attention, processor, hidden: torch.Tensor) -> torch.Tensor:
    attn.set_processor(processor)
    with torch.no_grad():
        return attn(hidden)


@pytest.mark.parametrize(("batch", "frames"), [(1, 1), (2, 3), (3, 5)])
def test_equals_reference_for_any_batch_and_frames(batch, frames):
    attn = _attention()
    hidden = torch.randn(batch * frames, 6, 16)
    fast = _run(attn, AllToFirstAttnProcessor(frames), hidden)
    reference = _run(attn, AllToFirstReferenceAttnProcessor(frames), hidden)
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=1e-5)


def test_frame_zero_is_plain_self_attention_and_others_read_only_frame_zero():
    attn = _attention()
    hidden = torch.randn(2 * 4, 5, 16)
    out = _run(attn, AllToFirstAttnProcessor(4), hidden)
    plain = _run(attn, AttnProcessor2_0(), hidden)
    torch.testing.assert_close(out.view(2, 4, 5, 16)[:, 0], plain.view(2, 4, 5, 16)[:, 0])
    # changing frame 3 changes only frame 3's output
    changed = hidden.clone().view(2, 4, 5, 16)
    changed[:, 3] += 1.0
    out2 = _run(attn, AllToFirstAttnProcessor(4), changed.view(8, 5, 16)).view(2, 4, 5, 16)
    torch.testing.assert_close(out2[:, :3], out.view(2, 4, 5, 16)[:, :3])
    assert not torch.allclose(out2[:, 3], out.view(2, 4, 5, 16)[:, 3])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_matches_reference(dtype):
    attn = _attention().to(dtype)
    hidden = torch.randn(2 * 3, 6, 16).to(dtype)
    fast = _run(attn, AllToFirstAttnProcessor(3), hidden)
    reference = _run(attn, AllToFirstReferenceAttnProcessor(3), hidden)
    assert fast.dtype == dtype
    torch.testing.assert_close(fast.float(), reference.float(), atol=2e-2, rtol=2e-2)


def test_errors_name_the_problem():
    attn = _attention()
    with pytest.raises(RuntimeError, match="num_frames"):
        _run(attn, AllToFirstAttnProcessor(), torch.randn(3, 4, 16))
    with pytest.raises(ValueError, match="multiple of 2 frames"):
        _run(attn, AllToFirstAttnProcessor(2), torch.randn(3, 4, 16))


def test_model_uses_it_on_spatial_self_attention_only_and_matches_reference_model():
    torch.manual_seed(0)
    model = randomize_(PuppetMasterUNet(**TINY_CONFIG)).eval()
    processors = model.attn_processors
    spatial = {name for name, proc in processors.items() if isinstance(proc, AllToFirstAttnProcessor)}
    # 3 cross-attention down blocks x 1 layer + mid + 3 up blocks x 2 layers, one attn1 each
    assert len(spatial) == 3 + 1 + 6
    assert all(".transformer_blocks." in name and name.endswith("attn1.processor") for name in spatial)
    assert not any("temporal" in name for name in spatial)
    assert all(isinstance(proc, PlainAttnProcessor) for name, proc in processors.items() if name not in spatial)

    inputs = tiny_inputs(model, frames=4)
    with torch.no_grad():
        fast = model(**inputs).sample
        model.set_attn_processor(model.default_attn_processors(AllToFirstReferenceAttnProcessor))
        reference = model(**inputs).sample
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


def test_plain_processor_equals_diffusers_for_self_and_cross_attention():
    torch.manual_seed(0)
    hidden, context = torch.randn(3, 7, 16), torch.randn(3, 1, 12)
    for width, kwargs in ((None, {}), (12, {"encoder_hidden_states": context})):
        attn = Attention(query_dim=16, cross_attention_dim=width, heads=2, dim_head=8).eval()
        outs = []
        for processor in (PlainAttnProcessor(), AttnProcessor2_0()):
            attn.set_processor(processor)
            with torch.no_grad():
                outs.append(attn(hidden, **kwargs))
        torch.testing.assert_close(outs[0], outs[1], atol=1e-6, rtol=1e-5)
    attn.set_processor(PlainAttnProcessor())
    with pytest.raises(ValueError, match="attention mask"):
        attn(hidden, attention_mask=torch.ones(3, 7))


def test_cpu_attention_runs_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 2, 14, 8) for _ in range(3))
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v)
        half = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert out.dtype == torch.float32 and half.dtype == torch.bfloat16
    torch.testing.assert_close(out, exact)
    assert (half.float() - exact).abs().max() > 1e-3  # what autocast alone would have given
    low = attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), torch.nn.functional.scaled_dot_product_attention(
        q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float()).bfloat16().float())
