"""Video metrics of the paper's Table 1: PSNR, SSIM, LPIPS, FVD and Motion Error.

Videos are ``(T, H, W, 3)`` uint8 RGB arrays (or floats in [0, 1]). The learned metrics load their
networks from local files only (no downloads) and say which file is missing:

- LPIPS (AlexNet variant): a folder with ``alexnet.pth`` (torchvision's ImageNet AlexNet state dict,
  keys ``features.N.weight``) and ``alex.pth`` (the LPIPS linear layers v0.1, keys
  ``linN.model.1.weight``).
- FVD: ``i3d_torchscript.pt``, the TorchScript I3D (Kinetics-400) feature extractor commonly used for
  FVD; called as ``i3d(videos, rescale=False, resize=True, return_features=True)`` on
  ``(B, 3, T, H, W)`` floats in [-1, 1].
- Motion Error: point tracks from CoTracker (see ``training/trackers.py``) or, as a labelled
  fallback, OpenCV's DIS dense flow (or Lucas-Kanade; ``training.trackers``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn


class MetricUnavailableError(RuntimeError):
    """A learned metric whose network is not on disk; the message names the missing file."""


def _float_video(video: np.ndarray) -> np.ndarray:
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"a video must be (T, H, W, 3), got {video.shape}")
    return video.astype(np.float64) / 255.0 if video.dtype == np.uint8 else video.astype(np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _float_video(a), _float_video(b)
    if a.shape != b.shape:
        raise ValueError(f"videos differ in shape: {a.shape} vs {b.shape}")
    return a, b


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB (``inf`` for identical frames), images in [0, 1]."""
    a, b = _check_pair(a, b)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10 * np.log10(1.0 / np.maximum(mse, 1e-300)))


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter of one ``(H, W)`` image, 'valid' positions only."""
    r = len(g) // 2
    return cv2.sepFilter2D(x, cv2.CV_64F, g, g, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-frame SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, mean over
    channels and valid window positions), images in [0, 1]."""
    a, b = _check_pair(a, b)
    g = _gaussian_1d()
    c1, c2 = 0.01**2, 0.03**2
    scores = np.zeros(len(a))
    for t in range(len(a)):
        values = []
        for c in range(3):
            x, y = np.ascontiguousarray(a[t, ..., c]), np.ascontiguousarray(b[t, ..., c])
            mx, my = _blur(x, g), _blur(y, g)
            sxx = _blur(x * x, g) - mx**2
            syy = _blur(y * y, g) - my**2
            sxy = _blur(x * y, g) - mx * my
            s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
            values.append(s.mean())
        scores[t] = np.mean(values)
    return scores


# -- LPIPS ---------------------------------------------------------------------------------------------


class LPIPS(nn.Module):
    """LPIPS distance with the AlexNet backbone (Zhang et al. 2018), evaluation only."""

    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )
        self.taps = (1, 4, 7, 9, 11)  # after each ReLU
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    @classmethod
    def from_folder(cls, folder: str | Path) -> LPIPS:
        folder = Path(folder)
        model = cls()
        backbone, lins = folder / "alexnet.pth", folder / "alex.pth"
        for path, what in ((backbone, "torchvision AlexNet weights"), (lins, "LPIPS v0.1 AlexNet linear layers")):
            if not path.is_file():
                raise MetricUnavailableError(f"LPIPS needs {path} ({what})")
        state = torch.load(backbone, map_location="cpu", weights_only=True)
        model.features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
        lin_state = torch.load(lins, map_location="cpu", weights_only=True)
        for i, lin in enumerate(model.lins):
            key = f"lin{i}.model.1.weight"
            if key not in lin_state:
                raise MetricUnavailableError(f"{lins} has no {key}: not the LPIPS AlexNet linear layers")
            lin.weight.data.copy_(lin_state[key])
        return model

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distances ``(B,)`` between images ``(B, 3, H, W)`` in [-1, 1]."""
        xa, xb = (a - self.shift) / self.scale, (b - self.shift) / self.scale
        total = torch.zeros(a.shape[0], device=a.device)
        start = 0
        for lin, tap in zip(self.lins, self.taps, strict=True):
            block = self.features[start : tap + 1]
            xa, xb = block(xa), block(xb)
            start = tap + 1
            na = xa / (xa.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            nb = xb / (xb.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            total += lin((na - nb) ** 2).mean(dim=(1, 2, 3))
        return total

    def video(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per-frame LPIPS of two videos."""
        a, b = _check_pair(a, b)
        ta = torch.from_numpy(a).float().permute(0, 3, 1, 2) * 2 - 1
        tb = torch.from_numpy(b).float().permute(0, 3, 1, 2) * 2 - 1
        device = self.shift.device
        return self(ta.to(device), tb.to(device)).cpu().numpy()


# -- FVD -----------------------------------------------------------------------------------------------


class I3DFeatures:
    """The TorchScript I3D feature extractor used for FVD."""

    def __init__(self, module, device: str = "cpu"):
        self.module, self.device = module, device

    @classmethod
    def from_file(cls, path: str | Path, device: str = "cpu") -> I3DFeatures:
        path = Path(path)
        if not path.is_file():
            raise MetricUnavailableError(f"FVD needs {path} (the TorchScript I3D feature extractor i3d_torchscript.pt)")
        return cls(torch.jit.load(str(path), map_location=device).eval(), device)

    @torch.no_grad()
    def __call__(self, videos: list[np.ndarray]) -> np.ndarray:
        feats = []
        for video in videos:
            x = torch.from_numpy(_float_video(video)).float().permute(3, 0, 1, 2)[None] * 2 - 1
            out = self.module(x.to(self.device), rescale=False, resize=True, return_features=True)
            feats.append(out.cpu().double().numpy().reshape(1, -1))
        return np.concatenate(feats)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(n, d)``."""
    from scipy import linalg

    if len(real) < 2 or len(fake) < 2:
        raise ValueError("the Fréchet distance needs at least two samples per set")
    mu1, mu2 = real.mean(axis=0), fake.mean(axis=0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# -- Motion Error --------------------------------------------------------------------------------------


def foreground_points(frame: np.ndarray, step: int = 8, white: int = 245) -> np.ndarray:
    """Grid points ``(P, 2)`` (x, y pixels) on the object: pixels darker than the white background."""
    frame = np.asarray(frame)
    ys, xs = np.mgrid[step // 2 : frame.shape[0] : step, step // 2 : frame.shape[1] : step]
    mask = (frame[ys, xs] < white).any(axis=-1)
    return np.stack([xs[mask], ys[mask]], axis=-1).astype(np.float32)


def drag_origins(drags: np.ndarray, size: int) -> np.ndarray:
    """Start points ``(K_used, 2)`` in pixels of a ``(N, K, 4)`` drag array on a ``size`` image."""
    arr = np.asarray(drags)
    used = np.any(arr != 0, axis=(0, 2))
    return (arr[0, used, :2] * size).astype(np.float32)


def motion_error(tracks_generated: np.ndarray, tracks_true: np.ndarray) -> float:
    """Mean L2 distance (pixels) between two ``(T, P, 2)`` track sets over frames 1.. and points
    (frame 0 holds the query points in both)."""
    a, b = np.asarray(tracks_generated, np.float64), np.asarray(tracks_true, np.float64)
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != 2:
        raise ValueError(f"track sets must both be (T, P, 2), got {a.shape} and {b.shape}")
    if a.shape[1] == 0:
        return float("nan")
    return float(np.linalg.norm(a[1:] - b[1:], axis=-1).mean())
