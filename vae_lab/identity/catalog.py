"""The curated VAE catalog: `catalog.json` beside this module, validated, and the known-hash table built from it.

The catalog is data, not code. Every entry names one VAE file; its identity is its full-file
SHA-256 (never its file name: many different files circulate under the same names). Entries
with `offered: false` (withdrawn, license-less, look-alikes, reference-only) are still used to
recognise files; they are just not offered for download.

    entries()                 offered entries, in catalog order
    find("sd-vae-ft-mse")     by id or display name (case-insensitive)
    known_by_sha256(hex)      by full SHA-256 or A1111's 10-hex "VAE hash" / Civitai AutoV2
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from vae_lab.errors import VaeLabError
from vae_lab.files.folders import WEIGHT_EXTENSIONS, weight_files
from vae_lab.identity import hashing

CATALOG_PATH = Path(__file__).resolve().parent / "catalog.json"

FAMILIES = ("sd1", "sdxl", "sd3", "flux", "flux2")
KINDS = ("kl", "tae")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX10 = re.compile(r"^[0-9a-f]{10}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
_QUALITY_METRICS = ("rFID", "PSNR", "SSIM", "PSIM", "train_steps")


class CatalogError(VaeLabError):
    """The catalog file is malformed (a bug in the shipped data, or a broken user override)."""


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    filename: str | None
    urls: tuple[str, ...]
    size: int | None
    sha256: str | None
    sha256_verified: bool
    family: str | None
    latent_channels: int
    scaling_factor: float           # diffusion = (raw - shift) * scale, as in vae_lab.identity.families
    shift_factor: float
    kind: str
    format: str | None
    license: str | None
    description: str
    offered: bool
    notes: str
    quality: dict[str, Any] | None = field(default=None, hash=False, compare=False)

    @property
    def short_hash(self) -> str | None:
        """A1111's infotext "VAE hash" (Civitai AutoV2): the first 10 hex of the SHA-256."""
        return self.sha256[:10] if self.sha256 else None

    @property
    def downloadable(self) -> bool:
        return self.offered and bool(self.urls) and bool(self.filename)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["urls"] = list(self.urls)
        d["short_hash"] = self.short_hash
        return d


_FIELDS = {
    "id": str, "name": str, "filename": (str, type(None)), "urls": list, "size": (int, type(None)),
    "sha256": (str, type(None)), "sha256_verified": bool, "family": (str, type(None)),
    "latent_channels": int, "scaling_factor": (float, int), "shift_factor": (float, int), "kind": str,
    "format": (str, type(None)), "license": (str, type(None)),
    "description": str, "offered": bool, "notes": str, "quality": (dict, type(None)),
}


def _check_entry(raw: Any, where: str) -> CatalogEntry:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: an entry must be an object")
    missing = sorted(set(_FIELDS) - set(raw))
    extra = sorted(set(raw) - set(_FIELDS))
    if missing or extra:
        raise CatalogError(f"{where}: missing fields {missing}, unknown fields {extra}")
    for key, types in _FIELDS.items():
        value = raw[key]
        # bool is an int subclass: keep size/latent_channels honest.
        if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
            raise CatalogError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    where = f"{where} ({raw['id']})"
    if not _SLUG.match(raw["id"]):
        raise CatalogError(f"{where}: id must be a lower-case slug")
    if raw["sha256"] is not None and not _HEX64.match(raw["sha256"]):
        raise CatalogError(f"{where}: sha256 must be 64 lower-case hex digits")
    if raw["sha256_verified"] and raw["sha256"] is None:
        raise CatalogError(f"{where}: sha256_verified without a sha256")
    if raw["size"] is not None and raw["size"] <= 0:
        raise CatalogError(f"{where}: size must be positive")
    if raw["family"] is not None and raw["family"] not in FAMILIES:
        raise CatalogError(f"{where}: unknown family {raw['family']!r}")
    if raw["kind"] not in KINDS:
        raise CatalogError(f"{where}: unknown kind {raw['kind']!r}")
    if raw["latent_channels"] not in (4, 16, 32):
        raise CatalogError(f"{where}: latent_channels must be 4, 16 or 32")
    if raw["scaling_factor"] <= 0:
        raise CatalogError(f"{where}: scaling_factor must be positive")
    for url in raw["urls"]:
        if not isinstance(url, str) or not url.startswith("https://"):
            raise CatalogError(f"{where}: every url must be an https:// string")
    fn = raw["filename"]
    if fn is not None and (fn != Path(fn).name or fn.startswith(".")):
        raise CatalogError(f"{where}: filename must be a plain file name")
    if raw["offered"]:
        if not raw["urls"] or fn is None:
            raise CatalogError(f"{where}: an offered entry needs urls and a filename")
        if not fn.lower().endswith(WEIGHT_EXTENSIONS):
            raise CatalogError(f"{where}: an offered file must be one of {', '.join(WEIGHT_EXTENSIONS)}")
        if raw["sha256"] is None:
            raise CatalogError(f"{where}: an offered entry needs a sha256 (downloads are verified)")
    quality = raw["quality"]
    if quality is not None:
        for bench, figures in quality.items():
            if bench == "source":
                continue
            if not isinstance(figures, dict) or not set(figures) <= set(_QUALITY_METRICS):
                raise CatalogError(f"{where}: quality[{bench!r}] must map {_QUALITY_METRICS} to figures")
    return CatalogEntry(**{**raw, "urls": tuple(raw["urls"])})


