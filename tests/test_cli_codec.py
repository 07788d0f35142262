"""`python -m vae_lab encode/decode` and latent files, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from factories import TINY_KL, random_kl_state_dict
from vae_lab.cli.main import main
from vae_lab.files.latents import TENSOR_NAME, BadLatentFile, load_latents, save_latents


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_LAB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_vae_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vae") / "tiny-kl.safetensors"
    save_file(random_kl_state_dict(TINY_KL, seed=2), str(path))
    return path


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def fails(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    assert needle in err, err


def test_encode_decode_round_trip_with_taef2(taef2_pair, astronaut, tmp_path, capsys):
    dec, enc = taef2_pair
    src = tmp_path / "face.png"
    Image.fromarray(astronaut[:203, 130:381]).save(src)  # 251x203: not multiples of 8
    lat_path = tmp_path / "face.safetensors"
    e = run_json(capsys, ["encode", "--image", str(src), "--vae", str(enc), "--out", str(lat_path)])
    assert e["latents_shape"] == [1, 32, 26, 32] and e["image_size"] == [203, 251] and e["family"] == "flux2"
    lat, meta = load_latents(lat_path)
    assert meta["family"] == "flux2" and meta["image_size"] == "203x251" and lat.shape == (1, 32, 26, 32)

    out = tmp_path / "face-decoded.png"
    d = run_json(capsys, ["decode", "--latents", str(lat_path), "--vae", str(dec), "--out", str(out),
                          "--precision", "fp32", "--tile", "0"])
    assert d["out"] == [str(out)] and d["image_size"] == [203, 251]
    for key in ("precision_used", "fallback", "tiled", "seconds", "peak_memory_bytes"):
        assert key in d
    assert d["precision_used"] == "fp32" and d["fallback"] == [] and d["tiled"] is False
    a = np.asarray(Image.open(src), dtype=np.float64)
    b = np.asarray(Image.open(out), dtype=np.float64)
    assert a.shape == b.shape
    psnr = 10 * np.log10(255**2 / ((a - b) ** 2).mean())
    assert psnr > 26


def test_decode_text_output_and_any_single_tensor_file(tiny_vae_file, tmp_path, capsys):
    lat = torch.randn(2, 4, 8, 6)
    pt = tmp_path / "z.pt"
    torch.save({"whatever_name": lat}, pt)
    out = tmp_path / "img.png"
    assert main(["decode", "--latents", str(pt), "--vae", str(tiny_vae_file), "--out", str(out), "--tile", "256"]) == 0
    text = capsys.readouterr().out
    assert "decoded 2 x 48x64" in text and "fp32" in text
    for i in (0, 1):
        assert Image.open(tmp_path / f"img-{i}.png").size == (48, 64)


def test_comfyui_samples_dict_and_3d_tensor_are_accepted(tmp_path):
    torch.save({"samples": torch.ones(1, 4, 5, 5)}, tmp_path / "a.pt")
    save_file({"x": torch.ones(4, 3, 3)}, str(tmp_path / "b.safetensors"))
    assert load_latents(tmp_path / "a.pt")[0].shape == (1, 4, 5, 5)
    assert load_latents(tmp_path / "b.safetensors")[0].shape == (1, 4, 3, 3)


def test_save_latents_writes_the_comfyui_convention(tmp_path):
    from safetensors import safe_open

    lat = torch.randn(1, 4, 6, 7)
    p = save_latents(tmp_path / "x.safetensors", lat, family="sdxl", image_size=(48, 50))
    with safe_open(p, "pt") as f:
        assert list(f.keys()) == [TENSOR_NAME]
        assert torch.equal(f.get_tensor(TENSOR_NAME), lat)
        assert f.metadata()["family"] == "sdxl"
    assert not list(tmp_path.glob("*.part"))


def test_bad_latent_files_are_one_line_errors(tmp_path, tiny_vae_file, capsys):
    save_file({"a": torch.ones(1, 4, 2, 2), "b": torch.ones(1, 4, 2, 2)}, str(tmp_path / "two.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BadLatentFile, match="holds 2 tensors"):
        load_latents(tmp_path / "two.safetensors")
    out = str(tmp_path / "o.png")
    base = ["decode", "--vae", str(tiny_vae_file), "--out", out]
    fails(capsys, base + ["--latents", str(tmp_path / "junk.safetensors")], "not a readable safetensors")
    fails(capsys, base + ["--latents", str(tmp_path / "missing.pt")], "no such latent file")
    save_file({TENSOR_NAME: torch.ones(1, 16, 4, 4)}, str(tmp_path / "c16.safetensors"))
    fails(capsys, base + ["--latents", str(tmp_path / "c16.safetensors")], "these have 16 channels")
    save_file({TENSOR_NAME: torch.ones(1, 4, 4, 4)}, str(tmp_path / "ok.safetensors"))
    ok = ["--latents", str(tmp_path / "ok.safetensors")]
    fails(capsys, base + ok + ["--tile", "big"], "--tile")
    fails(capsys, ["decode", "--vae", str(tiny_vae_file), "--out", str(tmp_path / "no" / "o.png")] + ok, "does not exist")
    fails(capsys, ["decode", "--vae", str(tiny_vae_file), "--out", str(tmp_path / "o.txt1")] + ok, "unknown image type")
    fails(capsys, ["decode", "--vae", str(tmp_path / "ok.safetensors"), "--out", out] + ok, "ok.safetensors")
    assert not (tmp_path / "o.png").exists()


def test_latent_file_family_decides_for_an_unknown_vae_and_family_overrides(tiny_vae_file, tmp_path, capsys):
    p = save_latents(tmp_path / "xl.safetensors", torch.randn(1, 4, 4, 4), family="sdxl")
    out = str(tmp_path / "o.png")
    # the random VAE's family is unknown: the file's family (SDXL) decides the scaling
    d = run_json(capsys, ["decode", "--latents", p, "--vae", str(tiny_vae_file), "--out", out])
    assert d["family"] == "sdxl"
    d = run_json(capsys, ["decode", "--latents", p, "--vae", str(tiny_vae_file), "--out", out, "--family", "sd1"])
    assert d["family"] == "sd1"


def test_encode_refuses_a_decoder_only_file(taef2_pair, tmp_path, astronaut, capsys):
    alone = tmp_path / "only_decoder.pth"
    alone.write_bytes(taef2_pair[0].read_bytes())
    img = tmp_path / "a.png"
    Image.fromarray(astronaut[:64, :64]).save(img)
    fails(capsys, ["encode", "--image", str(img), "--vae", str(alone), "--out", str(tmp_path / "z.safetensors")],
          "no encoder")
    fails(capsys, ["encode", "--image", str(tmp_path / "nope.png"), "--vae", str(alone), "--out",
                   str(tmp_path / "z.safetensors")], "no such image")
    assert not (tmp_path / "z.safetensors").exists()
