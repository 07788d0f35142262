"""VAE Lab in Forge: what only Forge has (the top bar, its overrides, its reload cost).

The scenarios both WebUIs share are in test_webui_scenarios.py.
"""

from __future__ import annotations

import numpy as np
import pytest

gradio = pytest.importorskip("gradio")
pytestmark = [pytest.mark.forge,
              pytest.mark.skipif(int(gradio.__version__.split(".")[0]) < 4, reason="Forge's stack is Gradio 4")]

from forge_env import forge  # noqa: E402,F401


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture
def lab_forge(forge):  # noqa: F811  (the fixture imported above)
    forge.add_checkpoint("sd15.safetensors", vae_seed=0)
    forge.add_vae("vae-a.safetensors", seed=1)
    forge.add_vae("vae-b.safetensors", seed=2)
    forge.write_config(sd_vae="Automatic", forge_additional_modules=[])
    forge.link_repo()
    forge.start()
    return forge


def gen(f, vae=None, also=(), **kw):
    scripts = {"VAE Lab": [True, vae, list(also)]} if (vae or also) else {}
    return f.txt2img("a cat", seed=kw.pop("seed", 5), scripts=scripts, **kw)


def test_top_bar_vae_counts_as_in_settings_and_outranks_the_preference(lab_forge):
    import vae_lab.webui as w

    f = lab_forge
    f.choose_modules(["vae-a.safetensors"])
    top = pixels(gen(f).images[0])  # Forge's own way: the model rebuilt with vae-a
    reloads = f.sd_models.forge_reload_count

    msg = w.set_checkpoint_preference("vae-b.safetensors")
    assert "not applied now: Forge's top bar 'VAE / Text Encoder' (vae-a.safetensors) outranks it" in msg
    res = gen(f)
    assert np.array_equal(pixels(res.images[0]), top) and "VAE: vae-b" not in res.processed.infotexts[0]
    assert "Module 1: vae-a" in res.processed.infotexts[0]

    # a per-generation VAE still works over the top bar's, and the top bar's comes back
    per_gen = gen(f, "vae-b.safetensors")
    assert not np.array_equal(pixels(per_gen.images[0]), top)
    assert "VAE: vae-b.safetensors" in per_gen.processed.infotexts[0]
    assert np.array_equal(pixels(gen(f).images[0]), top)
    assert f.sd_models.forge_reload_count == reloads  # none of this rebuilt the model
    assert "Forge's top bar (vae-a.safetensors)" in w.current_status()


def test_swaps_come_from_ram_after_the_first_read(lab_forge):
    import vae_lab.webui as w
    from backend import loader

    f = lab_forge
    gen(f, "vae-a.safetensors")
    gen(f, "vae-b.safetensors")
    reads, misses = len(loader.file_reads), w.ram_cache().stats.misses
    gen(f, "vae-a.safetensors")
    gen(f, "vae-b.safetensors", also=["vae-a.safetensors"])
    gen(f, "vae-a.safetensors")
    assert len(loader.file_reads) == reads  # Forge read no checkpoint or module
    assert w.ram_cache().stats.misses == misses  # and VAE Lab no VAE file


def test_an_interrupted_generation_is_restored(lab_forge):
    from modules import script_callbacks, shared

    f = lab_forge
    own = pixels(gen(f).images[0])

    def stop(params):
        shared.state.interrupt()

    script_callbacks.on_cfg_denoiser(stop)
    gen(f, "vae-a.safetensors", also=["vae-b.safetensors"], n_iter=2)
    script_callbacks.remove_callbacks_for_function(stop)
    shared.state.interrupted = False
    assert np.array_equal(pixels(gen(f).images[0]), own)