def parse(data: Any) -> tuple[CatalogEntry, ...]:
    """Validate a decoded catalog document and return its entries."""
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("entries"), list):
        raise CatalogError('the catalog must be {"version": 1, "entries": [...]}')
    entries = tuple(_check_entry(raw, f"catalog entry {i}") for i, raw in enumerate(data["entries"]))
    seen_ids: set[str] = set()
    seen_sha: dict[str, str] = {}
    for entry in entries:
        if entry.id in seen_ids:
            raise CatalogError(f"catalog: duplicate id {entry.id!r}")
        seen_ids.add(entry.id)
        if entry.sha256:
            if entry.sha256 in seen_sha:
                raise CatalogError(f"catalog: {entry.id!r} repeats the sha256 of {seen_sha[entry.sha256]!r}")
            seen_sha[entry.sha256] = entry.id
    return entries


def load(path: str | Path = CATALOG_PATH) -> tuple[CatalogEntry, ...]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CatalogError(f"cannot read the catalog {path}: {err}") from None
    return parse(data)


@lru_cache(maxsize=1)
def _all() -> tuple[CatalogEntry, ...]:
    return load()


def entries(offered_only: bool = True) -> list[CatalogEntry]:
    return [e for e in _all() if e.offered or not offered_only]


def find(name_or_id: str) -> CatalogEntry | None:
    """An entry by id or display name (case-insensitive); offered or not."""
    key = name_or_id.strip().lower()
    for e in _all():
        if e.id == key:
            return e
    for e in _all():
        if e.name.lower() == key:
            return e
    return None


@lru_cache(maxsize=1)
def _by_sha() -> tuple[dict[str, CatalogEntry], dict[str, list[CatalogEntry]]]:
    full = {e.sha256: e for e in _all() if e.sha256}
    short: dict[str, list[CatalogEntry]] = {}
    for e in full.values():
        short.setdefault(e.sha256[:10], []).append(e)
    return full, short


def known_by_sha256(hexdigest: str) -> CatalogEntry | None:
    """The catalog entry for a full SHA-256, or for a 10-hex short hash (A1111 / AutoV2).

    Case-insensitive. A short hash that two entries share returns None (it identifies
    nothing). File names are never used: a name says nothing about the bytes.
    """
    if not isinstance(hexdigest, str):
        return None
    h = hexdigest.strip().lower()
    full, short = _by_sha()
    if _HEX64.match(h):
        return full.get(h)
    if _HEX10.match(h):
        hits = short.get(h, [])
        return hits[0] if len(hits) == 1 else None
    return None


# --------------------------------------------------------------------------- what a folder already has


def _hash_cache():
    """The (path, size, mtime) → SHA-256 cache that identify shares.

    A fresh instance each time, read from disk: a long-lived copy would write back its stale view
    and drop what identify stored meanwhile (weights ids, which cost a full load to recompute).
    """
    return hashing.HashCache()


def file_sha256(path: str | os.PathLike, cache=None) -> str:
    """Full-file SHA-256 through the shared hash cache: a folder of 335 MB files is hashed once."""
    return hashing.file_sha256(os.fspath(path), cache if cache is not None else _hash_cache())


def remember_sha256(path: str | os.PathLike, digest: str) -> None:
    """Seed the hash cache with a hash computed while downloading (no second pass over the file)."""
    try:
        _hash_cache().put("sha256", [os.fspath(path)], digest)
    except OSError:
        pass


def local_files(folder: str | os.PathLike) -> list[str]:
    """Weight files under `folder` (`vae_lab.files.folders.weight_files`: regular files only)."""
    return weight_files(folder)


def presence(folder: str | os.PathLike) -> tuple[dict[str, list[str]], list[str]]:
    """({entry id: [paths]}, [weight files the catalog does not know]), matched by SHA-256, never by name."""
    present: dict[str, list[str]] = {}
    unknown: list[str] = []
    if not os.path.isdir(folder):
        return present, unknown
    cache = _hash_cache()
    for path in local_files(folder):
        try:
            digest = file_sha256(path, cache)
        except (OSError, VaeLabError):  # unreadable (permissions, a broken link): not ours to judge
            continue
        entry = known_by_sha256(digest)
        if entry is None:
            unknown.append(path)
        else:
            present.setdefault(entry.id, []).append(path)
    return present, unknown
