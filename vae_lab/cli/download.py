"""`python -m vae_lab download NAME_OR_URL`: a catalog VAE or any http(s) URL into models/VAE."""

from __future__ import annotations

import json
import sys

HELP = "download a catalog VAE or an http(s) URL into models/VAE (resumable, verified)"


def add_arguments(parser) -> None:
    parser.add_argument("source", metavar="NAME_OR_URL", help="catalog id or name (see `catalog`), or an http(s) URL")
    parser.add_argument("--dir", help="target folder (default: $VAE_LAB_VAE_DIR, else the WebUI's models/VAE)")
    parser.add_argument("--sha256", help="expected SHA-256 (64 hex); the file is refused if it differs")
    parser.add_argument("--filename", help="save under this name (must end in .safetensors/.ckpt/.pt/.pth/.bin)")
    parser.add_argument("--to-safetensors", action="store_true",
                        help="convert a downloaded legacy pickle (.ckpt/.pt) to .safetensors and remove the pickle")
    parser.add_argument("--retries", type=int, default=5, help="retries on transient errors (default 5)")
    parser.add_argument("--deadline", type=float, metavar="SECONDS",
                        help="stop a download that takes longer than this in total (default: no limit)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from vae_lab.download.transfer import download

    result = download(
        args.source, args.dir, sha256=args.sha256, filename=args.filename, retries=args.retries,
        to_safetensors=args.to_safetensors, deadline=args.deadline,
        console=not (args.quiet or args.json),
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=1, default=str))
        return 0
    what = "already there" if result.already_present else "downloaded"
    check = (f"SHA-256 verified ({result.expected_from})" if result.verified
             else "SHA-256 not verified (no expected hash known)")
    print(f"{what}: {result.path}")
    if result.converted_from:
        print(f"  converted to safetensors from the downloaded {result.converted_from}")
    print(f"  {result.size:,} bytes, SHA-256 {result.sha256} — {check}")
    if result.entry is not None:
        print(f"  known: {result.entry.name} [{result.entry.id}], family {result.entry.family or 'unknown'}")
    else:
        print("  not in the catalog")
    info = result.info
    if info is not None:
        fam = getattr(info, "family", None)
        kind = getattr(info, "kind", None)
        ch = getattr(info, "latent_channels", None)
        wid = getattr(info, "weights_id", None)
        print(f"  identified: {kind}, {ch} latent channels, family {fam or 'unknown'}, weights id {wid}")
    elif result.info_error:
        print(f"  identification: {result.info_error}")
    for w in result.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    return 0
