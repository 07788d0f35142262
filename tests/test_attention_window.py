"""Windowed mid-block attention (`attention="window"`): exact where it fits, close where it
does not, still exact under tiling, stoppable, and reachable from the CLI."""

from __future__ import annotations

import json
import threading

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from testkit.factories import TINY_KL, random_kl_state_dict
from vae_lab.cli.main import main
from vae_lab.errors import BadOption, Cancelled, VaeLabError
from vae_lab.files.latents import save_latents
from vae_lab.identity import families
from vae_lab.models.kl import AttnBlock, WindowedAttention, window_spans
from vae_lab.runtime import engine
from vae_lab.runtime.engine import Vae


def psnr(a, b) -> float:
    mse = ((a - b) ** 2).mean() / 4
    return float(10 * torch.log10(1 / mse.clamp_min(1e-20)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    sd = random_kl_state_dict(TINY_KL, seed=11)
    return Vae.from_state_dict(sd, arch=TINY_KL, family="sd1", device="cpu", state_dir=tmp_path_factory.mktemp("st"))


@pytest.fixture(scope="module")
def latents():
    """Smooth latents (48x40 -> 384x320 px)."""
    gen = torch.Generator().manual_seed(3)
    return F.interpolate(torch.randn(1, 4, 9, 9, generator=gen), size=(48, 40), mode="bicubic", align_corners=False)


@pytest.fixture
def small_far_field(monkeypatch):
    """A far field of 8x8 cells (6x5 positions each on these latents), so tiny latents are windowed
    inexactly, as huge ones are with the default grid."""
    monkeypatch.setattr(engine, "ATTENTION_FAR_GRID", 8)


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    b = AttnBlock(32).eval()
    with torch.no_grad():
        for p in b.parameters():
            p.normal_(0, 0.3)
    return b


def smooth(c, h, w, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(1, c, 5, 5, generator=gen), size=(h, w), mode="bicubic", align_corners=False)


@pytest.mark.parametrize("length,size", [(10, 16), (16, 16), (17, 16), (48, 16), (40, 16), (200, 64), (65, 64)])
def test_windows_cover_the_axis_with_overlapping_windows_of_the_size(length, size):
    spans = window_spans(length, size)
    assert spans[0][0] == 0 and spans[-1][1] == length
    if length <= size:
        assert spans == [(0, length)]
        return
    assert all(b - a == size for a, b in spans)
    assert all(a1 < b0 and a1 - a0 <= 3 * size // 4 for (a0, b0), (a1, _b1) in zip(spans, spans[1:]))


def test_one_window_is_exactly_the_global_attention(block, tiny, latents):
    x = smooth(32, 12, 10)
    with torch.inference_mode():
        assert torch.equal(block(x, WindowedAttention(16)), block(x))
        # cells of one position: the far field would hold every key exactly; global runs instead
        assert WindowedAttention(4, far_grid=16).plan(12, 10) is None
        assert torch.equal(block(x, WindowedAttention(4, far_grid=16)), block(x))
        # where it does window, the result differs (so the equalities above say something)
        assert WindowedAttention(4, far_grid=4).plan(12, 10) is not None
        assert not torch.equal(block(x, WindowedAttention(4, far_grid=4)), block(x))
    # the whole decoder and encoder: 48x40 latents fit in the default 512 px window
    glob = tiny.decode(latents, precision="fp32", tile=False)
    win = tiny.decode(latents, precision="fp32", tile=False, attention="window")
    assert torch.equal(win.images, glob.images) and win.attention == "global" and win.attention_windows == 1
    enc_g = tiny.encode(glob.images, precision="fp32", tile=False)
    enc_w = tiny.encode(glob.images, precision="fp32", tile=False, attention="window")
    assert torch.equal(enc_w.latents, enc_g.latents)


def test_far_field_of_single_positions_restores_the_global_attention(block):
    """With cells of one position the window plus its far field sees every key exactly, so the
    masking of the window's own cells and the count bias are checked against global attention."""
    x = smooth(32, 20, 17, seed=1)
    spec = WindowedAttention(8)
    ys, xs = window_spans(20, 8), window_spans(17, 8)
    with torch.inference_mode():
        n = block.norm(x)
        got = block.proj_out(block._windowed(n, ys, xs, 1, spec)) + x
        pure = block.proj_out(block._windowed(n, ys, xs, 0, spec)) + x
        want = block(x)
    assert (got - want).abs().max() < 1e-4
    assert (pure - want).abs().max() > 1e-2  # without the far field it is not


def test_windowed_decode_is_close_to_global_and_far_field_helps(tiny, latents, small_far_field):
    glob = tiny.decode(latents, precision="fp32", tile=False)
    win = tiny.decode(latents, precision="fp32", tile=False, attention="window", attention_window=128)
    assert win.attention == "window" and win.attention_windows == len(window_spans(48, 16)) * len(window_spans(40, 16))
    assert win.to_dict()["attention"] == "window"
    assert not torch.equal(win.images, glob.images)
    db = psnr(win.images, glob.images)
    assert db > 30, db
    # the same windows without the far field lose more (what the far field is for)
    raw = families.from_diffusion(latents, tiny.scale, tiny.shift)
    with torch.inference_mode():
        pure = tiny._model.decode(raw.contiguous(memory_format=torch.channels_last),
                                  WindowedAttention(16, far_grid=0)).clamp(-1, 1)
    assert psnr(pure, glob.images) < db


def test_windowed_and_tiled_equals_windowed_whole(tiny, latents, small_far_field):
    whole = tiny.decode(latents, precision="fp32", tile=False, attention="window", attention_window=128)
    tiled = tiny.decode(latents, precision="fp32", tile=128, attention="window", attention_window=128)
    assert tiled.tiled and tiled.tiles > 1 and tiled.attention == "window"
    assert psnr(tiled.images, whole.images) > 60 and (tiled.images - whole.images).abs().max() < 1e-3
    # the encoder's attention too (its latent is 48x40 as well)
    image = whole.images
    e_whole = tiny.encode(image, precision="fp32", tile=False, attention="window", attention_window=128)
    e_tiled = tiny.encode(image, precision="fp32", tile=128, attention="window", attention_window=128)
    e_glob = tiny.encode(image, precision="fp32", tile=False)
    assert e_whole.attention == "window" and e_tiled.tiled
    assert (e_tiled.latents - e_whole.latents).abs().max() < 1e-3
    assert not torch.equal(e_whole.latents, e_glob.latents)


def test_progress_counts_windows_and_cancel_stops_between_them(tiny, latents, small_far_field):
    calls = []
    res = tiny.decode(latents, precision="fp32", tile=False, attention="window", attention_window=128,
                      progress=lambda done, total: calls.append((done, total)))
    total = res.attention_windows
    assert calls == [(i, total) for i in range(1, total + 1)]

    stop, seen = threading.Event(), []

    def progress(done, total):
        seen.append(done)
        stop.set()  # Stop pressed while the first window ran

    with pytest.raises(Cancelled):
        tiny.decode(latents, precision="fp32", tile=False, attention="window", attention_window=128,
                    progress=progress, cancel=stop)
    assert seen == [1]  # stopped before the second window, not after the attention


def test_bad_attention_options_are_one_line_errors(tiny, latents):
    for kw, needle in (({"attention": "fast"}, "'global', 'window'"), ({"attention": None}, "attention must be"),
                       ({"attention": "window", "attention_window": 10}, "at least 64"),
                       ({"attention": "window", "attention_window": "512"}, "whole number")):
        with pytest.raises(BadOption, match=needle) as err:
            tiny.decode(latents, **kw)
        assert isinstance(err.value, VaeLabError) and "\n" not in str(err.value)
    with pytest.raises(BadOption):
        tiny.encode(torch.zeros(1, 3, 64, 64), attention="local")


@pytest.fixture
def cli_files(tmp_path, monkeypatch, latents):
    monkeypatch.setenv("VAE_LAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path / "cache"))
    vae = tmp_path / "tiny-kl.safetensors"
    save_file(random_kl_state_dict(TINY_KL, seed=11), str(vae))
    lat = tmp_path / "z.safetensors"
    save_latents(str(lat), latents * 0.18215, family="sd1")
    return vae, lat


def test_cli_decode_and_compare_take_attention_window(cli_files, tmp_path, capsys, small_far_field):
    vae, lat = cli_files
    base = ["decode", "--latents", str(lat), "--vae", str(vae), "--precision", "fp32", "--tile", "0", "--json"]
    assert main(base + ["--out", str(tmp_path / "g.png")]) == 0
    g = json.loads(capsys.readouterr().out)
    assert g["attention"] == "global" and g["attention_windows"] == 1
    assert main(base + ["--out", str(tmp_path / "w.png"), "--attention", "window", "--attention-window", "128"]) == 0
    w = json.loads(capsys.readouterr().out)
    assert w["attention"] == "window" and w["attention_windows"] > 1
    assert (tmp_path / "w.png").read_bytes() != (tmp_path / "g.png").read_bytes()
    # the text line says the attention was windowed
    assert main(base[:-1] + ["--out", str(tmp_path / "t.png"), "--attention", "window", "--attention-window", "128"]) == 0
    assert "windowed attention" in capsys.readouterr().out

    out = tmp_path / "cmp"
    assert main(["compare", "--latents", str(lat), "--vae", str(vae), "--reference", str(vae), "--precision", "fp32",
                 "--tile", "off", "--attention", "window", "--attention-window", "128", "--out", str(out),
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["settings"]["attention"] == "window" and doc["results"][0]["attention"] == "window"
    # the reference is decoded the same way, so the same VAE matches it exactly
    assert doc["results"][0]["psnr_infinite"] is True


def test_cli_bad_attention_is_a_one_line_error(cli_files, tmp_path, capsys):
    vae, lat = cli_files
    assert main(["decode", "--latents", str(lat), "--vae", str(vae), "--out", str(tmp_path / "x.png"),
                 "--attention", "fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "'global', 'window'" in err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit):
        main(["decode", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--attention global|window" in text and "default: exact" in text and "dB" in text
