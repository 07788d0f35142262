"""The main image is decoded by the VAE the rules chose, whatever set it (an API override, an
override chip, the X/Y/Z plot's VAE axis), with or without "also decode with"; and every message
about a generation reaches its reader: the UI (comments), the API (`info`) and the PNG (infotext)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest

from webui_lab import AS_IN_SETTINGS, file_sha256, images_equal, lab, make_p, run_p  # noqa: F401  (lab: the fixture)

NOTE_KEY = "VAE Lab note"


def _params(text: str) -> dict:
    from modules import infotext_utils

    return infotext_utils.parse_generation_parameters(text)


def _png(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _override_run(lab, vae_lab_args, override, **kw):
    p = make_p(lab, *vae_lab_args, **kw)
    p.override_settings = dict(override)
    return run_p(p)


@pytest.mark.parametrize("generation_vae", [AS_IN_SETTINGS, "a.safetensors"])
def test_sd_vae_override_decodes_the_main_image_also_with_extras(lab, generation_vae):
    """Defect: the main VAE was recorded in before_process, before the WebUI applies
    `override_settings`, and put back after the extras: the main image came from the wrong VAE."""
    from modules import sd_vae

    lab.set_sd_vae("Automatic")  # in config.json, so the WebUI restores it after each override
    override = {"sd_vae": "c.safetensors"}
    alone = _override_run(lab, (False, AS_IN_SETTINGS, []), override, seed=5, batch_size=2)
    assert _params(alone.infotexts[0])["VAE"] == "c.safetensors"

    both = _override_run(lab, (True, generation_vae, ["b.safetensors"]), override, seed=5, batch_size=2)
    assert len(both.images) == 4
    assert images_equal(both.images[0], alone.images[0]) and images_equal(both.images[2], alone.images[1])
    assert [_params(t).get("VAE") for t in both.infotexts] == ["c.safetensors", "b.safetensors"] * 2
    assert _params(both.infotexts[0])["VAE hash"] == file_sha256(lab.vae("c"))[:10]
    assert not images_equal(both.images[0], both.images[1])
    assert sd_vae.loaded_vae_file is None  # Automatic: the checkpoint's own VAE again


def test_api_override_settings_with_extras(lab):
    lab.set_sd_vae("Automatic")
    req = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 9,
           "override_settings": {"sd_vae": "c.safetensors"}}
    alone = lab.api.text2imgapi(dict(req))
    both = lab.api.text2imgapi(dict(req, alwayson_scripts={"VAE Lab": {"args": [True, AS_IN_SETTINGS, ["b.safetensors"]]}}))
    info = json.loads(both["info"])
    assert [_params(t).get("VAE") for t in info["infotexts"]] == ["c.safetensors", "b.safetensors"]
    assert info["sd_vae_name"] == "c.safetensors"
    assert np.array_equal(_png(both["images"][0]), _png(alone["images"][0]))


def test_override_chip_with_extras(lab):
    """A pasted infotext's "VAE: …" chip (override_settings_texts) is an sd_vae override too."""
    lab.set_sd_vae("Automatic")
    alone = lab.webui.txt2img(seed=3, override_settings_texts=["VAE: c.safetensors"])
    both = lab.webui.txt2img(seed=3, override_settings_texts=["VAE: c.safetensors"],
                             scripts={"VAE Lab": [True, AS_IN_SETTINGS, ["b.safetensors"]]})
    texts = both.processed.infotexts
    assert [_params(t).get("VAE") for t in texts] == ["c.safetensors", "c.safetensors", "b.safetensors"]  # grid first
    assert images_equal(both.images[1], alone.images[0])


def _xyz(lab):
    from modules import scripts

    runner = scripts.scripts_txt2img
    script = next(s for s in runner.selectable_scripts if s.title() == "X/Y/Z plot")
    labels = [o.label for o in script.current_axis_options]
    return runner.selectable_scripts.index(script) + 1, labels


