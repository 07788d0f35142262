"""Image-quality metrics for VAE comparisons: PSNR, SSIM and (with local weights) LPIPS.

Everything runs in torch, on the GPU when the images are there, and is written to give
the numbers scikit-image gives (`skimage.metrics`, used by the tests as the oracle):

* PSNR = 10·log10(R² / MSE), MSE over every pixel and channel; R is the data range.
* SSIM is the definition of Wang et al. (2004) as the VAE model cards use it: a Gaussian
  window with σ = 1.5 (truncated at 3.5σ, i.e. 11×11), K1 = 0.01, K2 = 0.03, population
  (not sample) covariances, computed per RGB channel and averaged, the mean taken over the
  pixels whose window lies inside the image. The skimage call it equals is
  `structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  channel_axis=-1, data_range=R)`.

Inputs are HxWx3 arrays or tensors: uint8 (R = 255) or float in [0, 1] (R = 1); the two give
the same PSNR and SSIM for the same picture. Inside, values are scaled to [0, 1] and
computed in float64 (float32 on Apple's MPS, which has no float64).

LPIPS (Zhang et al. 2018, AlexNet, v0.1 linear layers) is computed only when its weights
are on this machine; nothing is ever downloaded. `find_lpips_weights` says where it looked.
"""

from __future__ import annotations

import glob
import math
import os

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

LPIPS_ENV = "VAE_LAB_LPIPS_DIR"
LPIPS_NOTE_MISSING = "LPIPS: no local weights (see docs/tab.md, LPIPS)"


# --------------------------------------------------------------------------- inputs


def _work_dtype(device):
    import torch

    return torch.float32 if getattr(device, "type", str(device)) == "mps" else torch.float64


