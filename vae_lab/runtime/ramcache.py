"""The one cache of VAE weights: state dicts in RAM within a byte budget, plus copies placed
in a model's dtype and on its device.

Switching VAEs should read each file from disk once, and a swap should copy nothing. Entries
are keyed by the file's absolute path, size and modification time, so a file overwritten in
place (a finished download, a re-conversion) is read again instead of being served stale.
Each file has a *master* (what the loader returned: CPU tensors in owned memory) and, on
demand, *placed* copies (`placed(path, loader, device=, dtype=)`): the same weights in the
dtype and on the device of the module they go into, made once and then put in by reference
(`runtime.swap.swap_in`). A placed copy that would equal its master is the master itself.

Budgets are per memory: RAM (masters and CPU copies) and each accelerator (its copies, the
device budget). When an entry would push its memory over budget, the least recently used
entries of that memory go first; an entry larger than the whole budget is returned, not kept.
The WebUI's swaps and the comparison tab read from the same cache (`compare.cache.VaeCache`).

Nothing here touches the network or the WebUI.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
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
    entries: int = 0  # masters (one per file)
    bytes: int = 0  # RAM held: masters and CPU copies
    budget: int = 0
    placed: int = 0  # placed copies that are not their master
    device_bytes: dict = field(default_factory=dict)  # accelerator ("cuda:0") -> bytes of its copies


def _pool(device) -> str:
    """Which budget a tensor's memory counts against: "cpu" (RAM) or the accelerator's name."""
    import torch

    d = torch.device(device)
    return "cpu" if d.type == "cpu" else f"{d.type}:{0 if d.index is None else d.index}"


def _signature(state_dict) -> tuple | None:
    """(memory pool, dtype) shared by every floating point tensor of `state_dict`, or None if mixed."""
    sig = None
    for v in state_dict.values():
        if hasattr(v, "device") and v.is_floating_point():
            here = (_pool(v.device), str(v.dtype))
            if sig is None:
                sig = here
            elif here != sig:
                return None
    return sig


class RamCache:
    """State dicts keyed by `file_key(path)`, least recently used evicted first.

    `get(path, loader)` returns the cached master or calls `loader(path)` (which must return a
    dict of CPU tensors in owned memory, see `materialize`) once and keeps its result when it
    fits the budget. `placed(...)` returns the weights in a module's dtype and on its device.
    """

    def __init__(self, budget_bytes: int, device_budget_bytes: int | None = None):
        # (file key, placement) -> (state dict, bytes, pool, signature); placement None is the master
        self._entries: OrderedDict[tuple, tuple[dict, int, str, tuple | None]] = OrderedDict()
        self._lock = threading.RLock()
        self._budget = max(0, int(budget_bytes))
        self._device_budget = self._budget if device_budget_bytes is None else max(0, int(device_budget_bytes))
        self.stats = CacheStats(budget=self._budget)

    # -- budget -------------------------------------------------------------------------
    @property
    def budget(self) -> int:
        return self._budget

    @property
    def device_budget(self) -> int:
        return self._device_budget

    def set_budget(self, budget_bytes: int, device_budget_bytes: int | None = None) -> None:
        """Change the budgets; entries beyond them are evicted at once (LRU first)."""
        with self._lock:
            self._budget = max(0, int(budget_bytes))
            if device_budget_bytes is not None:
                self._device_budget = max(0, int(device_budget_bytes))
            self.stats.budget = self._budget
            for pool in {e[2] for e in self._entries.values()} | {"cpu"}:
                self._evict_to(pool, self._limit(pool))

    @property
    def total_bytes(self) -> int:
        """RAM held (masters and CPU copies)."""
        return self._pool_bytes("cpu")

    def device_bytes(self, device) -> int:
        """Bytes of the copies held on `device` ("cpu": RAM)."""
        return self._pool_bytes(_pool(device))

    # -- lookups ------------------------------------------------------------------------
    def __contains__(self, path) -> bool:
        try:
            key = file_key(path)
        except OSError:
            return False
        with self._lock:
            return (key, None) in self._entries

    def has_placed(self, path, *, device, dtype) -> bool:
        """Whether `path`'s weights are held as `dtype` on `device` (a placed copy, or the master).
        Raises OSError for a file that is not there."""
        key = file_key(path)
        with self._lock:
            if (key, (_pool(device), str(dtype))) in self._entries:
                return True
            master = self._entries.get((key, None))
            return master is not None and master[3] == (_pool(device), str(dtype))

    def paths(self) -> list[str]:
        """Cached file paths (masters), least recently used first."""
        with self._lock:
            return [k[0][0] for k in self._entries if k[1] is None]

    def get(self, path, loader: Callable[[str], dict]) -> dict:
        """The master state dict of `path`: from RAM if cached and unchanged, else `loader(path)`."""
        key = file_key(path)
        with self._lock:
            hit = self._entries.get((key, None))
            if hit is not None:
                self._entries.move_to_end((key, None))
                self.stats.hits += 1
                return hit[0]
            self.stats.misses += 1
        # Load outside the lock: reading a 300 MB file must not block other lookups.
        state_dict = loader(key[0])
        self.put(path, state_dict, key=key)
        return state_dict

    def placed(self, path, loader: Callable[[str], dict], *, device, dtype) -> dict:
        """`path`'s weights as `dtype` tensors on `device`, ready to be put into a module by reference.

        Made once from the master and kept (the budget of `device`'s memory); the master itself
        when it is already that. Floating point tensors only are cast; others are moved.
        """
        import torch

        key, where = file_key(path), (_pool(device), str(dtype))
        with self._lock:
            hit = self._entries.get((key, where))
            if hit is not None:
                self._entries.move_to_end((key, where))
                self.stats.hits += 1
                return hit[0]
        master = self.get(path, loader)
        with self._lock:
            entry = self._entries.get((key, None))
        sig = entry[3] if entry is not None and entry[0] is master else _signature(master)
        if sig == (_pool(device), str(dtype)):
            return master
        target = torch.device(device)
        if target.type == "cuda":
            master = self._pinned(key, master)
        copy = {k: (v.to(device=target, dtype=dtype if v.is_floating_point() else v.dtype,
                         non_blocking=target.type == "cuda", copy=True) if hasattr(v, "to") else v)
                for k, v in master.items()}
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        self._keep((key, where), copy)
        return copy

    def put(self, path, state_dict: dict, *, key: tuple | None = None) -> bool:
        """Keep `state_dict` as the master of `path` (its placed copies go); False when it alone
        exceeds the budget."""
        key = key or file_key(path)
        with self._lock:
            self._drop_path(key[0])
            return self._keep((key, None), state_dict)

    def put_placed(self, path, state_dict: dict) -> bool:
        """Keep tensors already in a module's dtype and device (e.g. the ones a WebUI loaded from
        `path` itself) as `path`'s placed copy, so swapping back to it copies nothing."""
        first = next((v for v in state_dict.values() if hasattr(v, "is_floating_point") and v.is_floating_point()), None)
        if first is None:
            return False
        where = (_pool(first.device), str(first.dtype))
        key = file_key(path)
        with self._lock:
            self._entries.pop((key, where), None)
            return self._keep((key, where), state_dict)

    def discard(self, path) -> None:
        """Forget every entry of `path` (any size/mtime, master and copies)."""
        with self._lock:
            self._drop_path(os.path.abspath(os.fspath(path)))
            self._sync_stats()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sync_stats()

    # -- internals ----------------------------------------------------------------------
    def _limit(self, pool: str) -> int:
        return self._budget if pool == "cpu" else self._device_budget

    def _pool_bytes(self, pool: str) -> int:
        with self._lock:
            return sum(e[1] for e in self._entries.values() if e[2] == pool)

    def _keep(self, entry_key: tuple, state_dict: dict) -> bool:
        first = next((v for v in state_dict.values() if hasattr(v, "device")), None)
        pool = "cpu" if first is None else _pool(first.device)
        size = state_dict_bytes(state_dict)
        with self._lock:
            if size > self._limit(pool):
                self._sync_stats()
                return False
            self._evict_to(pool, self._limit(pool) - size)
            self._entries[entry_key] = (state_dict, size, pool, _signature(state_dict))
            self._sync_stats()
            return True

    def _pinned(self, key: tuple, master: dict) -> dict:
        """The master in page-locked RAM (one fast host-to-device copy per placement), once."""
        if all(not hasattr(v, "is_pinned") or v.is_pinned() for v in master.values()):
            return master
        try:
            pinned = {k: v.pin_memory() if hasattr(v, "pin_memory") else v for k, v in master.items()}
        except RuntimeError:  # no pinnable memory left: an ordinary copy works too
            return master
        with self._lock:
            if (key, None) in self._entries:
                _sd, size, pool, sig = self._entries[(key, None)]
                self._entries[(key, None)] = (pinned, size, pool, sig)
        return pinned

    def _drop_path(self, abspath: str) -> None:
        for entry_key in [k for k in self._entries if k[0][0] == abspath]:
            del self._entries[entry_key]

    def _evict_to(self, pool: str, limit: int) -> None:
        while self._pool_bytes(pool) > limit:
            victim = next((k for k, e in self._entries.items() if e[2] == pool), None)
            if victim is None:
                break
            del self._entries[victim]
            self.stats.evictions += 1
        self._sync_stats()

    def _sync_stats(self) -> None:
        self.stats.entries = sum(1 for k in self._entries if k[1] is None)
        self.stats.placed = sum(1 for k in self._entries if k[1] is not None)
        self.stats.bytes = self._pool_bytes("cpu")
        self.stats.device_bytes = {p: self._pool_bytes(p) for p in {e[2] for e in self._entries.values()} if p != "cpu"}
