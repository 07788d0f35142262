"""Benchmark: what the comparison tab adds on top of the comparison itself.

    python bench/ui.py [--quick] [--json]

Runs the tab's handler (`TabLogic.run`) with the real TAEF2 pair on the astronaut photo
(512², or 256² with --quick) and splits its time into the comparison (`run_compare`:
encode, decode, metrics) and the tab's own work: the side-by-side HTML with lossless PNG
data URIs, the metrics table, and writing the CSV/JSON/grid downloads. Also reports the
size of the HTML the browser receives. Medians of 3 runs (1 with --quick).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from testkit import TAEF2_DIR  # noqa: E402


def run(quick: bool = False) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    from vae_lab.compare import runner as compare
    from vae_lab.ui import tab as ui

    size = 256 if quick else 512
    repeats = 1 if quick else 3
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.LANCZOS))
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("taef2_decoder.pth", "taef2_encoder.pth"):
            os.symlink(os.path.join(TAEF2_DIR, name), os.path.join(tmp, name))
        logic = ui.TabLogic(ui.UiContext(vae_dirs=[tmp]))
        from vae_lab.ui.vae_ids import vae_id

        vaes = [vae_id(os.path.join(tmp, "taef2_decoder.pth"))] * 3  # three decodes of one shared encode
        timed = {}
        real_run = compare.run_compare

        def timed_run(*a, **kw):
            t = time.perf_counter()
            out = real_run(*a, **kw)
            timed["compare"] = time.perf_counter() - t
            return out

        compare.run_compare = timed_run
        try:
            import gc

            from vae_lab.runtime.memory import TensorPeak

            totals, cores, sizes = [], [], []
            logic.run(ui.SOURCE_IMAGE, photo, None, vaes, ui.ENCODER_FIRST, "auto", "auto", None)  # warm-up
            for _ in range(repeats):
                t = time.perf_counter()
                view, *_ = logic.run(ui.SOURCE_IMAGE, photo, None, vaes, ui.ENCODER_FIRST, "auto", "auto", None)
                totals.append(time.perf_counter() - t)
                cores.append(timed["compare"])
                sizes.append(len(view.encode()))
                del view
            gc.collect()
            # what a run leaves behind: tensor bytes still alive after it (CPU; the cache's weights
            # were loaded by the warm-up and are not counted)
            with TensorPeak() as tp:
                out = logic.run(ui.SOURCE_IMAGE, photo, None, vaes, ui.ENCODER_FIRST, "auto", "auto", None)
                del out
                gc.collect()
            held, peak = tp.live, tp.peak_bytes
        finally:
            compare.run_compare = real_run
    total, core = statistics.median(totals), statistics.median(cores)
    row = {
        "image": f"{size}x{size}", "cells": 1 + len(vaes), "handler (s)": round(total, 3),
        "run_compare (s)": round(core, 3), "tab's own work (s)": round(total - core, 3),
        "share": f"{100 * (total - core) / total:.1f} %", "HTML sent": f"{sizes[0] / 2**20:.2f} MiB",
        "tensor MiB during a run": round(peak / 2**20, 1), "tensor bytes held after": held,
    }
    return {
        "title": "The comparison tab's own cost (TAEF2, astronaut)",
        "rows": [row],
        "notes": [f"medians of {repeats}; the tab's own work is the HTML with PNG data URIs, the table and the downloads",
                  "held after: tensor bytes allocated during a warm run and still alive after it (0: nothing kept)"],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}",
        "image": f"{size}x{size}",
        "cells": 1 + len(vaes),
        "handler_s": round(total, 3),
        "run_compare_s": round(core, 3),
        "tab_overhead_s": round(total - core, 3),
        "tab_overhead_pct": round(100 * (total - core) / total, 1),
        "html_bytes": sizes[0],
        "tensor_peak_bytes": peak,
        "tensor_bytes_held_after": held,
    }


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    r = run(args.quick)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"machine: {r['machine']}")
    print()
    print("| image | cells | handler | run_compare | tab's own work | share | HTML sent |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {r['image']} | {r['cells']} | {r['handler_s']:.3f} s | {r['run_compare_s']:.3f} s | "
          f"{r['tab_overhead_s']:.3f} s | {r['tab_overhead_pct']:.1f} % | {r['html_bytes'] / 2**20:.2f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
