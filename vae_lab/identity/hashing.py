"""File SHA-256s, weights ids and the cache that keeps them, for identify and the catalog alike.

* the **file SHA-256** (streamed in 1 MiB chunks): A1111's "VAE hash" is its first 10 hex;
  the catalog is keyed on it.
* the **weights id**: SHA-256 over the normalised tensors (sorted keys, shapes, values cast
  to little-endian fp16), the same for renamed, re-pickled, re-saved and fp16 copies.

Hashing a 335 MB file takes a while, so both are cached in a small JSON file keyed by
(path, size, mtime). Its folder is `$VAE_LAB_CACHE_DIR`, else `$XDG_CACHE_HOME/vae_lab`,
else `~/.cache/vae_lab`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import TYPE_CHECKING

from vae_lab.errors import BadVaeFile
from vae_lab.files.folders import file_key, open_regular

if TYPE_CHECKING:
    from vae_lab.files.loading import VaeFile

CHUNK = 1 << 20
WEIGHTS_ID_VERSION = b"vae-lab weights id v1\0"

log = logging.getLogger("vae_lab.identity")


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
