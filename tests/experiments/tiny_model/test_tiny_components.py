"""The tiny model's own VAE and image encoder (experiments/tiny_model/train_tiny_components.py), the export of cached
clips to the Drag-a-Move format and the part-level evaluation, on the tiny rendered clips of conftest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder

from experiments.tiny_model import tiny_components as tc
from experiments.tiny_model.train_tiny_components import main as train_components
from puppet_master.edm import VAE_SCALING_FACTOR
from puppet_master.tiny import TINY_VAE_CONFIG
from tests.training.conftest import NUM_FRAMES, RENDER_SIZE, _frame
from training import dragamove, evaluate, evaluate_parts, export_dragamove
from training.cache_latents import Encoders, composite_on_white, to_tensor


def test_folding_a_latent_scale_keeps_reconstructions():
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(**TINY_VAE_CONFIG).eval()
    frames = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        before = vae.encode(frames).latent_dist
        recon_before = vae.decode(before.mean, num_frames=2).sample
        tc.fold_latent_scale(vae, 3.0)
        after = vae.encode(frames).latent_dist
        recon_after = vae.decode(after.mean, num_frames=2).sample
    torch.testing.assert_close(after.mean, before.mean * 3, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(after.std, before.std * 3, atol=1e-5, rtol=1e-3)
    torch.testing.assert_close(recon_after, recon_before, atol=1e-4, rtol=1e-4)


def test_chroma_error_sees_colour_not_brightness():
    torch.manual_seed(0)
    frames = torch.rand(2, 3, 32, 32) * 1.2 - 0.9  # objects (darker than white) fill the frames
    assert float(tc.chroma_error(frames, frames)) == 0.0
    assert float(tc.chroma_error(frames + 0.3, frames)) < 1e-6  # brighter, same colours
    grey = frames.mean(dim=1, keepdim=True).expand_as(frames)
    swapped = frames[:, [1, 2, 0]]  # same brightness, other colours
    assert float(tc.chroma_error(grey, frames)) > 0.01
    assert float(tc.chroma_error(swapped, frames)) > 0.01


def test_component_training_writes_encoders_with_unit_scaled_latents(renders, tmp_path):
    out = tmp_path / "components"
    args = ["--renders", str(renders), "--out", str(out), "--resolution", str(RENDER_SIZE), "--vae-steps", "3",
            "--vae-frames", "2", "--vae-crop", "0", "--encoder-steps", "3", "--encoder-batch", "2",
            "--save-every", "2", "--no-progress"]
    assert train_components(args) == 0
    report = json.loads((out / "vae_report.json").read_text())
    assert report["vae_steps"] == 3 and (out / "state_vae.pt").is_file()
    assert report["chroma_weight"] == 2.0 and report["check_chroma"] >= 0.0
    encoders = Encoders.from_svd(out)
    frames = to_tensor([composite_on_white(_frame(t, 0, RENDER_SIZE), RENDER_SIZE) for t in range(NUM_FRAMES)])
    mean, std = encoders.encode_frames(frames)
    side = RENDER_SIZE // 2 ** (len(tc.VAE_CONFIG["block_out_channels"]) - 1)
    assert mean.shape == (NUM_FRAMES, tc.VAE_CONFIG["latent_channels"], side, side) and (std > 0).all()
    assert type(encoders.pipe.vae).__name__ == "TemporalVAE" and encoders.pipe.vae.config.norm_num_groups == 4
    # the latent space was rescaled on frames of these clips: scaled latents are about unit std
    assert 0.3 < float((mean * VAE_SCALING_FACTOR).std()) < 3.0
    embedding = encoders.encode_image(frames[:1])
    assert embedding.shape == (1, tc.TINY_CROSS_ATTENTION_DIM)
    # a finished run is not trained again
    assert train_components(args) == 0
    assert json.loads((out / "vae_report.json").read_text()) == report


def test_cached_clips_export_to_the_drag_a_move_format(latent_cache, renders, tiny_svd, tmp_path):
    out = tmp_path / "dam"
    index = export_dragamove.export(latent_cache, renders, out)
    assert [i["clip_id"] for i in index] == ["asset_a/clip_0", "asset_b/clip_0"]
    clip = dragamove.load_clip(out / "00000.pkl")
    assert clip.latents.shape[0] == NUM_FRAMES and clip.drags.shape == (NUM_FRAMES, 5, 4)
    assert clip.embedding.shape[0] == 1
    true = dragamove.read_gif_frames(clip.gif_path, 256)
    assert true.shape == (NUM_FRAMES, 256, 256, 3)
    first = np.asarray(composite_on_white(_frame(0, index[0]["view"], RENDER_SIZE), 256))
    assert abs(float(true[0].mean()) - float(first.mean())) < 8  # same picture, upscaled (on white)

    # the part-level evaluation on the exported clips: still points are found away from the drag, and
    # the static baseline keeps them (nearly) where the true clip keeps them
    nets = evaluate.load_metric_networks(tmp_path / "none")
    static = evaluate_parts.evaluate_method(dragamove.find_clips(out), evaluate.static_video, nets, still_px=1.5,
                                            margin=8, save_dir=None)
    assert all(row["still_points"] > 0 for row in static["clips"])
    assert static["mean"]["me_still"] < 0.5

    # the autoencoder ceiling reconstructs the whole true video, frame by frame, through the VAE
    vae = AutoencoderKLTemporalDecoder.from_pretrained(tiny_svd / "vae").eval()
    ceiling = evaluate.autoencoder_method(vae)
    ceiling_run = evaluate_parts.evaluate_method(dragamove.find_clips(out)[:1], ceiling, nets, still_px=1.5,
                                                 margin=8, save_dir=None)
    assert np.isfinite(ceiling_run["mean"]["me_drag"]) and ceiling_run["clips"][0]["psnr"] < 100
    with torch.no_grad():
        x = torch.from_numpy(true).permute(0, 3, 1, 2).float() / 127.5 - 1
        by_hand = vae.decode(vae.encode(x).latent_dist.mode(), num_frames=len(x)).sample.clamp(-1, 1)
    by_hand = ((by_hand + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    video = ceiling(true, None)
    assert np.abs(video.astype(float) - by_hand).max() <= 1
    assert np.abs(video[-1].astype(float) - video[0]).max() > 0  # the moving part moved in its input

    # the same from the command line, for a VAE folder alone; a missing folder is named
    code = evaluate_parts.main(["--data", str(out), "--out", str(tmp_path / "ceiling"), "--limit", "1",
                                "--methods", "autoencoder", "--vae", str(tiny_svd / "vae")])
    report = json.loads((tmp_path / "ceiling" / "results.json").read_text())
    assert code == 0 and report["methods"]["autoencoder"]["clips"][0]["psnr"] == pytest.approx(
        ceiling_run["clips"][0]["psnr"])
    with pytest.raises(SystemExit) as exit_info:
        evaluate_parts.main(["--data", str(out), "--out", str(tmp_path / "x"), "--methods", "autoencoder",
                             "--vae", str(tmp_path / "no_vae")])
    assert exit_info.value.code == 2


def test_the_table_says_which_way_the_model_differs_from_the_baselines():
    def method(me_drag):
        return {"mean": {"psnr": 20.0, "ssim": 0.9, "lpips": None, "me_drag": me_drag, "me_fg": 5.0, "me_still": 2.0}}

    table = evaluate_parts.markdown({"model": method(20.0), "static": method(16.0), "shift": method(40.0)}, "lk", 3)
    assert "model vs static: 25% higher; vs whole-image shift: 50% lower." in table
    assert "Still-foreground / drag-origin ME of the model: 0.10." in table
    assert "autoencoder: the true video" not in table
    assert "autoencoder: the true video" in evaluate_parts.markdown({"autoencoder": method(3.0)}, "lk", 3)
    assert "n/a (baseline 0)" in evaluate_parts.markdown(
        {"model": method(1.0), "static": method(0.0), "shift": method(2.0)}, "lk", 3)
