"""VAE Lab inside the WebUI stand-in: full generations through the real hook order.

Every test drives `processing.process_images` (or the txt2img / API entry points, which close
`p` like the WebUI does) with the extension loaded from its folder by `scripts.load_scripts`.
VAE files are tiny random kl-f8 models, so the decoded pixels really depend on which VAE
decoded them.
"""

from __future__ import annotations

from contextlib import closing

import pytest
import torch

from webui_lab import AS_IN_SETTINGS, file_sha256, images_equal, lab, make_p, run_p, vae_weights  # noqa: F401


def _infotext_vae(text: str) -> tuple[str | None, str | None]:
    from modules import infotext_utils

    params = infotext_utils.parse_generation_parameters(text)
    return params.get("VAE"), params.get("VAE hash")


# --- per-generation VAE ---------------------------------------------------------------------


def test_per_generation_vae_is_used_for_that_generation_only(lab):
    from modules import sd_vae, shared

    model = shared.sd_model
    own = vae_weights(model)
    moves_before = len(model.to_calls)

    res = run_p(make_p(lab, True, "b.safetensors", [], seed=7))
    vae, short = _infotext_vae(res.infotexts[0])
    assert (vae, short) == ("b.safetensors", file_sha256(lab.vae("b"))[:10])
    assert res.sd_vae_name == "b.safetensors"

    # the previous VAE (the checkpoint's own) is back, bit for bit, and bookkeeping agrees
    assert sd_vae.loaded_vae_file is None and model.loaded_vae_file is None
    assert all(torch.equal(v, own[k]) for k, v in vae_weights(model).items())
    assert len(model.to_calls) == moves_before  # swapped in place: the model never moved

    # the images are what the WebUI itself makes with b selected in Settings
    lab.set_sd_vae("b.safetensors")
    ref = run_p(make_p(lab, False, AS_IN_SETTINGS, [], seed=7))
    assert images_equal(res.images[0], ref.images[0])
    lab.set_sd_vae("Automatic")
    plain = run_p(make_p(lab, False, AS_IN_SETTINGS, [], seed=7))
    assert not images_equal(res.images[0], plain.images[0])


def test_restored_when_generation_raises(lab, monkeypatch):
    from modules import processing, sd_vae, shared

    lab.set_sd_vae("a.safetensors")
    a_weights = vae_weights(shared.sd_model)

    in_use = []

    def boom(self, *args, **kwargs):
        in_use.append(sd_vae.loaded_vae_file)
        raise RuntimeError("sampler exploded")

    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", boom)
    p = make_p(lab, True, "b.safetensors", [])
    with pytest.raises(RuntimeError, match="sampler exploded"):
        with closing(p):
            processing.process_images(p)
    assert in_use == [lab.vae("b")]  # the generation did run with b
    assert sd_vae.loaded_vae_file == lab.vae("a")
    assert all(torch.equal(v, a_weights[k]) for k, v in vae_weights(shared.sd_model).items())


def test_restored_after_interrupt(lab, monkeypatch):
    from modules import processing, sd_vae, shared

    original = processing.StableDiffusionProcessingTxt2Img.sample
    calls = []

    def sample_then_interrupt(self, *args, **kwargs):
        calls.append(1)
        out = original(self, *args, **kwargs)
        shared.state.interrupt()
        return out

    own = vae_weights(shared.sd_model)
    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", sample_then_interrupt)
    res = run_p(make_p(lab, True, "b.safetensors", [], n_iter=3))
    assert len(calls) == 1 and len(res.images) == 1
    assert _infotext_vae(res.infotexts[0])[0] == "b.safetensors"  # the interrupted batch used b
    assert sd_vae.loaded_vae_file is None
    assert all(torch.equal(v, own[k]) for k, v in vae_weights(shared.sd_model).items())


