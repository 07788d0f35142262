"""`python -m vae_lab compare`: decode one image or latent file with several VAEs, side by side.

Prints the metrics table (or JSON with --json) and writes every decode, the difference
map, the grid and the table (CSV and JSON) into --out. Exit status: 0 when every VAE ran,
1 when some entry failed (its error is in the table), 2 for bad input.
"""

from __future__ import annotations

import os
import re
import sys
import time

from vae_lab.cli._codec import add_attention
from vae_lab.runtime import precision as prec

HELP = "compare VAEs on an image (round trip) or on latents: images, grid, PSNR/SSIM/LPIPS table"


def add_arguments(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", metavar="IMG", help="round trip: encode this image once, decode with every VAE")
    src.add_argument("--latents", metavar="FILE", help="decode these latents (.safetensors / .latent / .pt, diffusion space)")
    parser.add_argument("--vae", metavar="PATH", action="append", required=True, help="a VAE to compare (repeat the option)")
    parser.add_argument("--reference", metavar="PATH", help="latent mode: the VAE whose fp32 decode is the reference for PSNR/SSIM")
    parser.add_argument(
        "--encoder", default="family", metavar="family|first|own|PATH",
        help="round trip: whose encoder makes the latents: for each latent space its first VAE with an encoder "
             "(default: any mix of VAEs compares), the first VAE's for all, each VAE's own, or this VAE file",
    )
    parser.add_argument("--precision", default="auto", choices=prec.CHOICES, help="decode precision (auto = fp16 on GPU, bf16 on CPUs with AMX, else fp32)")
    parser.add_argument("--tile", default="auto", metavar="auto|on|off|PIXELS", help="tiled decode (default auto: when large or out of memory)")
    add_attention(parser)  # every encode and decode of the comparison, the reference's too
    parser.add_argument("--diff", nargs=2, metavar=("A", "B"), help="difference map between two entries: index (0 = reference) or name; default: reference vs the first VAE")
    parser.add_argument("--gain", type=float, default=4.0, help="difference map amplification (default 4)")
    parser.add_argument("--batch-index", type=int, default=0, help="latent mode: which image of a batch (default 0)")
    parser.add_argument("--lpips-dir", metavar="DIR", help="folder with LPIPS weights (alexnet-owt-*.pth and alex.pth); default $VAE_LAB_LPIPS_DIR")
    parser.add_argument("--device", help="device for decoding and metrics (default: cuda when present, else cpu)")
    parser.add_argument("--out", metavar="DIR", help="folder for the images, grid and tables (default: ./vae-compare-YYYYmmdd-HHMMSS)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def _tile_arg(value: str):
    from vae_lab.errors import VaeLabError

    v = value.strip().lower()
    if v in ("auto",):
        return "auto"
    if v in ("on", "true", "yes"):
        return True
    if v in ("off", "false", "no", "0"):
        return False
    if v.isdigit():
        return int(v)
    raise VaeLabError(f"--tile must be auto, on, off or a size in pixels, not {value!r}")


def _entry_arg(value: str):
    return int(value) if re.fullmatch(r"-?\d+", value) else value


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "vae"


def read_image(path: str):
    """An image file as an HxWx3 uint8 array (via `vae_lab.files.imaging`)."""
    from vae_lab.files.imaging import load_image_array

    return load_image_array(path)


def build_request(args):
    from vae_lab.compare.runner import CompareRequest
    from vae_lab.errors import VaeLabError

    req = CompareRequest(
        vae_paths=list(args.vae),
        encoder=args.encoder,
        precision=args.precision,
        tile=_tile_arg(args.tile),
        attention=args.attention,
        attention_window=args.attention_window,
        reference=args.reference,
        diff_gain=args.gain,
        batch_index=args.batch_index,
        lpips_dir=args.lpips_dir,
        device=args.device,
    )
    if args.image:
        req.image = read_image(args.image)
        if args.reference:
            raise VaeLabError("--reference is for latent mode; a round trip is measured against the image itself")
    else:
        from vae_lab.files.latents import image_size_from_meta, load_latents

        req.latents, meta = load_latents(args.latents)
        req.latents_family = meta.get("family") or None
        req.image_size = image_size_from_meta(meta)
    if args.diff:
        req.diff_pair = (_entry_arg(args.diff[0]), _entry_arg(args.diff[1]))
    elif args.image or args.reference:
        req.diff_pair = (0, 1)
    return req


FIXED_OUTPUTS = ("00-reference.png", "diff.png", "grid.png", "metrics.csv", "metrics.json")


def _image_name(index: int, name: str) -> str:
    return f"{index:02d}-{_safe_name(os.path.splitext(name)[0])}.png"


def check_out_dir(out_dir: str, names) -> None:
    """Refuse an --out folder that already holds a file we would write (nothing is overwritten)."""
    from vae_lab.errors import VaeLabError

    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise VaeLabError(f"--out {out_dir} is a file, not a folder")
    clash = [n for n in names if os.path.exists(os.path.join(out_dir, n))]
    if clash:
        raise VaeLabError(f"{out_dir} already has {clash[0]}; choose a new or empty --out folder")


def write_outputs(result, out_dir: str) -> dict:
    """Write decodes, diff, grid, CSV and JSON into `out_dir`; never overwrite a file."""
    from PIL import Image

    from vae_lab.errors import VaeLabError

    planned: dict[str, object] = {}
    if result.reference_image is not None:
        planned["00-reference.png"] = result.reference_image
    for i, o in enumerate(result.outcomes, start=1):
        if o.image is not None:
            planned[_image_name(i, o.name)] = o.image
    if result.diff_image is not None:
        planned["diff.png"] = result.diff_image
    check_out_dir(out_dir, list(planned) + ["grid.png", "metrics.csv", "metrics.json"])
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:
        raise VaeLabError(f"cannot create {out_dir}: {err.strerror}") from None
    written = {}
    for name, arr in planned.items():
        p = os.path.join(out_dir, name)
        Image.fromarray(arr).save(p)
        written[name] = p
    p = os.path.join(out_dir, "grid.png")
    result.grid().save(p)
    written["grid.png"] = p
    for name, text in (("metrics.csv", result.to_csv()), ("metrics.json", result.to_json())):
        p = os.path.join(out_dir, name)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)
        written[name] = p
    return written


def run(args) -> int:
    import json

    from vae_lab.compare.runner import run_compare

    req = build_request(args)
    out_dir = args.out or time.strftime("vae-compare-%Y%m%d-%H%M%S")
    # refuse a taken --out before the (slow) decodes, not after
    check_out_dir(out_dir, [*FIXED_OUTPUTS, *(_image_name(i, os.path.basename(p)) for i, p in enumerate(req.vae_paths, 1))])

    def progress(fraction, text):
        if not args.json:
            print(f"[{fraction * 100:3.0f}%] {text}", file=sys.stderr, flush=True)

    result = run_compare(req, progress=progress)
    written = write_outputs(result, out_dir)
    if args.json:
        doc = result.to_dict()
        doc["out"] = os.path.abspath(out_dir)
        doc["files"] = {k: os.path.abspath(v) for k, v in written.items()}
        print(json.dumps(doc, indent=2))
    else:
        print(result.table())
        print(f"wrote {len(written)} files to {out_dir} (grid.png, metrics.csv, metrics.json)")
    return 0 if all(o.ok for o in result.outcomes) else 1
