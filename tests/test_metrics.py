"""PSNR/SSIM against scikit-image (the oracle) on real photos; LPIPS from local weights only."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data, filters
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vae_lab.compare import metrics


def _sk_ssim(a, b, data_range=255):
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=data_range
    )


def _noise(img, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def _blur(img, sigma):
    return (filters.gaussian(img, sigma=sigma, channel_axis=-1) * 255).round().astype(np.uint8)


def _jpeg(img, quality):
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.array(Image.open(buf).convert("RGB"))


PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea}
DEGRADE = {
    "noise": lambda im: _noise(im, 12),
    "blur": lambda im: _blur(im, 1.5),
    "jpeg": lambda im: _jpeg(im, 25),
}


@pytest.fixture(scope="module")
def photos():
    return {k: f() for k, f in PHOTOS.items()}


@pytest.mark.parametrize("photo", sorted(PHOTOS))
@pytest.mark.parametrize("kind", sorted(DEGRADE))
def test_psnr_ssim_match_skimage_on_degraded_photos(photos, photo, kind):
    a = photos[photo]
    b = DEGRADE[kind](a)
    assert abs(metrics.psnr(a, b) - peak_signal_noise_ratio(a, b, data_range=255)) < 0.01
    assert abs(metrics.ssim(a, b) - _sk_ssim(a, b)) < 0.001


def test_float_input_gives_the_same_numbers_as_uint8(photos):
    a = photos["coffee"]
    b = _noise(a, 25, seed=3)
    fa, fb = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    assert metrics.psnr(fa, fb) == pytest.approx(metrics.psnr(a, b), abs=1e-4)
    assert metrics.ssim(fa, fb) == pytest.approx(metrics.ssim(a, b), abs=1e-5)
    # and skimage on float data with data_range=1 agrees
    assert abs(metrics.ssim(fa, fb) - _sk_ssim(fa, fb, data_range=1.0)) < 0.001
    # torch tensors are accepted as well as arrays
    assert metrics.psnr(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(metrics.psnr(a, b))


def test_non_square_odd_sizes_match_skimage():
    a = data.chelsea()[:123, :77]
    b = _blur(a, 1.0)
    assert abs(metrics.ssim(a, b) - _sk_ssim(a, b)) < 0.001
    assert abs(metrics.psnr(a, b) - peak_signal_noise_ratio(a, b, data_range=255)) < 0.01


def test_more_damage_scores_worse(photos):
    a = photos["astronaut"]
    mild, strong = _noise(a, 5), _noise(a, 30)
    assert metrics.psnr(a, mild) > metrics.psnr(a, strong) + 5
    assert metrics.ssim(a, mild) > metrics.ssim(a, strong) + 0.1


def test_identical_images():
    a = data.astronaut()[:64, :64]
    assert metrics.psnr(a, a) == math.inf
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_mismatched_or_bad_input_is_refused():
    a = data.astronaut()
    with pytest.raises(ValueError, match="differ in size"):
        metrics.psnr(a, a[:100])
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(a[:8, :8], a[:8, :8])
    with pytest.raises(ValueError, match="uint8"):
        metrics.psnr(a.astype(np.int32), a.astype(np.int32))


def test_mean_std_in_model_card_format():
    assert metrics.format_mean_std([20.0, 22.0, 24.0]) == "22.0 +/- 1.6"
    assert metrics.format_mean_std([0.61, 0.75], digits=2) == "0.68 +/- 0.07"
    assert metrics.format_mean_std([]) == "n/a"
    # infinite PSNRs (identical images) are left out rather than poisoning the mean
    assert metrics.mean_std([10.0, math.inf, 12.0]) == (11.0, 1.0)


# ----------------------------------------------------------------------- LPIPS


def test_lpips_without_local_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.LPIPS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model, note = metrics.load_lpips()
    assert model is None
    assert note == metrics.LPIPS_NOTE_MISSING
    monkeypatch.setenv(metrics.LPIPS_ENV, str(tmp_path))
    model, note = metrics.load_lpips()
    assert model is None and str(tmp_path) in note


def _alexnet_like(seed=0):
    """Random weights in torchvision's AlexNet layout and LPIPS' lin layout."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    backbone = {}
    for i, s in shapes.items():
        fan_in = s[1] * s[2] * s[3]
        backbone[f"features.{i}.weight"] = torch.randn(s, generator=gen) * math.sqrt(2 / fan_in)
        backbone[f"features.{i}.bias"] = torch.zeros(s[0])
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # present in the real file, unused
    lin = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) * 0.1 for k, c in enumerate((64, 192, 384, 256, 256))}
    return backbone, lin


def _reference_lpips(backbone, lin, a, b):
    """An independent LPIPS forward pass built from torch.nn modules (the lpips package's structure)."""
    import torch.nn as nn

    feats = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    )  # fmt: skip
    feats.load_state_dict({k.removeprefix("features."): v for k, v in backbone.items() if k.startswith("features.")})
    taps = (1, 4, 7, 9, 11)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def run(img):
        x = (torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1 - shift) / scale
        out = []
        for i, layer in enumerate(feats):
            x = layer(x)
            if i in taps:
                out.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        return sum(
            float(((fa - fb) ** 2 * lin[f"lin{k}.model.1.weight"]).sum(1).mean())
            for k, (fa, fb) in enumerate(zip(run(a), run(b)))
        )


def test_lpips_from_local_files(tmp_path, monkeypatch):
    backbone, lin = _alexnet_like()
    torch.save(backbone, tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(lin, tmp_path / "alex.pth")
    monkeypatch.setenv(metrics.LPIPS_ENV, str(tmp_path))
    model, note = metrics.load_lpips()
    assert note is None and model is not None
    a = data.astronaut()[::4, ::4].copy()
    b = _noise(a, 20)
    c = _noise(a, 60)
    assert model(a, a) == pytest.approx(0.0, abs=1e-9)
    d1, d2 = model(a, b), model(a, c)
    assert 0 < d1 < d2
    assert d1 == pytest.approx(_reference_lpips(backbone, lin, a, b), rel=1e-4)


def test_lpips_bad_weights_give_a_note_not_a_crash(tmp_path, monkeypatch):
    (tmp_path / "alexnet-owt-x.pth").write_bytes(b"not a pickle")
    torch.save({}, tmp_path / "alex.pth")
    monkeypatch.setenv(metrics.LPIPS_ENV, str(tmp_path))
    model, note = metrics.load_lpips()
    assert model is None and note.startswith("LPIPS: cannot use")