def test_leftover_swap_is_undone_by_the_next_generation(lab):
    from modules import processing, sd_vae

    p = make_p(lab, True, "b.safetensors", [])
    p.scripts.before_process(p)  # a caller that never finishes nor closes p
    assert sd_vae.loaded_vae_file == lab.vae("b")
    res = run_p(make_p(lab, False, AS_IN_SETTINGS, []))
    assert _infotext_vae(res.infotexts[0]) == (None, None)
    assert sd_vae.loaded_vae_file is None
    assert processing  # noqa


def test_unknown_vae_name_is_a_clear_comment_and_changes_nothing(lab):
    from modules import sd_vae, shared

    from testkit.factories import TINY_KL, random_kl_state_dict
    from safetensors.torch import save_file

    res = run_p(make_p(lab, True, "nope.safetensors", []))
    assert any("unknown VAE 'nope.safetensors'" in c for c in res.comments.splitlines())
    assert sd_vae.loaded_vae_file is None

    # a file that fails validation (a tensor of the wrong shape) leaves the model's VAE untouched
    bad = random_kl_state_dict(TINY_KL, seed=40)
    bad["decoder.conv_out.weight"] = bad["decoder.conv_out.weight"][:, :-1].contiguous()
    save_file(bad, str(lab.webui.vae_dir / "bad.safetensors"))
    before = vae_weights(shared.sd_model)
    res = run_p(make_p(lab, True, "bad.safetensors", []))
    comment = next(c for c in res.comments.splitlines() if "bad.safetensors" in c)
    assert "\n" not in comment and "generating with the checkpoint's own VAE" in comment
    assert sd_vae.loaded_vae_file is None and _infotext_vae(res.infotexts[0]) == (None, None)
    assert all(torch.equal(v, before[k]) for k, v in vae_weights(shared.sd_model).items())


def test_stale_webui_hash_is_replaced(lab):
    """WebUI pitfall 9: its VAE hash cache title is shared, so a second VAE gets the first's hash."""
    lab.set_sd_vae("a.safetensors")
    run_p(make_p(lab, False, AS_IN_SETTINGS, []))
    lab.set_sd_vae("b.safetensors")
    res = run_p(make_p(lab, False, AS_IN_SETTINGS, []))
    assert _infotext_vae(res.infotexts[0]) == ("b.safetensors", file_sha256(lab.vae("b"))[:10])


# --- infotext, paste, API -------------------------------------------------------------------


def _pasted(script, text: str):
    """What "paste parameters" (the stand-in's paste button) puts into the accordion, and its chips."""
    from modules import infotext_utils

    values, chips = infotext_utils.paste_infotext("txt2img", text)
    out = []
    for component, _ in script.infotext_fields:
        v = values.get(component)
        out.append(v.get("value") if isinstance(v, dict) else v)
    return out, chips


def test_paste_parameters_restore_the_choice(lab):
    from modules import scripts

    script = lab.script("txt2img")
    enabled, vae = script.infotext_fields[0][0], script.infotext_fields[1][0]
    assert [c for c, _ in script.infotext_fields] == [enabled, vae]
    assert {id(c) for c, _ in scripts.scripts_txt2img.infotext_fields} >= {id(enabled), id(vae)}
    assert "VAE" in script.paste_field_names

    res = run_p(make_p(lab, True, "c.safetensors", []))
    text = res.infotexts[0]
    # the accordion takes the VAE, and the WebUI offers no "VAE" override chip beside it (an sd_vae
    # override that the WebUI does not restore when sd_vae was never saved in config.json)
    assert _pasted(script, text) == ([True, "c.safetensors"], [])

    # a name the list lacks is found by its hash (a renamed copy), else "As in Settings"
    from modules import hashes

    renamed = text.replace("VAE: c.safetensors", "VAE: renamed.safetensors")
    hashes.sha256(lab.vae("c"), "vae/c.safetensors")  # the WebUI has hashed it at some point
    assert _pasted(script, renamed)[0] == [True, "c.safetensors"]
    short = file_sha256(lab.vae("c"))[:10]
    assert _pasted(script, renamed.replace(short, "0000000000"))[0] == [True, AS_IN_SETTINGS]

    # an infotext without a VAE (the checkpoint's own): the checkbox is left alone, the VAE as in Settings
    assert _pasted(script, "a cat\nSteps: 2, Seed: 1, Size: 64x64") == ([None, AS_IN_SETTINGS], [])


