"""`inspect(path) -> VaeInfo`: what a VAE file is, and which VAE it is.

Two identities are computed:

* the **file SHA-256** (streamed in 1 MiB chunks) and its first 10 hex, which A1111 writes
  into infotext as "VAE hash" and Civitai calls AutoV2. The catalog is keyed on it.
* the **weights id**: SHA-256 over the normalised tensors (sorted keys, shapes, values cast
  to little-endian fp16). Renamed, re-pickled, re-saved-as-safetensors and fp16 copies of the
  same weights get the same id, because normalisation removes the container and layout and
  the fp16 cast removes the precision. `weights_id` holds all 64 hex; 16 are enough to show.

The family (sd1, sdxl, sd3, flux, flux2) comes from identity, never from shapes alone where
shapes cannot decide: SD1 and SDXL VAEs, like SD3 and Flux.1 VAEs, have identical tensors.
Only a 32-channel TAE with taef2's structure is "flux2" by shape. Everything else that the
catalog does not know is "unknown".

Hashing a 335 MB file takes a while, so file hashes and weights ids are cached in a small
JSON file keyed by (path, size, mtime). Its folder is `$VAE_LAB_CACHE_DIR`, else
`$XDG_CACHE_HOME/vae_lab`, else `~/.cache/vae_lab`; `inspect(..., cache=None)` disables it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import asdict, dataclass, field

from vae_lab.identity import families
from vae_lab.identity import field_of as _field
from vae_lab.errors import BadVaeFile
from vae_lab.files.folders import file_key, open_regular
from vae_lab.files.loading import VaeFile, load_vae_file

CHUNK = 1 << 20
WEIGHTS_ID_VERSION = b"vae-lab weights id v1\0"
SHORT_WEIGHTS_ID = 16  # hex digits shown to people

log = logging.getLogger("vae_lab.identity")


@dataclass
class VaeInfo:
    """The fields of `python -m vae_lab info --json`."""

    path: str
    format: str
    layout: str
    kind: str
    latent_channels: int
    family: str
    has_encoder: bool
    has_decoder: bool
    file_sha256: str
    short_hash: str
    weights_id: str
    known: str | None
    scaling_factor: float
    shift_factor: float
    known_id: str | None = None
    known_via: str | None = None  # "file" (its own SHA-256) | "weights" (same tensors as a catalogued file hashed here)
    variant: str = ""  # "kl-f8" | "taesd" | "taef2"
    dtype: str = ""  # "float32" | "float16" | "bfloat16" | "mixed"
    tensors: int = 0
    size_bytes: int = 0
    files: list[dict] = field(default_factory=list)  # [{"path", "sha256", "size_bytes"}] of every file read
    config_scaling_factor: float | None = None  # a diffusers config's value: a hint, not used for the family
    converted_from: str | None = None  # the source file name recorded by `convert`

    @property
    def weights_id_short(self) -> str:
        return self.weights_id[:SHORT_WEIGHTS_ID]

    def to_dict(self) -> dict:
        return asdict(self)


# --- hashes -------------------------------------------------------------------------------------


def sha256_file(path: str) -> str:
    """The full-file SHA-256, streamed in 1 MiB chunks."""
    h = hashlib.sha256()
    try:
        with open_regular(path) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError as err:
        raise BadVaeFile(f"{path}: cannot read ({err.strerror or err})") from None
    return h.hexdigest()


def weights_id(state_dict) -> str:
    """SHA-256 over sorted keys, shapes and fp16 little-endian values of a normalised state dict."""
    import torch

    h = hashlib.sha256(WEIGHTS_ID_VERSION)
    for key in sorted(state_dict):
        t = state_dict[key]
        h.update(key.encode("utf-8") + b"\0")
        h.update(",".join(str(d) for d in t.shape).encode("ascii") + b"\0")
        arr = t.detach().to(device="cpu", dtype=torch.float16).contiguous().numpy()
        h.update(arr.astype("<f2", copy=False).data)
    return h.hexdigest()


def default_cache_dir() -> str:
    env = os.environ.get("VAE_LAB_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "vae_lab")


class HashCache:
    """File SHA-256s and weights ids, keyed by (absolute path, size, mtime_ns), in one JSON file.

    A damaged or unwritable cache is ignored: the cache may only ever save time. Reads and
    writes go through `vae_lab.state.jsonfile` (validated, atomic, locked across processes).
    """

    FILE = "hashes.json"
    MAX_ENTRIES = 2000

    def __init__(self, folder: str | None = None):
        from vae_lab.state.jsonfile import JsonStateFile

        self.path = os.path.join(folder or default_cache_dir(), self.FILE)
        self._file = JsonStateFile(self.path, clean=_clean_hashes, empty=_empty_hashes, what="the hash cache")
        self._lock = threading.Lock()
        self._entries: dict | None = None

    @staticmethod
    def _key(path: str) -> str:
        return "|".join(map(str, file_key(path)))  # "abspath|size|mtime_ns", as stored in hashes.json

    def _loaded(self) -> dict:
        if self._entries is None:
            self._entries = self._file.read()["entries"]
        return self._entries

    def get(self, kind: str, paths: list[str]) -> str | None:
        key = "::".join(self._key(p) for p in paths)
        with self._lock:
            entry = self._loaded().get(key)
        return entry.get(kind) if entry is not None else None

    def sha256s_with_weights_id(self, wid: str) -> list[str]:
        """SHA-256s of single files this cache has seen with weights id `wid` (both computed here)."""
        with self._lock:
            entries = list(self._loaded().values())
        return [e["sha256"] for e in entries if e.get("weights_id") == wid and "sha256" in e]

    def put(self, kind: str, paths: list[str], value: str) -> None:
        key = "::".join(self._key(p) for p in paths)

        def add(data: dict) -> None:
            entries = data["entries"]
            entries.setdefault(key, {})[kind] = value
            while len(entries) > self.MAX_ENTRIES:
                entries.pop(next(iter(entries)))

        with self._lock:
            self._loaded().setdefault(key, {})[kind] = value
            try:
                self._entries = self._file.update(add)["entries"]
            except OSError as err:  # also filelock.Timeout: the cache only ever saves time
                log.debug("hash cache not written: %s", err)


def _empty_hashes() -> dict:
    return {"version": 1, "entries": {}}


def _clean_hashes(data) -> dict:
    """{"version": 1, "entries": {key: {kind: hex}}}; entries of any other shape are dropped."""
    from vae_lab.state.jsonfile import require_dict, str_dict

    data = require_dict(data)
    if data.get("version") != 1:
        return _empty_hashes()
    entries = data.get("entries")
    if not isinstance(entries, dict):
        raise ValueError(f"'entries' is a {type(entries).__name__}, not an object")
    kept = {k: str_dict(v) for k, v in entries.items() if isinstance(k, str) and isinstance(v, dict)}
    return {"version": 1, "entries": {k: v for k, v in kept.items() if v}}


DEFAULT_CACHE = object()  # the user's cache folder (see the module docstring)


def _cache_for(cache) -> HashCache | None:
    if cache is DEFAULT_CACHE:
        return HashCache()
    if cache is None or isinstance(cache, HashCache):
        return cache
    return HashCache(os.fspath(cache))


def file_sha256(path: str, cache: HashCache | None = None) -> str:
    if cache is not None:
        hit = cache.get("sha256", [path])
        if hit:
            return hit
    digest = sha256_file(path)
    if cache is not None:
        cache.put("sha256", [path], digest)
    return digest


def cached_weights_id(vae: VaeFile, cache: HashCache | None = None) -> str:
    files = [vae.weights_file] + [f for f in vae.files if f != vae.weights_file]
    if cache is not None:
        hit = cache.get("weights_id", files)
        if hit:
            return hit
    wid = weights_id(vae.state_dict)
    if cache is not None:
        cache.put("weights_id", files, wid)
    return wid


# --- the known-VAE table --------------------------------------------------------------------------


def lookup(sha256: str):
    """The catalog entry for a file hash, or None (also when the catalog is unavailable)."""
    try:
        from vae_lab.identity import catalog
    except ImportError:
        return None
    return catalog.known_by_sha256(sha256)


def family_by_shape(vae: VaeFile) -> str:
    """The family where the tensors alone decide it, else "unknown"."""
    arch = vae.arch
    if vae.kind == "tae" and arch.latent_channels == 32 and arch.variant == "taef2":
        return "flux2"
    return families.UNKNOWN


def _dtype(sd) -> str:
    kinds = {str(t.dtype).replace("torch.", "") for t in sd.values()}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def identify(vae: VaeFile, cache=DEFAULT_CACHE) -> VaeInfo:
    """The `VaeInfo` of an already loaded `VaeFile`."""
    cache = _cache_for(cache)
    weight_files = [f for f in vae.files if not f.endswith("config.json")]
    hashes = [{"path": f, "sha256": file_sha256(f, cache), "size_bytes": os.path.getsize(f)} for f in weight_files]
    main = hashes[0]
    wid = cached_weights_id(vae, cache)

    entry, via = None, None
    for h in hashes:
        entry = lookup(h["sha256"])
        if entry is not None:
            via = "file"
            break
    meta = vae.metadata or {}
    if entry is None and cache is not None:
        # A copy of a catalogued file (`convert`, a re-save, an fp16 copy): named only if this
        # machine has itself hashed a file whose real SHA-256 is in the catalog and whose tensors
        # gave this weights id. The file's own metadata (`vae_lab.source_sha256`) is never
        # trusted: anyone can write it next to a self-declared weights id.
        for sha in cache.sha256s_with_weights_id(wid):
            entry = lookup(sha)
            if entry is not None:
                via = "weights"
                break

    family = _field(entry, "family") if entry is not None else None
    if not family:
        family = family_by_shape(vae)
    scale, shift = families.latent_scaling(vae.kind, family, vae.latent_channels)
    cfg_scale = (vae.config or {}).get("scaling_factor") if vae.kind == "kl" else None
    return VaeInfo(
        path=vae.path,
        format=vae.format,
        layout=vae.layout,
        kind=vae.kind,
        latent_channels=vae.latent_channels,
        family=family,
        has_encoder=vae.has_encoder,
        has_decoder=vae.has_decoder,
        file_sha256=main["sha256"],
        short_hash=main["sha256"][:10],
        weights_id=wid,
        known=_field(entry, "name") if entry is not None else None,
        scaling_factor=scale,
        shift_factor=shift,
        known_id=_field(entry, "id") if entry is not None else None,
        known_via=via,
        variant="kl-f8" if vae.kind == "kl" else vae.arch.variant,
        dtype=_dtype(vae.state_dict),
        tensors=len(vae.state_dict),
        size_bytes=sum(h["size_bytes"] for h in hashes),
        files=hashes,
        config_scaling_factor=float(cfg_scale) if isinstance(cfg_scale, (int, float)) else None,
        converted_from=meta.get("vae_lab.source_name"),
    )


def inspect(path, cache=DEFAULT_CACHE) -> VaeInfo:
    """Load, validate and identify the VAE at `path`. `cache`: a `HashCache`, a folder, or None."""
    return identify(load_vae_file(path), cache=cache)
