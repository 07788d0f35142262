"""engine.Vae: scaling, batching, input checks, and the NaN-safe precision fallback."""

from __future__ import annotations

import json

import pytest
import torch

from testkit.diffusers_ref import diffusers_vae
from testkit.factories import TINY_KL, TINY_KL16, random_kl_state_dict
from vae_lab.runtime import precision as prec
from vae_lab.runtime.engine import Vae
from vae_lab.errors import IncompatibleVae, VaeLabError


# torch 2.1's CPU (A1111's stack) has no fp16 convolution: the engine then skips fp16 (tested
# below); the tests of what fp16 *does* when it runs need a device that runs it.
needs_fp16 = pytest.mark.skipif(not prec.runs_on("fp16", "cpu"),
                                reason="this torch cannot run fp16 on CPU (torch 2.1); the skip is tested instead")


def make(arch=TINY_KL, family="sd1", seed=0, tmp_path=None, weights_id="wid-test", sd=None):
    sd = sd if sd is not None else random_kl_state_dict(arch, seed=seed)
    return Vae.from_state_dict(sd, arch=arch, family=family, weights_id=weights_id, device="cpu", state_dir=tmp_path)


@pytest.mark.parametrize(
    "arch,family,scale,shift",
    [(TINY_KL, "sdxl", 0.13025, 0.0), (TINY_KL16, "flux", 0.3611, 0.1159)],
    ids=["sdxl", "flux"],
)
def test_decode_and_encode_match_diffusers_with_family_scaling(arch, family, scale, shift, tmp_path):
    sd = random_kl_state_dict(arch, seed=5)
    vae = make(arch, family, sd=sd, tmp_path=tmp_path)
    ref = diffusers_vae(sd, arch)
    gen = torch.Generator().manual_seed(2)
    lat = torch.randn(3, arch.z_channels, 6, 10, generator=gen)  # diffusion space, batch of 3
    images = torch.rand(2, 3, 48, 32, generator=gen) * 2 - 1
    with torch.inference_mode():
        want_img = ref.decode(lat / scale + shift).sample.clamp(-1, 1)
        want_lat = (ref.encode(images).latent_dist.mean - shift) * scale
    got = vae.decode(lat, precision="fp32", tile=False)
    assert got.images.dtype == torch.float32 and got.images.device.type == "cpu"
    assert (got.images - want_img).abs().max() <= 1e-4
    assert got.images.min() >= -1 and got.images.max() <= 1
    enc = vae.encode(images, precision="fp32", tile=False)
    assert enc.image_size == (48, 32)
    assert (enc.latents - want_lat).abs().max() <= 1e-4
    # the result tensors are ordinary tensors a caller may modify
    enc.latents.add_(0)
    got.images.mul_(1)


def test_encode_then_decode_reports_what_happened(tmp_path, cpu_kind):
    vae = make(tmp_path=tmp_path)
    res = vae.decode(torch.randn(4, 8, 8), precision="auto")  # a single latent without batch dim
    d = res.to_dict()
    want = "bf16" if cpu_kind == "bf16-fast" else "fp32"  # auto on CPU (bf16 runs on every torch's CPU)
    assert d["precision_used"] == want and d["fallback"] == [] and d["tiled"] is False
    assert d["unsupported"] == [] and d["skipped"] == []
    assert d["seconds"] > 0 and (d["peak_memory_bytes"] is None or d["peak_memory_bytes"] >= 0)
    assert res.images.shape == (1, 3, 64, 64)


def test_wrong_latent_channels_and_bad_inputs_are_one_line_errors(tmp_path):
    vae = make(tmp_path=tmp_path)
    with pytest.raises(IncompatibleVae, match="4-channel latents, these have 16"):
        vae.decode(torch.zeros(1, 16, 8, 8))
    with pytest.raises(VaeLabError, match="precision"):
        vae.decode(torch.zeros(1, 4, 8, 8), precision="fp8")
    with pytest.raises(VaeLabError, match="3 channels"):
        vae.encode(torch.zeros(1, 4, 16, 16))
    with pytest.raises(VaeLabError, match=r"\[B, C, H, W\]"):
        vae.encode(torch.zeros(16, 16))
    with pytest.raises(VaeLabError, match="NaN or Inf"):
        vae.decode(torch.full((1, 4, 8, 8), float("nan")))


def test_a_vae_that_fails_even_in_fp32_is_an_error_not_a_nan_image(tmp_path):
    sd = random_kl_state_dict(TINY_KL, seed=7)
    sd["decoder.conv_out.bias"][1] = float("inf")
    with pytest.raises(VaeLabError, match="NaN/Inf even at fp32"):
        make(sd=sd, tmp_path=tmp_path).decode(torch.randn(1, 4, 8, 8), precision="fp32")


