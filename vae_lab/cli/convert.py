"""`python -m vae_lab convert SRC DST.safetensors [--half]`: any VAE to a safetensors file A1111 loads."""

from __future__ import annotations

import json

HELP = "convert a VAE (ckpt/pt/bin, diffusers folder, checkpoint) to .safetensors in the LDM layout"


def add_arguments(parser) -> None:
    parser.add_argument("src", metavar="SRC", help="a VAE file, a diffusers folder or a full checkpoint")
    parser.add_argument("dst", metavar="DST", help="the .safetensors file to create (never overwritten)")
    parser.add_argument("--half", action="store_true", help="store the weights as fp16 (half the size)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args) -> int:
    from dataclasses import asdict

    from vae_lab.files.convert import convert

    result = convert(args.src, args.dst, half=args.half)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        mib = result.size_bytes / (1 << 20)
        print(
            f"wrote {result.dst}: {result.tensors} tensors, {result.dtype}, {mib:.1f} MiB, "
            f"weights id {result.weights_id[:16]} (source sha256 {result.source_sha256[:10]})"
        )
    return 0
