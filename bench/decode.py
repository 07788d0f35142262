"""Decode benchmark: our kl-f8 decoder vs diffusers.AutoencoderKL (tiled vs whole: bench/tiling.py).

Both models hold the same SD-size random weights (83.7 M parameters, the real SD/SDXL
configuration; speed does not depend on the values). Latents are smooth random fields
(bicubic-upsampled noise), which behave like real latents for tiling. Each timing is the
median of its repeats, ours and diffusers interleaved, both under `torch.inference_mode()`.
Ours runs through the public engine (`Vae.decode`: scaling, NaN check, clamp included).
On CUDA, fp16 is measured as well.
"""

from __future__ import annotations

import statistics
import time


def _latents(size: int, seed: int = 0):
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    n = size // 8
    coarse = torch.randn(1, 4, max(2, n // 6), max(2, n // 6), generator=gen)
    return F.interpolate(coarse, size=(n, n), mode="bicubic", align_corners=False)


def _timed(fn, device):
    """(seconds, result) of one call."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def _psnr(a, b) -> float:
    import torch

    mse = float(((a - b) ** 2).mean() / 4)
    return float("inf") if mse == 0 else float(10 * torch.log10(torch.tensor(1 / mse)))


def run(quick: bool) -> dict:
    import torch

    from diffusers_ref import diffusers_vae
    from factories import random_kl_state_dict
    from vae_lab.models.arch import SD_KL
    from vae_lab.runtime.engine import Vae

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sd = random_kl_state_dict(SD_KL, seed=0)
    ours = Vae.from_state_dict(sd, arch=SD_KL, family="sd1", device=device, state_dir="/tmp/vae-lab-bench-state")
    Vae.channels_last = False
    try:
        ours_plain = Vae.from_state_dict(sd, arch=SD_KL, family="sd1", device=device,
                                         state_dir="/tmp/vae-lab-bench-state")
    finally:
        Vae.channels_last = True
    ref = diffusers_vae(sd, SD_KL).to(device)
    scale = ours.scale
    rows, notes = [], []

    if device.type == "cuda":
        cases = [("fp32", 512, 3), ("fp16", 512, 5), ("fp16", 1024, 3)]
    else:
        cases = [("fp32", 256, 2)] if quick else [("fp32", 256, 3), ("fp32", 512, 2)]
    ref_half = None
    for precision, size, repeats in cases:
        z = _latents(size).to(device)
        model = ref
        if precision == "fp16":
            ref_half = ref_half or diffusers_vae(sd, SD_KL).to(device).half()
            model = ref_half
        dtype = torch.float16 if precision == "fp16" else torch.float32

        def run_ref():
            with torch.inference_mode():
                return model.decode((z / scale).to(dtype)).sample

        runners = {
            "ours (channels_last)": lambda: ours.decode(z, precision=precision, tile=False),
            "ours (contiguous)": lambda: ours_plain.decode(z, precision=precision, tile=False),
            "diffusers": run_ref,
        }
        if size >= 512 and device.type == "cpu":
            runners.pop("ours (contiguous)")
        if size <= 256 or device.type == "cuda":  # warm-up (kernels, allocator) where it is cheap
            for fn in runners.values():
                fn()
        times = {k: [] for k in runners}
        first = {}  # outputs of the first repeat, for the equality note
        for r in range(repeats):
            for name, fn in runners.items():
                seconds, out = _timed(fn, device)
                times[name].append(seconds)
                if r == 0 and name in ("ours (channels_last)", "diffusers"):
                    first[name] = out
                del out
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["diffusers"]
        for name, t in med.items():
            rows.append({"case": f"decode {size}² {precision} {device.type}", "implementation": name,
                         "seconds (median)": round(t, 3), "repeats": repeats,
                         "ratio vs diffusers": round(t / base, 3)})
        if size == cases[0][1] and precision == cases[0][0]:
            mine, theirs = first["ours (channels_last)"].images, first["diffusers"].float().cpu().clamp(-1, 1)
            diff = (mine - theirs).abs().max()
            notes.append(f"max |ours - diffusers| at {size}² {precision}: {float(diff):.2e}")

    return {"title": "Decode: ours vs diffusers", "rows": rows, "notes": notes, "device": str(device)}
