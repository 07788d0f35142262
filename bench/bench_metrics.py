"""Benchmark: PSNR/SSIM in torch (vae_lab.metrics) vs scikit-image, and the comparison's overhead.

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


def median_time(fn, repeats):
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> int:
    import numpy as np
    import torch
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from vae_lab import metrics

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--taef2", default=os.environ.get("VAE_LAB_SHARED_MODELS", "/work/shared/models"))
    args = ap.parse_args()

    base = data.astronaut()
    rng = np.random.default_rng(0)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, cuda {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}")
    print()
    print("| image | metric | vae_lab CPU (s) | skimage (s) | vae_lab CUDA (s) | |Δ| vs skimage |")
    print("|---|---|---|---|---|---|")
    for reps in (1, 2, 4):
        a = np.tile(base, (reps, reps, 1))
        b = np.clip(a + rng.normal(0, 10, a.shape), 0, 255).astype(np.uint8)
        size = f"{a.shape[1]}x{a.shape[0]}"
        sk_p = lambda: peak_signal_noise_ratio(a, b, data_range=255)  # noqa: E731
        sk_s = lambda: structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,  # noqa: E731
                                             channel_axis=-1, data_range=255)
        for name, ours, theirs in (("PSNR", metrics.psnr, sk_p), ("SSIM", metrics.ssim, sk_s)):
            t_ours = median_time(lambda: ours(a, b, device="cpu"), args.repeats)
            t_sk = median_time(theirs, args.repeats)
            gpu = ""
            if torch.cuda.is_available():
                ga, gb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()

                def on_gpu():
                    ours(ga, gb)
                    torch.cuda.synchronize()

                gpu = f"{median_time(on_gpu, args.repeats):.4f}"
            delta = abs(ours(a, b, device="cpu") - theirs())
            print(f"| {size} | {name} | {t_ours:.4f} | {t_sk:.4f} | {gpu or 'n/a'} | {delta:.1e} |")

    dec = os.path.join(args.taef2, "taef2_decoder.pth")
    if os.path.exists(dec):
        from vae_lab.compare import CompareRequest, VaeCache, run_compare

        cache = VaeCache()
        req = CompareRequest(image=base, vae_paths=[dec], diff_pair=(0, 1))
        run_compare(req, load=cache.load)  # load + warm-up
        rows = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            res = run_compare(req, load=cache.load)
            total = time.perf_counter() - t
            o = res.outcomes[0]
            t = time.perf_counter()
            res.grid()
            grid_s = time.perf_counter() - t
            rows.append((total, o.encode_seconds, o.decode_seconds, grid_s))
        total, enc, dec_s, grid_s = (statistics.median(x) for x in zip(*rows))
        print()
        print("| run_compare, TAEF2, astronaut 512² (cached model) | seconds |")
        print("|---|---|")
        print(f"| total | {total:.3f} |")
        print(f"| encode | {enc:.3f} |")
        print(f"| decode | {dec_s:.3f} |")
        print(f"| rest (PSNR, SSIM, uint8, diff map) | {total - enc - dec_s:.3f} |")
        print(f"| grid PNG image (extra, `result.grid()`) | {grid_s:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
