"""The adapter's scenarios, run through both stand-ins: A1111 1.10.1 (Gradio 3) and Forge (Gradio 4).

One list of scenarios, parametrized over the stand-in. Each Python stack has one Gradio, so a
run covers the stand-in of its own stack and skips the other (A1111 in the main venv, Forge in
a Gradio 4.40 venv: `/work/tmp/forge-venv/bin/python -m pytest -m forge tests/test_webui_scenarios.py`).

"Decoded by VAE x" is checked against the stack's *own* way of choosing x (A1111: Settings >
SD VAE; Forge: the top bar's "VAE / Text Encoder", a whole checkpoint reload): the same seed
must give the same pixels, and a different VAE different ones.
"""

from __future__ import annotations

import numpy as np
import pytest

gradio = pytest.importorskip("gradio")
GRADIO_MAJOR = int(gradio.__version__.split(".")[0])

STACKS = [
    pytest.param("a1111", marks=[pytest.mark.a1111, pytest.mark.skipif(GRADIO_MAJOR != 3, reason="A1111's stack is Gradio 3")]),
    pytest.param("forge", marks=[pytest.mark.forge, pytest.mark.skipif(GRADIO_MAJOR < 4, reason="Forge's stack is Gradio 4")]),
]


class Stack:
    """What a scenario needs from either stand-in, in the stack's own terms."""

    def __init__(self, kind, env):
        self.kind, self.env = kind, env
        self.samplings = 0

    def start(self, **config):
        env = self.env
        env.add_checkpoint("sd15.safetensors", kind="sd1", vae_seed=0)
        env.add_vae("vae-a.safetensors", seed=1)
        env.add_vae("vae-b.safetensors", seed=2)
        env.add_vae("xl-vae.safetensors", seed=3, kind="sdxl")
        env.add_vae("sd3-vae.safetensors", seed=4, kind="sd3")
        settings = {"sd_vae": "Automatic"}
        if self.kind == "forge":
            settings["forge_additional_modules"] = []
        settings.update(config)
        env.write_config(**settings)
        env.link_repo()
        env.start()
        from modules import script_callbacks

        def count(params):
            if params.sampling_step == 0:
                self.samplings += 1

        script_callbacks.on_cfg_denoiser(count)
        return self

    # ---- the stack's own VAE choice and its cost
    def choose_natively(self, name: str | None):
        if self.kind == "forge":
            self.env.choose_modules([name] if name else [])
        else:
            self.env.shared.opts.set("sd_vae", name or "Automatic")

    def reloads(self) -> int:
        sd_models = self.env.sd_models
        return sd_models.forge_reload_count if self.kind == "forge" else sd_models.load_count

    def vae_weight(self):
        model = self.env.model
        fsm = model.forge_objects.vae.first_stage_model if self.kind == "forge" else model.first_stage_model
        return fsm.decoder.conv_in.weight.detach().clone()

    # ---- generating
    def gen(self, vae=None, also=(), **kw):
        scripts = {"VAE Lab": [True, vae, list(also)]} if (vae or also) else {}
        return self.env.txt2img("a cat", seed=kw.pop("seed", 7), scripts=scripts, **kw)

    def reference(self, name: str | None, **kw):
        """Pixels of the same generation with `name` chosen the stack's own way."""
        self.choose_natively(name)
        res = self.gen(**kw)
        self.choose_natively(None)
        self.gen(**kw)  # the stack back on its own VAE (Forge: rebuilt now, not inside the next scenario step)
        return pixels(res.images[0])


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(params=STACKS)
def stack(request, tmp_path, monkeypatch):
    if request.param == "forge":
        from forge_env import FakeForge as Env
    else:
        from webui_env import FakeWebUI as Env
    env = Env(tmp_path / request.param, monkeypatch)
    try:
        yield Stack(request.param, env)
    finally:
        env.close()


def test_per_generation_vae_without_a_checkpoint_reload_then_restored(stack):
    stack.start()
    own = pixels(stack.gen().images[0])
    ref_a = stack.reference("vae-a.safetensors")
    assert np.abs(ref_a - own).max() > 0
    before_weight, reloads = stack.vae_weight(), stack.reloads()

    res = stack.gen("vae-a.safetensors")
    assert np.array_equal(pixels(res.images[0]), ref_a)
    info = res.processed.infotexts[0]
    assert "VAE: vae-a.safetensors" in info and "VAE hash: " in info
    assert stack.reloads() == reloads  # no checkpoint (or VAE) reload
    assert torch_equal(stack.vae_weight(), before_weight)  # restored afterwards

    again = stack.gen()
    assert np.array_equal(pixels(again.images[0]), own)
    assert "VAE: vae-a" not in again.processed.infotexts[0]


