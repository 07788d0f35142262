"""What a run leaves to download: the metrics as CSV and JSON (with the source image's name
and size, each VAE's A1111 "VAE hash" and weights id, paths relative to the VAE folders),
the grid at 1:1 as PNG, each decode at full resolution as PNG, and all of it in one zip.

File names start with the image's name and the time of the run, so a folder of downloads
from several runs stays readable: `astronaut_20261201-101500_grid.png`.
"""

from __future__ import annotations

import os
import re
import time
import zipfile
from pathlib import Path


GRID_MAX_TILE = 2048


def safe_stem(name: str | None, fallback: str = "latents") -> str:
    """A file-name-safe stem of `name` ('my photo (1).png' -> 'my_photo_1')."""
    stem = os.path.splitext(os.path.basename(name or ""))[0]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return stem[:60] or fallback


def run_stem(source_name: str | None, when: float | None = None) -> str:
    return f"{safe_stem(source_name)}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"


def _png(img, path: str) -> None:
    from PIL import Image

    Image.fromarray(img).save(path, compress_level=3)


def write_downloads(result, folder: str, *, stem: str | None = None, relative_to=None) -> list[str]:
    """The run's files in `folder`: metrics CSV/JSON, the grid PNG, a full-resolution PNG per
    decoded VAE (and the reference), and a zip of all of them. Returns their paths, the most
    wanted first."""
    os.makedirs(folder, exist_ok=True)
    stem = stem or run_stem((result.source or {}).get("name"))
    paths = []
    for suffix, text in (("metrics.csv", result.to_csv(relative_to)), ("metrics.json", result.to_json(relative_to))):
        p = os.path.join(folder, f"{stem}_{suffix}")
        Path(p).write_text(text, encoding="utf-8")
        paths.append(p)
    grid = os.path.join(folder, f"{stem}_grid.png")
    sizes = [max(img.shape[:2]) for _, img in result.entries() if img is not None]
    # 1:1 up to 2048 px a side (larger images: their zoomed-crop grid is the 1:1 one)
    result.grid(tile=min(max(sizes, default=256), GRID_MAX_TILE)).save(grid, compress_level=3)
    images = []
    used: set[str] = set()
    for label, img in result.entries():
        if img is None:
            continue
        name = safe_stem(label, "image")
        while name in used:
            name += "_"
        used.add(name)
        p = os.path.join(folder, f"{stem}_{name}.png")
        _png(img, p)
        images.append(p)
    archive = os.path.join(folder, f"{stem}_all.zip")
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:  # PNGs are compressed already
        for p in [*paths, grid, *images]:
            z.write(p, arcname=os.path.basename(p))
    return [archive, grid, *paths, *images]


def crop_grid(result, box, folder: str, *, stem: str | None = None) -> str:
    """The grid of one region of every image at 1:1 (the region the viewer is zoomed to).

    `box` = (x, y, w, h) as fractions of the image; the PNG is written to `folder`.
    """
    from vae_lab.compare.grid import Tile, make_grid
    from vae_lab.compare.report import caption_lines

    x, y, w, h = (min(max(float(v), 0.0), 1.0) for v in box)
    tiles = []

    def crop(img):
        H, W = img.shape[:2]
        x0, y0 = int(x * W), int(y * H)
        x1, y1 = max(x0 + 1, min(W, round((x + w) * W))), max(y0 + 1, min(H, round((y + h) * H)))
        return img[y0:y1, x0:x1]

    if result.reference_image is not None:
        tiles.append(Tile(crop(result.reference_image), result.reference_label or "reference", ["reference"]))
    for o in result.outcomes:
        tiles.append(Tile(crop(o.image) if o.image is not None else None, o.name, caption_lines(o)[:1], error=o.error))
    sizes = [t.image.shape[:2] for t in tiles if t.image is not None]
    longest = max((max(s) for s in sizes), default=256)
    stem = stem or run_stem((result.source or {}).get("name"))
    path = os.path.join(folder, f"{stem}_crop_{int(x * 100)}-{int(y * 100)}.png")
    make_grid(tiles, tile=longest).save(path, compress_level=3)  # tile = the crop's own size: 1:1
    return path
