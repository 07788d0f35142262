"""Loaded VAEs kept between runs, so repeated comparisons in the tab don't re-read files."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from vae_lab.files.folders import file_key


class VaeCache:
    """Loaded VAEs for the tab and the CLI, in RAM, within a byte budget (LRU first out).

    Keyed by (real path, mtime, size): a changed file is loaded again. The cached models
    live on the CPU; `load(path, device)` hands out the model on `device` for one run
    (`Vae.on`), so device memory is held only while a comparison uses it and returns to
    what it was when the run's objects are dropped. Half-precision copies are not kept
    (`Vae.keep_cast` is off). Default budget: four SD-size VAEs (~1.3 GB of fp32 weights).
    """

    def __init__(self, budget_bytes: int = 4 * 335 * 2**20, *, maxsize: int | None = None):
        self.budget_bytes = int(budget_bytes)
        self.maxsize = maxsize  # an optional cap on the number of models too
        self._items: OrderedDict = OrderedDict()  # key -> (Vae on CPU, bytes)
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str) -> tuple:
        real = os.path.realpath(path)
        try:
            return file_key(real)
        except OSError:
            return real, None, None

    @property
    def total_bytes(self) -> int:
        return sum(b for _v, b in self._items.values())

    def load(self, path: str, device=None):
        from vae_lab.runtime.engine import default_device, load_vae

        k = self.key(path)
        with self._lock:
            hit = self._items.get(k)
            if hit is not None:
                self._items.move_to_end(k)
        if hit is None:
            vae = load_vae(path, device="cpu")
            size = sum(p.numel() * p.element_size() for p in vae._model.parameters())
            with self._lock:
                hit = self._items[k] = (vae, size)
                self._items.move_to_end(k)
                while len(self._items) > 1 and (self.total_bytes > self.budget_bytes or
                                                (self.maxsize is not None and len(self._items) > self.maxsize)):
                    self._items.popitem(last=False)
                if self.total_bytes > self.budget_bytes:  # larger than the whole budget: not kept
                    self._items.pop(k, None)
        return hit[0].on(device or default_device())

    def __len__(self):
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_default_cache = VaeCache()


def default_cache() -> VaeCache:
    return _default_cache
