"""The tab inside the WebUI stand-in: built by `on_ui_tabs` with the adapter's context, it lists
models/VAE with families, and decodes the last generation's latents again with other VAEs."""

from __future__ import annotations


from webui_lab import AS_IN_SETTINGS, lab, make_p, run_p  # noqa: F401  (lab is the fixture)


def test_tab_is_built_in_the_webui_with_the_adapters_controls(lab):
    cfg = lab.demo.get_config_file()
    ids = {c["props"].get("elem_id") for c in cfg["components"]}
    assert {"vae_lab_vaes", "vae_lab_view", "vae_lab_metrics", "vae_lab_run"} <= ids
    assert "vae_lab_checkpoint_pref" in ids  # added through UiContext.extra by the adapter
    vaes = next(c for c in cfg["components"] if c["props"].get("elem_id") == "vae_lab_vaes")
    labels = [label for label, _ in vaes["props"]["choices"]]
    assert any(label.startswith("mse.safetensors · SD1/SD2") for label in labels)  # known by its hash
    assert any(label.startswith("x16.safetensors") and "16 ch" in label for label in labels)


def test_last_generation_is_decoded_again_with_other_vaes(lab):
    import vae_lab.webui as w
    from vae_lab.ui import tab as ui
    from vae_lab.ui.vae_ids import vae_id

    res = run_p(make_p(lab, False, AS_IN_SETTINGS, [], seed=3))
    assert res.images
    logic = ui.TabLogic(w.ui_context())
    image_u, _, note, vaes_u, _, ref_u = logic.on_source(ui.SOURCE_LAST, None, [])
    assert image_u["visible"] is False and "last generation: 1×4×8×8 (sd1)" in note["value"]
    labels = {label.split(" · ")[0].lstrip("✕ "): label for label, _ in vaes_u["choices"]}
    assert labels["x16.safetensors"].startswith("✕")  # 16 channels cannot decode SD1 latents
    assert labels["xl_vae.safetensors"].startswith("✕")  # a known SDXL VAE: a different family
    assert not labels["a.safetensors"].startswith("✕")

    ref = next(r for r in ref_u["choices"] if r.startswith("mse.safetensors"))
    view, (headers, rows), files, status, result = logic.run(
        ui.SOURCE_LAST, None, None, [vae_id(lab.vae(n)) for n in ("a", "mse", "x16")],  # the ids the page sees
        ui.ENCODER_FIRST, "fp32", "off", ref)
    assert result.mode == "latents" and result.reference_image.shape == (64, 64, 3)
    a, mse, x16 = result.outcomes
    assert a.image is not None and a.psnr is not None
    assert mse.psnr == float("inf")  # the reference VAE itself, same precision
    assert x16.image is None and "16-channel" in x16.error
    assert "2 of 3 VAEs decoded" in status


def test_the_tab_and_the_swaps_use_one_cache_of_weights(lab):
    """A VAE the tab read is swapped in for a generation without another read, and the module
    then holds the very tensors the tab's model holds (one copy in RAM, not two)."""
    from modules import shared

    import vae_lab.webui as w
    from vae_lab.compare.cache import default_cache
    from vae_lab.ui import tab as ui
    from vae_lab.ui.vae_ids import vae_id

    run_p(make_p(lab, False, AS_IN_SETTINGS, [], seed=3))
    logic = ui.TabLogic(w.ui_context())
    ref = next(r for r in logic.on_source(ui.SOURCE_LAST, None, [])[5]["choices"] if r.startswith("a.safetensors"))
    logic.run(ui.SOURCE_LAST, None, None, [vae_id(lab.vae("a"))], ui.ENCODER_FIRST, "fp32", "off", ref)
    cache = w.ram_cache()
    assert default_cache().weights is cache and str(lab.vae("a")) in cache
    misses = cache.stats.misses
    tab_model = default_cache().load(str(lab.vae("a")), device="cpu")
    tab_ptrs = {p.data_ptr() for p in tab_model._model.parameters()}

    seen = []
    original = shared.sd_model.decode_first_stage

    def decode(x):
        seen.extend(p.data_ptr() for p in shared.sd_model.first_stage_model.parameters())
        return original(x)

    shared.sd_model.decode_first_stage = decode
    try:
        run_p(make_p(lab, True, "a.safetensors", [], seed=3))
    finally:
        del shared.sd_model.decode_first_stage
    assert cache.stats.misses == misses  # no second read of a.safetensors
    assert seen and set(seen) <= tab_ptrs  # the generation decoded with the tab's tensors


def test_nothing_is_held_after_a_comparison_in_the_webui(lab):
    """Tensor bytes live before a (warm) tab run are all that is live after it: the run's models
    are the cache's, its casts, latents and images go with it (CUDA: tests/test_gpu.py)."""
    import gc

    import vae_lab.webui as w
    from vae_lab.runtime.memory import TensorPeak
    from vae_lab.ui import tab as ui
    from vae_lab.ui.vae_ids import vae_id

    run_p(make_p(lab, False, AS_IN_SETTINGS, [], seed=3))
    logic = ui.TabLogic(w.ui_context())
    ref = next(r for r in logic.on_source(ui.SOURCE_LAST, None, [])[5]["choices"] if r.startswith("a.safetensors"))
    ids = [vae_id(lab.vae(n)) for n in ("a", "b")]

    def run():
        out = logic.run(ui.SOURCE_LAST, None, None, ids, ui.ENCODER_FIRST, "bf16", "off", ref)
        assert "2 of 2 VAEs decoded" in out[3], [o.error for o in out[4].outcomes]

    run()  # warm: the files are read into the one cache
    held = w.ram_cache().total_bytes
    gc.collect()
    with TensorPeak() as tp:
        run()
        gc.collect()
    assert tp.peak_bytes > 0 and tp.live == 0
    assert w.ram_cache().total_bytes == held


def test_a_download_from_the_tab_updates_the_settings_vae_dropdown(lab, tmp_path):
    """After "Get VAEs", the Settings "SD VAE" dropdown lists the new file without a 🔄 click."""
    import shutil

    import vae_lab.webui as w
    from modules import shared

    setting = shared.settings_components["sd_vae"]
    cfg = lab.demo.get_config_file()
    deps = [i for i, d in enumerate(cfg["dependencies"]) if setting._id in d["outputs"]]
    assert deps, "no event of the tab updates the Settings SD VAE dropdown"
    fn = lab.demo.fns[deps[-1]].fn

    new = tmp_path / "just-downloaded.safetensors"
    shutil.copy(lab.vae("a"), new)
    shutil.move(str(new), w.download_dir())  # what a download leaves in the VAE folder
    w.refresh_vae_list()  # the tab's on_vaes_changed, run by the download
    update = fn()
    assert "just-downloaded.safetensors" in update["choices"]
    assert update["choices"][:2] == ["Automatic", "None"]
