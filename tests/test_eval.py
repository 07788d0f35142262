"""`python -m vae_lab eval`: dataset mean +/- std equal to per-image round trips measured by skimage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vae_lab.cli.main import main
from vae_lab.compare.evaluate import evaluate, list_images, prepare_image

SIZE = 64


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()[::2, ::2]).save(d / "a_astronaut.png")  # square
    Image.fromarray(data.coffee()[::3, ::3]).save(d / "b_coffee.jpg", quality=95)  # landscape
    Image.fromarray(data.chelsea()[:, :150]).save(d / "c_chelsea.webp")  # portrait
    (d / "notes.txt").write_text("not an image, not listed")
    return d


def test_prepare_is_center_crop_then_bicubic_resize(photo_dir):
    img = prepare_image(str(photo_dir / "b_coffee.jpg"), SIZE)
    src = Image.open(photo_dir / "b_coffee.jpg").convert("RGB")
    w, h = src.size
    left = (w - h) // 2
    want = np.asarray(src.crop((left, 0, left + h, h)).resize((SIZE, SIZE), Image.BICUBIC))
    assert img.shape == (SIZE, SIZE, 3) and np.array_equal(img, want)
    assert [p.rsplit("/", 1)[1] for p in list_images(str(photo_dir))] == ["a_astronaut.png", "b_coffee.jpg", "c_chelsea.webp"]


def test_eval_mean_std_equal_per_image_skimage(taef2_pair, photo_dir, capsys):
    from vae_lab.runtime.engine import load_vae
    from vae_lab.files.imaging import array_to_tensor, tensor_to_array

    dec, _ = taef2_pair
    rc = main(["eval", "--images", str(photo_dir), "--vae", str(dec), "--size", str(SIZE), "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["images"] == 3 and doc["size"] == SIZE and "center crop" in doc["preparation"]
    (row,) = doc["results"]

    # the oracle: each image prepared, round-tripped by the same VAE, measured by skimage
    vae = load_vae(str(dec))
    ps, ss = [], []
    for p in list_images(str(photo_dir)):
        img = prepare_image(p, SIZE)
        out = tensor_to_array(vae.decode(vae.encode(array_to_tensor(img)).latents, size=img.shape[:2]).images)[0]
        ps.append(peak_signal_noise_ratio(img, out, data_range=255))
        ss.append(structural_similarity(img, out, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        channel_axis=-1, data_range=255))
    assert row["images"] == 3 and row["failed"] == 0
    assert row["psnr_mean"] == pytest.approx(np.mean(ps), abs=0.01)
    assert row["psnr_std"] == pytest.approx(np.std(ps), abs=0.01)
    assert row["ssim_mean"] == pytest.approx(np.mean(ss), abs=0.001)
    assert row["psnr"] == f"{np.mean(ps):.1f} +/- {np.std(ps):.1f}"
    assert row["lpips"] is None and doc["lpips_note"] and doc["rfid_note"].startswith("rFID")


def test_eval_text_table_with_failures(taef2_pair, photo_dir, tmp_path, capsys):
    import shutil

    dec, _ = taef2_pair
    d = tmp_path / "imgs"
    shutil.copytree(photo_dir, d)
    (d / "z_broken.png").write_bytes(b"\x89PNG not really")
    broken_vae = tmp_path / "bad.safetensors"
    broken_vae.write_bytes(b"nope")
    rc = main(["eval", "--images", str(d), "--vae", str(dec), "--vae", str(broken_vae), "--size", "32", "--limit", "2"])
    out = capsys.readouterr().out
    assert rc == 1  # a VAE failed: the table still shows the other one
    line = next(x for x in out.splitlines() if x.startswith("taef2_decoder.pth"))
    assert " +/- " in line and line.split()[1] == "2"
    assert "bad.safetensors" in out and "2 failed" in out
    assert "rFID: not computed" in out


def test_eval_skips_unreadable_images(taef2_pair, photo_dir, tmp_path):
    dec, _ = taef2_pair
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"garbage")
    res = evaluate([str(bad), str(photo_dir / "a_astronaut.png")], [str(dec)], size=32, progress_bar=False)
    assert len(res.images) == 1 and res.skipped_images[0][0] == str(bad)
    assert len(res.rows[0].psnr) == 1


def test_eval_bad_input(tmp_path, capsys):
    rc = main(["eval", "--images", str(tmp_path / "nowhere"), "--vae", "x.safetensors"])
    err = capsys.readouterr().err
    assert rc == 2 and "nowhere" in err and err.count("\n") == 1
    rc = main(["eval", "--images", str(tmp_path), "--vae", "x.safetensors"])
    assert rc == 2 and "no images" in capsys.readouterr().err


def test_eval_under_torchrun_with_two_processes_equals_one_process(photo_dir, tmp_path):
    """Data-parallel eval: 2 gloo processes, each a shard of the images, gathered on rank 0."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import save_file

    from factories import TINY_KL, random_kl_state_dict

    vae = tmp_path / "tiny.safetensors"
    save_file(random_kl_state_dict(TINY_KL, seed=3), str(vae))
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), VAE_LAB_STATE_DIR=str(tmp_path / "state"), OMP_NUM_THREADS="1")
    args = ["-m", "vae_lab", "eval", "--images", str(photo_dir), "--vae", str(vae), "--size", "32",
            "--precision", "fp32", "--device", "cpu", "--json"]
    one = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=600)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *args], env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout[two.stdout.index("{"):])
    for r in a["results"] + b["results"]:
        r.pop("decode_seconds_mean")  # timings differ; everything else must not
    assert a == b and a["images"] == 3 and a["results"][0]["psnr_mean"] is not None