def test_api_alwayson_scripts(lab):
    from modules import sd_vae

    out = lab.api.text2imgapi({
        "prompt": "a cat", "steps": 2, "width": 64, "height": 64, "batch_size": 2, "seed": 3,
        "alwayson_scripts": {"vae lab": {"args": [True, "b.safetensors", ["c.safetensors"]]}},
    })
    import json

    info = json.loads(out["info"])
    assert len(out["images"]) == 4
    assert [_infotext_vae(t)[0] for t in info["infotexts"]] == ["b.safetensors", "c.safetensors"] * 2
    assert info["sd_vae_name"] == "b.safetensors"
    assert sd_vae.loaded_vae_file is None

    # no args: the UI defaults (accordion closed) -> nothing changes
    out = lab.api.text2imgapi({"prompt": "a cat", "steps": 2, "width": 64, "height": 64,
                               "alwayson_scripts": {"VAE Lab": {}}})
    assert _infotext_vae(json.loads(out["info"])["infotexts"][0]) == (None, None)


# --- decode once, compare many --------------------------------------------------------------


def test_also_decode_with_samples_once(lab, monkeypatch):
    from modules import processing, sd_vae

    from vae_lab.runtime import last_latents

    original = processing.StableDiffusionProcessingTxt2Img.sample
    calls = []

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", counting)
    res = run_p(make_p(lab, True, "a.safetensors", ["b.safetensors", "None", "x16.safetensors"], batch_size=2, seed=11))
    assert len(calls) == 1
    # per sample: main (a), then b, then the checkpoint's own VAE; x16 refused with a comment
    assert len(res.images) == 6
    names = [_infotext_vae(t) for t in res.infotexts]
    assert names == [
        ("a.safetensors", file_sha256(lab.vae("a"))[:10]),
        ("b.safetensors", file_sha256(lab.vae("b"))[:10]),
        (None, None),
    ] * 2
    assert "VAE Lab: extra decode" in res.infotexts[1] and "VAE Lab: extra decode" not in res.infotexts[0]
    assert "16-channel" in res.comments
    seeds = [processing_seed(t) for t in res.infotexts]
    assert seeds[0] == seeds[1] == seeds[2] and seeds[3] == seeds[4] == seeds[5] and seeds[0] != seeds[3]
    assert sd_vae.loaded_vae_file is None

    # each extra image is exactly what a generation with that VAE makes from the same seed
    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", original)
    with_b = run_p(make_p(lab, True, "b.safetensors", [], batch_size=2, seed=11))
    own = run_p(make_p(lab, False, AS_IN_SETTINGS, [], batch_size=2, seed=11))
    assert images_equal(res.images[1], with_b.images[0]) and images_equal(res.images[4], with_b.images[1])
    assert images_equal(res.images[2], own.images[0]) and images_equal(res.images[5], own.images[1])
    assert not images_equal(res.images[0], res.images[1])

    last = last_latents.get()
    assert last is not None and tuple(last.latents.shape) == (2, 4, 8, 8) and last.family == "sd1"


def processing_seed(text: str) -> str:
    from modules import infotext_utils

    return infotext_utils.parse_generation_parameters(text)["Seed"]


def test_also_decode_with_hires_fix_is_skipped_with_a_note(lab):
    res = run_p(make_p(lab, True, AS_IN_SETTINGS, ["b.safetensors"], enable_hr=True, hr_scale=2.0,
                       hr_upscaler="Latent"))
    assert len(res.images) == 1
    assert "hires fix already decoded them" in res.comments


