"""Peak memory of one encode/decode call: tensor bytes, deterministic on every device.

CUDA: `torch.cuda.max_memory_allocated` after resetting the peak, minus what was
allocated before the call (tensors only, not the allocator's cache).
CPU: the same quantity, counted exactly: a `TorchDispatchMode` sees every tensor an
operator returns in this thread, adds the bytes of each new storage (views and in-place
results allocate nothing) and subtracts them when the storage is freed; the result is the highest total reached. Unlike the
process RSS this does not depend on what ran before (malloc keeps freed pages, glibc's
mmap threshold moves), on sampling luck, or on other threads (the WebUI's own work).
It leaves out memory that is not tensor storage (oneDNN scratch buffers, Python
objects). Other devices (MPS): a background sampler of the process RSS
(`/proc/self/statm`, peak minus the RSS at the start), None where /proc is missing.
"""

from __future__ import annotations

import os
import threading
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class TensorPeak(TorchDispatchMode):
    """`with TensorPeak() as tp: …` then `tp.peak_bytes`: the most CPU tensor bytes allocated
    in the block and alive at once (storages that existed before the block are not counted)."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak_bytes = 0
        self._seen: dict[int, int] = {}

    def _freed(self, key: int, n: int) -> None:
        self.live -= n
        self._seen.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):
            return out  # a view or an in-place/out= result: no new storage
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.is_sparse:
                continue
            s = t.untyped_storage()
            key, n = s.data_ptr(), s.nbytes()
            if n == 0 or key in self._seen:
                continue
            self._seen[key] = n
            self.live += n
            self.peak_bytes = max(self.peak_bytes, self.live)
            weakref.finalize(s, self._freed, key, n)
        return out


class PeakMemory:
    """`with PeakMemory(device) as pm: …` then `pm.peak_bytes` (int, or None if unknown)."""

    def __init__(self, device="cpu", interval: float = 0.002):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread = None
        self._tensors = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        if self.device.type == "cpu":
            self._tensors = TensorPeak().__enter__()
            return self
        self._base = rss_bytes()
        if self._base is not None:
            self._max = self._base
            self._thread = threading.Thread(target=self._sample, name="vae-lab-rss", daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            r = rss_bytes()
            if r is not None and r > self._max:
                self._max = r

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = max(0, torch.cuda.max_memory_allocated(self.device) - self._base)
            return False
        if self._tensors is not None:
            self._tensors.__exit__(*exc)
            self.peak_bytes = self._tensors.peak_bytes
            return False
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            r = rss_bytes()
            if r is not None:
                self._max = max(self._max, r)
            self.peak_bytes = max(0, self._max - self._base)
        return False


def free_bytes(device) -> int | None:
    """Memory a new allocation on `device` can still get: CUDA free + the allocator's unused cache;
    CPU `MemAvailable` (Linux); None where unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        try:
            with open("/proc/meminfo", "rb") as f:
                for line in f:
                    if line.startswith(b"MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    return None
