"""The VAE library the tab offers: every VAE file under the host's folders, identified by
content once per (path, size, mtime), and which of them can decode a given latent space."""

from __future__ import annotations

import os
from dataclasses import dataclass

from vae_lab.compare.report import family_label
from vae_lab.errors import VaeLabError

VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass
class VaeEntry:
    """One VAE file offered in the multi-select."""

    path: str
    name: str
    family: str | None = None  # "sd1", "sdxl", … or None when unknown
    kind: str | None = None  # "kl" | "tae"
    latent_channels: int | None = None
    sha256: str | None = None  # full-file SHA-256 (identity; matched against the catalog)
    error: str | None = None  # why it could not be identified (still offered: the run says more)

    @property
    def label(self) -> str:
        if self.error:
            return f"{self.name} · ⚠ not readable"
        fam = family_label(self.family) or "unknown family"
        return f"{self.name} · {fam}" + (f" · {self.latent_channels} ch" if self.latent_channels else "")



_identity_cache: dict[tuple[str, int, int], VaeEntry] = {}


def scan_vae_dirs(dirs) -> list[VaeEntry]:
    """Every VAE file under `dirs` (recursively), identified once per (path, size, mtime).

    A TAE pair (`x_decoder.pth` + `x_encoder.pth`) is one entry, the decoder file.
    """
    found: list[VaeEntry] = []
    seen: set[str] = set()
    for root in dirs:
        if not root or not os.path.isdir(root):
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            names = set(filenames)
            for fn in sorted(filenames):
                if fn.startswith(".") or not fn.lower().endswith(VAE_SUFFIXES):
                    continue
                stem, ext = os.path.splitext(fn)
                if stem.endswith("_encoder") and stem[: -len("_encoder")] + "_decoder" + ext in names:
                    continue  # offered through its decoder
                path = os.path.realpath(os.path.join(dirpath, fn))
                if path in seen:
                    continue
                seen.add(path)
                found.append(_identify(os.path.join(dirpath, fn)))
    return found


def _identify(path: str) -> VaeEntry:
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _identity_cache:
        return _identity_cache[key]
    name = os.path.basename(path)
    try:
        from vae_lab.identity.identify import inspect
    except ImportError:  # identification not installed: offer the file, the run says more
        entry = VaeEntry(path, name)
    else:
        try:
            info = inspect(path)
            entry = VaeEntry(
                path,
                name,
                family=None if info.family in (None, "unknown") else info.family,
                kind=info.kind,
                latent_channels=info.latent_channels,
                sha256=getattr(info, "file_sha256", None),
            )
        except VaeLabError as err:
            entry = VaeEntry(path, name, error=str(err))
    _identity_cache[key] = entry
    return entry


def incompatibility(entry: VaeEntry, channels: int | None, family: str | None) -> str | None:
    """Why `entry` cannot decode latents of `channels`/`family`, or None if it can (or may)."""
    if entry.error:
        return entry.error
    if channels and entry.latent_channels and entry.latent_channels != channels:
        return f"{entry.latent_channels}-channel VAE, latents have {channels}"
    if family and entry.family and entry.family != family:
        return f"{family_label(entry.family)} VAE, latents are {family_label(family)}"
    return None


def vae_choices(entries, channels=None, family=None) -> list[tuple[str, str]]:
    """(label, path) pairs for the multi-select; incompatible VAEs are marked with the reason.

    The marked ones are disabled in the page by `vae_lab.js` (class `vae-lab-incompatible`
    is set on inputs whose label starts with "✕").
    """
    choices = []
    for e in entries:
        why = incompatibility(e, channels, family) if (channels or family) else None
        choices.append((f"✕ {e.label} — {why}" if why else e.label, e.path))
    return choices




def forget_missing() -> None:
    """Drop cached identities of files that are gone (the Refresh button)."""
    for key in list(_identity_cache):
        if not os.path.exists(key[0]):
            _identity_cache.pop(key, None)