# --- RAM cache ------------------------------------------------------------------------------


def test_second_swap_reads_no_disk_and_cache_stays_within_budget(lab, monkeypatch):
    import vae_lab.files.loading as loading
    import vae_lab.webui as w

    reads = []
    real = loading.load_vae_file

    def counting(path, *a, **kw):
        reads.append(path)
        return real(path, *a, **kw)

    monkeypatch.setattr(loading, "load_vae_file", counting)
    w.ram_cache().clear()
    run_p(make_p(lab, True, "a.safetensors", []))
    run_p(make_p(lab, True, "b.safetensors", []))
    run_p(make_p(lab, True, "a.safetensors", []))  # a again: from RAM
    assert sorted(reads) == sorted([lab.vae("a"), lab.vae("b")])  # each file read once

    one = w.ram_cache().total_bytes // 2
    lab.set_opt("vae_lab_ram_cache_mb", max(1, one // (1024 * 1024) + 1))  # room for one VAE only
    reads.clear()
    run_p(make_p(lab, True, "a.safetensors", []))
    run_p(make_p(lab, True, "b.safetensors", []))
    assert w.ram_cache().total_bytes <= w.ram_cache().budget
    assert len(w.ram_cache().paths()) == 1
    assert w.ram_cache().stats.evictions >= 1
    lab.set_opt("vae_lab_device_cache_mb", 64)  # the GPU copies' budget is a setting of its own
    assert w.ram_cache().device_budget == 64 * 1024 * 1024 and w.ram_cache().budget < 64 * 1024 * 1024


# --- the tabs' own entry points -------------------------------------------------------------


def test_img2img_encodes_and_decodes_with_the_generation_vae(lab, astronaut):
    from PIL import Image

    from modules import sd_vae

    init = Image.fromarray(astronaut).resize((64, 64))
    w = lab.webui
    torch.manual_seed(0)  # the encoder samples its latent distribution with the global RNG
    chosen = w.img2img(init, seed=5, scripts={"VAE Lab": [True, "b.safetensors", []]})
    assert "VAE: b.safetensors" in chosen.processed.infotexts[0]
    assert sd_vae.loaded_vae_file is None  # restored after the generation
    lab.set_sd_vae("b.safetensors")
    torch.manual_seed(0)
    ref = w.img2img(init, seed=5)
    assert images_equal(chosen.images[0], ref.images[0])  # init image encoded by b as well
    lab.set_sd_vae("Automatic")
    torch.manual_seed(0)
    own = w.img2img(init, seed=5)
    assert not images_equal(chosen.images[0], own.images[0])


def test_txt2img_tab_generate_button(lab):
    from modules import sd_vae

    out = lab.webui.txt2img(seed=2, batch_size=1, scripts={"VAE Lab": [True, "a.safetensors", ["c.safetensors"]]})
    assert len(out.images) == 3  # the WebUI adds a grid once there are two images
    texts = out.processed.infotexts
    assert [_infotext_vae(t)[0] for t in texts] == ["a.safetensors", "a.safetensors", "c.safetensors"]
    assert "VAE Lab" not in texts[0] and "VAE Lab" not in texts[1] and "VAE Lab: extra decode" in texts[2]
    assert out.info["sd_vae_name"] == "a.safetensors"
    assert sd_vae.loaded_vae_file is None


def test_hires_checkpoint_switch_mid_generation_keeps_the_choice(lab):
    """Hires fix with another checkpoint reloads the model (and fires model_loaded) mid-run:
    the per-generation VAE is put into the new model too, and the WebUI's own VAE afterwards."""
    from modules import sd_models, sd_vae

    seen = []
    from vae_lab.webui import swap

    real = swap.swap_vae

    def spy(model, vae_file, **kw):
        seen.append((model.sd_checkpoint_info.name, vae_file and vae_file.rsplit("/", 1)[-1]))
        return real(model, vae_file, **kw)

    swap.swap_vae = spy
    try:
        res = lab.webui.txt2img(seed=4, enable_hr=True, hr_checkpoint_name="sdxl_base.safetensors",
                                scripts={"VAE Lab": [True, "b.safetensors", []]})
    finally:
        swap.swap_vae = real
    assert "VAE: b.safetensors" in res.processed.infotexts[0]
    assert ("sdxl_base.safetensors", "b.safetensors") in seen  # re-applied to the hires model
    assert sd_models.model_data.sd_model.sd_checkpoint_info.name == "sdxl_base.safetensors"
    assert sd_vae.loaded_vae_file is None  # the hires model's own VAE is back


def test_an_explicit_sd_vae_override_wins_for_that_generation(lab):
    """XYZ plot's VAE axis and pasted overrides set `override_settings['sd_vae']`, which the
    WebUI applies after `before_process`: that explicit choice decides, and everything is
    restored afterwards."""
    from modules import sd_vae

    p = make_p(lab, True, "b.safetensors", [])
    p.override_settings = {"sd_vae": "c.safetensors"}
    res = run_p(p)
    assert _infotext_vae(res.infotexts[0])[0] == "c.safetensors"
    assert sd_vae.loaded_vae_file is None


def test_checkpoint_vae_is_never_copied_but_kept_aside_by_reference(lab, monkeypatch):
    """The WebUI's store_base_vae deep-copies the checkpoint's VAE at every swap away from it (and
    forgets it at each restore); VAE Lab keeps the module's own tensors aside as they are (a swap
    re-points the module), and puts those very tensors back afterwards."""
    from modules import processing, sd_vae, shared

    own = vae_weights(shared.sd_model)
    own_ptrs = {k: v.data_ptr() for k, v in shared.sd_model.first_stage_model.state_dict().items()}
    stored = []
    real_store = sd_vae.store_base_vae

    def store(model):  # the WebUI's deep copy
        stored.append(model)
        return real_store(model)

    monkeypatch.setattr(sd_vae, "store_base_vae", store)
    original = processing.StableDiffusionProcessingTxt2Img.sample
    bases, in_use = [], []

    def sample(self, *args, **kwargs):
        bases.append({k: v.data_ptr() for k, v in sd_vae.base_vae.items()})
        in_use.append({k: v.data_ptr() for k, v in shared.sd_model.first_stage_model.state_dict().items()})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(processing.StableDiffusionProcessingTxt2Img, "sample", sample)
    for name in ("a", "b", "a"):
        run_p(make_p(lab, True, f"{name}.safetensors", []))
        assert sd_vae.loaded_vae_file is None and sd_vae.base_vae is None  # as the WebUI's restore leaves it
        assert all(torch.equal(v, own[k]) for k, v in vae_weights(shared.sd_model).items())
        assert {k: v.data_ptr() for k, v in shared.sd_model.first_stage_model.state_dict().items()} == own_ptrs
    assert stored == [] and len(bases) == 3
    assert all(b == own_ptrs for b in bases)  # the base is the module's own memory, not a copy
    assert all(u != own_ptrs for u in in_use)  # while the file's VAE decodes, the module points elsewhere
    assert in_use[0] == in_use[2]  # a.safetensors from the cache, the same tensors both times

    # another checkpoint: its own tensors, not the first one's
    own_xl = vae_weights(lab.load_checkpoint("sdxl_base"))
    xl_ptrs = {k: v.data_ptr() for k, v in shared.sd_model.first_stage_model.state_dict().items()}
    run_p(make_p(lab, True, "xl_vae.safetensors", []))
    assert len(bases) == 4 and bases[3] == xl_ptrs
    assert all(torch.equal(v, own_xl[k]) for k, v in vae_weights(shared.sd_model).items())
    assert sd_vae.loaded_vae_file is None and stored == []
