"""Hostile images and special files: bounded pixels, regular files only, one loader.

Before: a decompression bomb was a traceback, a FIFO given as an image (or sitting in the
VAE folder) hung `encode`/`compare`/`catalog`, 16-bit greyscale came out white, the CLI
ignored EXIF orientation that the tab applied, and a dangling link stopped the VAE scan.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import hostile as H


@pytest.fixture
def vae(tmp_path):
    return H.tiny_vae_file(tmp_path / "tiny.safetensors")


def _refused(tmp_path, args, *words):
    before = H.files_under(tmp_path)
    msg = H.assert_refused(H.run_cli(*args, cwd=tmp_path), *words)
    assert H.files_under(tmp_path) == before, "the run wrote a file"
    return msg


def _encode(img, vae, tmp_path):
    return ["encode", "--image", img, "--vae", vae, "--out", tmp_path / "lat.safetensors", "--precision", "fp32"]


@pytest.mark.parametrize("size", [(60000, 60000), (10000, 10000)])  # past Pillow's own limit, and past ours only
def test_decompression_bomb_is_refused(tmp_path, vae, size):
    from vae_lab.files.imaging import MAX_IMAGE_PIXELS

    img = H.png_bomb(tmp_path / "bomb.png", *size)
    assert img.stat().st_size < 200_000
    _refused(tmp_path, _encode(img, vae, tmp_path), str(img), f"{MAX_IMAGE_PIXELS:,}")


@pytest.mark.parametrize("command", ["encode", "compare"])
def test_fifo_as_image_is_refused_not_waited_on(tmp_path, vae, command):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    args = _encode(fifo, vae, tmp_path) if command == "encode" else [
        "compare", "--image", fifo, "--vae", vae, "--out", tmp_path / "cmp", "--precision", "fp32"]
    _refused(tmp_path, args, "FIFO", "regular")


def test_link_to_a_device_as_image_is_refused(tmp_path, vae):
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    _refused(tmp_path, _encode(link, vae, tmp_path), "device")


def test_eps_is_not_handed_to_ghostscript(tmp_path, vae):
    eps = tmp_path / "x.png"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto showpage\n")
    _refused(tmp_path, _encode(eps, vae, tmp_path), "not a readable image")


def test_catalog_dir_skips_special_files(tmp_path, vae):
    folder = tmp_path / "VAE"
    folder.mkdir()
    os.mkfifo(folder / "pipe.safetensors")
    (folder / "zero.safetensors").symlink_to("/dev/zero")
    (folder / "gone.safetensors").symlink_to(folder / "missing.safetensors")
    os.link(vae, folder / "tiny.safetensors")
    proc = H.run_cli("catalog", "--dir", folder, "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    text = json.dumps(report)
    assert "tiny.safetensors" in text
    for special in ("pipe.safetensors", "zero.safetensors", "gone.safetensors"):
        assert special not in text


def test_vae_scan_skips_dangling_links_and_fifos(tmp_path, vae):
    """What `serve` (and the tab) list at start-up: a dangling link used to stop it."""
    from vae_lab.ui.tab import scan_vae_dirs

    folder = tmp_path / "VAE"
    folder.mkdir()
    (folder / "gone.safetensors").symlink_to(folder / "missing.safetensors")
    os.mkfifo(folder / "pipe.pt")
    os.link(vae, folder / "tiny.safetensors")
    entries = scan_vae_dirs([str(folder)])
    assert [os.path.basename(e.path) for e in entries] == ["tiny.safetensors"]
    assert entries[0].error is None


# --- bit depth and orientation: in process, both loaders -------------------------------------------


def _gray16(value: int, mode: str):
    from PIL import Image

    dtype = {"I;16": "<u2", "I;16B": ">u2"}[mode]
    return Image.frombytes(mode, (4, 4), np.full((4, 4), value, dtype=dtype).tobytes())


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16bit_greyscale_is_scaled_not_white(mode):
    from vae_lab.files.imaging import image_to_rgb8

    out = image_to_rgb8(_gray16(32768, mode))
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert np.all(out == 128), out[0, 0]


def test_16bit_greyscale_png_file(tmp_path):
    from PIL import Image

    from vae_lab.files.imaging import load_image_array

    path = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 16384, dtype=np.uint16)).save(path)  # opened as "I" or "I;16" by Pillow version
    assert np.all(load_image_array(path) == 64)


def test_32bit_int_and_float_modes():
    from PIL import Image

    from vae_lab.files.imaging import image_to_rgb8

    as_int = Image.fromarray(np.full((4, 4), 65535, dtype=np.int32), "I")
    unit_float = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), "F")
    byte_float = Image.fromarray(np.full((4, 4), 51.0, dtype=np.float32), "F")
    assert np.all(image_to_rgb8(as_int) == 255)
    assert np.all(image_to_rgb8(unit_float) == 128)
    assert np.all(image_to_rgb8(byte_float) == 51)


def test_16bit_rgb_png(tmp_path):
    from vae_lab.files.imaging import load_image_array

    path = H.png_rgb16(tmp_path / "rgb16.png", 4, 4, (0x8000, 0x4000, 0xFFFF))
    assert load_image_array(path)[0, 0].tolist() == [128, 64, 255]


def test_exif_orientation_same_in_cli_and_tab(tmp_path, vae):
    from PIL import Image

    from vae_lab.files.imaging import image_to_rgb8, load_image_array

    path = H.jpeg_with_orientation(tmp_path / "rot.jpg", 32, 16, 6)  # stored 32 wide, shown 16 wide
    cli = load_image_array(path)
    with Image.open(path) as im:  # what the tab gets from Gradio (which may rotate it already)
        tab = image_to_rgb8(im)
    assert cli.shape == (32, 16, 3)
    assert np.array_equal(cli, tab)
    assert cli[0, 0, 2] > 150 and cli[-1, 0, 0] > 150  # rotated 90° clockwise: blue on top, red below

    proc = H.run_cli(*_encode(path, vae, tmp_path), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["image_size"] == [32, 16]


def test_tab_upload_goes_through_the_same_loader(tmp_path, vae):
    """The tab reads the uploaded file itself; 16-bit, EXIF and the pixel bound as in the CLI."""
    from PIL import Image

    from vae_lab.errors import VaeLabError
    from vae_lab.ui import tab, vae_ids

    logic = tab.TabLogic(tab.UiContext(vae_dirs=[str(tmp_path)], last_latents=lambda: None))
    chosen = [vae_ids.vae_id(e) for e in logic.context.entries()]  # the ids the page is given
    args = (tab.ENCODER_FIRST, "fp32", "off", tab.NO_REFERENCE)
    gray = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(gray)
    req, _ = logic.request(tab.SOURCE_IMAGE, str(gray), None, chosen, *args)
    assert req.image.shape == (8, 8, 3) and np.all(req.image == 128)
    rotated = H.jpeg_with_orientation(tmp_path / "rot.jpg", 32, 16, 6)
    assert logic.request(tab.SOURCE_IMAGE, str(rotated), None, chosen, *args)[0].image.shape == (32, 16, 3)
    bomb = H.png_bomb(tmp_path / "bomb.png", 10000, 10000)
    with pytest.raises(VaeLabError):
        logic.request(tab.SOURCE_IMAGE, str(bomb), None, chosen, *args)
