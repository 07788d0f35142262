"""Peak memory of one encode/decode call.

CUDA: `torch.cuda.max_memory_allocated` after resetting the peak, minus what was
allocated before the call (tensors only, not the allocator's cache).
CPU: a background thread samples the process RSS (`/proc/self/statm`) every
`interval` seconds during the call; the result is the highest sample minus the RSS
at the start. Short spikes between samples can be missed (a few ms); where /proc is
missing (macOS, Windows) the CPU figure is None.
"""

from __future__ import annotations

import os
import threading

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """`with PeakMemory(device) as pm: …` then `pm.peak_bytes` (int, or None if unknown)."""

    def __init__(self, device="cpu", interval: float = 0.002):
        import torch

        self.device = torch.device(device)
        self.interval = interval
        self.peak_bytes: int | None = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
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
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = max(0, torch.cuda.max_memory_allocated(self.device) - self._base)
            return False
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            r = rss_bytes()
            if r is not None:
                self._max = max(self._max, r)
            self.peak_bytes = max(0, self._max - self._base)
        return False
