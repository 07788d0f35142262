"""The Forge stand-in reproduces Forge's VAE pitfalls (tests/forge_stub/README.md), without VAE Lab."""

from __future__ import annotations

import numpy as np
import pytest

gradio = pytest.importorskip("gradio")
pytestmark = [pytest.mark.forge, pytest.mark.skipif(int(gradio.__version__.split(".")[0]) < 4, reason="Forge's stack is Gradio 4")]

from forge_env import forge, started_forge  # noqa: E402,F401


def pixels(image):
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_the_model_is_built_at_the_first_generation_and_its_vae_is_the_backend_object(forge):
    forge.add_checkpoint("sd15.safetensors")
    forge.start(load_model=False)
    assert forge.model.__class__.__name__ == "FakeInitialModel" and forge.sd_models.forge_reload_count == 0
    forge.txt2img("a cat")
    model = forge.model
    assert forge.sd_models.forge_reload_count == 1 and model.first_stage_model is None and model.is_sd1
    assert model.forge_objects.vae is model.forge_objects_original.vae  # shallow copies share the VAE object
    weight = model.forge_objects.vae.first_stage_model.decoder.conv_in.weight
    assert weight.is_inference()
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
        import torch

        with torch.no_grad():
            weight.copy_(torch.zeros_like(weight))  # what a naive in-place swap outside inference mode hits
    forge.txt2img("a cat")
    assert forge.sd_models.forge_reload_count == 1  # unchanged loading parameters: no reload


def test_sd_vae_loaders_are_stubs_and_the_infotext_has_no_vae(started_forge):
    f = started_forge
    assert f.sd_vae.reload_vae_weights(f.model, f.vae_dir / "vae-a.safetensors") is None
    assert f.sd_vae.loaded_vae_file is None and "vae-a.safetensors" in f.sd_vae.vae_dict
    plain = f.txt2img("a cat", seed=3)
    forced = f.txt2img("a cat", seed=3, override_settings_texts=["VAE: vae-a.safetensors"])
    assert np.array_equal(pixels(plain.images[0]), pixels(forced.images[0]))  # the override does nothing
    assert "VAE" not in forced.processed.infotexts[0]
    assert f.shared.opts.data_labels["sd_vae"].label == "(Managed by Forge)"


def test_top_bar_module_reloads_the_whole_model_and_writes_module_1(started_forge):
    f = started_forge
    plain = f.txt2img("a cat", seed=3)
    from backend import loader

    reads = len(loader.file_reads)
    assert f.choose_modules(["vae-a.safetensors"]) and not f.choose_modules(["vae-a.safetensors"])
    res = f.txt2img("a cat", seed=3)
    assert f.sd_models.forge_reload_count == 2
    assert loader.file_reads[reads:] == [str(f.sd_dir / "sd15.safetensors"), str(f.vae_dir / "vae-a.safetensors")]
    assert "Module 1: vae-a" in res.processed.infotexts[0] and "VAE:" not in res.processed.infotexts[0]
    assert not np.array_equal(pixels(plain.images[0]), pixels(res.images[0]))


def test_override_sticks_unless_its_key_is_in_config(forge):
    forge.add_checkpoint("sd15.safetensors")
    forge.add_vae("vae-a.safetensors")
    forge.start()
    forge.api.text2imgapi({"prompt": "x", "steps": 1, "width": 64, "height": 64,
                           "override_settings": {"CLIP_stop_at_last_layers": 2}})
    assert forge.shared.opts.CLIP_stop_at_last_layers == 2  # never saved: it sticks


def test_pasted_vae_becomes_a_module_override(started_forge):
    f = started_forge
    f.main_entry.refresh_models()
    params = f.infotext_utils.parse_generation_parameters("a cat\nSteps: 2, Seed: 1, Size: 64x64, VAE: vae-a.safetensors")
    assert "VAE" not in params and params["VAE/TE"] == ["vae-a.safetensors"]
    f.shared.opts.disable_weights_auto_swap = False
    _, chips = f.infotext_utils.paste_infotext("txt2img", "a cat\nSteps: 2, Seed: 1, Size: 64x64, VAE: vae-a.safetensors")
    assert chips == ["VAE/TE: ['vae-a.safetensors']"]


def test_xyz_vae_axis_gives_identical_cells(started_forge):
    """Forge issue 2920."""
    f = started_forge
    xyz = next(s for s in f.scripts.scripts_txt2img.selectable_scripts if s.title() == "X/Y/Z plot")
    labels = [o.label for o in xyz.current_axis_options]
    res = f.txt2img(selectable=f.scripts.scripts_txt2img.selectable_scripts.index(xyz) + 1,
                    scripts={"X/Y/Z plot": [labels.index("VAE"), "vae-a.safetensors, vae-b.safetensors", labels.index("Nothing"), ""]})
    assert len(res.images) == 3 and np.array_equal(pixels(res.images[1]), pixels(res.images[2]))