def overflowing_state_dict(partial: bool):
    """Weights whose fp16 decode overflows while fp32 stays finite.

    partial=False: conv_in scaled by 1e5, activations of ~1e6 are Inf in fp16 and the
    GroupNorm turns everything to NaN. partial=True: only the red output channel's conv
    is scaled, so the fp16 output has Inf in one channel and no NaN (the WebUI's
    all-NaN check misses this).
    """
    sd = random_kl_state_dict(TINY_KL, seed=7)
    if partial:
        sd["decoder.conv_out.weight"][0] *= 1e6
    else:
        sd["decoder.conv_in.weight"] *= 1e5
    return sd


@needs_fp16
@pytest.mark.parametrize("partial", [False, True], ids=["all-nan", "partial-inf"])
def test_fp16_overflow_falls_back_to_fp32_and_is_remembered(partial, tmp_path, monkeypatch):
    monkeypatch.setenv(prec.FAST_BF16_ENV, "0")  # fp16 -> fp32 (fp16 -> bf16 is the next test)
    sd = overflowing_state_dict(partial)
    lat = torch.randn(1, 4, 12, 12, generator=torch.Generator().manual_seed(0))
    # the premise: fp16 really overflows, and not (only) into an all-NaN tensor when partial
    model = make(sd=sd, tmp_path=tmp_path)._model_at("fp16")
    with torch.inference_mode():
        raw16 = model.decode((lat / 0.18215).half())
    assert not torch.isfinite(raw16).all()
    if partial:
        assert not torch.isnan(raw16).all() and torch.isfinite(raw16[:, 1:]).all()

    vae = make(sd=sd, tmp_path=tmp_path)
    res = vae.decode(lat, precision="fp16", tile=False)
    assert res.fallback == ["fp16"] and res.precision_used == "fp32" and res.skipped == []
    assert torch.isfinite(res.images).all()
    ref = vae.decode(lat, precision="fp32", tile=False).images
    assert torch.equal(res.images, ref)
    saved = json.loads((tmp_path / prec.STATE_FILE).read_text())
    assert saved["wid-test"]["decode"] == ["fp16"] and saved["wid-test"]["decode_works"] == "fp32"

    # a new Vae for the same weights starts at the precision that works
    again = make(sd=sd, tmp_path=tmp_path).decode(lat, precision="fp16", tile=False)
    assert again.precision_used == "fp32" and again.fallback == [] and again.skipped == ["fp16"]


@needs_fp16
def test_bf16_is_tried_before_fp32_where_it_is_fast(tmp_path, monkeypatch):
    monkeypatch.setenv(prec.FAST_BF16_ENV, "1")
    assert prec.fallback_chain("fp16", "cpu") == ["fp16", "bf16", "fp32"]
    vae = make(sd=overflowing_state_dict(False), tmp_path=tmp_path)
    res = vae.decode(torch.randn(1, 4, 8, 8), precision="fp16", tile=False)
    assert res.fallback == ["fp16"] and res.precision_used == "bf16"  # bf16 has fp32's range
    assert torch.isfinite(res.images).all()


@needs_fp16
def test_a_healthy_vae_in_fp16_stays_in_fp16_and_is_close_to_fp32(tmp_path):
    vae = make(tmp_path=tmp_path)
    lat = torch.randn(1, 4, 10, 10, generator=torch.Generator().manual_seed(4))
    half = vae.decode(lat, precision="fp16", tile=False)
    full = vae.decode(lat, precision="fp32", tile=False)
    assert half.precision_used == "fp16" and half.fallback == []
    assert (half.images - full.images).abs().max() < 0.05
    assert not (tmp_path / prec.STATE_FILE).exists()  # nothing to remember


def test_precision_memory_survives_a_corrupt_file(tmp_path):
    (tmp_path / prec.STATE_FILE).write_text("{not json")
    mem = prec.PrecisionMemory(tmp_path)
    assert mem.failed("x", "decode") == []
    mem.record("x", "decode", ["fp16"], "fp32")
    assert prec.PrecisionMemory(tmp_path).failed("x", "decode") == ["fp16"]


def test_state_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_LAB_STATE_DIR", str(tmp_path / "st"))
    assert prec.PrecisionMemory().path == tmp_path / "st" / prec.STATE_FILE


def test_auto_precision_per_device(cpu_kind):
    fast = cpu_kind == "bf16-fast"
    assert prec.auto_precision("cuda") == "fp16"
    assert prec.auto_precision("cpu") == ("bf16" if fast else "fp32")
    assert prec.fallback_chain("auto", "cpu") == (["bf16", "fp32"] if fast else ["fp32"])
    assert prec.fallback_chain("fp16", "cpu") == (["fp16", "bf16", "fp32"] if fast else ["fp16", "fp32"])
    assert prec.fallback_chain("fp32", "cuda") == ["fp32"]
    assert prec.fallback_chain("bf16", "cpu") == ["bf16", "fp32"]


