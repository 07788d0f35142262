"""Saving images (modules/images.py, reduced): `save_image` fires before_image_saved/image_saved and
writes the infotext as the PNG `parameters` chunk; `image_grid` tiles images."""

import math
import os

from PIL import Image, PngImagePlugin

from modules import paths_internal, script_callbacks
from modules.shared import opts

saved: list[str] = []  # stand-in only: paths written by save_image


def image_grid(imgs, batch_size=1, rows=None):
    if rows is None:
        rows = math.floor(math.sqrt(len(imgs)))
        while len(imgs) % rows != 0:
            rows -= 1
    cols = math.ceil(len(imgs) / rows)
    params = script_callbacks.ImageGridLoopParams(imgs, cols, rows)
    script_callbacks.image_grid_callback(params)
    w, h = max(i.size[0] for i in imgs), max(i.size[1] for i in imgs)
    grid = Image.new('RGB', size=(params.cols * w, params.rows * h), color='black')
    for i, img in enumerate(params.imgs):
        grid.paste(img, box=(i % params.cols * w, i // params.cols * h))
    return grid


def save_image(image, path, basename, seed=None, prompt=None, extension='png', info=None, short_filename=False,
               no_prompt=False, grid=False, pnginfo_section_name='parameters', p=None, existing_info=None,
               forced_filename=None, suffix="", save_to_dirs=None):
    """Save `image` under `path` (relative paths are under the data dir); returns (fullfn, None)."""
    path = path or os.path.join(paths_internal.data_path, "outputs", "images")
    if not os.path.isabs(path):
        path = os.path.join(paths_internal.data_path, path)
    os.makedirs(path, exist_ok=True)
    index = len([f for f in os.listdir(path) if not f.startswith(".")])
    name = forced_filename or f"{index:05}-{seed}{('-' + basename) if basename else ''}{suffix}"
    fullfn = os.path.join(path, f"{name}.{extension}")
    pnginfo = existing_info or {}
    if info is not None:
        pnginfo[pnginfo_section_name] = info
    params = script_callbacks.ImageSaveParams(image, p, fullfn, pnginfo)
    script_callbacks.before_image_saved_callback(params)
    image = params.image
    fullfn = params.filename
    if extension.lower() == "png":
        pnginfo_data = PngImagePlugin.PngInfo()
        for k, v in params.pnginfo.items():
            pnginfo_data.add_text(k, str(v))
        image.save(fullfn, pnginfo=pnginfo_data if opts.enable_pnginfo else None)
    else:
        image.convert("RGB").save(fullfn)
    saved.append(fullfn)
    image.already_saved_as = os.path.relpath(fullfn, paths_internal.data_path)
    script_callbacks.image_saved_callback(params)
    return fullfn, None


def read_info_from_image(image):
    return image.info.get("parameters"), dict(image.info)
