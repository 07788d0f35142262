"""`python -m vae_lab info PATH… [--json]`: what a VAE file is and which VAE it is.

With several paths (`info models/VAE/*`) each gets its block of text, or its own JSON
object on its own line; a bad file prints its one-line error and the others still go on
(exit status 2 if any failed).
"""

from __future__ import annotations

import json

HELP = "show a VAE file's format, layout, kind, latent channels, family, hashes and catalog name"

# The order and labels of the readable output.
FIELDS = (
    ("path", "path"),
    ("known", "known as"),
    ("family", "family"),
    ("kind", "kind"),
    ("variant", "architecture"),
    ("latent_channels", "latent channels"),
    ("has_encoder", "encoder"),
    ("has_decoder", "decoder"),
    ("format", "format"),
    ("layout", "layout"),
    ("dtype", "dtype"),
    ("tensors", "tensors"),
    ("size_bytes", "size"),
    ("file_sha256", "file sha256"),
    ("short_hash", "short hash"),
    ("weights_id", "weights id"),
    ("scaling_factor", "scaling factor"),
    ("shift_factor", "shift factor"),
)


def add_arguments(parser) -> None:
    parser.add_argument("paths", metavar="PATH", nargs="+", help="a .safetensors/.ckpt/.pt/.pth/.bin file or a diffusers folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--no-cache", action="store_true", help="hash the file again instead of using the hash cache")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f} {unit} ({n:,} bytes)"


def format_text(info) -> str:
    d = info.to_dict()
    values = dict(d)
    values["known"] = d["known"] or "no (not in the catalog)"
    if d["known_via"] == "weights":
        values["known"] += " (same weights as the catalogued file, which was verified on this machine)"
        if d["converted_from"]:
            values["known"] += f"; converted from {d['converted_from']}"
    if d["family"] == "unknown":
        values["family"] = "unknown (SD1 and SDXL VAEs, or SD3 and Flux.1 VAEs, have identical shapes)"
    if d["family"] == "unknown" and d["kind"] == "kl" and d["latent_channels"] == 4:
        values["scaling_factor"] = f"{d['scaling_factor']} (the SD1/SD2 value A1111 would use; family unknown)"
    values["has_encoder"] = "yes" if d["has_encoder"] else "no"
    values["has_decoder"] = "yes" if d["has_decoder"] else "no"
    values["size_bytes"] = _size(d["size_bytes"])
    values["weights_id"] = f"{info.weights_id_short} ({d['weights_id']})"
    rows = [(label, values[key]) for key, label in FIELDS]
    if len(d["files"]) > 1:
        rows += [(f"file {i + 1}", f"{f['path']} sha256 {f['sha256']}") for i, f in enumerate(d["files"])]
    if d["config_scaling_factor"] is not None and d["config_scaling_factor"] != d["scaling_factor"]:
        rows.append(("config hint", f"config.json says scaling_factor {d['config_scaling_factor']}"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in rows)


def run(args) -> int:
    import sys

    from vae_lab.errors import VaeLabError
    from vae_lab.identity.identify import HashCache, inspect

    cache = None if args.no_cache else HashCache()
    if len(args.paths) == 1:  # one file: errors go through the CLI's one-line handler
        info = inspect(args.paths[0], cache=cache)
        print(json.dumps(info.to_dict()) if args.json else format_text(info))
        return 0
    failed = 0
    for i, path in enumerate(args.paths):
        try:
            info = inspect(path, cache=cache)
        except VaeLabError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr, flush=True)
            continue
        if args.json:
            print(json.dumps(info.to_dict()), flush=True)
        else:
            print(("\n" if i else "") + format_text(info), flush=True)
    return 2 if failed else 0
