"""The VAE library the tab offers: every VAE file under the host's folders, identified by
content once per (path, size, mtime), and which of them can decode a given latent space."""

from __future__ import annotations

import os
from dataclasses import dataclass

from vae_lab.compare.report import family_label
from vae_lab.errors import VaeLabError
from vae_lab.files.folders import WEIGHT_EXTENSIONS as VAE_SUFFIXES, file_key, weight_files  # noqa: F401 (VAE_SUFFIXES: tab API)
from vae_lab.ui import vae_ids



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
    weights_id: str | None = None  # content id of the weights: equal ids = the same VAE
    same_as: str | None = None  # the name of an earlier entry with the same weights

    @property
    def label(self) -> str:
        if self.error:
            return f"{self.name} · ⚠ not readable: {self.reason}"
        fam = family_label(self.family) or "unknown family"
        label = f"{self.name} · {fam}" + (f" · {self.latent_channels} ch" if self.latent_channels else "")
        return label + (f" · same weights as {self.same_as}" if self.same_as else "")

    @property
    def reason(self) -> str:
        """The error without the file's path or name in front (the label names the file)."""
        msg = (self.error or "").splitlines()[0] if self.error else ""
        for p in sorted({self.path, os.path.realpath(self.path), os.path.basename(self.path)}, key=len, reverse=True):
            if msg.startswith(p):
                msg = msg[len(p):].lstrip(" :")
                break
        short = msg.split(" (", 1)[0]  # the reason, not the parser's details
        return (short[:77] + "…") if len(short) > 80 else short



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
        files = weight_files(root)  # regular files only: no FIFOs, devices or dangling links
        present = set(files)
        for file in files:
            stem, ext = os.path.splitext(file)
            if stem.endswith("_encoder") and stem[: -len("_encoder")] + "_decoder" + ext in present:
                continue  # offered through its decoder
            path = os.path.realpath(file)
            if path in seen:
                continue
            seen.add(path)
            found.append(_identify(file))
    first_by_weights: dict[str, str] = {}
    for e in found:
        e.same_as = first_by_weights.get(e.weights_id) if e.weights_id else None
        if e.weights_id:
            first_by_weights.setdefault(e.weights_id, e.name)
    return found


DIFFUSERS_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                   "diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")


def display_name(path: str) -> str:
    """The name a VAE is shown by: its file name, or for a diffusers folder (where every file is
    `diffusion_pytorch_model.safetensors`) the folder's name: `sdxl-vae`, or `model/vae`."""
    fn = os.path.basename(path)
    if fn.lower() not in DIFFUSERS_NAMES:
        return fn
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(folder)
    if name.lower() == "vae":  # a whole pipeline's vae/ subfolder
        name = f"{os.path.basename(os.path.dirname(folder))}/vae"
    return name + (" (fp16)" if ".fp16." in fn.lower() else "")


def _identify(path: str) -> VaeEntry:
    key = file_key(path)
    if key in _identity_cache:
        return _identity_cache[key]
    name = display_name(path)
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
                weights_id=getattr(info, "weights_id", None),
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
    """(label, VAE id) pairs for the multi-select; incompatible VAEs are marked with the reason.

    The marked ones are disabled in the page by `vae_lab.js` (class `vae-lab-incompatible`
    is set on inputs whose label starts with "✕").
    """
    choices = []
    for e in entries:
        why = incompatibility(e, channels, family) if (channels or family) else None
        choices.append((f"✕ {e.label} — {why}" if why else e.label, vae_ids.vae_id(e)))  # never a path
    return choices




def forget_missing() -> None:
    """Drop cached identities of files that are gone (the Refresh button)."""
    for key in list(_identity_cache):
        if not os.path.exists(key[0]):
            _identity_cache.pop(key, None)
