"""The comparison core on real weights (TAEF2) and tiny random kl-f8 VAEs written to disk."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from testkit.factories import TINY_KL, random_kl_state_dict
from vae_lab.compare import runner as compare
from vae_lab.identity import compatibility
from vae_lab.compare.runner import CompareRequest, VaeCache, run_compare
from vae_lab.errors import IncompatibleVae, VaeLabError


def _sk(a, b):
    return (
        peak_signal_noise_ratio(a, b, data_range=255),
        structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=255),
    )


@pytest.fixture(scope="module")
def photo(astronaut):
    return np.ascontiguousarray(astronaut[100:228, 160:288])  # 128x128: the face, real detail


@pytest.fixture(scope="module")
def kl_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("vaes")
    paths = {}
    for name, seed in (("kl_a", 1), ("kl_b", 2)):
        p = d / f"{name}.safetensors"
        save_file(random_kl_state_dict(TINY_KL, seed=seed), str(p))
        paths[name] = str(p)
    dec_only = replace(TINY_KL, has_encoder=False)
    p = d / "kl_dec.safetensors"
    save_file(random_kl_state_dict(dec_only, seed=3), str(p))
    paths["kl_dec"] = str(p)
    p = d / "broken.safetensors"
    p.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    paths["broken"] = str(p)
    return paths


@pytest.fixture(scope="module")
def cache():
    return VaeCache(maxsize=8)  # by count as well as bytes


def test_taef2_round_trip_matches_skimage(taef2_pair, photo, cache):
    dec, _ = taef2_pair
    res = run_compare(CompareRequest(image=photo, vae_paths=[str(dec)], precision="fp32"), load=cache.load)
    assert res.mode == "roundtrip" and res.reference_label == "original image"
    (o,) = res.outcomes
    assert o.ok, o.error
    assert o.image.dtype == np.uint8 and o.image.shape == photo.shape
    assert o.kind == "tae" and o.precision_used == "fp32"
    assert o.encoder == o.name and o.encode_seconds > 0 and o.decode_seconds > 0
    p, s = _sk(photo, o.image)
    assert abs(o.psnr - p) < 0.01 and abs(o.ssim - s) < 0.001
    assert 24 < o.psnr < 45 and 0.8 < o.ssim < 1  # a real autoencoder, not noise
    assert res.entries()[0] == ("original image", photo)


def test_one_bad_vae_does_not_stop_the_others(taef2_pair, photo, kl_files, cache, tmp_path):
    dec, _ = taef2_pair
    missing = str(tmp_path / "nope.safetensors")
    req = CompareRequest(image=photo, vae_paths=[str(dec), kl_files["broken"], missing, kl_files["kl_a"]],
                         encoder="first")
    res = run_compare(req, load=cache.load)
    ok, broken, gone, kl = res.outcomes
    assert ok.ok and ok.psnr > 20
    assert broken.image is None and broken.error and "\n" not in broken.error
    assert gone.image is None and "nope.safetensors" in gone.error
    # each entry names its file as its label does, not by the full path
    for o in (broken, gone):
        assert o.error.startswith(o.name) and os.path.dirname(o.path) not in o.error
    # encoder="first": TAEF2 made 32-channel latents; the 4-channel kl VAE is refused, with the reason
    assert kl.image is None and "4-channel" in kl.error and "32" in kl.error
    assert [r["vae"] for r in res.rows()] == [o.name for o in res.outcomes]


def test_each_vae_with_its_own_encoder(taef2_pair, photo, kl_files, cache):
    dec, _ = taef2_pair
    req = CompareRequest(image=photo, vae_paths=[kl_files["kl_a"], kl_files["kl_b"], str(dec), kl_files["kl_dec"]], encoder="own")
    res = run_compare(req, load=cache.load)
    a, b, t, d = res.outcomes
    for o in (a, b, t):
        assert o.ok, o.error
        assert o.encoder == o.name and o.encode_seconds is not None
        assert (o.psnr, o.ssim) == pytest.approx(_sk(photo, o.image), abs=1e-3)
    assert t.psnr > a.psnr + 10  # real weights beat random ones by far
    assert not np.array_equal(a.image, b.image)
    assert d.image is None and "no encoder" in d.error


def test_first_vae_without_encoder_hands_encoding_to_the_next(photo, kl_files, cache):
    req = CompareRequest(image=photo, vae_paths=[kl_files["kl_dec"], kl_files["kl_a"]])
    res = run_compare(req, load=cache.load)
    d, a = res.outcomes
    assert d.ok and a.ok
    assert d.encoder == a.encoder == os.path.basename(kl_files["kl_a"])
    assert res.settings["encoder_used"] == os.path.basename(kl_files["kl_a"])
    assert a.encode_seconds is not None and d.encode_seconds is None


def test_chosen_encoder_file(taef2_pair, photo, kl_files, cache):
    dec, _ = taef2_pair
    res = run_compare(CompareRequest(image=photo, vae_paths=[kl_files["kl_b"]], encoder=kl_files["kl_a"]), load=cache.load)
    (o,) = res.outcomes
    assert o.ok and o.encoder == os.path.basename(kl_files["kl_a"])
    with pytest.raises(VaeLabError, match="encoder"):
        run_compare(CompareRequest(image=photo, vae_paths=[str(dec)], encoder=kl_files["broken"]), load=cache.load)


def test_latent_mode_with_reference(taef2_pair, photo, kl_files, cache):
    dec, _ = taef2_pair
    taef2 = cache.load(str(dec))
    lat = taef2.encode(torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 127.5 - 1, precision="fp32").latents
    assert lat.shape[1] == 32
    req = CompareRequest(latents=lat, vae_paths=[str(dec), kl_files["kl_a"]], reference=str(dec), diff_pair=(0, 1),
                         precision="fp32")
    res = run_compare(req, load=cache.load)
    assert res.mode == "latents" and res.reference_label.endswith("(fp32)")
    t, k = res.outcomes
    # decoded at fp32, the reference's own precision, so it equals the reference exactly
    assert t.ok and t.psnr == math.inf and t.ssim == pytest.approx(1.0)
    assert res.rows()[0]["psnr"] is None and res.rows()[0]["psnr_infinite"] is True
    assert k.image is None and isinstance(k.error, str) and "4-channel" in k.error
    assert res.diff_image is not None and int(res.diff_image.max()) == 0


def test_latent_mode_without_reference_has_no_metrics(kl_files, cache):
    lat = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    res = run_compare(CompareRequest(latents=lat, vae_paths=[kl_files["kl_a"], kl_files["kl_b"]], batch_index=1), load=cache.load)
    a, b = res.outcomes
    assert a.ok and b.ok and a.image.shape == (64, 64, 3)
    assert a.psnr is None and "reference" in res.metrics_note
    assert res.entries()[0][0] == a.name  # no reference entry
    # with kl_a as reference, kl_b gets finite numbers that equal skimage's
    res = run_compare(CompareRequest(latents=lat, vae_paths=[kl_files["kl_b"]], reference=kl_files["kl_a"], batch_index=1), load=cache.load)
    (o,) = res.outcomes
    assert (o.psnr, o.ssim) == pytest.approx(_sk(res.reference_image, o.image), abs=1e-3)


def test_known_different_family_is_refused(kl_files):
    from vae_lab.runtime.engine import Vae

    sd1 = Vae.from_state_dict(random_kl_state_dict(TINY_KL, seed=1), arch=TINY_KL, family="sd1", name="sd1-vae", device="cpu")
    sdxl = Vae.from_state_dict(random_kl_state_dict(TINY_KL, seed=2), arch=TINY_KL, family="sdxl", name="sdxl-vae", device="cpu")
    fakes = {"sd1.safetensors": sd1, "sdxl.safetensors": sdxl}
    lat = torch.randn(1, 4, 8, 8)
    req = CompareRequest(latents=lat, vae_paths=list(fakes), latents_family="sdxl")
    res = run_compare(req, load=fakes.__getitem__)
    a, b = res.outcomes
    assert a.image is None and "SD1/SD2" in a.error and "SDXL" in a.error
    assert b.ok
    with pytest.raises(IncompatibleVae):
        compatibility.check_decode(sd1, 4, "sdxl").raise_if_refused()
    assert compatibility.check_decode(sd1, 4, None).allowed  # unknown family: allowed


def test_request_from_the_last_generation(kl_files):
    from vae_lab.runtime import last_latents

    last_latents.clear()
    with pytest.raises(VaeLabError, match="generate an image first"):
        CompareRequest.from_last_latents([kl_files["kl_a"]])
    lat = torch.randn(2, 4, 8, 8)
    assert last_latents.store(lat, "sdxl", model_name="m")
    try:
        req = CompareRequest.from_last_latents([kl_files["kl_a"]], batch_index=1)
        assert req.latents_family == "sdxl" and torch.equal(req.latents, lat) and req.batch_index == 1
    finally:
        last_latents.clear()


def test_progress_and_cancel(kl_files, cache):
    lat = torch.randn(1, 4, 8, 8)
    seen = []
    run_compare(
        CompareRequest(latents=lat, vae_paths=[kl_files["kl_a"], kl_files["kl_b"]], reference=kl_files["kl_a"]),
        progress=lambda f, t: seen.append((f, t)), load=cache.load,
    )
    fracs = [f for f, _ in seen]
    assert fracs == sorted(fracs) and fracs[-1] == 1.0 and seen[-1][1] == "done"
    assert any("kl_b" in t for _, t in seen)

    stop = threading.Event()

    def progress(f, text):
        if "kl_a" in text:
            stop.set()  # the user presses Cancel while the first VAE runs

    res = run_compare(
        CompareRequest(latents=lat, vae_paths=[kl_files["kl_a"], kl_files["kl_b"]]),
        progress=progress, cancel=stop, load=cache.load,
    )
    a, b = res.outcomes
    # the engine checks Stop between blocks: the decode under way stops too
    assert res.cancelled and a.error == "cancelled" and b.error == "cancelled"
    assert "cancelled" in res.table()


def test_bad_requests_are_refused_in_one_line(photo, kl_files):
    lat = torch.randn(1, 4, 8, 8)
    for req, match in (
        (CompareRequest(vae_paths=[kl_files["kl_a"]]), "either an image"),
        (CompareRequest(image=photo, latents=lat, vae_paths=[kl_files["kl_a"]]), "either an image"),
        (CompareRequest(image=photo), "at least one"),
        (CompareRequest(image=photo.astype(np.float32), vae_paths=[kl_files["kl_a"]]), "uint8"),
        (CompareRequest(image=photo, vae_paths=[kl_files["kl_a"]], encoder="/no/such.vae"), "encoder"),
        (CompareRequest(latents=lat, vae_paths=[kl_files["kl_a"]], batch_index=3), "batch index"),
    ):
        with pytest.raises(VaeLabError, match=match):
            run_compare(req)


def test_tables_grid_and_difference_map(photo, kl_files, cache):
    req = CompareRequest(image=photo, vae_paths=[kl_files["kl_a"], kl_files["broken"]], diff_pair=("original image", 1), diff_gain=3)
    res = run_compare(req, load=cache.load)
    a = res.outcomes[0]
    want = np.clip(np.abs(photo.astype(int) - a.image.astype(int)) * 3, 0, 255).astype(np.uint8)
    assert np.array_equal(res.diff_image, want)
    assert np.array_equal(res.difference_map(0, 1, gain=3), want)
    with pytest.raises(VaeLabError, match="no image"):
        res.difference_map(0, 2)
    rows = list(csv.DictReader(io.StringIO(res.to_csv())))
    assert [r["vae"] for r in rows] == [a.name, "broken.safetensors"]
    assert float(rows[0]["psnr"]) == pytest.approx(a.psnr) and rows[1]["error"]
    doc = json.loads(res.to_json())
    assert doc["results"][0]["ssim"] == pytest.approx(a.ssim) and doc["mode"] == "roundtrip"
    assert "sigma=1.5" in doc["ssim"]
    text = res.table()
    assert a.name in text and f"{a.psnr:.2f}" in text and "broken.safetensors" in text
    g = res.grid(columns=2)
    # reference, kl_a, broken (error tile), difference: 2 x 2 tiles of 128 px plus captions
    assert g.mode == "RGB" and g.width == 2 * 128 + 3 * 8 and g.height > 2 * 128
    px = np.asarray(g)
    assert (px == photo[0, 0]).all(axis=-1).any()  # the reference is pasted at full size


def test_cache_reuses_and_reloads(kl_files, tmp_path, monkeypatch):
    import vae_lab.files.loading as loading

    calls = []
    cache = VaeCache(maxsize=2)
    real = loading.load_vae_file

    def counting(path, *a, **kw):
        calls.append(path)
        return real(path, *a, **kw)

    p = tmp_path / "v.safetensors"
    save_file(random_kl_state_dict(TINY_KL, seed=5), str(p))
    monkeypatch.setattr(loading, "load_vae_file", counting)
    v1 = cache.load(str(p))
    assert cache.load(str(p)) is v1 and len(calls) == 1
    save_file(random_kl_state_dict(TINY_KL, seed=6), str(p))
    os.utime(p, ns=(1, 10**18))  # a changed file is read again
    v2 = cache.load(str(p))
    assert v2 is not v1 and len(calls) == 2
    assert torch.equal(v2._model.state_dict()["decoder.conv_out.weight"],
                       random_kl_state_dict(TINY_KL, seed=6)["decoder.conv_out.weight"])
    cache.load(kl_files["kl_a"])
    cache.load(kl_files["kl_b"])
    assert len(cache) == 2  # bounded


def test_models_share_the_weights_cache_memory_and_go_with_it(kl_files):
    """One cache of weights: a model's parameters are the RamCache's tensors (no second copy), and
    a model whose weights were evicted is dropped too."""
    from vae_lab.runtime.ramcache import RamCache

    weights = RamCache(64 * 2**20)
    cache = VaeCache(weights=weights)
    vae = cache.load(kl_files["kl_a"], device="cpu")
    held = weights.placed(kl_files["kl_a"], lambda _p: pytest.fail("read again"), device="cpu", dtype=torch.float32)
    ptrs = {t.data_ptr() for t in held.values()}
    assert all(p.data_ptr() in ptrs for p in vae._model.parameters())
    assert cache.total_bytes == weights.total_bytes > 0
    weights.discard(kl_files["kl_a"])
    cache.load(kl_files["kl_b"], device="cpu")
    assert len(cache) == 1


def test_lpips_column_with_local_weights(photo, kl_files, cache, tmp_path, monkeypatch):
    from test_metrics import _alexnet_like

    from vae_lab.compare import metrics

    backbone, lin = _alexnet_like(seed=4)
    torch.save(backbone, tmp_path / "alexnet-owt-7be5be79.pth")
    torch.save(lin, tmp_path / "alex.pth")
    res = run_compare(CompareRequest(image=photo, vae_paths=[kl_files["kl_a"]], lpips_dir=str(tmp_path)), load=cache.load)
    (o,) = res.outcomes
    assert res.lpips_note is None and o.lpips is not None and o.lpips > 0
    model, _ = metrics.load_lpips(str(tmp_path))
    assert o.lpips == pytest.approx(model(photo, o.image))
    assert f"{o.lpips:.4f}" in res.table()
    monkeypatch.delenv(metrics.LPIPS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    res = run_compare(CompareRequest(image=photo, vae_paths=[kl_files["kl_a"]]), load=cache.load)
    assert res.outcomes[0].lpips is None and res.lpips_note == metrics.LPIPS_NOTE_MISSING


def test_nothing_is_held_after_a_comparison(kl_files, tmp_path):
    """The cache holds the fp32 masters in RAM and nothing else: tensor bytes allocated during
    a run (device copies, half-precision casts, latents, images) are all freed after it."""
    import gc

    from vae_lab.runtime.memory import TensorPeak

    cache = VaeCache()
    req = CompareRequest(vae_paths=[kl_files["kl_a"], kl_files["kl_b"]], latents=torch.randn(1, 4, 8, 8),
                         precision="bf16", device="cpu")
    run_compare(req, load=lambda p: cache.load(p, device="cpu"))  # cached, warm
    held = cache.total_bytes
    with TensorPeak() as tp:
        result = run_compare(req, load=lambda p: cache.load(p, device="cpu"))
        assert all(o.ok for o in result.outcomes) and tp.peak_bytes > 0
        del result
        gc.collect()
    assert tp.live == 0  # no bf16 copy kept beside its master, nothing else left behind
    assert cache.total_bytes == held
    vae = cache.load(kl_files["kl_a"], device="cpu")
    assert vae._cast == {} and vae.on("cpu") is vae


def test_cache_keeps_to_its_byte_budget(kl_files):
    one = VaeCache().load(kl_files["kl_a"], device="cpu")
    size = sum(p.numel() * 4 for p in one._model.parameters())
    cache = VaeCache(budget_bytes=int(1.5 * size))
    cache.load(kl_files["kl_a"], device="cpu")
    cache.load(kl_files["kl_b"], device="cpu")
    assert len(cache) == 1 and cache.total_bytes <= cache.budget_bytes


def test_default_encoder_encodes_each_latent_family_with_its_first_member(taef2_pair, photo, kl_files, cache):
    """TAEF2 ticked first used to make 32-channel latents for everyone, and every kl-f8 VAE was
    refused. The default now gives each latent space its own encoder and says which made what."""
    dec, _ = taef2_pair
    names = [os.path.basename(p) for p in (str(dec), kl_files["kl_dec"], kl_files["kl_a"], kl_files["kl_b"])]
    req = CompareRequest(image=photo, vae_paths=[str(dec), kl_files["kl_dec"], kl_files["kl_a"], kl_files["kl_b"]])
    assert req.encoder == "family"
    res = run_compare(req, load=cache.load)
    t, d, a, b = res.outcomes
    assert all(o.ok for o in res.outcomes), [o.error for o in res.outcomes]
    assert t.encoder == names[0] and t.encode_seconds is not None
    # kl_dec has no encoder: the first kl-f8 VAE with one (kl_a) encodes for the three of them
    assert d.encoder == a.encoder == b.encoder == names[2]
    assert a.encode_seconds is not None and d.encode_seconds is None and b.encode_seconds is None
    made = {e["encoder"]: (e["latent_channels"], e["vaes"]) for e in res.settings["encoders"]}
    assert made == {names[0]: (32, [names[0]]), names[2]: (4, names[1:])}


def test_a_latent_space_without_any_encoder_is_explained(photo, kl_files, cache):
    res = run_compare(CompareRequest(image=photo, vae_paths=[kl_files["kl_dec"]]), load=cache.load)
    (d,) = res.outcomes
    assert d.image is None and "has no encoder" in d.error and "4-channel" in d.error


def test_colour_shift_histogram_hashes_and_relative_paths(photo, kl_files, cache):
    res = run_compare(CompareRequest(image=photo, vae_paths=[kl_files["kl_a"], kl_files["kl_a"]], precision="fp32"),
                      load=cache.load)
    a, a2 = res.outcomes
    expect = (a.image.astype(float) - photo.astype(float)).reshape(-1, 3).mean(axis=0)
    assert a.color_shift == pytest.approx(tuple(expect), abs=1e-9)
    assert a.histogram.shape == (3, 32) and int(a.histogram[0].sum()) == photo.shape[0] * photo.shape[1]
    assert res.reference_histogram.sum() == 3 * photo.shape[0] * photo.shape[1]
    import hashlib

    sha = hashlib.sha256(open(kl_files["kl_a"], "rb").read()).hexdigest()
    assert a.vae_hash == sha[:10] and a.weights_id and a.weights_id == a2.weights_id
    headers, rows = res.display_rows()
    assert "peak MiB" in headers and "colour shift R G B" in headers
    assert "same weights as" in rows[0][-1]
    folder = os.path.dirname(kl_files["kl_a"])
    data = json.loads(res.to_json(relative_to=[folder]))
    assert data["results"][0]["path"] == "kl_a.safetensors" and data["results"][0]["vae_hash"] == sha[:10]
    assert folder not in res.to_csv(relative_to=[folder]) and folder not in res.to_json(relative_to=["/elsewhere"])


class _FakeVae:
    """Stands in for `Vae` with a decode that takes `cancel` (the engine's tile-level Stop)."""

    def __init__(self, name, stop_inside=False):
        self.name, self.path, self.family, self.kind = name, name, None, "kl"
        self.latent_channels, self.has_encoder, self.has_decoder = 4, True, True
        self.weights_id, self.info, self.stop_inside = None, None, stop_inside
        self.cancels_seen = []

    def decode(self, latents, *, precision="auto", tile="auto", size=None, cancel=None):
        from types import SimpleNamespace

        self.cancels_seen.append(cancel)
        if self.stop_inside:
            raise compare.CompareCancelled("stopped between tiles")
        img = torch.zeros(1, 3, 16, 16)
        return SimpleNamespace(images=img, precision_used="fp32", fallback=[], unsupported=[], tiled=False, seconds=0.01,
                               peak_memory_bytes=0)


def test_stop_reaches_into_a_decode_and_keeps_what_finished():
    vaes = {"a": _FakeVae("a"), "b": _FakeVae("b", stop_inside=True), "c": _FakeVae("c")}
    res = run_compare(CompareRequest(latents=torch.zeros(1, 4, 2, 2), vae_paths=["a", "b", "c"]), load=vaes.get)
    a, b, c = res.outcomes
    assert callable(vaes["a"].cancels_seen[0])  # the engine gets something to poll between tiles
    assert res.cancelled and a.ok and b.error == c.error == "cancelled" and res.finished == 1
    assert vaes["c"].cancels_seen == []  # nothing after the Stop ran


def test_a_precision_the_device_cannot_run_is_said_in_the_table(kl_files, photo, cache, monkeypatch):
    from vae_lab.runtime import precision as prec

    monkeypatch.setitem(prec._RUNS, ("cpu", "fp16"), False)  # as on torch 2.1's CPU
    monkeypatch.setenv(prec.FAST_BF16_ENV, "0")
    res = run_compare(CompareRequest(image=photo, vae_paths=[kl_files["kl_a"]], precision="fp16"), load=cache.load)
    (o,) = res.outcomes
    assert o.ok and o.precision_used == "fp32" and o.unsupported == ["fp16"] and o.fallback == []
    headers, rows = res.display_rows()
    assert rows[0][headers.index("precision")] == "fp32 (fp16 unsupported here)"
    assert "fp32 (fp16 unsupported here)" in compare.caption_lines(o)[0]
