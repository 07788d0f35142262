"""A models/VAE folder for the UI tests: the real TAEF2 pair, random-weight kl-f8 VAEs, a broken file."""

from __future__ import annotations

import os
from pathlib import Path

from testkit.factories import TINY_KL, random_kl_state_dict

KL_NAMES = ("kl-f8-random-weights-1.safetensors", "kl-f8-random-weights-2.safetensors")
BROKEN = "half-downloaded.safetensors"


def make_vae_folder(folder: Path, taef2_pair) -> Path:
    """Fill `folder` (created) and return it. TAEF2 files are symlinked, never copied."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    dec, enc = taef2_pair
    for src in (dec, enc):
        link = folder / Path(src).name
        if not link.exists():
            os.symlink(os.path.abspath(src), link)
    for seed, name in enumerate(KL_NAMES, start=1):
        save_file(random_kl_state_dict(TINY_KL, seed=seed), str(folder / name))
    (folder / BROKEN).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    return folder
