"""Images <-> tensors: the engine speaks float NCHW in [-1, 1], people speak PIL and uint8.

Alpha is dropped (composited on nothing, i.e. ignored), greyscale becomes RGB. Output
is rounded, not truncated, so an exact [-1, 1] -> uint8 -> [-1, 1] trip is stable.
"""

from __future__ import annotations


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
    """A PIL image (any mode) -> float32 1x3xHxW in [-1, 1]."""
    import numpy as np

    return array_to_tensor(np.asarray(image.convert("RGB")))


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


def load_image(path):
    """Read an image file as float32 1x3xHxW in [-1, 1]; a clear error if it is not an image."""
    from PIL import Image, UnidentifiedImageError

    from vae_lab.errors import VaeLabError

    try:
        with Image.open(path) as im:
            return pil_to_tensor(im)
    except FileNotFoundError:
        raise VaeLabError(f"{path}: no such image file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise VaeLabError(f"{path}: not a readable image ({err.__class__.__name__})") from None


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