def test_api_sd_vae_override_applies_for_that_request_only(lab_forge):
    import base64
    import io

    from PIL import Image

    f = lab_forge
    request = {"prompt": "a cat", "seed": 5, "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler"}
    own = f.api.text2imgapi(dict(request))
    with_a = f.api.text2imgapi({**request, "override_settings": {"sd_vae": "vae-a.safetensors"}})
    after = f.api.text2imgapi(dict(request))

    def img(res):
        return pixels(Image.open(io.BytesIO(base64.b64decode(res["images"][0]))))

    assert not np.array_equal(img(own), img(with_a))
    assert "VAE: vae-a.safetensors" in with_a["info"]
    assert np.array_equal(img(own), img(after))  # Forge kept opts.sd_vae, but VAE Lab reads only the request


def test_wrong_family_extra_is_skipped_with_a_message(lab_forge):
    f = lab_forge
    f.add_vae("sd3-vae.safetensors", seed=4, kind="sd3")
    f.sd_vae.refresh_vae_list()
    res = gen(f, also=["sd3-vae.safetensors"])
    assert len(res.images) == 1 and "'also decode with' skips sd3-vae.safetensors" in res.processed.comments


def test_after_a_per_generation_vae_the_preferred_one_is_back(lab_forge):
    import vae_lab.webui as w

    f = lab_forge
    w.set_checkpoint_preference("vae-b.safetensors")
    preferred = pixels(gen(f).images[0])
    other = gen(f, "vae-a.safetensors")
    assert not np.array_equal(pixels(other.images[0]), preferred)
    res = gen(f)
    assert np.array_equal(pixels(res.images[0]), preferred) and "VAE: vae-b.safetensors" in res.processed.infotexts[0]
    assert "preference" in w.current_status()


def test_separate_requests_never_share_latents(lab_forge):
    from modules import script_callbacks

    f = lab_forge
    runs = []
    script_callbacks.on_cfg_denoiser(lambda params: runs.append(1) if params.sampling_step == 0 else None)
    request = {"prompt": "a cat", "seed": 5, "steps": 2, "width": 64, "height": 64, "sampler_name": "Euler",
               "override_settings": {"sd_vae": "vae-a.safetensors"}}
    f.api.text2imgapi(dict(request))
    f.api.text2imgapi({**request, "override_settings": {"sd_vae": "vae-b.safetensors"}})
    assert len(runs) == 2  # only the cells of one X/Y/Z plot reuse latents


def test_a_forge_variant_without_a_swappable_vae_module_degrades_with_one_message(lab_forge, monkeypatch):
    """A Forge fork whose VAE object keeps its module elsewhere (no forge_objects.vae.first_stage_model):
    generations work as that fork makes them, VAE Lab says once why it swaps nothing."""
    import vae_lab.webui as w
    from vae_lab.webui import forge as forge_host

    f = lab_forge
    own = pixels(gen(f).images[0])
    model = f.model
    vae = model.forge_objects_original.vae
    module = vae.first_stage_model

    class ElsewhereVAE:  # the fork's VAE object: the same decode, the module under another name
        latent_channels = vae.latent_channels

        def decode(self, samples):
            return vae.decode(samples)

    fork_vae = ElsewhereVAE()
    for objects in (model.forge_objects_original, model.forge_objects, model.forge_objects_after_applying_lora):
        monkeypatch.setattr(objects, "vae", fork_vae)
    monkeypatch.setattr(model, "decode_first_stage",
                        lambda x: (fork_vae.decode(module.process_out(x)).movedim(-1, 1) * 2.0 - 1.0).to(x))
    before = module.decoder.conv_in.weight.detach().clone()

    res = gen(f, "vae-a.safetensors", also=["vae-b.safetensors"])
    assert len(res.images) == 1 and np.array_equal(pixels(res.images[0]), own)
    assert forge_host.UNSUPPORTED_MESSAGE in res.processed.comments
    assert w.current_status() == forge_host.UNSUPPORTED_MESSAGE
    import torch

    assert torch.equal(module.decoder.conv_in.weight, before)
    assert w.set_checkpoint_preference("vae-b.safetensors").startswith("Saved vae-b.safetensors")  # stored, not applied
    assert torch.equal(module.decoder.conv_in.weight, before)
