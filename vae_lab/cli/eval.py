"""`python -m vae_lab eval`: dataset-level PSNR/SSIM (LPIPS) of VAE round trips, model-card style.

Runs data-parallel under torchrun (`torchrun --nproc_per_node N -m vae_lab eval …`): each
process a shard of the images, the numbers gathered on rank 0, equal to one process's.

Exit status: 0 when every VAE ran on every image, 1 when some round trips failed (the
table says which), 2 for bad input.
"""

from __future__ import annotations

import os
import sys

HELP = "evaluate VAEs on a folder of images: mean +/- std of PSNR/SSIM (LPIPS) over round trips"


def add_arguments(parser) -> None:
    parser.add_argument("--images", metavar="DIR", required=True, help="folder of images (png, jpg, webp, …)")
    parser.add_argument("--vae", metavar="PATH", action="append", required=True, help="a VAE to evaluate (repeat the option)")
    parser.add_argument("--size", type=int, default=256, help="center-crop and resize images to SIZE x SIZE (default 256, as the model cards' COCO table)")
    parser.add_argument("--max-pixels", type=int, metavar="N",
                        help="largest SIZE x SIZE allowed (default 2048², or $VAE_LAB_MAX_PIXELS): bounds the memory one run needs")
    parser.add_argument("--limit", type=int, help="use only the first N images (sorted by name)")
    parser.add_argument("--encoder", default="own", metavar="own|first|PATH", help="whose encoder makes the latents (default: each VAE's own)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    parser.add_argument("--lpips-dir", metavar="DIR", help="folder with LPIPS weights (alexnet-owt-*.pth and alex.pth); default $VAE_LAB_LPIPS_DIR")
    parser.add_argument("--device", help="device (default: cuda when present, else cpu)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def run(args) -> int:
    import json

    from vae_lab.errors import VaeLabError
    from vae_lab.compare.evaluate import evaluate, list_images

    from vae_lab.limits import Limits

    if args.max_pixels is not None and args.max_pixels < 64 * 64:
        raise VaeLabError(f"--max-pixels {args.max_pixels}: must be at least {64 * 64} (64×64)")
    (Limits(args.max_pixels) if args.max_pixels is not None else Limits.default()).check_size(args.size)
    images = list_images(args.images)
    if args.limit is not None:
        if args.limit < 1:
            raise VaeLabError(f"--limit must be at least 1, got {args.limit}")
        images = images[: args.limit]
    result = evaluate(
        images, list(args.vae), size=args.size, encoder=args.encoder, precision=args.precision,
        lpips_dir=args.lpips_dir, device=args.device, progress_bar=sys.stderr.isatty() or not args.json,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 prints the gathered result
        return 0
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table())
    failed = any(r.failed for r in result.rows) or bool(result.skipped_images)
    return 1 if failed else 0