def test_the_bf16_probe_follows_the_cpu_unless_forced(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2 amx_bf16 amx_tile\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: real_open(cpuinfo if f == "/proc/cpuinfo" else f, *a, **k))
    monkeypatch.delenv(prec.FAST_BF16_ENV, raising=False)
    assert prec.bf16_is_fast("cpu")
    monkeypatch.setenv(prec.FAST_BF16_ENV, "0")
    assert not prec.bf16_is_fast("cpu") and prec.auto_precision("cpu") == "fp32"
    cpuinfo.write_text("processor : 0\nflags : fpu sse avx2\n")
    monkeypatch.setenv(prec.FAST_BF16_ENV, "1")
    assert prec.bf16_is_fast("cpu") and prec.auto_precision("cpu") == "bf16"
    monkeypatch.delenv(prec.FAST_BF16_ENV)
    assert not prec.bf16_is_fast("cpu")


def test_the_device_probe_agrees_with_a_real_half_precision_convolution():
    for precision, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        try:
            torch.nn.functional.conv2d(torch.ones(1, 2, 4, 4, dtype=dtype), torch.ones(2, 2, 3, 3, dtype=dtype))
            runs = True
        except RuntimeError:  # torch 2.1 CPU: "slow_conv2d_cpu" not implemented for 'Half'
            runs = False
        if not runs:  # (where the convolution runs, the probe still checks the other operators)
            assert not prec.runs_on(precision, "cpu"), precision
    assert prec.runs_on("fp32", "cpu") and prec.runs_on("auto", "cpu")


@pytest.mark.parametrize("how", ["this-torch", "forced-unsupported"])
def test_fp16_on_a_device_that_cannot_run_it_falls_back_to_the_next_precision(how, tmp_path, monkeypatch, cpu_kind):
    """fp16 on torch 2.1's CPU is a fallback the result reports, not a traceback (on A1111's stack
    this runs for real; elsewhere the probe's answer is forced)."""
    if how == "forced-unsupported":
        monkeypatch.setitem(prec._RUNS, ("cpu", "fp16"), False)
    elif prec.runs_on("fp16", "cpu"):
        pytest.skip("this torch runs fp16 on CPU; the forced case covers the fallback")
    vae = make(tmp_path=tmp_path)
    lat = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    res = vae.decode(lat, precision="fp16", tile=False)
    nxt = "bf16" if cpu_kind == "bf16-fast" else "fp32"
    assert res.unsupported == ["fp16"] and res.precision_used == nxt and res.fallback == []
    assert res.to_dict()["unsupported"] == ["fp16"]
    assert torch.equal(res.images, vae.decode(lat, precision=nxt, tile=False).images)
    enc = vae.encode(res.images, precision="fp16", tile=False)
    assert enc.unsupported == ["fp16"] and enc.precision_used == nxt
    assert not (tmp_path / prec.STATE_FILE).exists()  # not a failure of these weights: nothing remembered


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_the_half_precision_weight_copy_is_not_counted_as_decode_memory(precision, tmp_path):
    if not prec.runs_on(precision, "cpu"):
        pytest.skip(f"this torch cannot run {precision} on CPU")
    vae = make(tmp_path=tmp_path)
    lat = torch.randn(1, 4, 4, 4)
    first = vae.decode(lat, precision=precision, tile=False)  # builds the cast copy of the weights
    second = vae.decode(lat, precision=precision, tile=False)  # reuses it
    assert first.precision_used == second.precision_used == precision
    weights = sum(p.numel() for p in vae._model_at(precision).parameters()) * 2
    assert second.peak_memory_bytes < weights  # premise: the copy would dominate the measurement
    assert first.peak_memory_bytes == second.peak_memory_bytes


def test_a_half_precision_decode_with_a_stop_event_runs_and_leaves_no_hooks(tmp_path):
    """The tab always passes its Stop event: the hooks that check it used to sit on the fp32
    master while the bf16 copy was deep-copied from it, and an Event does not deep-copy
    ("cannot pickle '_thread.lock'"): every half-precision comparison in the tab failed."""
    import threading

    vae = Vae.from_state_dict(random_kl_state_dict(TINY_KL, seed=3), arch=TINY_KL, family="sd1", device="cpu",
                              state_dir=tmp_path)
    z = torch.randn(1, 4, 8, 8)
    res = vae.decode(z, precision="bf16", tile=False, cancel=threading.Event())
    assert res.precision_used == "bf16" and res.images.shape == (1, 3, 64, 64)
    assert all(not m._forward_pre_hooks for m in vae._model.modules())
    stop = threading.Event()
    stop.set()
    from vae_lab.errors import Cancelled

    with pytest.raises(Cancelled):
        vae.decode(z, precision="bf16", tile=False, cancel=stop)
    assert all(not m._forward_pre_hooks for m in vae._model.modules())
