"""Benchmark: PSNR/SSIM in torch (vae_lab.compare.metrics) vs scikit-image, and the comparison's overhead.

    python bench/bench_metrics.py [--repeats 3] [--taef2 DIR]

Prints Markdown tables (medians of --repeats runs) for the README. Sizes: the astronaut
photo at 512² and tiled to 1024² and 2048²; CUDA rows are added when a GPU is present.
The overhead table runs `run_compare` with the real TAEF2 pair on the astronaut and
reports what is not encode/decode (metrics, uint8 conversion, grid).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _timing import median_seconds  # noqa: E402

from testkit import TAEF2_DIR  # noqa: E402


def median_time(fn, repeats):
    return median_seconds(fn, repeats, warmup=True)


def run(quick: bool = False, repeats: int | None = None, taef2: str | None = None) -> dict:
    """bench/run.py's contract: {"title", "rows", "notes"}; --quick: 512² and 1024², one repeat."""
    import numpy as np
    import torch
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from vae_lab.compare import metrics

    repeats = repeats or (1 if quick else 3)
    taef2 = taef2 or str(TAEF2_DIR)
    base = data.astronaut()
    rng = np.random.default_rng(0)
    rows = []
    for reps in (1, 2) if quick else (1, 2, 4):
        a = np.tile(base, (reps, reps, 1))
        b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8)
        sk_p = lambda: peak_signal_noise_ratio(a, b, data_range=255)  # noqa: E731
        sk_s = lambda: structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,  # noqa: E731
                                             channel_axis=-1, data_range=255)
        for name, ours, theirs in (("PSNR", metrics.psnr, sk_p), ("SSIM", metrics.ssim, sk_s)):
            gpu = None
            if torch.cuda.is_available():
                ga, gb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()

                def on_gpu():
                    ours(ga, gb)
                    torch.cuda.synchronize()

                gpu = round(median_time(on_gpu, repeats), 4)
            rows.append({
                "image": f"{a.shape[1]}x{a.shape[0]}", "metric": name,
                "vae_lab CPU (s)": round(median_time(lambda: ours(a, b, device="cpu"), repeats), 4),
                "skimage (s)": round(median_time(theirs, repeats), 4),
                "vae_lab CUDA (s)": gpu,
                "max abs diff vs skimage": f"{abs(ours(a, b, device='cpu') - theirs()):.1e}",
            })
    notes = [f"medians of {repeats}; noisy astronaut vs the original"]
    dec = os.path.join(taef2, "taef2_decoder.pth")
    if os.path.exists(dec):
        from vae_lab.compare.runner import CompareRequest, VaeCache, run_compare

        cache = VaeCache()
        req = CompareRequest(image=base, vae_paths=[dec], diff_pair=(0, 1))
        run_compare(req, load=cache.load)  # load + warm-up
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            res = run_compare(req, load=cache.load)
            total = time.perf_counter() - t
            o = res.outcomes[0]
            t = time.perf_counter()
            res.grid()
            runs.append((total, o.encode_seconds, o.decode_seconds, time.perf_counter() - t))
        total, enc, dec_s, grid_s = (statistics.median(x) for x in zip(*runs))
        notes.append(f"run_compare, TAEF2, astronaut 512² (cached model): {total:.3f} s in all — encode {enc:.3f} s, "
                     f"decode {dec_s:.3f} s, the rest (PSNR, SSIM, uint8, diff map) {total - enc - dec_s:.3f} s; "
                     f"drawing the grid image {grid_s:.3f} s more")
    return {"title": "Metrics: vae_lab (torch) vs scikit-image", "rows": rows, "notes": notes}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="512² and 1024² only")
    ap.add_argument("--taef2", default=str(TAEF2_DIR), help="folder with taef2_{decoder,encoder}.pth")
    args = ap.parse_args()
    r = run(args.quick, repeats=args.repeats, taef2=args.taef2)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs\n")
    cols = list(r["rows"][0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in r["rows"]:
        print("| " + " | ".join("n/a" if row[c] is None else str(row[c]) for c in cols) + " |")
    for note in r["notes"]:
        print(f"\n{note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
