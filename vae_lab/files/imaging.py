"""Images <-> tensors: the engine speaks float NCHW in [-1, 1], people speak PIL and uint8.

Alpha is dropped (composited on nothing, i.e. ignored), greyscale becomes RGB. Output
is rounded, not truncated, so an exact [-1, 1] -> uint8 -> [-1, 1] trip is stable.

Every image a user gives (the CLI's `encode`/`compare`, the tab's upload) goes through
`image_to_rgb8`, so both see the same pixels: EXIF orientation applied, 16-bit and float
images scaled by their bit depth (not clipped to white), at most `MAX_IMAGE_PIXELS`. Files
are opened only if they are regular files (a FIFO would block forever) and only in the
formats listed in `IMAGE_FORMATS` (never EPS, which Pillow hands to Ghostscript).
"""

from __future__ import annotations

import logging

from vae_lab.errors import VaeLabError

log = logging.getLogger("vae_lab.files")

# 8192 x 8192: an 8K photo (33 MP) fits; the 1x3xHxW float tensor of the largest image
# allowed is 805 MB. A decompression bomb (a 100 kB PNG that claims 50,000 x 50,000) is
# refused from its header, before a pixel is decoded.
MAX_IMAGE_PIXELS = 8192 * 8192
IMAGE_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF", "GIF")


def array_to_tensor(array):
    """HxWx3 (or HxW, or NxHxWx3) uint8/float array -> float32 NCHW in [-1, 1].

    uint8 is read as 0..255; float arrays are taken to be in [0, 1].
    """
    import numpy as np
    import torch

    a = np.asarray(array)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (3, 4):
        raise ValueError(f"want an HxWx3 image array, got shape {tuple(np.asarray(array).shape)}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        t = torch.from_numpy(np.array(a, copy=True)).float().div_(127.5).sub_(1.0)
    else:
        t = torch.from_numpy(np.array(a, dtype=np.float32, copy=True)).mul(2.0).sub_(1.0)
    return t.permute(0, 3, 1, 2).contiguous()


def pil_to_tensor(image):
    """A PIL image (any mode) -> float32 1x3xHxW in [-1, 1] (through `image_to_rgb8`)."""
    return array_to_tensor(image_to_rgb8(image))


def tensor_to_array(tensor):
    """NCHW (or CHW) float in [-1, 1] -> NxHxWx3 (or HxWx3) uint8, rounded and clipped."""
    import torch

    t = tensor.detach().float().cpu()
    single = t.ndim == 3
    if single:
        t = t[None]
    a = t.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return a[0] if single else a


def tensor_to_pil(tensor):
    """CHW or 1xCHW float in [-1, 1] -> PIL RGB image; a batch gives a list of images."""
    from PIL import Image

    a = tensor_to_array(tensor)
    if a.ndim == 3:
        return Image.fromarray(a, "RGB")
    return [Image.fromarray(x, "RGB") for x in a]


def _too_many_pixels(where: str, width: int, height: int) -> VaeLabError:
    return VaeLabError(
        f"{where}: refused: {width}x{height} is {width * height:,} pixels, more than the "
        f"{MAX_IMAGE_PIXELS:,} ({_side()}) this reads"
    )


def _side() -> str:
    side = int(MAX_IMAGE_PIXELS ** 0.5)
    return f"{side}x{side}"


def image_to_rgb8(image, where: str = "the image"):
    """A PIL image (any mode) or an image array -> HxWx3 uint8, the same way for every caller.

    EXIF orientation is applied; "I;16*" (16-bit greyscale) is scaled by 65535, "I" (how
    Pillow opens some 16-bit greyscale PNGs) is read as 0..65535, "F" as [0, 1] when its
    values fit, else as 0..255. Every other mode goes through Pillow's own RGB conversion,
    which already scales 16-bit RGB files to 8 bits. Arrays: uint8 as is, uint16 by 65535,
    floats as [0, 1].
    """
    import numpy as np

    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
            raise VaeLabError(f"{where}: want an HxW or HxWx3 image, got shape {tuple(image.shape)}")
        if a.shape[0] * a.shape[1] > MAX_IMAGE_PIXELS:
            raise _too_many_pixels(where, a.shape[1], a.shape[0])
        if a.dtype == np.uint16:
            a = a.astype(np.float32) / 65535.0
        if a.dtype != np.uint8:
            a = np.rint(np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255.0).astype(np.uint8)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=-1)
        return np.array(a[..., :3], dtype=np.uint8, order="C", copy=True)

    from PIL import ImageOps

    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise _too_many_pixels(where, image.width, image.height)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as err:  # a damaged EXIF block: the pixels are still good, unrotated
        log.warning("vae_lab: %s: EXIF orientation not applied (%s)", where, type(err).__name__)
    mode = image.mode
    if mode.startswith("I;16"):
        gray = np.asarray(image).astype(np.float32) / 65535.0
    elif mode == "I":
        gray = np.clip(np.asarray(image).astype(np.float64), 0, 65535) / 65535.0
    elif mode == "F":
        gray = np.nan_to_num(np.asarray(image).astype(np.float32))
        if gray.size and gray.max() > 1.0:
            gray = gray / 255.0
    else:
        return np.array(image.convert("RGB"), dtype=np.uint8)
    gray8 = np.rint(np.clip(gray, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(gray8[..., None], 3, axis=-1)


def load_image_array(path):
    """Read an image file as HxWx3 uint8 (see `image_to_rgb8`); one clear line for anything else.

    Only regular files are opened; the pixel count is checked from the header, before
    decoding, against `MAX_IMAGE_PIXELS`.
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    from vae_lab.files.folders import open_regular

    with open_regular(path, "image file", error=VaeLabError) as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's bomb and palette warnings would break the one line
        Image.init()
        try:
            im = Image.open(f, formats=[n for n in IMAGE_FORMATS if n in Image.OPEN])
        except Image.DecompressionBombError:
            raise VaeLabError(f"{path}: refused: more than {MAX_IMAGE_PIXELS:,} pixels ({_side()})") from None
        except UnidentifiedImageError:
            raise VaeLabError(f"{path}: not a readable image (none of {', '.join(IMAGE_FORMATS)})") from None
        except Exception as err:
            raise VaeLabError(f"{path}: not a readable image ({type(err).__name__})") from None
        with im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise _too_many_pixels(str(path), im.width, im.height)
            try:
                im.load()
                return image_to_rgb8(im, str(path))
            except VaeLabError:
                raise
            except Exception as err:  # truncated data, a broken decoder: never a traceback
                raise VaeLabError(f"{path}: not a readable image ({type(err).__name__}: {_one_line(err)})") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:160]


def load_image(path):
    """Read an image file as float32 1x3xHxW in [-1, 1]; a clear error if it is not an image."""
    return array_to_tensor(load_image_array(path))


def save_images(images, path) -> list[str]:
    """Save a batch; one image goes to `path`, more to `stem-0.png`, `stem-1.png`, …"""
    from pathlib import Path

    p = Path(path)
    pics = tensor_to_pil(images)
    if not isinstance(pics, list):
        pics = [pics]
    if len(pics) == 1:
        targets = [p]
    else:
        targets = [p.with_name(f"{p.stem}-{i}{p.suffix}") for i in range(len(pics))]
    for pic, target in zip(pics, targets):
        pic.save(target)
    return [str(t) for t in targets]
