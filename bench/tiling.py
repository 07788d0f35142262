"""Tiled vs whole-image decode on SD-size weights: fidelity, peak memory, time.

The tiled decode is exact (`vae_lab/runtime/tiling.py`): it should equal the whole
decode up to float rounding (PSNR >= 60 dB, >= 99.9 % of 8-bit values identical) for
any tile, at a fraction of the peak memory, in at most 1.5x the time. Random SD-size
weights (83.7 M parameters, speed and memory do not depend on the values); latents are
smooth random fields (bicubic-upsampled noise). fp32 throughout. Peak memory: exact
tensor bytes (CPU: `memory.TensorPeak`; CUDA: `max_memory_allocated`). Full run: 1024²
and 2048² with 256/384/512 px tiles (minutes on a small CPU); --quick: 512² only.
"""

from __future__ import annotations


def run(quick: bool) -> dict:
    import sys
    import time

    import numpy as np
    import torch

    from decode import _latents, _psnr
    from testkit.factories import random_kl_state_dict
    from vae_lab.files.imaging import tensor_to_array
    from vae_lab.models.arch import SD_KL
    from vae_lab.runtime.engine import Vae

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vae = Vae.from_state_dict(random_kl_state_dict(SD_KL, seed=0), arch=SD_KL, family="sd1", device=device,
                              state_dir="/tmp/vae-lab-bench-state")
    cases = [(512, (256,))] if quick else [(1024, (256, 384, 512)), (2048, (256, 384, 512))]
    rows, notes = [], []
    mib = lambda b: None if b is None else round(b / 2**20)  # noqa: E731
    for size, tiles in cases:
        z = _latents(size, seed=1).to(device)
        c0 = time.process_time()
        whole = vae.decode(z, precision="fp32", tile=False)
        whole_cpu = time.process_time() - c0
        w8 = tensor_to_array(whole.images[0])
        rows.append({"size": f"{size}²", "decode": "whole image", "tiles": 1, "seconds": round(whole.seconds, 2),
                     "time vs whole": 1.0, "CPU s": round(whole_cpu, 1), "CPU vs whole": 1.0,
                     "peak MiB": mib(whole.peak_memory_bytes), "memory vs whole": 1.0,
                     "PSNR dB": "", "identical 8-bit": ""})
        for tile in tiles:
            c0 = time.process_time()
            res = vae.decode(z, precision="fp32", tile=tile)
            cpu = time.process_time() - c0
            same = float(np.mean(tensor_to_array(res.images[0]) == w8))
            rows.append({"size": f"{size}²", "decode": f"tiled {tile} px", "tiles": res.tiles,
                         "seconds": round(res.seconds, 2), "time vs whole": round(res.seconds / whole.seconds, 2),
                         "CPU s": round(cpu, 1), "CPU vs whole": round(cpu / whole_cpu, 2),
                         "peak MiB": mib(res.peak_memory_bytes),
                         "memory vs whole": round(res.peak_memory_bytes / whole.peak_memory_bytes, 3)
                         if whole.peak_memory_bytes else None,
                         "PSNR dB": round(_psnr(res.images, whole.images), 1), "identical 8-bit": f"{same:.4%}"})
            print(rows[-1], file=sys.stderr, flush=True)
            del res
        del whole
    notes.append(f"device {device.type}, torch threads {torch.get_num_threads()}; one run each (a shared machine adds noise to times)")
    return {"title": "Tiled vs whole-image decode (SD-size weights, fp32)", "rows": rows, "notes": notes}
