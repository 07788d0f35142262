"""The side-by-side grid: one labelled tile per image, for the PNG the comparison writes.

Each tile is the image (scaled to a common size, never up-sampled past its own size
unless it is smaller than the others) under a caption band: the name in bold-ish first
line, then a line or two of details. An entry without an image (a VAE that failed) gets a
grey tile with its error, wrapped, so the grid always shows every VAE that was asked for.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

BACKGROUND = (24, 24, 27)
CAPTION = (235, 235, 235)
DETAIL = (170, 170, 175)
ERROR_FILL = (60, 60, 64)
ERROR_TEXT = (255, 140, 120)
PAD = 8


@dataclass
class Tile:
    image: Any  # HxWx3 uint8 array, PIL image, or None (then `error` is shown)
    label: str
    lines: list[str] = field(default_factory=list)
    error: str | None = None


def _font(size: int):
    """A scalable font where there is one: Pillow 10.1+'s built-in one, else DejaVu Sans when the
    system has it (Pillow 9.5, A1111's pin, has only a fixed latin-1 bitmap font, the last resort)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        pass
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)  # found in the system's font folders
    except OSError:
        return ImageFont.load_default()


# What the bitmap font cannot draw (it encodes text as latin-1), spelled with what it can.
_LATIN1 = str.maketrans({"…": "...", "—": "-", "–": "-", "·": "|", "→": "->", "←": "<-", "‘": "'", "’": "'",
                         "“": '"', "”": '"', "≈": "~", "≤": "<=", "≥": ">=", "−": "-", "•": "*"})


def _drawable(text: str, font) -> str:
    """`text` as `font` can draw it: unchanged for a TrueType font, latin-1 for the bitmap one."""
    from PIL import ImageFont

    if isinstance(font, ImageFont.FreeTypeFont):
        return text
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def _text_width(draw, text, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), _drawable(text, font), font=font)
    return right - left


def _fit(draw, text, font, width) -> str:
    """`text` as `font` can draw it, cut with an ellipsis so it fits `width` pixels."""
    text = _drawable(text, font)
    if _text_width(draw, text, font) <= width:
        return text
    ellipsis = _drawable("…", font)
    while text and _text_width(draw, text + ellipsis, font) > width:
        text = text[:-1]
    return text + ellipsis


def make_grid(tiles: list[Tile], *, columns: int | None = None, tile: int | None = None):
    """A PIL RGB image with `tiles` in rows of `columns` (default: up to 4 per row).

    `tile` is the longer side of each image cell in pixels (default: the largest image's,
    capped at 768), so a grid of 512² decodes stays at full resolution.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    if not tiles:
        raise ValueError("nothing to put in a grid")
    pics: list = []
    for t in tiles:
        if t.image is None:
            pics.append(None)
        elif isinstance(t.image, Image.Image):
            pics.append(t.image.convert("RGB"))
        else:
            pics.append(Image.fromarray(np.asarray(t.image, dtype=np.uint8)))
    sizes = [p.size for p in pics if p is not None]
    cell = tile or (min(768, max(max(s) for s in sizes)) if sizes else 256)
    # the cell keeps the aspect of the first real image (all decodes of one input share it)
    aw, ah = sizes[0] if sizes else (1, 1)
    if aw >= ah:
        cw, ch = cell, max(1, round(cell * ah / aw))
    else:
        cw, ch = max(1, round(cell * aw / ah)), cell
    columns = max(1, min(columns or 4, len(tiles)))
    rows = (len(tiles) + columns - 1) // columns

    label_font, detail_font = _font(max(12, cw // 28)), _font(max(10, cw // 36))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lh_label = probe.textbbox((0, 0), "Ag", font=label_font)[3] + 4
    lh_detail = probe.textbbox((0, 0), "Ag", font=detail_font)[3] + 3
    n_lines = max((len(t.lines) for t in tiles), default=0)
    band = PAD + lh_label + n_lines * lh_detail + PAD // 2

    W = columns * cw + (columns + 1) * PAD
    H = rows * (ch + band) + (rows + 1) * PAD
    canvas = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for idx, (t, pic) in enumerate(zip(tiles, pics)):
        r, c = divmod(idx, columns)
        x = PAD + c * (cw + PAD)
        y = PAD + r * (ch + band + PAD)
        draw.text((x, y), _fit(draw, t.label, label_font, cw), fill=CAPTION, font=label_font)
        for k, line in enumerate(t.lines):
            draw.text((x, y + lh_label + k * lh_detail), _fit(draw, line, detail_font, cw), fill=DETAIL, font=detail_font)
        iy = y + band
        if pic is not None:
            fitted = pic if pic.size == (cw, ch) else pic.resize((cw, ch), Image.Resampling.LANCZOS)
            canvas.paste(fitted, (x, iy))
        else:
            draw.rectangle((x, iy, x + cw - 1, iy + ch - 1), fill=ERROR_FILL)
            chars = max(12, cw // max(1, _text_width(draw, "M", detail_font)) * 3 // 2)
            wrapped = textwrap.wrap(t.error or "no image", width=chars)[: max(1, (ch - 2 * PAD) // lh_detail)]
            for k, line in enumerate(wrapped):
                draw.text((x + PAD, iy + PAD + k * lh_detail), _fit(draw, line, detail_font, cw - 2 * PAD), fill=ERROR_TEXT, font=detail_font)
    return canvas
