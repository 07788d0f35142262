"""GPU table: our decoder vs diffusers in fp16 and bf16 at 512², 1024², 2048² (CUDA only).

    python bench/run.py --only gpu

Per case: median milliseconds, peak MiB (`max_memory_allocated` over the call), the ratio
to diffusers' AutoencoderKL on the same weights, and the fraction of the GPU's dense fp16
tensor-core roofline reached: the SD decoder is 2,514.5 GFLOP per 512² image (scaled by
area; the attention's quadratic part is left out, so large sizes read slightly high).
The roofline comes from `VAE_LAB_GPU_TFLOPS` or a table of known GPUs. Without CUDA the
benchmark reports that and nothing else.
"""

from __future__ import annotations

import os
import statistics

GFLOP_PER_512 = 2514.5
# Dense fp16 tensor-core TFLOPS (no sparsity), by a substring of the device name.
DENSE_FP16_TFLOPS = [("H200", 989.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0),
                     ("L4", 121.0), ("A10", 125.0), ("4090", 165.2), ("4080", 97.5), ("3090", 71.0),
                     ("3080", 59.5), ("V100", 125.0), ("T4", 65.0)]


def roofline_tflops(name: str) -> float | None:
    env = os.environ.get("VAE_LAB_GPU_TFLOPS")
    if env:
        return float(env)
    for key, tflops in DENSE_FP16_TFLOPS:
        if key in name:
            return tflops
    return None


def run(quick: bool) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"title": "GPU decode (fp16/bf16)", "rows": [{"result": "no CUDA device: nothing measured"}],
                "notes": []}
    from decode import _latents
    from diffusers_ref import diffusers_vae
    from factories import random_kl_state_dict
    from vae_lab.models.arch import SD_KL
    from vae_lab.runtime.engine import Vae

    name = torch.cuda.get_device_name(0)
    peak_tflops = roofline_tflops(name)
    sd = random_kl_state_dict(SD_KL, seed=0)
    ours = Vae.from_state_dict(sd, arch=SD_KL, family="sd1", device="cuda", state_dir="/tmp/vae-lab-bench-state")
    ours.keep_cast = True  # timing repeated calls: keep the half copy
    sizes = (512, 1024) if quick else (512, 1024, 2048)
    repeats = 3 if quick else 5
    rows = []
    for precision in ("fp16", "bf16"):
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            continue
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        ref = diffusers_vae(sd, SD_KL).to("cuda", dtype)
        for size in sizes:
            z = _latents(size).cuda()

            def theirs():
                with torch.inference_mode():
                    return ref.decode((z / ours.scale).to(dtype)).sample

            def mine():
                return ours.decode(z, precision=precision, tile=False)

            out = {}
            for label, fn in (("ours", mine), ("diffusers", theirs)):
                fn()
                torch.cuda.synchronize()
                times, peak = [], 0
                for _ in range(repeats):
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    r = fn()
                    end.record()
                    torch.cuda.synchronize()
                    times.append(start.elapsed_time(end))
                    peak = max(peak, torch.cuda.max_memory_allocated() - base)
                    del r
                out[label] = (statistics.median(times), peak)
            ms, peak = out["ours"]
            gflop = GFLOP_PER_512 * (size / 512) ** 2
            rows.append({"precision": precision, "size": f"{size}²", "ours ms": round(ms, 1),
                         "ours peak MiB": round(peak / 2**20), "diffusers ms": round(out["diffusers"][0], 1),
                         "diffusers peak MiB": round(out["diffusers"][1] / 2**20),
                         "ratio vs diffusers": round(ms / out["diffusers"][0], 3),
                         "roofline": f"{gflop / (ms / 1000) / 1000 / peak_tflops:.1%}" if peak_tflops else "n/a"})
        del ref
        torch.cuda.empty_cache()
    notes = [f"{name}; dense fp16 roofline {peak_tflops} TFLOPS" if peak_tflops else
             f"{name}: roofline unknown (set VAE_LAB_GPU_TFLOPS)", f"medians of {repeats}, CUDA events, after a warm-up"]
    return {"title": "GPU decode (fp16/bf16): ours vs diffusers", "rows": rows, "notes": notes}
