"""The grid PNG's text on every supported Pillow: 10.x's scalable font and 9.5's latin-1 bitmap font
(A1111's pin), which cannot encode "…", "—" or "·" and used to end a comparison in a bare error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFont

from vae_lab.compare import grid
from vae_lab.compare.grid import Tile, make_grid

ERROR = ("taef2_decoder.pth — cannot decode 16-channel latents · this is a FLUX.2 decoder … "
         "Ünïcödé, 日本語, “quotes” → arrows")


def bitmap_font(size):
    """The fixed bitmap font Pillow < 10.1 falls back to (load_default_imagefont on 10.1+)."""
    return getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()


@pytest.fixture(params=["this-pillow", "bitmap-font"])
def fonts(request, monkeypatch):
    if request.param == "bitmap-font":
        monkeypatch.setattr(grid, "_font", bitmap_font)
    return request.param


def _photo(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _band_has_text(img: Image.Image, box) -> bool:
    band = np.asarray(img.crop(box))
    return bool((band != np.array(grid.BACKGROUND, dtype=np.uint8)).any())


def test_a_failed_cell_with_non_latin1_text_is_drawn(fonts):
    tiles = [Tile(_photo(256, 256), "reference", ["input · 256×256"]),
             Tile(None, "taef2_decoder.pth — FLUX.2", ["decode failed …"], error=ERROR)]
    img = make_grid(tiles, columns=2)
    assert img.mode == "RGB" and img.width >= 2 * 256
    # the error cell is grey with the error's text in it
    px = np.asarray(img)
    assert (px == np.array(grid.ERROR_FILL, dtype=np.uint8)).all(axis=2).any()
    assert (px == np.array(grid.ERROR_TEXT, dtype=np.uint8)).all(axis=2).any()


def test_a_narrow_image_and_a_64px_generation_cut_their_captions(fonts):
    for image in (_photo(256, 24, 1), _photo(64, 64, 2)):
        long = "vae-ft-mse-840000-ema-pruned.safetensors — SD 1.x · fp32 (after NaN in fp16) …"
        tiles = [Tile(image, long, ["decode 0.12 s · encode 0.05 s", "PSNR 31.2 dB · SSIM 0.91"])] * 2
        img = make_grid(tiles, columns=2)
        assert img.height > image.shape[0]  # caption band above the images
        assert _band_has_text(img, (0, 0, img.width, grid.PAD + 10))


def test_drawable_text_keeps_unicode_for_truetype_and_spells_it_in_latin1_for_the_bitmap_font():
    bitmap = bitmap_font(12)
    text = grid._drawable("a … b — c · d 日", bitmap)
    text.encode("latin-1")  # what the bitmap font does with it; must not raise
    assert text.startswith("a ... b - c | d")
    scalable = grid._font(14)
    if isinstance(scalable, ImageFont.FreeTypeFont):
        assert grid._drawable("a … b", scalable) == "a … b"
