"""Tiled decode/encode: indistinguishable from the whole-image pass, at a fraction of the memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from testkit.factories import TINY_KL, random_kl_state_dict
from vae_lab.runtime import precision as prec
from vae_lab.runtime import tiling
from vae_lab.runtime.engine import Vae, load_vae
from vae_lab.files.imaging import array_to_tensor


def psnr(a, b) -> float:
    mse = ((a - b) ** 2).mean() / 4
    return float(10 * torch.log10(1 / mse.clamp_min(1e-20)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    sd = random_kl_state_dict(TINY_KL, seed=11)
    return Vae.from_state_dict(sd, arch=TINY_KL, family="sd1", device="cpu",
                               state_dir=tmp_path_factory.mktemp("st"))


@pytest.fixture(scope="module")
def smooth_latents():
    """Latents with image-like spatial structure (white noise has none), 48x48 -> 384x384."""
    gen = torch.Generator().manual_seed(3)
    return F.interpolate(torch.randn(1, 4, 9, 9, generator=gen), size=(48, 48), mode="bicubic", align_corners=False)


@pytest.mark.parametrize("length,tile,overlap,align", [(64, 32, 8, 1), (200, 64, 16, 1), (512, 256, 64, 8), (30, 64, 16, 1), (97, 40, 10, 1)])
def test_plan_covers_the_axis_with_balanced_overlapping_tiles(length, tile, overlap, align):
    spans = tiling.plan_axis(length, tile, overlap, align)
    assert spans[0][0] == 0 and spans[-1][1] == length
    sizes = {e - s for s, e in spans}
    assert len(sizes) == 1 and max(sizes) <= max(tile, align) or len(spans) == 1
    for (_s0, e0), (s1, _e1) in zip(spans, spans[1:]):
        assert s1 < e0 and e0 - s1 >= min(overlap, tile // 2) - align
        assert s1 % align == 0
    assert all(s % align == 0 for s, _ in spans)


def test_blend_weights_sum_to_one():
    spans = tiling.plan_axis(100, 40, 12)
    total = torch.zeros(100 * 8)
    for (s, e), w in zip(spans, tiling._axis_weights(spans, 8, 1)):
        total[s * 8 : e * 8] += w
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


@pytest.fixture(scope="module")
def decoded(tiny, smooth_latents):
    whole = tiny.decode(smooth_latents, precision="fp32", tile=False)
    tiled = tiny.decode(smooth_latents, precision="fp32", tile=256)  # 2x2 tiles of 224 px, 64 px of overlap
    return whole, tiled


def test_tiled_decode_is_indistinguishable_and_uses_less_memory(decoded):
    whole, tiled = decoded
    assert tiled.tiled and tiled.tiles == 4 and not whole.tiled
    assert psnr(tiled.images, whole.images) >= 40
    # CPU peaks are exact tensor-byte counts (memory.TensorPeak), independent of what ran
    # before: the whole 384² decode peaks at 114 MB, tiles of a third of the image at 42 MB (37%)
    assert tiled.peak_memory_bytes < 0.5 * whole.peak_memory_bytes


def test_peak_memory_is_exact_and_does_not_depend_on_history(tiny, smooth_latents, decoded):
    whole, tiled = decoded
    again = tiny.decode(smooth_latents, precision="fp32", tile=False)  # after a tiled decode, with malloc's caches warm
    assert again.peak_memory_bytes == whole.peak_memory_bytes
    # the last Upsample holds its 64-channel 384² input and output at once: 75.5 MB at least
    assert whole.peak_memory_bytes >= 2 * 64 * 384 * 384 * 4


def test_groupnorm_sync_is_what_makes_tiles_invisible(tiny, smooth_latents, decoded):
    whole, synced = decoded
    model = tiny._model
    with torch.inference_mode():
        head = model.decode_head(smooth_latents / tiny.scale)
        naive = tiling.tiled_map(model.decode_tail, head, tile=32, overlap=8, num=8, den=1).clamp(-1, 1)
    assert psnr(synced.images, whole.images) > psnr(naive, whole.images) + 10


def test_tiled_encode_matches_whole_encode(tiny):
    gen = torch.Generator().manual_seed(8)
    img = F.interpolate(torch.rand(1, 3, 24, 24, generator=gen) * 2 - 1, size=(384, 320), mode="bilinear")
    whole = tiny.encode(img, precision="fp32", tile=False)
    tiled = tiny.encode(img, precision="fp32", tile=320)
    assert tiled.tiled and tiled.tiles == 2 and tiled.latents.shape == whole.latents.shape
    # encode tiling is approximate at tiles this small (per-tile GroupNorm statistics): measured 5.7 %
    rel_rms = (tiled.latents - whole.latents).pow(2).mean().sqrt() / whole.latents.std()
    assert rel_rms < 0.12


def test_auto_tiles_above_the_threshold(tiny, monkeypatch):
    monkeypatch.setattr(tiling, "AUTO_TILE_LATENT_AREA", 16 * 16)
    assert tiny.decode(torch.randn(1, 4, 24, 24), precision="fp32", tile="auto").tiled
    assert not tiny.decode(torch.randn(1, 4, 16, 16), precision="fp32", tile="auto").tiled


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_out_of_memory_is_retried_tiled(tiny, monkeypatch, precision, cpu_kind):
    # The whole-image pass of whichever model runs (the fp32 master or a bf16 copy) is out of memory.
    ran = []

    def no_memory(model, z):
        ran.append(z.dtype)
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9999999999 bytes")

    monkeypatch.setattr(type(tiny._model), "decode", no_memory)
    res = tiny.decode(torch.randn(1, 4, 16, 16), precision=precision, tile="auto")
    want = precision if precision != "auto" else ("bf16" if cpu_kind == "bf16-fast" else "fp32")
    assert ran == [prec.dtype_of(want)] and res.precision_used == want
    assert res.tiled and torch.isfinite(res.images).all()
    with pytest.raises(RuntimeError, match="allocate"):
        tiny.decode(torch.randn(1, 4, 16, 16), precision=precision, tile=False)  # tiling refused: the error stands


def test_taef2_tiled_decode_of_a_real_photo(taef2_pair, astronaut, tmp_path):
    vae = load_vae(taef2_pair[0], device="cpu", state_dir=tmp_path)
    lat = vae.encode(array_to_tensor(astronaut[:256, 128:384]), precision="fp32").latents
    whole = vae.decode(lat, precision="fp32", tile=False)
    tiled = vae.decode(lat, precision="fp32", tile=160)
    assert tiled.tiles == 4
    assert psnr(tiled.images, whole.images) >= 40