def test_also_decode_with_runs_the_sampler_once(stack):
    stack.start()
    ref_b = stack.reference("vae-b.safetensors")
    ref_a = stack.reference("vae-a.safetensors")
    stack.samplings = 0
    res = stack.gen("vae-a.safetensors", also=["vae-b.safetensors"])
    assert stack.samplings == 1
    imgs = res.images[res.processed.index_of_first_image:]
    assert len(imgs) == 2
    assert np.array_equal(pixels(imgs[0]), ref_a) and np.array_equal(pixels(imgs[1]), ref_b)
    first = res.processed.index_of_first_image
    assert "VAE: vae-a.safetensors" in res.processed.infotexts[first]
    assert "VAE: vae-b.safetensors" in res.processed.infotexts[first + 1]


def test_paste_gives_the_vae_to_the_accordion_not_a_reload(stack):
    stack.start()
    text = stack.gen("vae-b.safetensors").processed.infotexts[0]
    from modules import infotext_utils

    values, chips = infotext_utils.paste_infotext("txt2img", text)
    shown = [v.get("value") if isinstance(v, dict) else v for v in values.values()]  # gr.update() or plain values
    assert "vae-b.safetensors" in shown
    assert True in values.values()  # the accordion opens
    assert not [c for c in chips if c.startswith(("VAE", "VAE/TE"))]  # no override chip (Forge's would reload the checkpoint)


def test_wrong_family_is_refused_and_the_models_vae_kept(stack):
    stack.start()
    own = pixels(stack.gen().images[0])
    for wrong in ("sd3-vae.safetensors",):  # 16-channel latents: refused on any SD1 model
        res = stack.gen(wrong)
        assert np.array_equal(pixels(res.images[0]), own)
        assert "VAE Lab" not in res.html or wrong in res.processed.comments
        assert wrong in res.processed.comments


def test_per_checkpoint_preference_applies_on_load(stack):
    stack.start()
    ref_b = stack.reference("vae-b.safetensors")
    import vae_lab.webui as w

    msg = w.set_checkpoint_preference("vae-b.safetensors")
    assert "Saved vae-b.safetensors" in msg
    res = stack.gen()
    assert np.array_equal(pixels(res.images[0]), ref_b)
    assert "VAE: vae-b.safetensors" in res.processed.infotexts[0]
    assert "preference" in w.current_status()


def test_a_generation_that_raises_still_restores(stack):
    stack.start()
    before = stack.vae_weight()
    from modules import script_callbacks

    def boom(params):
        raise RuntimeError("sampler exploded")

    script_callbacks.on_cfg_denoiser(boom)
    stack.gen("vae-a.safetensors")
    script_callbacks.remove_callbacks_for_function(boom)
    assert torch_equal(stack.vae_weight(), before)


def test_xyz_vae_axis_decodes_each_vae(stack):
    stack.start()
    ref_a = stack.reference("vae-a.safetensors")
    ref_b = stack.reference("vae-b.safetensors")
    stack.samplings = 0
    from modules import scripts

    xyz = next(s for s in scripts.scripts_txt2img.selectable_scripts if s.title() == "X/Y/Z plot")
    labels = [o.label for o in xyz.current_axis_options]
    res = stack.env.txt2img("a cat", seed=7, selectable=scripts.scripts_txt2img.selectable_scripts.index(xyz) + 1,
                            scripts={"X/Y/Z plot": [labels.index("VAE"), "vae-a.safetensors, vae-b.safetensors",
                                                    labels.index("Nothing"), ""]})
    cells = [pixels(i) for i in res.images[1:]]
    assert len(cells) == 2
    assert np.array_equal(cells[0], ref_a) and np.array_equal(cells[1], ref_b)
    assert "VAE: vae-a" in res.processed.infotexts[1] and "VAE: vae-b" in res.processed.infotexts[2]
    if stack.kind == "forge":
        assert stack.samplings == 1  # the second cell reused the first cell's latents


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))
