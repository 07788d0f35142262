"""A download's hidden partial file, its bookkeeping, its lock, and its publication.

    .vaelab-<24 hex>.part   the bytes received so far, in the target folder (same file system
                            as the result, so publishing is a link or a rename, never a copy)
    .vaelab-<24 hex>.meta   what they are: source (a hash of the URL, never the URL: signed URLs
                            and ?token= must not land on disk), validator, total, expected SHA-256
    <cache>/locks/<32 hex>.lock   the lock serialising two downloads of one file into one folder

The hex is a hash of the file name, so names of any allowed length (up to 255 bytes) fit, and
the WebUI never lists these files: they are hidden, and do not end in a weights extension. The
lock lives in VAE Lab's cache folder, not in `models/VAE`: `filelock` leaves its lock file
behind on release (deleting it races with a waiter), and the VAE folder must hold nothing but
VAEs and, while a transfer has bytes, its hidden partial.

Only a file that passed every check is published, last, by `publish`: a hard link (which never
overwrites) or, where links are unsupported, a check-then-rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vae_lab.download.checks import check_payload_start
from vae_lab.errors import DownloadBusy, DownloadCancelled, DownloadError
from vae_lab.files.atomic import fsync_dir, place_new, remove_quietly
from vae_lab.state.jsonfile import write_json_atomic

PART_PREFIX = ".vaelab-"
PART_SUFFIX = ".part"
META_SUFFIX = ".meta"
HASH_BLOCK = 4 << 20
LOCK_POLL = 0.05  # seconds between lock attempts, so a waiting download can still be cancelled


def _name_key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:24]


def lock_dir() -> Path:
    from vae_lab.identity.identify import default_cache_dir

    return Path(default_cache_dir()) / "locks"


def partial_paths(dest: Path, name: str) -> tuple[Path, Path, Path]:
    """(partial, meta, lock) paths of a download of `name` into `dest`."""
    key = _name_key(name)
    folder_key = hashlib.sha256(f"{os.path.abspath(dest)}\0{name}".encode()).hexdigest()[:32]
    return (dest / f"{PART_PREFIX}{key}{PART_SUFFIX}", dest / f"{PART_PREFIX}{key}{META_SUFFIX}",
            lock_dir() / f"{folder_key}.lock")


@dataclass
class KeptPartial:
    """A hidden partial in a VAE folder (for UIs: "12 MB of x.safetensors kept")."""

    filename: str
    path: str
    size: int
    total: int | None


def kept_partials(dest) -> list[KeptPartial]:
    """The hidden partials in `dest` and what they are, from their bookkeeping."""
    found = []
    try:
        names = os.listdir(dest)
    except OSError:
        return found
    for n in names:
        if n.startswith(PART_PREFIX) and n.endswith(PART_SUFFIX):
            part = Path(dest) / n
            meta = _read_meta(part.with_name(n[: -len(PART_SUFFIX)] + META_SUFFIX))
            try:
                size = part.stat().st_size
            except OSError:
                continue
            name = meta.get("filename") if isinstance(meta.get("filename"), str) else n
            total = meta.get("total") if isinstance(meta.get("total"), int) else None
            found.append(KeptPartial(name, str(part), size, total))
    return found


def _read_meta(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@dataclass
class ResumePoint:
    """Where a transfer goes on from: the running hash over the kept bytes, and what they are."""

    hasher: Any
    size: int
    validator: str | None
    total: int | None
    complete: bool = False


class PartialFile:
    """The partial, meta and lock of one file name in one folder."""

    def __init__(self, dest: Path, filename: str):
        self.dest, self.filename = dest, filename
        self.part, self.meta_path, self.lock_path = partial_paths(dest, filename)
        self._lock = None

    # ---- the lock
    def acquire(self, cancelled: Callable[[], bool], wait: float | None) -> None:
        """Take the lock, polling so `cancelled` is honoured; `wait` None = as long as it takes."""
        from filelock import FileLock, Timeout

        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # an unwritable cache: lock next to the partial instead
            self.lock_path = self.part.with_suffix(".lock")
        lock = FileLock(str(self.lock_path))
        start = time.monotonic()
        while True:
            try:
                lock.acquire(timeout=LOCK_POLL)
                self._lock = lock
                return
            except Timeout:
                pass
            if cancelled():
                raise DownloadCancelled(f"cancelled while waiting for another download of {self.filename}")
            if wait is not None and time.monotonic() - start > wait:
                raise DownloadBusy(f"another download of {self.filename} into {self.dest} is still running")

    @property
    def held(self) -> bool:
        return self._lock is not None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---- bookkeeping
    def read_meta(self) -> dict:
        return _read_meta(self.meta_path)

    def write_meta(self, **fields) -> None:
        write_json_atomic(self.meta_path, {"filename": self.filename, **fields})

    def resume_point(self, source: str, expected_sha: str | None) -> ResumePoint:
        """After a restart: hash the partial once so the running hash covers its bytes. Its bytes
        are kept if they can be resumed safely (same source and expected file, a validator, a
        plausible start), or if they already are the whole expected file (the SHA-256 says so);
        otherwise the partial is emptied."""
        meta = self.read_meta()
        validator = meta.get("validator") if isinstance(meta.get("validator"), str) else None
        same = meta.get("source") == source and (not expected_sha or meta.get("sha256") in (None, expected_sha))
        h = hashlib.sha256()
        size = 0
        with open(self.part, "rb") as f:
            try:
                check_payload_start(f.read(64), self.filename)
                plausible = True
            except DownloadError:
                plausible = False
            f.seek(0)
            while plausible and (block := f.read(HASH_BLOCK)):
                h.update(block)
                size += len(block)
        if plausible and expected_sha and h.hexdigest() == expected_sha:
            return ResumePoint(h, size, validator, size, complete=True)  # killed between the last byte and publishing
        if not (plausible and same and validator):
            size, h = 0, hashlib.sha256()  # a partial of something else, or of an unknown version: start over
        if size != self.size():
            self.truncate(size)
        total = meta.get("total")
        return ResumePoint(h, size, validator if size else None, total if size and isinstance(total, int) else None)

    def size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def truncate(self, size: int) -> None:
        if self.part.exists():
            with open(self.part, "r+b") as f:
                f.truncate(size)

    def discard(self) -> None:
        """Remove the partial and its bookkeeping (only ever while holding the lock)."""
        remove_quietly(self.part)
        remove_quietly(self.meta_path)

    # ---- the end
    def publish(self, final: Path) -> None:
        """Move the verified partial to `final` unless that name is taken (FileExistsError)."""
        place_new(self.part, final)
        fsync_dir(self.dest)
        remove_quietly(self.meta_path)
