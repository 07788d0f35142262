"""Benchmark: reading, identifying and converting a full-size SD VAE (kl-f8, 83.7 M params, fp32).

Random weights in the real SD configuration are written once as `.safetensors` (334.6 MB)
and as a zip `.ckpt`. Measured (median of N runs, wall seconds, 1 process):

* `load_vae_file` (container + normalisation + validation) against the bare container read
  A1111 does (`safetensors.torch.load_file` / `torch.load(weights_only=True)`): the cost of
  checking every tensor;
* the file SHA-256, ours (1 MiB chunks) against coreutils `sha256sum`;
* the weights id (fp16 cast of every tensor, hashed);
* `inspect` cold (no cache) and warm (hash cache hit), and peak RSS of a cold `inspect`
  in a fresh process;
* `convert` .ckpt → .safetensors, fp32 and `--half`.

    python bench/identify.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT,):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from _timing import median_seconds  # noqa: E402


def _peak_rss_of_inspect(path: Path, cache: Path) -> float:
    code = (
        "import resource, sys; sys.path.insert(0, %r)\n"
        "from vae_lab.identity.identify import inspect\n"
        "inspect(%r, cache=None)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    ) % (str(ROOT), str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, VAE_LAB_CACHE_DIR=str(cache)))
    return int(out.stdout.strip().splitlines()[-1]) / 1024  # KiB -> MiB


def measure(n: int) -> dict:
    """Every measurement, each the median of `n` runs, on a fresh full-size SD VAE in a temp dir."""
    import torch
    from safetensors.torch import load_file, save_file

    from vae_lab.models.arch import SD_KL
    from vae_lab.files.convert import convert
    from vae_lab.identity.hashing import HashCache, sha256_file, weights_id
    from vae_lab.identity.identify import inspect
    from vae_lab.files.loading import load_vae_file
    from testkit.factories import random_kl_state_dict

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    tmp = Path(tempfile.mkdtemp(prefix="vae-lab-bench-"))
    try:
        sd = random_kl_state_dict(SD_KL, seed=0)
        st = tmp / "sd-vae.safetensors"
        ck = tmp / "sd-vae.ckpt"
        save_file(sd, str(st))
        torch.save({"state_dict": sd}, ck)
        del sd
        rows = []

        def row(what, ours, base=None, base_name=""):
            rows.append({"what": what, "ours_s": round(ours, 3), "baseline": base_name,
                         "baseline_s": None if base is None else round(base, 3)})

        row("read .safetensors (validated)", median_seconds(lambda: load_vae_file(st), n),
            median_seconds(lambda: load_file(str(st)), n), "safetensors load_file")
        row("read .ckpt (validated)", median_seconds(lambda: load_vae_file(ck), n),
            median_seconds(lambda: torch.load(ck, map_location="cpu", weights_only=True), n), "torch.load weights_only")
        sha_tool = shutil.which("sha256sum")
        row("file sha256 (334.6 MB)", median_seconds(lambda: sha256_file(str(st)), n),
            median_seconds(lambda: subprocess.run([sha_tool, str(st)], capture_output=True, check=True), n) if sha_tool else None,
            "sha256sum")
        vae = load_vae_file(st)
        row("weights id (fp16 cast + sha256)", median_seconds(lambda: weights_id(vae.state_dict), n))
        vae = None  # free the 334 MB state dict
        row("inspect, cold (no cache)", median_seconds(lambda: inspect(st, cache=None), n))
        cache = HashCache(str(tmp / "cache"))
        inspect(st, cache=cache)
        row("inspect, warm (hash cache hit)", median_seconds(lambda: inspect(st, cache=cache), n))

        def conv(half):
            dst = tmp / f"out-{half}.safetensors"
            if dst.exists():
                dst.unlink()
            convert(ck, dst, half=half, cache=None)

        row("convert .ckpt -> .safetensors fp32", median_seconds(lambda: conv(False), n))
        row("convert .ckpt -> .safetensors --half", median_seconds(lambda: conv(True), n))
        rss = _peak_rss_of_inspect(st, tmp / "cache2")
        result = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "runs": n,
            "rows": rows,
            "inspect_peak_rss_mib": round(rss, 1),
            "file_mb": round(st.stat().st_size / 1e6, 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def run(quick: bool = False) -> dict:
    """For `bench/run.py`: the same measurements as a titled table."""
    n = 1 if quick else 3
    result = measure(n)
    rows = [{"what": r["what"], "VAE Lab (s)": r["ours_s"], "baseline": r["baseline"] or "—",
             "baseline (s)": r["baseline_s"]} for r in result["rows"]]
    return {
        "title": f"Reading, identifying and converting a full-size SD VAE ({result['file_mb']} MB), median of {n}",
        "rows": rows,
        "notes": [f"peak RSS of a cold `inspect` in a fresh process (torch import included): "
                  f"{result['inspect_peak_rss_mib']} MiB"],
        "raw": result,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run per measurement")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    n = 1 if args.quick else 3
    result = measure(n)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['machine']}; median of {n}; file {result['file_mb']} MB")
        print(f"| {'what':<38} | {'ours (s)':>8} | {'baseline':<24} | {'baseline (s)':>12} |")
        print(f"|{'-' * 40}|{'-' * 10}|{'-' * 26}|{'-' * 14}|")
        for r in result["rows"]:
            b = "" if r["baseline_s"] is None else f"{r['baseline_s']:.3f}"
            print(f"| {r['what']:<38} | {r['ours_s']:>8.3f} | {r['baseline']:<24} | {b:>12} |")
        print(f"peak RSS of a cold `inspect` in a fresh process: {result['inspect_peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
