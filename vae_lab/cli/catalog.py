"""`python -m vae_lab catalog`: the curated VAEs, and which of them a folder already holds.

Presence is decided by SHA-256, whatever the local file is called (through the identify module's
hash cache, so listing a folder of 335 MB files is only slow the first time).
"""

from __future__ import annotations

import json
import os

HELP = "list the VAE catalog and which entries are already in models/VAE (matched by SHA-256)"


def add_arguments(parser) -> None:
    parser.add_argument("--dir", help="folder to check (default: $VAE_LAB_VAE_DIR, else the WebUI's models/VAE)")
    parser.add_argument("--all", action="store_true",
                        help="also list entries kept only to recognise files (withdrawn, unlicensed, look-alikes)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from vae_lab.identity import catalog
    from vae_lab.download.transfer import default_vae_dir

    folder = str(args.dir) if args.dir else str(default_vae_dir())
    entries = catalog.entries(offered_only=not args.all)
    present, unknown = catalog.presence(folder)
    # Files recognised as entries this listing hides (e.g. the NovelAI VAE): say what they are.
    listed = {e.id for e in entries}
    hidden = {i: paths for i, paths in present.items() if i not in listed}
    if args.json:
        out = {
            "dir": folder,
            "dir_exists": os.path.isdir(folder),
            "entries": [{**e.to_dict(), "present": present.get(e.id, [])} for e in entries],
            "recognised_not_listed": hidden,
            "unknown_files": unknown,
        }
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return 0
    print(f"VAE catalog — checking {folder}" + ("" if os.path.isdir(folder) else " (folder does not exist yet)"))
    rows = [("", "id", "family", "size", "sha256", "name")]
    for e in entries:
        mark = "✔" if e.id in present else ("·" if e.offered else "x")
        size = f"{e.size / 1e6:.0f} MB" if e.size else "?"
        check = (e.short_hash + ("" if e.sha256_verified else "?")) if e.sha256 else "-"
        rows.append((mark, e.id, e.family or "-", size, check, e.name))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5])
    print("\n✔ present (by SHA-256)   · not present" + ("   x recognised only, not offered" if args.all else "")
          + "   ? hash from a single source")
    for e in entries:
        for path in present.get(e.id, []):
            print(f"  {e.id}: {os.path.relpath(path, folder)}")
    for i, paths in hidden.items():
        for path in paths:
            name = catalog.find(i).name
            print(f"  {os.path.relpath(path, folder)}: recognised as {name} [{i}], not offered (see --all)")
    if unknown:
        print(f"{len(unknown)} other weight file(s) not in the catalog: "
              + ", ".join(os.path.relpath(p, folder) for p in unknown[:8]) + (" …" if len(unknown) > 8 else ""))
    print("Download one with: python -m vae_lab download ID")
    return 0
