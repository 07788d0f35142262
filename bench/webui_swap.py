"""Benchmark: what a per-generation VAE costs inside the WebUI, against the WebUI's own override.

Three kinds of txt2img generation run interleaved in the A1111 stand-in (`tests/webui_stub`,
started by its test harness `tests/webui_env.FakeWebUI` with this repository installed as an
extension), whose model has an SD-size kl-f8 VAE (`SD_KL`, 83.65 M parameters, 334.6 MB fp32,
random weights) and whose `models/VAE` holds a second SD-size VAE, `b.safetensors`:

* plain: the checkpoint's own VAE;
* WebUI override: `override_settings={"sd_vae": "b.safetensors"}` (what the API, X/Y/Z's VAE
  axis and a pasted "VAE:" infotext do): the stand-in's copy of `sd_vae.reload_vae_weights`
  reads the file, loads it into the VAE module and restores the checkpoint's VAE afterwards;
* VAE Lab: the "VAE for this generation" accordion set to `b.safetensors` (swap in from the
  RAM cache by reference, and back, `vae_lab.webui.swap`).

Each is reported as extra seconds over a plain generation (fastest of the repeats), and VAE Lab's two swap
calls are also timed on their own. 64² px, 1 step: the generation itself is small, so what a
VAE switch adds shows. On a CPU the WebUI's move of the whole model to the CPU and back is a
no-op, so its figure is a lower bound (with a GPU it moves the whole diffusion model twice).

Run: `python bench/webui_swap.py [--quick] [--json]` (= `python bench/run.py --only webui_swap`, which calls `run(quick)`).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


def run(quick: bool = False) -> dict:
    import pytest
    import torch
    from safetensors.torch import save_file

    from testkit.factories import random_kl_state_dict
    from vae_lab.models.arch import SD_KL
    from webui_env import FakeWebUI

    repeats = 3 if quick else 9
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        mp = pytest.MonkeyPatch()
        mp.setenv("VAE_LAB_CACHE_DIR", os.path.join(tmp, "cache"))
        mp.setenv("VAE_LAB_DATA_DIR", os.path.join(tmp, "data"))
        webui = FakeWebUI(Path(tmp) / "webui", mp)
        try:
            webui.add_checkpoint("sd15.safetensors", vae_state_dict_=random_kl_state_dict(SD_KL, seed=0))
            save_file(random_kl_state_dict(SD_KL, seed=1), str(webui.vae_dir / "b.safetensors"))
            webui.link_repo()
            webui.write_config(sd_vae="Automatic")  # saved, so the WebUI restores it after an override
            webui.start(args=["--no-half-vae"], load_model=False)
            import stub_ldm

            mp.setattr(stub_ldm, "vae_arch_for", lambda kind: SD_KL)  # the model loads on first use, SD-size
            from modules import processing, scripts, shared

            import vae_lab.webui.swap as lab_swap

            swap_seconds: list[float] = []

            def timed(fn):
                def wrapper(*a, **kw):
                    t0 = time.perf_counter()
                    try:
                        return fn(*a, **kw)
                    finally:
                        swap_seconds.append(time.perf_counter() - t0)
                return wrapper

            mp.setattr(lab_swap, "swap_vae", timed(lab_swap.swap_vae))  # the swap in, and the restore
            lab_swaps: list[float] = []
            runner = scripts.scripts_txt2img
            script = next(s for s in runner.alwayson_scripts if s.title() == "VAE Lab")

            def generate(kind: str) -> float:
                args = [getattr(c, "value", None) for c in runner.inputs]
                args[0] = 0
                args[script.args_from:script.args_to] = [kind == "lab", "b.safetensors" if kind == "lab" else
                                                         "As in Settings", []]
                p = processing.StableDiffusionProcessingTxt2Img(
                    prompt="a cat", steps=1, width=64, height=64, seed=1, do_not_save_samples=True,
                    do_not_save_grid=True,
                    override_settings={"sd_vae": "b.safetensors"} if kind == "override" else {})
                p.scripts, p.script_args = runner, args
                shared.state.begin(job="bench")
                swap_seconds.clear()
                t0 = time.perf_counter()
                try:
                    processing.process_images(p)
                finally:
                    p.close()
                    shared.state.end()
                took = time.perf_counter() - t0
                if kind == "lab":
                    assert len(swap_seconds) == 2, swap_seconds  # one swap in, one restore
                    lab_swaps.append(sum(swap_seconds))
                return took

            kinds = ("plain", "override", "lab")
            for kind in kinds:  # warm-up: the model load, the first reads of b.safetensors
                generate(kind)
            lab_swaps.clear()
            times: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(repeats):
                for kind in kinds:
                    times[kind].append(generate(kind))
            # the fastest of each: what a generation costs when nothing else competes for the CPU
            med = {k: min(v) for k, v in times.items()}
            pairs = lab_swaps
            swaps_ms = statistics.median(pairs) * 1000
            vae_module = shared.sd_model.first_stage_model
            nbytes = sum(t.numel() * t.element_size() for t in vae_module.state_dict().values())
            override_extra = med["override"] - med["plain"]
            lab_extra = med["lab"] - med["plain"]
            rows = [
                {"generation": "plain (the checkpoint's VAE)", "seconds": round(med["plain"], 3), "extra s": 0.0,
                 "extra vs WebUI override": ""},
                {"generation": "WebUI override (sd_vae reload + restore)", "seconds": round(med["override"], 3),
                 "extra s": round(override_extra, 3), "extra vs WebUI override": "100 %"},
                {"generation": "VAE Lab per-generation VAE", "seconds": round(med["lab"], 3),
                 "extra s": round(lab_extra, 3),
                 "extra vs WebUI override": f"{100 * lab_extra / override_extra:.1f} %" if override_extra > 0 else "—"},
            ]
            notes.append(f"VAE Lab's swap in + restore on their own: {swaps_ms:.2f} ms (median of {len(pairs)}); "
                         f"VAE {nbytes / 1e6:.1f} MB fp32 on {next(vae_module.parameters()).device}")
            notes.append(f"fastest of {repeats} interleaved generations each; 64² px, 1 step; torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads; the extra of a generation is the difference of two "
                         "whole generations' times, so it carries their noise (compare the swap time above)")
            result = {"swap_in_and_restore_ms": swaps_ms, "medians_s": med, "vae_bytes": nbytes}
        finally:
            webui.close()
            mp.undo()
    result.update({"title": "A per-generation VAE inside the WebUI (A1111 stand-in, SD-size VAE, CPU)",
                   "rows": rows, "notes": notes})
    return result


if __name__ == "__main__":
    from run import standalone

    sys.exit(standalone("webui_swap"))
