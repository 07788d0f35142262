"""Tiled decode/encode: the whole-image result up to float rounding, at a fraction of the memory."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from testkit.factories import TINY_KL, random_kl_state_dict
from vae_lab.errors import Cancelled
from vae_lab.files.imaging import array_to_tensor, tensor_to_array
from vae_lab.runtime import tiling
from vae_lab.runtime import precision as prec
from vae_lab.runtime.engine import Vae, load_vae


def psnr(a, b) -> float:
    mse = ((a - b) ** 2).mean() / 4
    return float(10 * torch.log10(1 / mse.clamp_min(1e-20)))


def same_8bit(a, b) -> float:
    """Share of 8-bit PNG values that are identical."""
    return float(np.mean(tensor_to_array(a[0]) == tensor_to_array(b[0])))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # TINY_KL has every block type: res blocks with and without a channel change, the
    # mid-block attention, upsampling (decoder) and downsampling (encoder)
    sd = random_kl_state_dict(TINY_KL, seed=11)
    return Vae.from_state_dict(sd, arch=TINY_KL, family="sd1", device="cpu",
                               state_dir=tmp_path_factory.mktemp("st"))


@pytest.fixture(scope="module")
def smooth_latents():
    """Latents with image-like spatial structure (white noise has none), 48x40 -> 384x320."""
    gen = torch.Generator().manual_seed(3)
    return F.interpolate(torch.randn(1, 4, 9, 9, generator=gen), size=(48, 40), mode="bicubic", align_corners=False)


@pytest.mark.parametrize("length,tile,align", [(64, 32, 1), (200, 64, 1), (512, 256, 8), (30, 64, 1), (97, 40, 1), (48, 32, 8)])
def test_tiles_partition_the_axis_in_balanced_aligned_spans(length, tile, align):
    spans = tiling.split_axis(length, tile, align)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(e0 == s1 for (_s0, e0), (s1, _e1) in zip(spans, spans[1:]))
    assert all(s % align == 0 for s, _ in spans)
    sizes = [e - s for s, e in spans]
    assert max(sizes) <= max(tile, align) + align and max(sizes) - min(sizes) <= align


@pytest.fixture(scope="module")
def decoded(tiny, smooth_latents):
    whole = tiny.decode(smooth_latents, tile=False, precision="fp32")
    tiled = tiny.decode(smooth_latents, tile=256, precision="fp32")  # 2x2 tiles of 192x160 px
    return whole, tiled


def test_tiled_decode_equals_the_whole_decode(decoded):
    whole, tiled = decoded
    assert tiled.tiled and tiled.tiles == 4 and not whole.tiled
    assert psnr(tiled.images, whole.images) >= 60
    assert same_8bit(tiled.images, whole.images) >= 0.999


@pytest.mark.parametrize("tile", [64, 136])  # far below 256 px, and not dividing the image
def test_any_tile_size_is_exact(tiny, smooth_latents, decoded, tile):
    whole, _ = decoded
    tiled = tiny.decode(smooth_latents, tile=tile, precision="fp32")
    assert tiled.tiles > 4
    assert psnr(tiled.images, whole.images) >= 60
    assert same_8bit(tiled.images, whole.images) >= 0.999


@pytest.mark.parametrize("tile,ratio", [(128, 0.6), (64, 0.4)])
def test_tiled_decode_uses_less_memory(tiny, smooth_latents, decoded, tile, ratio):
    whole, _ = decoded
    tiled = tiny.decode(smooth_latents, tile=tile, precision="fp32")
    # CPU peaks are exact tensor-byte counts (memory.TensorPeak), independent of what ran before.
    # The tensors kept between passes are image-sized, so the saving grows with the number of
    # tiles: measured 73 % of the whole decode with 4 tiles, 49 % with 9, 33 % with 30.
    assert tiled.peak_memory_bytes < ratio * whole.peak_memory_bytes


def test_peak_memory_is_exact_and_does_not_depend_on_history(tiny, smooth_latents, decoded):
    whole, tiled = decoded
    again = tiny.decode(smooth_latents, tile=False, precision="fp32")  # after a tiled decode, malloc's caches warm
    assert again.peak_memory_bytes == whole.peak_memory_bytes
    # the last Upsample holds its 64-channel 384x320 output at least
    assert whole.peak_memory_bytes >= 64 * 384 * 320 * 4


def test_whole_image_statistics_are_what_make_tiles_exact(tiny, smooth_latents, decoded):
    """Per-tile GroupNorm statistics (what tiled VAEs elsewhere use) are visibly off."""
    whole, _ = decoded
    model = tiny._model
    with torch.inference_mode():
        head = model.decode_head(smooth_latents / tiny.scale)
        naive = torch.zeros_like(whole.images)
        for y0, y1, x0, x1 in tiling.tile_grid(48, 40, 24):
            pad = 8  # a generous halo; the statistics are still per tile
            a0, a1, b0, b1 = max(0, y0 - pad), min(48, y1 + pad), max(0, x0 - pad), min(40, x1 + pad)
            part = model.decode_tail(head[:, :, a0:a1, b0:b1])
            naive[:, :, y0 * 8 : y1 * 8, x0 * 8 : x1 * 8] = part[:, :, (y0 - a0) * 8 : (y0 - a0 + y1 - y0) * 8,
                                                                 (x0 - b0) * 8 : (x0 - b0 + x1 - x0) * 8]
    assert psnr(naive.clamp(-1, 1), whole.images) < 45


def test_tiled_encode_equals_the_whole_encode(tiny):
    gen = torch.Generator().manual_seed(8)
    img = F.interpolate(torch.rand(1, 3, 24, 24, generator=gen) * 2 - 1, size=(384, 320), mode="bilinear")
    whole = tiny.encode(img, tile=False, precision="fp32")
    tiled = tiny.encode(img, tile=256, precision="fp32")
    assert tiled.tiled and tiled.tiles == 4 and tiled.latents.shape == whole.latents.shape
    rel = (tiled.latents - whole.latents).abs().max() / whole.latents.abs().max()
    assert rel < 1e-5
    assert tiled.peak_memory_bytes < 0.6 * whole.peak_memory_bytes


def test_encode_then_decode_of_an_odd_size_image_tiled(tiny):
    img = torch.rand(1, 3, 270, 301) * 2 - 1  # padded to 272x304
    lat_w = tiny.encode(img, tile=False, precision="fp32")
    lat_t = tiny.encode(img, tile=96, precision="fp32")
    assert (lat_t.latents - lat_w.latents).abs().max() < 1e-4
    out = tiny.decode(lat_t.latents, tile=96, size=lat_t.image_size, precision="fp32")
    assert out.images.shape == (1, 3, 270, 301)


def test_auto_tiles_when_the_whole_decode_would_not_fit(tiny, monkeypatch):
    from vae_lab.runtime import memory

    z = torch.randn(1, 4, 24, 24)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1 << 40)
    assert not tiny.decode(z, tile="auto", precision="fp32").tiled
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10 << 20)  # 10 MB free: 192² needs more
    res = tiny.decode(z, tile="auto", precision="fp32")
    assert res.tiled and torch.isfinite(res.images).all()


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_out_of_memory_is_retried_tiled(tiny, monkeypatch, smooth_latents, decoded, precision, cpu_kind):
    # The whole-image pass of whichever model runs (the fp32 master or a bf16 copy) is out of memory.
    ran = []

    def no_memory(model, z):
        ran.append(z.dtype)
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9999999999 bytes")

    monkeypatch.setattr(type(tiny._model), "decode", no_memory)
    want = precision if precision != "auto" else ("bf16" if cpu_kind == "bf16-fast" else "fp32")
    # bf16 on a CPU without native bf16 (AVX2) is ~100x slower: a small latent proves the same there
    z = smooth_latents if want == "fp32" else smooth_latents[..., :8, :8]
    res = tiny.decode(z, tile="auto", precision=precision)
    assert ran == [prec.dtype_of(want)] and res.precision_used == want
    assert res.tiled and torch.isfinite(res.images).all()
    if want == "fp32":
        assert psnr(res.images, decoded[0].images) >= 60  # the retry in tiles is exact
    with pytest.raises(RuntimeError, match="allocate"):
        tiny.decode(z, tile=False, precision=precision)  # tiling refused: the error stands

def test_progress_is_reported_per_tile(tiny, smooth_latents):
    seen = []
    res = tiny.decode(smooth_latents, tile=256, precision="fp32", progress=lambda d, t: seen.append((d, t)))
    total = seen[-1][1]
    assert [d for d, _t in seen] == list(range(1, total + 1)) and total % res.tiles == 0


@pytest.mark.parametrize("tile", [256, False])
def test_cancel_stops_a_decode_between_tiles_or_blocks(tiny, smooth_latents, tile):
    stop = threading.Event()
    calls = []

    def progress(done, total):
        calls.append(done)
        stop.set()

    blocks = []
    if tile is False:  # no tiles: Stop is checked before every block
        hook = tiny._model.decoder.mid.register_forward_pre_hook(lambda *a: (blocks.append(1), stop.set()))
    try:
        with pytest.raises(Cancelled):
            tiny.decode(smooth_latents, tile=tile, precision="fp32", progress=progress, cancel=stop)
    finally:
        if tile is False:
            hook.remove()
    assert len(calls) <= 1
    stop.clear()
    # a callable works too; an unset cancel changes nothing
    assert tiny.decode(smooth_latents[:, :, :16, :16], tile=tile, precision="fp32", cancel=lambda: False).images.shape[2] == 128


def test_taef2_tiled_decode_of_a_real_photo(taef2_pair, astronaut, tmp_path):
    vae = load_vae(taef2_pair[0], device="cpu", state_dir=tmp_path)
    enc = load_vae(taef2_pair[1], device="cpu", state_dir=tmp_path)
    lat = enc.encode(array_to_tensor(astronaut[:256, 128:384]), precision="fp32").latents
    whole = vae.decode(lat, tile=False, precision="fp32")
    tiled = vae.decode(lat, tile=128, precision="fp32")
    assert tiled.tiles == 4
    assert psnr(tiled.images, whole.images) >= 60
    assert same_8bit(tiled.images, whole.images) >= 0.999


def test_tiled_taef2_encode_matches(taef2_pair, astronaut, tmp_path):
    enc = load_vae(taef2_pair[1], device="cpu", state_dir=tmp_path)
    img = array_to_tensor(astronaut[:256, :256])
    whole = enc.encode(img, tile=False, precision="fp32").latents
    tiled = enc.encode(img, tile=128, precision="fp32").latents
    assert (tiled - whole).abs().max() / whole.abs().max() < 1e-5


def test_time_is_estimated_up_front_from_measured_speed(tiny, smooth_latents):
    small = smooth_latents[:, :, :24, :20]
    first = tiny.decode(small, tile=False, precision="fp32")  # measures this VAE's speed
    seen = []
    res = tiny.decode(smooth_latents, tile=256, precision="fp32", on_estimate=seen.append)
    assert seen == [res.estimated_seconds] and res.estimated_seconds > first.seconds
    # the estimate is of the right size (a loaded shared machine makes it rough)
    assert res.seconds / 4 < res.estimated_seconds < res.seconds * 4
