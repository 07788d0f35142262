"""Time from a VAE file to a ready model (SD-size kl-f8, 335 MB fp32 safetensors).

The network is built on the meta device and takes the file's tensors by assignment
(`models.build_model`): no random initialisation, no copy. Compared with reading the
file alone (safetensors) and with the old way (build with random init, then copy the
weights in; what torch < 2.1 still does). Medians; the file is in the page cache.
"""

from __future__ import annotations


def run(quick: bool) -> dict:
    import tempfile
    from pathlib import Path
    from unittest import mock

    import torch
    from safetensors.torch import load_file, save_file

    from _timing import median_seconds
    from factories import random_kl_state_dict
    from vae_lab import models
    from vae_lab.files.loading import load_vae_file
    from vae_lab.models.arch import SD_KL
    from vae_lab.runtime.engine import load_vae

    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sd-vae-random.safetensors"
        save_file({f"first_stage_model.{k}": v for k, v in random_kl_state_dict(SD_KL, seed=0).items()}, str(path))
        state = Path(tmp) / "state"
        load_vae(path, device="cpu", state_dir=state)  # hashes cached, file in the page cache
        read = median_seconds(lambda: load_file(str(path)), repeats)
        parse = median_seconds(lambda: load_vae_file(path), repeats)
        ready = median_seconds(lambda: load_vae(path, device="cpu", state_dir=state), repeats)
        vf = load_vae_file(path)
        build = median_seconds(lambda: models.build_model("kl", vf.state_dict, vf.arch, share=True), repeats)
        with mock.patch.object(models, "can_assign", lambda: False):
            old = median_seconds(lambda: models.build_model("kl", vf.state_dict, vf.arch), repeats)
        size = path.stat().st_size
    rows = [
        {"step": "read the file (safetensors.load_file)", "seconds": round(read, 3)},
        {"step": "read + parse + identify the layout (load_vae_file)", "seconds": round(parse, 3)},
        {"step": "file to ready model (load_vae, CPU)", "seconds": round(ready, 3)},
        {"step": "build the network from tensors (meta + assign)", "seconds": round(build, 3)},
        {"step": "build the network the old way (random init + copy)", "seconds": round(old, 3)},
    ]
    notes = [f"{size / 2**20:.0f} MiB file, torch {torch.__version__}, assign supported: {models.can_assign()}; "
             f"ready - read = {ready - read:+.3f} s (target <= +0.1 s)"]
    return {"title": "Time to a ready model (SD-size VAE)", "rows": rows, "notes": notes}
