"""An LRU cache of VAE state dicts in RAM, within a byte budget.

Switching VAEs should read each file from disk once. Entries are keyed by the file's
absolute path, size and modification time, so a file overwritten in place (a finished
download, a re-conversion) is read again instead of being served stale. When a new entry
would push the total over the budget, the least recently used entries are dropped first;
a state dict larger than the whole budget is returned but not kept.

The cache holds CPU tensors only and never touches the network or the WebUI.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from vae_lab.files.folders import file_key  # noqa: F401 (the key, defined once; importers use it from here too)


def state_dict_bytes(state_dict) -> int:
    """Bytes held by the tensors of `state_dict` (non-tensors count as 0)."""
    total = 0
    for t in state_dict.values():
        numel = getattr(t, "numel", None)
        if numel is not None:
            total += t.numel() * t.element_size()
    return total


def materialize(state_dict) -> dict:
    """Copies of `state_dict`'s tensors in ordinary CPU memory.

    safetensors and `torch.load(mmap=True)` hand out tensors backed by a memory map of the
    file: the kernel may drop those pages and read the disk again on the next swap. A cache
    entry must own its memory, so loaders pass their result through this once.
    """
    out = {}
    for k, v in state_dict.items():
        if hasattr(v, "detach"):
            v = v.detach()
            v = v.to("cpu", copy=True) if v.device.type != "cpu" else v.clone()
        out[k] = v
    return out


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    entries: int = 0
    bytes: int = 0
    budget: int = 0


class RamCache:
    """State dicts keyed by `file_key(path)`, least recently used evicted first.

    `get(path, loader)` returns the cached state dict or calls `loader(path)` (which must
    return a dict of CPU tensors) once and keeps its result when it fits the budget.
    """

    def __init__(self, budget_bytes: int):
        self._entries: OrderedDict[tuple, tuple[dict, int]] = OrderedDict()
        self._lock = threading.RLock()
        self._bytes = 0
        self._budget = max(0, int(budget_bytes))
        self.stats = CacheStats(budget=self._budget)

    # -- budget -------------------------------------------------------------------------
    @property
    def budget(self) -> int:
        return self._budget

    def set_budget(self, budget_bytes: int) -> None:
        """Change the budget; entries beyond it are evicted at once (LRU first)."""
        with self._lock:
            self._budget = max(0, int(budget_bytes))
            self.stats.budget = self._budget
            self._evict_to(self._budget)

    @property
    def total_bytes(self) -> int:
        return self._bytes

    # -- lookups ------------------------------------------------------------------------
    def __contains__(self, path) -> bool:
        try:
            key = file_key(path)
        except OSError:
            return False
        with self._lock:
            return key in self._entries

    def paths(self) -> list[str]:
        """Cached file paths, least recently used first."""
        with self._lock:
            return [k[0] for k in self._entries]

    def get(self, path, loader: Callable[[str], dict]) -> dict:
        """The state dict of `path`: from RAM if cached and unchanged, else `loader(path)`."""
        key = file_key(path)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return hit[0]
            self.stats.misses += 1
        # Load outside the lock: reading a 300 MB file must not block other lookups.
        state_dict = loader(key[0])
        self.put(path, state_dict, key=key)
        return state_dict

    def put(self, path, state_dict: dict, *, key: tuple | None = None) -> bool:
        """Keep `state_dict` for `path`; False when it alone exceeds the budget."""
        key = key or file_key(path)
        size = state_dict_bytes(state_dict)
        with self._lock:
            self._drop_path(key[0])
            if size > self._budget:
                return False
            self._evict_to(self._budget - size)
            self._entries[key] = (state_dict, size)
            self._bytes += size
            self._sync_stats()
            return True

    def discard(self, path) -> None:
        """Forget every entry of `path` (any size/mtime)."""
        with self._lock:
            self._drop_path(os.path.abspath(os.fspath(path)))
            self._sync_stats()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self._sync_stats()

    # -- internals ----------------------------------------------------------------------
    def _drop_path(self, abspath: str) -> None:
        for key in [k for k in self._entries if k[0] == abspath]:
            _, size = self._entries.pop(key)
            self._bytes -= size

    def _evict_to(self, limit: int) -> None:
        while self._entries and self._bytes > limit:
            _, (_, size) = self._entries.popitem(last=False)
            self._bytes -= size
            self.stats.evictions += 1
        self._sync_stats()

    def _sync_stats(self) -> None:
        self.stats.entries = len(self._entries)
        self.stats.bytes = self._bytes
