"""`python -m vae_lab compare` end to end: the TAEF2 round trip of the astronaut, equal to skimage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from testkit.factories import TINY_KL, random_kl_state_dict
from vae_lab.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def astro_png(astronaut, tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(astronaut).save(p)
    return str(p)


@pytest.fixture(scope="module")
def kl_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("vae") / "tiny_kl.safetensors"
    save_file(random_kl_state_dict(TINY_KL, seed=11), str(p))
    return str(p)


def test_taef2_astronaut_json_equals_skimage(taef2_pair, astronaut, astro_png, tmp_path, capsys):
    dec, _ = taef2_pair
    out = tmp_path / "out"
    rc = main(["compare", "--image", astro_png, "--vae", str(dec), "--precision", "fp32", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads(captured.out)
    (row,) = doc["results"]
    assert row["error"] is None and row["precision"] == "fp32"
    decoded = np.asarray(Image.open(doc["files"]["01-taef2_decoder.png"]).convert("RGB"))
    assert decoded.shape == astronaut.shape
    want_psnr = peak_signal_noise_ratio(astronaut, decoded, data_range=255)
    want_ssim = structural_similarity(
        astronaut, decoded, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1, data_range=255
    )
    assert abs(row["psnr"] - want_psnr) < 0.01
    assert abs(row["ssim"] - want_ssim) < 0.001
    assert 28 < row["psnr"] < 40  # TAEF2 is a good autoencoder: not noise, not identity
    # everything that was promised is on disk
    for name in ("00-reference.png", "01-taef2_decoder.png", "diff.png", "grid.png", "metrics.csv", "metrics.json"):
        assert (out / name).is_file(), name
    assert np.array_equal(np.asarray(Image.open(out / "00-reference.png")), astronaut)
    assert json.loads((out / "metrics.json").read_text())["results"][0]["psnr"] == row["psnr"]
    assert doc["lpips_note"]  # no LPIPS weights on this machine: the column says why


def test_text_table_failed_entry_and_exit_status(taef2_pair, astronaut, tmp_path, kl_file, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(astronaut[::4, ::4]).save(small)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a vae at all")
    rc = main(["compare", "--image", str(small), "--vae", kl_file, "--vae", str(broken), "--precision", "fp32",
               "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert rc == 1  # one entry failed, the other ran
    lines = captured.out.splitlines()
    assert lines[0].split()[:2] == ["VAE", "family"]
    kl_line = next(line for line in lines if line.startswith("tiny_kl.safetensors"))
    assert "fp32" in kl_line and "n/a" in kl_line  # LPIPS column: no local weights
    assert any(line.startswith("broken.safetensors") and "broken.safetensors" in line[20:] for line in lines)
    assert "Traceback" not in captured.err


def test_latent_file_with_reference(kl_file, tmp_path, capsys):
    lat = tmp_path / "lat.pt"  # a bare tensor, as torch.save writes it
    torch.save(torch.randn(2, 4, 6, 5, generator=torch.Generator().manual_seed(1)), lat)
    other = tmp_path / "other.safetensors"
    save_file(random_kl_state_dict(TINY_KL, seed=12), str(other))
    rc = main(["compare", "--latents", str(lat), "--vae", str(other), "--vae", kl_file, "--reference", kl_file,
               "--batch-index", "1", "--precision", "fp32", "--out", str(tmp_path / "o"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    a, b = doc["results"]
    assert doc["mode"] == "latents" and doc["reference"] == "tiny_kl.safetensors (fp32)"
    assert a["psnr"] is not None and a["ssim"] is not None
    assert b["psnr"] is None and b["psnr_infinite"] is True  # the reference VAE itself, at fp32
    ref = np.asarray(Image.open(doc["files"]["00-reference.png"]))
    assert ref.shape == (48, 40, 3)  # 6x5 latents, f8
    assert doc["settings"]["batch_index"] == 1


def test_bad_input_exits_2_with_one_line(tmp_path, kl_file, astro_png, capsys):
    rc = main(["compare", "--image", str(tmp_path / "missing.png"), "--vae", kl_file, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "missing.png" in err

    # never overwrites: an --out that already holds our files is refused and left alone
    out = tmp_path / "taken"
    out.mkdir()
    (out / "grid.png").write_bytes(b"precious")
    rc = main(["compare", "--image", astro_png, "--vae", kl_file, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "grid.png" in err
    assert (out / "grid.png").read_bytes() == b"precious"

    rc = main(["compare", "--image", astro_png, "--vae", kl_file, "--reference", kl_file, "--out", str(tmp_path / "r")])
    assert rc == 2 and "latent mode" in capsys.readouterr().err


def test_cli_process_usage_error_has_no_traceback(kl_file):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "vae_lab", "compare", "--vae", kl_file], capture_output=True, text=True, cwd=ROOT, env=env)
    assert p.returncode == 2 and "one of the arguments --image --latents is required" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_mixed_selection_compares_by_default(taef2_pair, astro_png, kl_file, tmp_path, capsys):
    """TAEF2 (32 channels) first and a kl-f8 VAE (4 channels): each latent space gets its own
    encoder by default, so neither is refused (the old default refused the kl-f8 VAE)."""
    dec, enc = taef2_pair
    small = tmp_path / "small.png"
    Image.open(astro_png).resize((64, 64)).save(small)
    rc = main(["compare", "--image", str(small), "--vae", str(dec), "--vae", kl_file, "--precision", "fp32",
               "--out", str(tmp_path / "out"), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = json.loads(captured.out)["results"]
    assert [r["error"] for r in rows] == [None, None]
    assert rows[1]["encoder"] == "tiny_kl.safetensors" and rows[0]["encoder"].startswith("taef2")
