"""Options and helpers shared by the `encode` and `decode` commands."""

from __future__ import annotations

import os

from vae_lab.errors import VaeLabError
from vae_lab.runtime import precision as prec
from vae_lab.units import format_bytes


def add_common(parser) -> None:
    parser.add_argument("--vae", required=True, metavar="PATH", help="VAE file (any supported layout) or TAE .pth")
    parser.add_argument("--precision", default="auto", choices=prec.CHOICES,
                        help="auto: fp16 on CUDA/MPS, bf16 on CPUs with AMX, else fp32; NaN/Inf falls back to a safer precision")
    parser.add_argument("--tile", default="auto", metavar="N",
                        help="tile size in pixels, 0 for never, auto (default: tile large images or on out-of-memory)")
    add_attention(parser)
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


ATTENTION_HELP = (
    "mid-block attention: global (default: exact) or window: within overlapping windows of "
    "--attention-window pixels, each also seeing the rest of the image pooled, blended without seams. "
    "Its time grows with the image area instead of the area squared, so it pays off from about 2048 px "
    "(images up to 1024 px stay exact); it costs fidelity: about 42 dB PSNR against global at 4096 px "
    "and 35 dB at 8192 px, estimated with random weights (docs/benchmarks.md)"
)


def add_attention(parser) -> None:
    from vae_lab.runtime.engine import ATTENTION_MODES, DEFAULT_ATTENTION_WINDOW

    parser.add_argument("--attention", default="global", metavar="|".join(ATTENTION_MODES), help=ATTENTION_HELP)
    parser.add_argument("--attention-window", type=int, default=DEFAULT_ATTENTION_WINDOW, metavar="PIXELS",
                        help=f"window side for --attention window, in pixels (default {DEFAULT_ATTENTION_WINDOW}; "
                             "larger: closer to global, slower)")


def tile_arg(value: str):
    v = str(value).strip().lower()
    if v == "auto":
        return "auto"
    if v in ("0", "off", "no", "none", "false"):
        return False
    try:
        n = int(v)
    except ValueError:
        raise VaeLabError(f"--tile wants a size in pixels, 0 or auto; got {value!r}") from None
    if n < 64:
        raise VaeLabError(f"--tile {n} is too small; use at least 64 pixels (or 0 to turn tiling off)")
    return n


def device_arg(value: str):
    import torch

    if value == "auto":
        from vae_lab.runtime.engine import default_device

        return default_device()
    try:
        dev = torch.device(value)
    except RuntimeError:
        raise VaeLabError(f"--device {value!r} is not a device (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VaeLabError("--device cuda: no CUDA GPU is available here")
    return dev


def check_out(path: str, image: bool = False) -> None:
    """Fail before the work, not after it: the folder must exist and an image suffix be known."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise VaeLabError(f"{path}: the folder {folder} does not exist")
    if image:
        from PIL import Image

        ext = os.path.splitext(path)[1].lower()
        if ext not in Image.registered_extensions():
            raise VaeLabError(f"{path}: unknown image type {ext or '(no suffix)'}; use .png, .jpg or .webp")


def describe(res) -> str:
    fb = f", after {' and '.join(res.fallback)} gave NaN/Inf" if res.fallback else ""
    sk = f" ({', '.join(res.skipped)} skipped: known to fail for this VAE)" if res.skipped else ""
    un = f" ({', '.join(res.unsupported)} not supported on this device)" if res.unsupported else ""
    tiles = f"tiled ({res.tiles} tiles)" if res.tiled else "whole image"
    if getattr(res, "attention", None) == "window":
        tiles += f"; windowed attention ({res.attention_windows} windows, inexact)"
    return f"{res.precision_used}{un}{fb}{sk}; {tiles}; {res.seconds:.2f} s; peak memory {format_bytes(res.peak_memory_bytes, binary=True)}"