@pytest.mark.parametrize("return_grid,saving", [(True, False), (False, False), (False, True)])
def test_xyz_vae_axis_with_extras_right_cells_and_the_extras_kept_or_reported(lab, return_grid, saving):
    """The plot keeps the first image of each cell: with "Show grid in gallery" that is the cell's
    own grid (main image, then the extras); without it the extras are not in the plot, and say so."""
    from PIL import Image

    from modules import images

    lab.set_sd_vae("Automatic")
    lab.set_opt("samples_save", saving)
    lab.set_opt("return_grid", return_grid)
    idx, labels = _xyz(lab)
    axis = [labels.index("VAE"), "a.safetensors, b.safetensors", labels.index("Nothing"), ""]
    plain = lab.webui.txt2img(seed=6, selectable=idx, scripts={"X/Y/Z plot": axis})
    saved_before = len(images.saved)
    res = lab.webui.txt2img(seed=6, selectable=idx, scripts={"X/Y/Z plot": axis,
                                                            "VAE Lab": [True, AS_IN_SETTINGS, ["c.safetensors"]]})
    assert len(res.images) == 3  # grid + the first image of each cell
    assert [_params(t).get("VAE") for t in res.processed.infotexts[1:]] == ["a.safetensors", "b.safetensors"]
    note = res.info["extra_generation_params"][NOTE_KEY]
    assert "c.safetensors" in note and "X/Y/Z plot" in note and note in res.processed.comments
    for cell, ref in zip(res.images[1:], plain.images[1:], strict=True):
        assert ref.size == (64, 64)
        if return_grid:  # main | c, side by side: the main part is the cell without extras
            assert cell.size == (128, 64) and images_equal(cell.crop((0, 0, 64, 64)), ref)
            assert not images_equal(cell.crop((64, 0, 128, 64)), ref)
        else:
            assert images_equal(cell, ref)
    saved = [Image.open(path).info.get("parameters", "") for path in images.saved[saved_before:]]
    if return_grid:
        assert "each cell shows its main image first" in note
    elif saving:
        assert "not in the grid" in note and "saved" in note
        assert any(_params(text).get("VAE") == "c.safetensors" for text in saved)
    else:
        assert "not decoded" in note  # nothing would show them: no time spent on them


def test_broken_vae_message_reaches_api_callers(lab):
    from testkit.factories import TINY_KL, random_kl_state_dict
    from safetensors.torch import save_file

    bad = random_kl_state_dict(TINY_KL, seed=40)
    bad["decoder.conv_out.weight"] = bad["decoder.conv_out.weight"][:, :-1].contiguous()
    save_file(bad, str(lab.webui.vae_dir / "bad.safetensors"))
    out = lab.api.text2imgapi({"prompt": "a cat", "steps": 2, "width": 64, "height": 64,
                               "alwayson_scripts": {"VAE Lab": {"args": [True, "bad.safetensors", []]}}})
    info = json.loads(out["info"])
    note = info["extra_generation_params"][NOTE_KEY]
    assert "bad.safetensors: " in note and "generating with the checkpoint's own VAE" in note
    params = _params(info["infotexts"][0])
    assert params[NOTE_KEY] == note and params.get("VAE") is None  # the image says what made it


def test_extras_dropped_by_an_interrupt_are_reported(lab, monkeypatch):
    from modules import processing, sd_vae, shared

    original = processing.StableDiffusionProcessingTxt2Img.sample

    def sample_then_interrupt(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        shared.state.interrupt()
        return out

    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", sample_then_interrupt)
    res = run_p(make_p(lab, True, "a.safetensors", ["b.safetensors", "c.safetensors"], n_iter=2))
    assert len(res.images) == 1  # the interrupted batch's main image only
    assert "interrupted" in res.comments and "b.safetensors, c.safetensors" in res.comments
    assert "interrupted" in _params(res.infotexts[0])[NOTE_KEY]
    assert sd_vae.loaded_vae_file is None
