"""The WebUI stand-in with VAE Lab installed, for the `test_webui_*` tests.

Built on `webui_env`'s fresh-per-test fake WebUI: two tiny checkpoints (SD1, SDXL), tiny
random kl-f8 VAEs in `models/VAE`, this repository linked as `extensions/vae-lab`, and the
WebUI's real startup order (scripts, VAE list, model load, UI).
"""

from __future__ import annotations

import functools
import hashlib
import os
from contextlib import closing
from pathlib import Path  # noqa: F401

import numpy as np
import pytest
import torch

from webui_env import FakeWebUI

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
    """Write a VAE; `known_as`: a catalogued SHA-256 whose file has these weights, as if this machine
    had verified that original (identify then names copies of it by their weights id)."""
    from safetensors.torch import save_file

    save_file(sd, str(path))
    if known_as:
        from vae_lab.identity.identify import HashCache, weights_id

        original = path.parent.parent / ".verified-originals" / path.name
        original.parent.mkdir(exist_ok=True)
        save_file(sd, str(original))
        cache = HashCache()
        cache.put("sha256", [str(original)], known_as)
        cache.put("weights_id", [str(original)], weights_id(sd))


@functools.lru_cache(maxsize=16)
def _cached_vae(arch, seed):
    from factories import random_kl_state_dict

    return random_kl_state_dict(arch, seed=seed)


def _random_vae(arch, seed):
    return dict(_cached_vae(arch, seed))


class Lab:
    """The stand-in WebUI (`webui_env.FakeWebUI`) with VAE Lab installed and tiny VAEs.

    Checkpoints: sd15 (SD1) and sdxl_base (SDXL); neither name is a prefix of a VAE's (the
    WebUI pairs VAEs with checkpoints by prefix). VAEs in models/VAE: a, b, c (random, unknown
    family), x16 (16 latent channels), xl_vae and mse (identified as the catalog's SDXL VAE
    and SD ft-MSE through `convert`'s source metadata).
    """

    def __init__(self, webui):
        self.webui = webui
        self.root = webui.root

    def build(self, args=()):
        from factories import TINY_KL, TINY_KL16

        random_kl_state_dict = _random_vae  # noqa: N806
        w = self.webui
        w.add_checkpoint("sd15.safetensors", kind="sd1", vae_seed=101)
        w.add_checkpoint("sdxl_base.safetensors", kind="sdxl", vae_seed=102)
        for i, n in enumerate("abc"):
            _save_vae(w.vae_dir / f"{n}.safetensors", random_kl_state_dict(TINY_KL, seed=20 + i))
        _save_vae(w.vae_dir / "x16.safetensors", random_kl_state_dict(TINY_KL16, seed=30))
        _save_vae(w.vae_dir / "xl_vae.safetensors", random_kl_state_dict(TINY_KL, seed=31), known_as=SDXL_SHA)
        _save_vae(w.vae_dir / "mse.safetensors", random_kl_state_dict(TINY_KL, seed=32), known_as=FT_MSE_SHA)
        w.link_repo()
        # fp32 VAE too: fp16 convolutions on a CPU are slow and add nothing here
        w.start(args=["--no-half-vae", *args], api=False)
        return self

    @property
    def api(self):
        return self.webui.api

    @property
    def demo(self):
        return self.webui.demo

    def vae(self, name: str) -> str:
        return os.path.abspath(self.webui.vae_dir / f"{name}.safetensors")

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


@pytest.fixture
def lab(monkeypatch, tmp_path):
    """A started stand-in WebUI with VAE Lab (the `webui` fixture's FakeWebUI, built here so a
    test module needs to import only `lab`)."""
    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path / "vae-lab-cache"))
    monkeypatch.setenv("VAE_LAB_DATA_DIR", str(tmp_path / "vae-lab-data"))  # not into the repo
    fake = FakeWebUI(tmp_path / "webui", monkeypatch)
    try:
        yield Lab(fake).build()
    finally:
        fake.close()


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


__all__ = ["AS_IN_SETTINGS", "Lab", "file_sha256", "images_equal", "lab", "make_p", "run_p", "vae_weights"]
