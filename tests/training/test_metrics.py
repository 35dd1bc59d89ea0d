"""Metrics on real arrays: identities, a known shift, Fréchet distance maths, missing networks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from training import metrics
from training.trackers import FALLBACK_TRACKERS, CoTrackerTracker, LucasKanadeTracker, make_tracker

SIZE = 128


def textured_image(seed: int = 0) -> np.ndarray:
    """A smooth random texture (trackable everywhere) with a white border."""
    rng = np.random.default_rng(seed)
    noise = rng.random((SIZE, SIZE, 3)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 200
    out = np.full((SIZE, SIZE, 3), 255, np.uint8)
    out[16:-16, 16:-16] = img[16:-16, 16:-16].astype(np.uint8)
    return out


def shifted(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))


def test_identical_videos():
    video = np.stack([textured_image(i) for i in range(3)])
    assert np.isinf(metrics.psnr(video, video)).all()
    np.testing.assert_allclose(metrics.ssim(video, video), 1.0, atol=1e-9)
    tracks = LucasKanadeTracker().track(video, metrics.foreground_points(video[0], step=16))
    assert metrics.motion_error(tracks, tracks) == 0.0


def test_psnr_and_ssim_of_known_differences():
    a = np.full((2, 32, 32, 3), 100, np.uint8)
    b = a.copy()
    b[1] += 10  # MSE = (10/255)^2 on frame 1
    values = metrics.psnr(a, b)
    assert np.isinf(values[0]) and values[1] == pytest.approx(20 * np.log10(255 / 10))
    noisy = np.clip(textured_image().astype(int) + np.random.default_rng(0).normal(0, 25, (SIZE, SIZE, 3)), 0, 255)
    score = metrics.ssim(textured_image()[None], noisy.astype(np.uint8)[None])[0]
    assert 0.0 < score < 0.95
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(a, b[:, :16])


@pytest.mark.parametrize("name", FALLBACK_TRACKERS)
def test_a_known_shift_gives_the_known_motion_error(name):
    image = textured_image()
    frames = 6
    true = np.stack([image] * frames)  # nothing moves in the true video
    steps = [(0, 0), (1, 0), (2, 1), (3, 1), (4, 2), (5, 2)]
    generated = np.stack([shifted(image, dx, dy) for dx, dy in steps])
    expected = float(np.mean([np.hypot(dx, dy) for dx, dy in steps[1:]]))
    tracker = make_tracker(name)
    points = np.array([[50.0, 60.0], [70.0, 40.0], [64.0, 64.0]], np.float32)
    me = metrics.motion_error(tracker.track(generated, points), tracker.track(true, points))
    assert me == pytest.approx(expected, abs=0.15)
    fg = metrics.foreground_points(image, step=8)
    assert len(fg) > 100 and (fg >= 16).all() and (fg < SIZE - 16).all()
    me_fg = metrics.motion_error(tracker.track(generated, fg), tracker.track(true, fg))
    assert me_fg == pytest.approx(expected, abs=0.5)  # points near the border lose texture as it shifts


def test_dense_flow_moves_a_point_on_a_flat_face_with_its_part():
    # a flat grey square sliding right on white: inside it there is no texture at all, so only a
    # tracker that solves the motion with the neighbourhood moves the centre point along
    video = np.full((8, SIZE, SIZE, 3), 255, np.uint8)
    for t in range(8):
        video[t, 40:80, 30 + 2 * t : 70 + 2 * t] = 120
    centre = np.array([[50.0, 60.0]], np.float32)
    moved = make_tracker("dis").track(video, centre)[-1, 0] - centre[0]
    assert abs(moved[0] - 14) < 4 and abs(moved[1]) < 1.5
    with pytest.raises(ValueError, match="lucas-kanade"):
        make_tracker("optical")


def test_drag_origins_are_in_pixels():
    drags = np.zeros((14, 5, 4), np.float32)
    drags[:, 0, :2] = [0.25, 0.5]
    drags[:, 0, 2:] = [0.3, 0.5]
    np.testing.assert_allclose(metrics.drag_origins(drags, 256), [[64.0, 128.0]])


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20_000, 3))
    b = rng.normal(0, 1, (20_000, 3)) + np.array([3.0, 0.0, 0.0])
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(a, b) == pytest.approx(9.0, rel=0.02)
    c = rng.normal(0, 2, (20_000, 3))  # trace term: 3 * (1 + 4 - 2 * 2) = 3
    assert metrics.frechet_distance(a, c) == pytest.approx(3.0, rel=0.05)


def test_lpips_network_is_zero_for_identical_images_and_grows_with_distortion():
    torch.manual_seed(0)
    lpips = metrics.LPIPS()
    for lin in lpips.lins:
        lin.weight.data.abs_()  # LPIPS weights are non-negative
    video = np.stack([textured_image(i) for i in range(2)])
    assert np.allclose(lpips.video(video, video), 0.0)
    near = lpips.video(video, np.clip(video.astype(int) + 8, 0, 255).astype(np.uint8))
    far = lpips.video(video, 255 - video)
    assert (near > 0).all() and (far > near).all()


def test_missing_metric_networks_are_named(tmp_path):
    with pytest.raises(metrics.MetricUnavailableError, match=r"alexnet\.pth"):
        metrics.LPIPS.from_folder(tmp_path)
    with pytest.raises(metrics.MetricUnavailableError, match=r"i3d_torchscript\.pt"):
        metrics.I3DFeatures.from_file(tmp_path / "i3d_torchscript.pt")
    with pytest.raises(metrics.MetricUnavailableError, match=r"hubconf\.py"):
        CoTrackerTracker.from_paths(tmp_path / "co-tracker", tmp_path / "cotracker2.pth")


def test_lpips_loads_weights_in_the_published_layouts(tmp_path):
    torch.manual_seed(1)
    reference = metrics.LPIPS()
    torch.save({f"features.{k}": v for k, v in reference.features.state_dict().items()}, tmp_path / "alexnet.pth")
    torch.save({f"lin{i}.model.1.weight": lin.weight.data.abs() for i, lin in enumerate(reference.lins)},
               tmp_path / "alex.pth")
    loaded = metrics.LPIPS.from_folder(tmp_path)
    torch.testing.assert_close(loaded.features[0].weight, reference.features[0].weight)
    torch.testing.assert_close(loaded.lins[4].weight, reference.lins[4].weight.abs())