def to_unit_tensor(image, device=None):
    """An HxWx3 (or HxW) uint8 / float image -> float tensor 3xHxW in [0, 1] on `device`.

    uint8 is divided by 255; float input is taken as already in [0, 1] (not clipped, so a
    float comparison stays exact).
    """
    import numpy as np
    import torch

    if isinstance(image, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        t = image.detach()
    else:
        t = torch.from_numpy(np.asarray(image))
    if device is None:
        device = t.device
    is_int = not (t.is_floating_point() or t.is_complex())
    if is_int and t.dtype != torch.uint8:
        raise ValueError(f"integer images must be uint8, not {t.dtype}")
    dtype = _work_dtype(torch.device(device))
    t = t.to(device=device, dtype=dtype)
    if is_int:
        t = t / 255.0
    if t.ndim == 2:
        t = t[..., None]
    if t.ndim != 3:
        raise ValueError(f"expected an HxWxC image, got shape {tuple(t.shape)}")
    return t.permute(2, 0, 1).contiguous()


def _pair(a, b, device):
    ta = to_unit_tensor(a, device)
    tb = to_unit_tensor(b, ta.device)
    if ta.shape != tb.shape:
        raise ValueError(f"images differ in size: {tuple(ta.shape)} vs {tuple(tb.shape)} (CxHxW)")
    return ta, tb


# --------------------------------------------------------------------------- PSNR


def psnr(a, b, *, device=None) -> float:
    """PSNR in dB between two images (see module doc); `inf` for identical images."""
    ta, tb = _pair(a, b, device)
    mse = float(((ta - tb) ** 2).mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(1.0 / mse)


# --------------------------------------------------------------------------- SSIM


def _gaussian_1d(sigma: float, truncate: float) -> list[float]:
    """scipy.ndimage's Gaussian taps: radius int(truncate·σ + 0.5), normalised to sum 1."""
    radius = int(truncate * sigma + 0.5)
    w = [math.exp(-0.5 * (x / sigma) ** 2) for x in range(-radius, radius + 1)]
    total = math.fsum(w)
    return [v / total for v in w]


def _filter_valid(x, taps: list[float]):
    """Separable Gaussian of ...xHxW maps, only where the window fits ('valid').

    skimage filters with reflect padding and then drops a border of the window radius
    before taking the mean, so the reflected pixels never reach the result: a 'valid'
    filter gives exactly the pixels it keeps. Written as in-place weighted sums of shifted
    views, which is faster in float64 on CPU than conv2d.
    """
    k = len(taps)
    h, w = x.shape[-2] - k + 1, x.shape[-1] - k + 1
    rows = x[..., 0:h, :] * taps[0]
    for i in range(1, k):
        rows.add_(x[..., i : i + h, :], alpha=taps[i])
    out = rows[..., :, 0:w] * taps[0]
    for j in range(1, k):
        out.add_(rows[..., :, j : j + w], alpha=taps[j])
    return out


def ssim_map(a, b, *, device=None):
    """Per-channel SSIM map (Cx(H-10)x(W-10)) of the pixels whose window is inside the image."""
    import torch

    ta, tb = _pair(a, b, device)
    g = _gaussian_1d(SSIM_SIGMA, SSIM_TRUNCATE)
    if min(ta.shape[1:]) < len(g):
        raise ValueError(f"SSIM needs images of at least {len(g)}x{len(g)} pixels, got {ta.shape[2]}x{ta.shape[1]}")
    x, y = ta, tb
    stacked = _filter_valid(torch.cat([x, y, x * x, y * y, x * y]), g)
    c = x.shape[0]
    ux, uy, uxx, uyy, uxy = stacked.split(c)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1 = (SSIM_K1 * 1.0) ** 2
    c2 = (SSIM_K2 * 1.0) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim(a, b, *, device=None) -> float:
    """Mean SSIM over channels and pixels, as `skimage.metrics.structural_similarity` (module doc)."""
    return float(ssim_map(a, b, device=device).mean())


# --------------------------------------------------------------------------- LPIPS


def find_lpips_weights(directory: str | None = None) -> tuple[str, str] | str:
    """(alexnet_backbone_path, lpips_linear_path) when both are on disk, else why not (one line).

    Looked for, in this order:
    1. `directory` or the folder in $VAE_LAB_LPIPS_DIR: torchvision's AlexNet weights
       (`alexnet-owt-*.pth`) and the LPIPS v0.1 linear layers (`alex.pth`);
    2. an installed `lpips` package (its bundled `weights/v0.1/alex.pth`) plus torchvision's
       AlexNet in the torch hub cache ($TORCH_HOME/hub/checkpoints).
    """
    directory = directory or os.environ.get(LPIPS_ENV) or None
    if directory:
        backbone = sorted(glob.glob(os.path.join(directory, "alexnet*.pth")))
        lin = os.path.join(directory, "alex.pth")
        if backbone and os.path.isfile(lin):
            return backbone[0], lin
        return f"LPIPS: {directory} lacks alexnet-owt-*.pth and alex.pth (see docs/tab.md, LPIPS)"
    lin = None
    try:
        import importlib.util

        spec = importlib.util.find_spec("lpips")
        if spec and spec.origin:
            cand = os.path.join(os.path.dirname(spec.origin), "weights", "v0.1", "alex.pth")
            lin = cand if os.path.isfile(cand) else None
    except (ImportError, ValueError):
        lin = None
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch"
    )
    backbone = sorted(glob.glob(os.path.join(torch_home, "hub", "checkpoints", "alexnet-owt-*.pth")))
    if lin and backbone:
        return backbone[0], lin
    return LPIPS_NOTE_MISSING


class Lpips:
    """LPIPS v0.1 with the AlexNet backbone, built from local weight files only.

    Images go in as uint8 HxWx3 or float [0, 1]; inside they are mapped to [-1, 1], shifted
    and scaled per channel (LPIPS' ScalingLayer), and the unit-normalised activations after
    each of AlexNet's five ReLUs are compared, weighted by the learned 1×1 layers, averaged
    over space and summed. Lower is more similar; 0 for identical images.
    """

    SHIFT = (-0.030, -0.088, -0.188)
    SCALE = (0.458, 0.448, 0.450)
    CHANNELS = (64, 192, 384, 256, 256)

    def __init__(self, backbone: dict, lin: dict, device=None):
        import torch

        self.device = torch.device(device or "cpu")
        conv_ids = (0, 3, 6, 8, 10)
        try:
            self.convs = [
                (backbone[f"features.{i}.weight"].float().to(self.device), backbone[f"features.{i}.bias"].float().to(self.device))
                for i in conv_ids
            ]
            self.lins = [self._lin(lin, k).float().to(self.device) for k in range(5)]
        except KeyError as err:
            raise ValueError(f"LPIPS weights lack tensor {err}") from None
        for (w, _), c in zip(self.convs, self.CHANNELS):
            if w.shape[0] != c:
                raise ValueError("LPIPS backbone is not torchvision's AlexNet")
        self.shift = torch.tensor(self.SHIFT, device=self.device).view(1, 3, 1, 1)
        self.scale = torch.tensor(self.SCALE, device=self.device).view(1, 3, 1, 1)

    @staticmethod
    def _lin(lin, k):
        for key in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight", f"lin{k}.weight"):
            if key in lin:
                return lin[key]
        raise KeyError(f"lin{k}.model.1.weight")

    @classmethod
    def from_files(cls, backbone_path: str, lin_path: str, device=None) -> "Lpips":
        import torch

        backbone = torch.load(backbone_path, map_location="cpu", weights_only=True)
        lin = torch.load(lin_path, map_location="cpu", weights_only=True)
        return cls(backbone, lin, device)

    def _features(self, x):
        import torch.nn.functional as F

        feats = []
        params = dict(zip((0, 3, 6, 8, 10), self.convs))
        w, b = params[0]
        x = F.relu(F.conv2d(x, w, b, stride=4, padding=2))
        feats.append(x)
        x = F.max_pool2d(x, 3, 2)
        w, b = params[3]
        x = F.relu(F.conv2d(x, w, b, padding=2))
        feats.append(x)
        x = F.max_pool2d(x, 3, 2)
        for i in (6, 8, 10):
            w, b = params[i]
            x = F.relu(F.conv2d(x, w, b, padding=1))
            feats.append(x)
        return feats

    def __call__(self, a, b) -> float:
        import torch

        with torch.inference_mode():
            ta, tb = _pair(a, b, self.device)
            xa = ((ta.float() * 2 - 1)[None] - self.shift) / self.scale
            xb = ((tb.float() * 2 - 1)[None] - self.shift) / self.scale
            total = 0.0
            for fa, fb, lin in zip(self._features(xa), self._features(xb), self.lins):
                na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total += float(torch.nn.functional.conv2d((na - nb) ** 2, lin).mean())
            return total


_lpips_cache: dict = {}


def load_lpips(directory: str | None = None, device=None) -> tuple[Lpips | None, str | None]:
    """(model, None) when LPIPS weights are local, else (None, one-line note for the table).

    Loaded once per (files, device) and kept.
    """
    found = find_lpips_weights(directory)
    if isinstance(found, str):
        return None, found
    key = (found, str(device or "cpu"))
    if key not in _lpips_cache:
        try:
            _lpips_cache[key] = Lpips.from_files(*found, device=device)
        except Exception as err:  # a bad file must not end the comparison
            return None, f"LPIPS: cannot use {found[1]}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return _lpips_cache[key], None


# --------------------------------------------------------------------------- summaries


HISTOGRAM_BINS = 32


def color_shift(reference, image) -> tuple[float, float, float]:
    """Mean (R, G, B) of `image` − `reference` in 0–255 levels: a VAE that tints or darkens
    shows it here even when PSNR looks fine (e.g. an SDXL VAE on SD1 latents: washed out)."""
    import numpy as np

    d = image[..., :3].astype(np.float64) - reference[..., :3].astype(np.float64)
    return tuple(float(v) for v in d.reshape(-1, 3).mean(axis=0))


def histogram(image, bins: int = HISTOGRAM_BINS):
    """Per-channel histogram of a uint8 HxWx3 image: uint32 [3, bins] over 0–255."""
    import numpy as np

    flat = image[..., :3].reshape(-1, 3)
    idx = (flat.astype(np.uint16) * bins) >> 8
    return np.stack([np.bincount(idx[:, c], minlength=bins)[:bins] for c in range(3)]).astype(np.uint32)


def mean_std(values) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of finite values; NaN when none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return math.nan, math.nan
    m = sum(vals) / len(vals)
    return m, math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))


def format_mean_std(values, digits: int = 1) -> str:
    """'24.5 +/- 3.7', the way the VAE model cards print their tables."""
    m, s = mean_std(values)
    if math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f} +/- {s:.{digits}f}"
