"""The WebUI stand-in with VAE Lab installed, for the `test_webui_*` tests.

One stand-in "WebUI" per test session (its `modules` read their data folder at import, as
the real ones do): a data folder with two checkpoints (SD1 and SDXL, tiny), a `models/VAE`
folder of tiny random kl-f8 VAEs, and this repository linked as `extensions/vae-lab`, then
the real startup order (`initialize.start`: scripts, VAE list, model load, UI, API). Every
test starts from the same state: SD1 checkpoint, SD VAE "Automatic", no preferences.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "tests" / "webui_stub"
AS_IN_SETTINGS = "As in Settings"

# catalog SHA-256s (vae-catalog-facts.md): the SDXL VAE and SD ft-MSE, for family identity
SDXL_SHA = "63aeecb90ff7bc1c115395962d3e803571385b61938377bc7089b36e81e92e2e"
FT_MSE_SHA = "735e4c3a447a3255760d7f86845f09f937809baa529c17370d83e4c3758f3c75"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def images_equal(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def vae_weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.first_stage_model.state_dict().items()}


def _save_vae(path: Path, sd: dict, *, known_as: str | None = None) -> None:
    """Write a VAE; `known_as`: mark it as `convert`'s copy of a catalogued file (identity by source)."""
    from safetensors.torch import save_file

    meta = None
    if known_as:
        from vae_lab.identify import weights_id

        meta = {"vae_lab.source_sha256": known_as, "vae_lab.weights_id": weights_id(sd)}
    save_file(sd, str(path), metadata=meta)


def _build_data(root: Path) -> None:
    from factories import TINY_KL, TINY_KL16, random_kl_state_dict
    from safetensors.torch import save_file

    import stub_ldm

    (root / "models" / "Stable-diffusion").mkdir(parents=True)
    (root / "models" / "VAE").mkdir(parents=True)
    (root / "extensions").mkdir()
    os.symlink(ROOT, root / "extensions" / "vae-lab")
    for name, kind, seed in (("sd15", "sd1", 1), ("xl", "sdxl", 2)):
        ck = stub_ldm.fake_unet_state_dict(kind, seed=seed)
        ck.update({"first_stage_model." + k: v for k, v in random_kl_state_dict(TINY_KL, seed=100 + seed).items()})
        save_file(ck, str(root / "models" / "Stable-diffusion" / f"{name}.safetensors"))
    vae_dir = root / "models" / "VAE"
    for i, n in enumerate("abc"):
        _save_vae(vae_dir / f"{n}.safetensors", random_kl_state_dict(TINY_KL, seed=20 + i))
    _save_vae(vae_dir / "x16.safetensors", random_kl_state_dict(TINY_KL16, seed=30))
    _save_vae(vae_dir / "xl_vae.safetensors", random_kl_state_dict(TINY_KL, seed=31), known_as=SDXL_SHA)
    _save_vae(vae_dir / "mse.safetensors", random_kl_state_dict(TINY_KL, seed=32), known_as=FT_MSE_SHA)


class Lab:
    def __init__(self, root: Path):
        self.root = root
        self.demo = self.app = self.api = None

    def vae(self, name: str) -> str:
        return str((self.root / "models" / "VAE" / f"{name}.safetensors").resolve())

    def script(self, tab: str = "txt2img"):
        from modules import scripts

        runner = scripts.scripts_txt2img if tab == "txt2img" else scripts.scripts_img2img
        return next(s for s in runner.alwayson_scripts if s.title() == "VAE Lab")

    def set_opt(self, key, value):
        from modules import shared

        shared.opts.set(key, value)

    def set_sd_vae(self, name: str):
        self.set_opt("sd_vae", name)

    def load_checkpoint(self, name: str):
        from modules import sd_models, shared

        info = sd_models.get_closet_checkpoint_match(name)
        shared.opts.set("sd_model_checkpoint", info.title)
        return shared.sd_model

    def reset(self):
        import vae_lab.webui as w
        from modules import sd_vae, shared

        w.restore_generation_vae()
        shared.state.interrupted = shared.state.skipped = shared.state.stopping_generation = False
        for key in ("vae_lab_ram_cache_mb", "vae_lab_auto_checkpoint_vae", "vae_lab_refuse_wrong_family"):
            shared.opts.set(key, shared.opts.get_default(key))
        shared.opts.data["sd_vae_overrides_per_model_preferences"] = True
        shared.opts.data.pop("forge_additional_modules", None)
        prefs = Path(w.preferences().path)
        if prefs.exists():
            prefs.unlink()
        self.set_sd_vae("Automatic")
        self.load_checkpoint("sd15")
        sd_vae.reload_vae_weights()
        assert sd_vae.loaded_vae_file is None


_LAB: Lab | None = None


def _start() -> Lab:
    global _LAB
    if _LAB is not None:
        return _LAB
    if "modules" in sys.modules and not str(getattr(sys.modules["modules"], "__path__", [""])[0]).startswith(str(STUB)):
        pytest.skip("another WebUI stand-in was imported first")
    root = Path(tempfile.mkdtemp(prefix="vae-lab-webui-"))
    os.environ["WEBUI_STUB_ARGS"] = f"--data-dir {root}"
    os.environ.setdefault("VAE_LAB_CACHE_DIR", str(root / "vae-lab-cache"))
    if str(STUB) not in sys.path:
        sys.path.insert(0, str(STUB))
    _build_data(root)
    from modules import initialize

    lab = Lab(root)
    lab.demo, lab.app, lab.api = initialize.start(ui=True, api=True)
    _LAB = lab
    return lab


@pytest.fixture
def lab():
    lab = _start()
    lab.reset()
    yield lab
    lab.reset()


def make_p(lab: Lab, enabled, vae, also, *, tab: str = "txt2img", **kwargs):
    """A txt2img processing object with the UI's default script args and VAE Lab's set."""
    from modules import processing, scripts

    runner = scripts.scripts_txt2img
    script = lab.script(tab)
    args = [getattr(c, "value", None) for c in runner.inputs]
    args[0] = 0
    args[script.args_from:script.args_to] = [enabled, vae, also]
    fields = dict(prompt="a cat", steps=2, width=64, height=64, do_not_save_samples=True, do_not_save_grid=True, seed=1)
    fields.update(kwargs)
    p = processing.StableDiffusionProcessingTxt2Img(**fields)
    p.scripts = runner
    p.script_args = args  # runs the built-in Sampler/Seed scripts' setup(), which set seed/steps
    for key in ("seed", "steps", "subseed"):
        if key in fields:
            setattr(p, key, fields[key])
    return p


def run_p(p):
    """Like the WebUI's txt2img: state.begin, `with closing(p)`, process_images."""
    from modules import processing, shared

    shared.state.begin(job="test")
    try:
        with closing(p):
            return processing.process_images(p)
    finally:
        shared.state.end()


__all__ = ["AS_IN_SETTINGS", "Lab", "file_sha256", "images_equal", "lab", "make_p", "run_p", "vae_weights", "torch"]
