"""Loaded VAEs kept between runs, so repeated comparisons in the tab don't re-read files."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from vae_lab.files.folders import file_key


class VaeCache:
    """A small LRU of loaded `Vae` objects keyed by (real path, mtime, size, device).

    A changed file (new mtime or size) is loaded again; at most `maxsize` models are kept
    (4: a typical comparison of up to four VAEs is not re-read on the next run). Models stay
    on their device until evicted, so a host that needs the memory back calls `clear()`.
    """

    def __init__(self, maxsize: int = 4):
        self.maxsize = maxsize
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str, device=None) -> tuple:
        real = os.path.realpath(path)
        try:
            return (*file_key(real), str(device))
        except OSError:
            return real, None, None, str(device)

    def load(self, path: str, device=None):
        from vae_lab.runtime.engine import load_vae

        k = self.key(path, device)
        with self._lock:
            if k in self._items:
                self._items.move_to_end(k)
                return self._items[k]
        vae = load_vae(path, device=device)
        with self._lock:
            self._items[k] = vae
            self._items.move_to_end(k)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return vae

    def __len__(self):
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_default_cache = VaeCache()


def default_cache() -> VaeCache:
    return _default_cache
