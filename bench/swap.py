"""Benchmark: a cached VAE swap (by reference) vs the WebUI's reload from disk vs a plain copy.

An SD-size kl-f8 VAE (`vae_lab.models.arch.SD_KL`, 83.65 M parameters, 334.6 MB in fp32) with
random weights is built as a module with the real LDM tensor names; a second random state
dict is written to a temporary safetensors file. Three ways to put that file's weights
into the live module are timed (median of repeats):

* plain copy: `copy_` of every tensor from a state dict already in RAM, nothing else (the floor
  of any swap that writes the weights into the module, as VAE Lab's did before 2026-12-01);
* cached swap: `vae_lab.runtime.swap.swap_in` fed by a `RamCache` hit already in the module's
  dtype and device (`RamCache.placed`): validation, then every tensor put in by reference;
* WebUI reload: what `sd_vae.reload_vae_weights` does per swap — read the file into a
  state dict (`safetensors.torch.load_file`), drop `loss*`/EMA keys, strict
  `load_state_dict`, cast to the VAE dtype, and move the model to the CPU and back. On a
  CPU-only machine that move is a no-op, so the reload figure is a lower bound; with a GPU
  the whole diffusion model (1.7–5 GB) crosses the bus twice per swap.
  Measured warm (file in the page cache) and cold (pages dropped with
  `posix_fadvise(DONTNEED)` before each read, where the OS allows it).

Run: `python bench/swap.py [--quick] [--json]` (= `python bench/run.py --only swap`, which calls `run(quick)`).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _timing import median_seconds  # noqa: E402


def _build_module(shapes: dict, device):
    """An nn.Module tree whose state dict has exactly `shapes`' dotted names."""
    import torch

    root = torch.nn.Module()
    for name, shape in shapes.items():
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            child = getattr(mod, part, None) if part in mod._modules else None
            if child is None:
                child = torch.nn.Module()
                mod.add_module(part, child)
            mod = child
        mod.register_parameter(leaf, torch.nn.Parameter(torch.empty(shape, device=device), requires_grad=False))
    return root


def _random_state_dict(shapes: dict, seed: int) -> dict:
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in shapes.items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        out[name] = (torch.randn(shape, generator=g) / math.sqrt(fan_in)).contiguous()
    return out


def _drop_page_cache(path: str) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _median_ms(fn, repeats: int, before=None) -> float:
    return median_seconds(fn, repeats, before=before) * 1000


def run(quick: bool = False) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    from vae_lab.runtime import swap
    from vae_lab.models.arch import SD_KL
    from vae_lab.models.shapes import expected_shapes
    from vae_lab.runtime.ramcache import RamCache, materialize, state_dict_bytes

    repeats = 3 if quick else 7
    device = torch.device("cpu")
    shapes = expected_shapes(SD_KL)
    module = _build_module(shapes, device)
    module.load_state_dict(_random_state_dict(shapes, 0))
    new_sd = _random_state_dict(shapes, 1)
    nbytes = state_dict_bytes(new_sd)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench-vae.safetensors")
        save_file(new_sd, path)
        targets = list(module.state_dict().values())
        sources = [new_sd[k] for k in module.state_dict()]

        def floor():
            with torch.no_grad():
                for dst, src in zip(targets, sources):
                    dst.copy_(src)

        cache = RamCache(2 * nbytes)
        def read(p):
            return materialize(load_file(p))  # what the WebUI adapter's loader keeps: owned memory

        cache.get(path, read)  # the first (and only) disk read

        def cached_swap():
            swap.swap_in(module, cache.placed(path, read, device=device, dtype=torch.float32))

        def webui_reload():
            sd = load_file(path, device="cpu")
            sd = {k: v for k, v in sd.items() if k[:4] != "loss" and k not in ("model_ema.decay", "model_ema.num_updates")}
            module.to(torch.device("cpu"))  # the whole model to CPU (no-op here) ...
            module.load_state_dict(sd)
            module.to(torch.float32)
            module.to(device)  # ... and back to the device

        floor()
        cached_swap()
        webui_reload()  # warm-up: allocator, page cache
        floor_ms = _median_ms(floor, repeats)
        cached_ms = _median_ms(cached_swap, repeats)
        warm_ms = _median_ms(webui_reload, repeats)
        cold_ok = _drop_page_cache(path)
        cold_ms = _median_ms(webui_reload, repeats, before=lambda: _drop_page_cache(path)) if cold_ok else None
        hits, misses = cache.stats.hits, cache.stats.misses

    result = {
        "benchmark": "swap",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "device": str(device),
        "date": time.strftime("%Y-%m-%d"),
        "repeats": repeats,
        "vae": "SD kl-f8 (vae_lab.models.arch.SD_KL), fp32, random weights",
        "bytes": nbytes,
        "floor_copy_ms": round(floor_ms, 1),
        "cached_swap_ms": round(cached_ms, 2),
        "webui_reload_warm_ms": round(warm_ms, 1),
        "webui_reload_cold_ms": round(cold_ms, 1) if cold_ms is not None else None,
        "cold_method": "posix_fadvise(DONTNEED) before each read" if cold_ok else "unavailable",
        "cached_vs_floor": round(cached_ms / floor_ms, 2),
        "reload_warm_vs_cached": round(warm_ms / cached_ms, 1),
        "reload_cold_vs_cached": round(cold_ms / cached_ms, 1) if cold_ms is not None else None,
        "cache_disk_reads": misses,
        "cache_hits": hits,
    }
    # the table bench/run.py prints
    result["title"] = f"VAE swap, SD kl-f8 fp32 ({nbytes / 1e6:.1f} MB), median of {repeats}"
    rows = [("plain copy of the weights", floor_ms), ("VAE Lab cached swap (by reference)", cached_ms),
            ("WebUI reload, warm file", warm_ms), ("WebUI reload, cold file", cold_ms)]
    result["rows"] = [
        {"way": way, "ms": round(ms, 2) if ms is not None else None,
         "x cached swap": round(ms / cached_ms, 2) if ms is not None else None}
        for way, ms in rows
    ]
    result["notes"] = [
        f"disk reads by the RAM cache over all repeats: {misses}",
        "the WebUI reload's move of the whole model CPU<->GPU is a no-op on a CPU-only machine",
        f"cold: {result['cold_method']}",
    ]
    return result


if __name__ == "__main__":
    from run import standalone

    sys.exit(standalone("swap"))
