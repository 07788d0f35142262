"""Benchmark: VAE Lab's in-place swap in Forge vs Forge's own way to change the VAE.

Forge changes a VAE only through the top bar's "VAE / Text Encoder", and the next generation's
`forge_model_reload()` rebuilds the whole model: it reads the checkpoint file and the VAE
file from disk (`backend/loader.py` `split_state_dict`, 449-470), builds every module and loads
the weights. That rebuild is timed here through the Forge stand-in's `backend.loader.forge_loader`
(tests/forge_stub: real file reads, real module builds and `load_state_dict`, under
`torch.inference_mode()` like Forge's), with an SD-size kl-f8 VAE (`SD_KL`, 83.65 M parameters)
and a checkpoint whose non-VAE part is one filler tensor of SD 1.5's UNet + text encoder size
in fp16 (1.6 GB; `--quick`: 0.2 GB). On a real Forge the text encoder and UNet are also
*built* and their weights converted, so the reload figure is a lower bound.

VAE Lab's swap is what `vae_lab.webui.swap.swap_vae` does per generation through `ForgeHost`: validate a
RAM-cached state dict (already in the module's dtype and device) and put its tensors into the live
`forge_objects.vae.first_stage_model` by reference, in inference mode; the restore puts the model's
own tensors, kept aside by reference, back (two swaps per generation, no copy).

Run: `python bench/forge_swap.py [--quick] [--json]` (= `python bench/run.py --only forge_swap`, which calls `run(quick)`).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import median_seconds  # noqa: E402


def _stand_in_backend():
    """The Forge stand-in's `backend` (and `stub_ldm`), importable without the WebUI modules."""
    for p in (ROOT / "tests" / "webui_stub", ROOT / "tests" / "forge_stub"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
    import stub_ldm
    from backend import loader

    return stub_ldm, loader


def _drop_page_cache(*paths: str) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    try:
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
        return True
    except OSError:
        return False


def run(quick: bool = False) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    from vae_lab.models.arch import SD_KL
    from vae_lab.runtime import swap
    from vae_lab.runtime.ramcache import RamCache, materialize, state_dict_bytes

    stub_ldm, loader = _stand_in_backend()
    repeats = 3 if quick else 5
    filler_mb = 200 if quick else 1600
    original_arch = stub_ldm.vae_arch_for
    stub_ldm.vae_arch_for = lambda kind: SD_KL  # SD-size VAE modules in the stand-in's backend
    try:
        own = {k: v.contiguous() for k, v in stub_ldm.build_autoencoder(SD_KL).state_dict().items()}
        other = {k: (v + 0.01).contiguous() for k, v in own.items()}
        vae_bytes = state_dict_bytes(other)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = os.path.join(tmp, "sd15-size.safetensors")
            vae = os.path.join(tmp, "vae-b.safetensors")
            sd = {f"first_stage_model.{k}": v for k, v in own.items()}
            sd["model.diffusion_model.input_conv.weight"] = torch.zeros(filler_mb * 1024 * 1024 // 2, dtype=torch.float16)
            save_file(sd, ckpt)
            del sd
            save_file(other, vae)
            ckpt_bytes = os.path.getsize(ckpt)

            def forge_module_change():
                # forge_model_reload() after the top bar changed: the model is rebuilt from both files
                loader.forge_loader(ckpt, additional_state_dicts=[vae])

            model = loader.forge_loader(ckpt)  # the loaded model VAE Lab swaps into
            fsm = model.forge_objects.vae.first_stage_model
            cache = RamCache(4 * vae_bytes)

            def read(p):
                return materialize(load_file(p))

            like = next(fsm.parameters())
            cache.placed(vae, read, device=like.device, dtype=like.dtype)  # the first (and only) read of the VAE file
            with torch.inference_mode():
                base = swap.tensors_of(fsm)  # the model's own VAE, kept aside by reference

            def vae_lab_swap():
                with torch.inference_mode():
                    swap.swap_in(fsm, cache.placed(vae, read, device=like.device, dtype=like.dtype), name="vae-b")

            def vae_lab_restore():
                with torch.inference_mode():
                    swap.swap_in(fsm, base, name="the model's own VAE")

            def generation_pair():
                vae_lab_swap()
                vae_lab_restore()

            forge_module_change()
            generation_pair()  # warm-up: allocator, page cache
            swap_ms = median_seconds(generation_pair, repeats) * 1000 / 2  # a swap in is a swap back
            pair_ms = median_seconds(generation_pair, repeats) * 1000
            warm_ms = median_seconds(forge_module_change, repeats) * 1000
            cold_ok = _drop_page_cache(ckpt, vae)
            cold_ms = (median_seconds(forge_module_change, repeats, before=lambda: _drop_page_cache(ckpt, vae)) * 1000
                       if cold_ok else None)
            reads = len(loader.file_reads)
    finally:
        stub_ldm.vae_arch_for = original_arch

    title = (f"Forge: VAE Lab swap vs Forge's module change (checkpoint {ckpt_bytes / 1e9:.2f} GB, "
             f"VAE {vae_bytes / 1e6:.1f} MB fp32), median of {repeats}")
    rows = [
        {"way": "VAE Lab swap (RAM -> forge_objects.vae, by reference)", "ms": round(swap_ms, 2), "x swap": 1.0},
        {"way": "VAE Lab per generation (swap + restore)", "ms": round(pair_ms, 2), "x swap": round(pair_ms / swap_ms, 2)},
        {"way": "Forge module change: model rebuilt, warm files", "ms": round(warm_ms, 1), "x swap": round(warm_ms / swap_ms, 1)},
        {"way": "Forge module change: model rebuilt, cold files", "ms": round(cold_ms, 1) if cold_ms else None,
         "x swap": round(cold_ms / swap_ms, 1) if cold_ms else None},
    ]
    notes = [
        f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, CPU only",
        "Forge's rebuild is timed through the stand-in's backend.loader.forge_loader (both files read, VAE module "
        "built and loaded); a real Forge also builds and converts the UNet and text encoders: a lower bound",
        f"files read by the stand-in's loader: {reads}; VAE file reads by VAE Lab's RAM cache: {cache.stats.misses}",
        "cold: posix_fadvise(DONTNEED) on both files before each rebuild" if cold_ok else "cold: unavailable",
        "with a GPU, Forge also moves the rebuilt model to it; VAE Lab's swap re-points the VAE's tensors at a copy "
        "already on the device (the RAM cache's device budget), or makes one host-to-device copy",
    ]
    return {"benchmark": "forge_swap", "date": time.strftime("%Y-%m-%d"), "title": title, "rows": rows, "notes": notes,
            "checkpoint_bytes": ckpt_bytes, "vae_bytes": vae_bytes}


if __name__ == "__main__":
    from run import standalone

    sys.exit(standalone("forge_swap"))
