"""Loaded VAEs kept between runs, built over the one weights cache (`runtime.ramcache.RamCache`)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import replace

from vae_lab.files.folders import file_key
from vae_lab.runtime.ramcache import RamCache, materialize


class VaeCache:
    """Ready models for the tab and the CLI, whose weights are the entries of a `RamCache`.

    The weights live once, in the RAM cache (in the WebUI: the same object its per-generation
    swaps use, within the one Settings budget), as fp32 CPU tensors; a model built over them
    takes them by reference (`build_model(share=True)`), so it costs no bytes beyond them and is
    dropped when its weights are evicted. Keyed by (real path, size, mtime): a changed file is
    read again. `load(path, device)` hands out the model on `device` for one run (`Vae.on`), so
    device memory is held only while a comparison uses it and returns to what it was when the
    run's objects are dropped. Half-precision copies are not kept (`Vae.keep_cast` is off).
    Default budget (standalone): four SD-size VAEs (~1.3 GB of fp32 weights).
    """

    def __init__(self, budget_bytes: int = 4 * 335 * 2**20, *, maxsize: int | None = None,
                 weights: RamCache | None = None):
        self.weights = weights if weights is not None else RamCache(budget_bytes)
        self.maxsize = maxsize  # an optional cap on the number of models kept
        self._models: OrderedDict = OrderedDict()  # file key -> (the weights dict it was built over, Vae on CPU)
        self._files: dict = {}  # file key -> the VaeFile read (without its tensors): kind, arch, identity
        self._lock = threading.Lock()

    def use_weights(self, weights: RamCache) -> None:
        """Build over `weights` from now on (the WebUI's cache), forgetting models built over another."""
        with self._lock:
            if weights is not self.weights:
                self.weights = weights
                self._models.clear()

    @property
    def budget_bytes(self) -> int:
        return self.weights.budget

    @property
    def total_bytes(self) -> int:
        """RAM the weights cache holds (the models share it)."""
        return self.weights.total_bytes

    def _read(self, path: str) -> dict:
        from vae_lab.files.loading import load_vae_file

        vf = load_vae_file(path)
        self._files[file_key(path)] = replace(vf, state_dict={})
        return materialize(vf.state_dict)

    def _file(self, path: str, key):
        """The VaeFile (kind, arch, files) of weights another loader put into the cache (the WebUI's)."""
        if key not in self._files:
            from vae_lab.files.loading import load_vae_file

            self._files[key] = replace(load_vae_file(path), state_dict={})
        return self._files[key]

    def load(self, path: str, device=None):
        import torch

        from vae_lab.runtime.engine import Vae, default_device

        real = os.path.realpath(path)
        try:
            key = file_key(real)
        except OSError:
            key = None
        if key is None:  # not a regular file we can key: load uncached (the loader says what is wrong)
            from vae_lab.runtime.engine import load_vae

            return load_vae(real, device="cpu").on(device or default_device())
        sd = self.weights.placed(real, self._read, device="cpu", dtype=torch.float32)
        with self._lock:
            hit = self._models.get(key)
            vae = hit[1] if hit is not None and hit[0] is sd else None
            if vae is not None:
                self._models.move_to_end(key)
        if vae is None:
            vae = Vae.from_vaefile(replace(self._file(real, key), state_dict=sd), device="cpu")
            with self._lock:
                self._models[key] = (sd, vae)
        self._prune(keep=key)
        return vae.on(device or default_device())

    def _prune(self, keep) -> None:
        """Drop models whose weights the cache no longer holds (their memory goes with them)."""
        import torch

        with self._lock:
            for key in list(self._models):
                if key == keep:
                    continue
                try:
                    held = self.weights.has_placed(key[0], device="cpu", dtype=torch.float32) \
                        and file_key(key[0]) == key
                except OSError:
                    held = False
                if not held:
                    del self._models[key]
                    self._files.pop(key, None)
            if self.maxsize is not None:
                while len(self._models) > max(self.maxsize, 1):
                    oldest = next(k for k in self._models if k != keep)
                    del self._models[oldest]

    def __len__(self):
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._files.clear()
        self.weights.clear()


_default_cache = VaeCache()


def default_cache() -> VaeCache:
    return _default_cache
