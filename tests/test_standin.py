"""The WebUI stand-in follows A1111 1.10.1's contract (docs: /work/shared/webui-contract.md §15).

Each test starts a fresh fake WebUI in a tmp dir (see tests/webui_env.py) and checks one
behaviour an extension depends on, including the WebUI's pitfalls, so the extension's own
tests against the stand-in can be trusted.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from webui_env import fp16_overflowing_vae_state_dict, vae_state_dict, webui, started_webui  # noqa: F401

PROBE = textwrap.dedent('''
    import sys
    import modules.scripts as scripts
    from modules import script_callbacks, shared

    EVENTS = []
    BASEDIR = scripts.basedir()
    PATH_AT_IMPORT = list(sys.path)
    NAME = __name__

    def path_now():
        return list(sys.path)

    script_callbacks.on_model_loaded(lambda m: EVENTS.append(("model_loaded", shared.opts.sd_vae)))
    script_callbacks.on_model_loaded(lambda m: None)
    script_callbacks.on_script_unloaded(lambda: EVENTS.append(("unloaded",)))

    class Probe(scripts.Script):
        def title(self):
            return "Probe"

        def show(self, is_img2img):
            return scripts.AlwaysVisible

        def ui(self, is_img2img):
            import gradio as gr
            self.enabled = gr.Checkbox(False, label="Probe enabled")
            self.mode = gr.Textbox("", label="Probe mode")
            return [self.enabled, self.mode]

        def _ev(self, name, p, *args):
            EVENTS.append((name, args))

        def setup(self, p, *args):
            self._ev("setup", p, *args)

        def before_process(self, p, enabled, mode):
            self._ev("before_process", p, enabled, mode)
            if mode.startswith("override:"):
                p.override_settings["sd_vae"] = mode.split(":", 1)[1]

        def process(self, p, enabled, mode):
            self._ev("process", p, enabled, mode)
            if mode.startswith("swap-in-process:"):
                from modules import sd_vae
                sd_vae.reload_vae_weights(vae_file=sd_vae.vae_dict[mode.split(":", 1)[1]])
            if mode == "raise-in-process":
                raise RuntimeError("probe failure")
            if mode.startswith("opts-set:"):
                shared.opts.set("sd_vae", mode.split(":", 1)[1])

        def process_batch(self, p, enabled, mode, **kwargs):
            self._ev("process_batch", p, kwargs["batch_number"])
            if mode == "interrupt":
                shared.state.interrupt()

        def post_sample(self, p, ps, enabled, mode):
            self._ev("post_sample", p, getattr(ps.samples, "already_decoded", False))
            if mode == "decode-myself":
                from modules import processing
                ps.samples = processing.DecodedSamples([torch_ones_like_image(s) for s in ps.samples])

        def postprocess(self, p, processed, enabled, mode):
            self._ev("postprocess", p)

    def torch_ones_like_image(latent):
        import torch
        return torch.full((3, latent.shape[-2] * 8, latent.shape[-1] * 8), 1.0)
''')


def probe_module(w):
    return next(d.module for d in w.scripts.scripts_data if d.path.endswith("probe.py"))


def events(w, name=None):
    ev = probe_module(w).EVENTS
    return [e for e in ev if name is None or e[0] == name]


def with_probe(w, **files):
    w.add_extension("probe-ext", {"scripts/probe.py": PROBE, **files})


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# settings (modules.options)

def test_opts_follow_the_real_semantics(webui):
    webui.write_config(sd_vae="Automatic")
    webui.start(ui=False, load_model=False)
    opts = webui.shared.opts
    assert "sd_vae" in opts.data and "sd_vae_overrides_per_model_preferences" not in opts.data
    assert opts.sd_vae_overrides_per_model_preferences is True  # default read from data_labels
    with pytest.raises(AttributeError):
        opts.no_such_option  # noqa: B018
    assert getattr(opts, "no_such_option", 5) == 5
    calls = []
    opts.add_option("vae_lab_x", webui.shared.OptionInfo("a", "x"))
    assert opts.data["vae_lab_x"] == "a"
    opts.onchange("vae_lab_x", lambda: calls.append(opts.vae_lab_x))
    assert calls == ["a"], "onchange(call=True) runs the function at once"
    opts.onchange("vae_lab_x", lambda: calls.append("again"), call=False)
    assert calls == ["a"]
    assert opts.set("vae_lab_x", "a") is False
    opts.vae_lab_x = "b"  # plain assignment: no onchange
    assert calls == ["a"]
    assert opts.set("vae_lab_x", "c") is True and calls == ["a", "again"]

    def failing():
        raise ValueError("nope")
    opts.onchange("vae_lab_x", failing, call=False)
    assert opts.set("vae_lab_x", "d") is False and opts.vae_lab_x == "c", "a raising onchange restores the old value"
    assert opts.cast_value("sd_vae_checkpoint_cache", "2") == 2 and opts.cast_value("add_vae_hash_to_info", "False") is False


def test_options_section_and_option_info_helpers(webui):
    webui.start(ui=False, load_model=False)
    shared = webui.shared
    d = shared.options_section(("vae_lab", "VAE Lab", "sd"), {"k": shared.OptionInfo(1, "K").info("hi").needs_reload_ui()})
    assert d["k"].section == ("vae_lab", "VAE Lab") and d["k"].category_id == "sd"
    assert "(hi)" in d["k"].comment_after and "Reload UI" in d["k"].comment_after


# ------------------------------------------------------------------------------------------------
# VAE listing and resolution (modules.sd_vae)

def test_vae_dict_keys_are_basenames_and_duplicates_keep_first_position(webui):
    webui.add_checkpoint("model.safetensors")
    webui.add_vae("model.vae.safetensors", seed=5, folder=webui.sd_dir)
    webui.add_vae("dup.safetensors", seed=1)
    webui.add_vae("dup.safetensors", seed=2, folder=webui.vae_dir / "sub")
    webui.add_vae("notes.txt.safetensors", seed=3)
    (webui.vae_dir / "readme.txt").write_text("not a vae")
    webui.start(ui=False, load_model=False)
    vd = webui.sd_vae.vae_dict
    assert list(vd)[0] == "model.vae.safetensors", "Stable-diffusion/*.vae.* files are globbed first"
    assert set(vd) == {"model.vae.safetensors", "dup.safetensors", "notes.txt.safetensors"}
    assert vd["dup.safetensors"] == str(webui.vae_dir / "sub" / "dup.safetensors"), "the later duplicate wins"
    assert all(os.path.isabs(p) for p in vd.values())
    # a file added later is unknown until refresh_vae_list()
    webui.add_vae("late.safetensors", seed=4)
    assert "late.safetensors" not in vd
    webui.sd_vae.refresh_vae_list()
    assert "late.safetensors" in webui.sd_vae.vae_dict


def test_resolution_order(webui):
    ckpt = webui.add_checkpoint("sd.safetensors")
    webui.add_vae("sdxl_vae.safetensors", seed=1)   # prefix-matches "sd" (pitfall 3)
    webui.add_vae("meta.safetensors", seed=2)
    webui.add_vae("chosen.safetensors", seed=3)
    webui.start(ui=False, load_model=False)
    sd_vae, opts = webui.sd_vae, webui.shared.opts
    res = lambda: sd_vae.resolve_vae(str(ckpt)).tuple()  # noqa: E731
    v = lambda n: str(webui.vae_dir / n)  # noqa: E731

    assert res() == (v("sdxl_vae.safetensors"), "found near the checkpoint"), "prefix match over all of vae_dict"
    webui.set_checkpoint_metadata(ckpt, vae="meta.safetensors")
    assert res() == (v("meta.safetensors"), "from user metadata")
    opts.sd_vae = "chosen.safetensors"
    assert res() == (v("chosen.safetensors"), "specified in settings"), "a specific setting beats metadata"
    opts.sd_vae_overrides_per_model_preferences = False
    assert res() == (v("meta.safetensors"), "from user metadata")
    opts.sd_vae_overrides_per_model_preferences = True
    opts.sd_vae = "missing.safetensors"
    assert res() == (None, None), "an unknown name silently means the checkpoint's own VAE"
    opts.sd_vae = "None"
    assert res() == (None, None)
    webui.set_checkpoint_metadata(ckpt, vae="None")
    opts.sd_vae = "Automatic"
    assert res() == (None, None), "metadata 'None' resolves to the baked VAE"


def test_vae_path_flag_beats_everything(webui):
    ckpt = webui.add_checkpoint("sd.safetensors")
    webui.add_vae("a.safetensors")
    fixed = webui.add_vae("fixed.safetensors", folder=webui.root / "elsewhere")
    webui.write_config(sd_vae="a.safetensors")
    webui.start(["--vae-path", str(fixed)], ui=False, load_model=False)
    assert webui.sd_vae.resolve_vae(str(ckpt)).tuple() == (str(fixed), "from commandline argument")


# ------------------------------------------------------------------------------------------------
# reloading the VAE: no-op when equal, whole model moved, model_loaded re-entered

def test_reload_vae_weights_noop_and_swap(started_webui):
    w = started_webui
    sd_vae, model = w.sd_vae, w.model
    fired = []
    w.script_callbacks.on_model_loaded(lambda m: fired.append(sd_vae.loaded_vae_file))
    moves, undos = model.moves, w.sd_hijack.model_hijack.undos
    assert sd_vae.reload_vae_weights() is None, "resolved file equals loaded file (None) -> no-op"
    assert sd_vae.reload_vae_weights(vae_file=None) is None
    assert fired == [] and model.moves == moves

    path = sd_vae.vae_dict["vae-a.safetensors"]
    assert sd_vae.reload_vae_weights(vae_file=path) is model
    assert fired == [path], "model_loaded fires after a real swap"
    assert model.to_calls[moves:] == ["cpu", "cpu"], "the whole model goes to CPU and back to the device"
    assert w.sd_hijack.model_hijack.undos == undos + 1
    assert model.loaded_vae_file == path and sd_vae.get_loaded_vae_name() == "vae-a.safetensors"
    expected = vae_state_dict(1)
    got = model.first_stage_model.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected), "the file's weights are in the live model"

    assert sd_vae.reload_vae_weights(vae_file=path) is None and len(fired) == 1
    sd_vae.reload_vae_weights(vae_file=None)
    baked = vae_state_dict(0)
    got = model.first_stage_model.state_dict()
    assert all(torch.equal(got[k], baked[k]) for k in baked), "load_vae(None) restores the checkpoint's VAE"
    assert sd_vae.loaded_vae_file is None and model.loaded_vae_file is None and sd_vae.base_vae is None


def test_model_loaded_handler_applying_a_vae_is_reentered_once(started_webui):
    w = started_webui
    sd_vae = w.sd_vae
    calls = []

    def prefer(m):
        calls.append(sd_vae.loaded_vae_file)
        sd_vae.reload_vae_weights(m, vae_file=sd_vae.vae_dict["vae-b.safetensors"])

    w.script_callbacks.on_model_loaded(prefer)
    sd_vae.reload_vae_weights(vae_file=sd_vae.vae_dict["vae-a.safetensors"])
    # a -> prefer -> swap to b -> model_loaded again -> prefer -> no-op
    assert [os.path.basename(c) for c in calls] == ["vae-a.safetensors", "vae-b.safetensors"]
    assert sd_vae.get_loaded_vae_name() == "vae-b.safetensors"


def test_decoded_pixels_depend_on_the_loaded_vae(started_webui):
    w = started_webui
    base = pixels(w.txt2img(seed=7).images[0])
    w.shared.opts.sd_vae = "vae-a.safetensors"
    assert np.array_equal(pixels(w.txt2img(seed=7).images[0]), base), "plain assignment runs no onchange: no reload"
    assert w.shared.opts.set("sd_vae", "vae-a.safetensors") is False, "unchanged value: no onchange either"
    w.shared.opts.sd_vae = "Automatic"
    assert w.shared.opts.set("sd_vae", "vae-a.safetensors") is True
    a = pixels(w.txt2img(seed=7).images[0])
    assert np.abs(a - base).mean() > 5, "another VAE decodes the same latents differently"
    w.shared.opts.set("sd_vae", "None")
    assert np.array_equal(pixels(w.txt2img(seed=7).images[0]), base), "back to the baked VAE, same pixels"
    assert not np.array_equal(pixels(w.txt2img(seed=8).images[0]), base), "the seed changes the latents"


def test_failed_vae_load_leaves_model_on_cpu_and_unhijacked(started_webui):
    w = started_webui
    bad = w.add_vae("diffusers-layout.safetensors", state_dict={"decoder.mid_block.resnets.0.conv1.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError):
        w.sd_vae.reload_vae_weights(vae_file=str(bad))
    assert w.model.to_calls[-1] == "cpu" and w.model.is_hijacked is False, "no try/finally in the real code"


def test_rejected_pickle_reads_as_none(started_webui):
    w = started_webui
    path = w.vae_dir / "evil.pt"
    torch.save({"x": torch.zeros(1), "obj": pytest.MonkeyPatch}, str(path))  # a class: not allowed
    assert w.sd_models.read_state_dict(str(path)) is None
    assert any("Error verifying pickled file" in e for e in w.errors.reported)


# ------------------------------------------------------------------------------------------------
# overrides during a generation

def test_override_restored_only_when_key_was_in_opts_data(webui):
    webui.add_checkpoint("sd15.safetensors")
    webui.add_vae("vae-a.safetensors")
    webui.start()  # no config.json: sd_vae is NOT in opts.data
    res = webui.txt2img(override_settings_texts=["VAE: vae-a.safetensors"])
    assert "VAE: vae-a.safetensors" in res.processed.infotexts[0]
    assert webui.shared.opts.sd_vae == "vae-a.safetensors", "never saved -> the override stays"
    assert webui.sd_vae.get_loaded_vae_name() == "vae-a.safetensors"


def test_override_restored_when_saved(webui):
    webui.add_checkpoint("sd15.safetensors")
    webui.add_vae("vae-a.safetensors")
    webui.write_config(sd_vae="Automatic")
    webui.start()
    fired = []
    webui.script_callbacks.on_model_loaded(lambda m: fired.append(webui.sd_vae.get_loaded_vae_name()))
    res = webui.txt2img(override_settings_texts=["VAE: vae-a.safetensors"])
    assert "VAE: vae-a.safetensors" in res.processed.infotexts[0]
    assert webui.shared.opts.sd_vae == "Automatic" and webui.sd_vae.loaded_vae_file is None
    assert fired == ["vae-a.safetensors", None], "applied and restored with explicit reloads"


def test_vae_name_is_captured_once_per_run(started_webui):
    w = started_webui
    w.reload_ui()  # nothing: just checks a reload with no extension works
    with_probe(w)
    w.reload_ui()
    # swap in before_process via override_settings -> in the infotext
    r = w.txt2img(scripts={"Probe": [True, "override:vae-a.safetensors"]})
    assert "VAE: vae-a.safetensors" in r.processed.infotexts[0]
    assert w.shared.opts.sd_vae == "vae-a.safetensors"  # sd_vae was never saved: not restored
    w.shared.opts.data.pop("sd_vae")
    w.sd_vae.reload_vae_weights(vae_file=None)
    # swap in process(): too late for the infotext, but the pixels use it
    r = w.txt2img(scripts={"Probe": [True, "swap-in-process:vae-b.safetensors"]})
    assert "VAE:" not in r.processed.infotexts[0]
    assert r.processed.sd_vae_name is None and w.sd_vae.get_loaded_vae_name() == "vae-b.safetensors"


def test_opts_set_sd_vae_during_generation_would_deadlock(started_webui):
    w = started_webui
    with_probe(w)
    w.reload_ui()
    w.initialize.configure_opts_onchange()
    r = w.txt2img(scripts={"Probe": [True, "opts-set:vae-a.safetensors"]})
    assert any("DeadlockError" in e for e in w.errors.reported), "queue_lock is not re-entrant"
    assert r.images, "the hook's exception is reported and generation continues"
    # outside a generation the same call works and reloads through the onchange
    assert w.shared.opts.set("sd_vae", "vae-b.safetensors") is True
    assert w.sd_vae.get_loaded_vae_name() == "vae-b.safetensors"


# ------------------------------------------------------------------------------------------------
# hashing, precision, NaNs

def test_vae_hash_cache_title_bug(started_webui):
    w = started_webui
    sd_vae = w.sd_vae
    now = time.time()
    os.utime(sd_vae.vae_dict["vae-a.safetensors"], (now, now))
    os.utime(sd_vae.vae_dict["vae-b.safetensors"], (now - 100, now - 100))
    sd_vae.reload_vae_weights(vae_file=sd_vae.vae_dict["vae-a.safetensors"])
    hash_a = sd_vae.get_loaded_vae_hash()
    sd_vae.reload_vae_weights(vae_file=sd_vae.vae_dict["vae-b.safetensors"])
    true_b = w.hashes.calculate_sha256(sd_vae.vae_dict["vae-b.safetensors"])[:10]
    assert hash_a != true_b
    assert sd_vae.get_loaded_vae_hash() == hash_a, "cached under 'vae': the previous file's hash comes back"
    assert w.hashes.sha256(sd_vae.vae_dict["vae-b.safetensors"], "vae/vae-b.safetensors")[:10] == true_b


def test_test_for_nans_looks_at_element_zero_only(webui):
    webui.start(ui=False, load_model=False)
    devices = webui.devices
    x = torch.zeros(1, 3, 4, 4)
    x[0, 1, 2, 2] = float("nan")
    devices.test_for_nans(x, "vae")  # not at [0,0,0,0]: passes
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(devices.NansException, match="VAE"):
        devices.test_for_nans(x, "vae")


def test_disable_nan_check_flag(webui):
    webui.start(["--disable-nan-check"], ui=False, load_model=False)
    webui.devices.test_for_nans(torch.full((1, 1), float("nan")), "unet")


def _cpu_runs_fp16_convolutions() -> bool:
    try:
        torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3).half(), torch.ones(1, 1, 1, 1).half())
        return True
    except RuntimeError:  # torch 2.1: "slow_conv2d_cpu" not implemented for 'Half'
        return False


@pytest.mark.skipif(not _cpu_runs_fp16_convolutions(),
                    reason="this torch has no fp16 convolution on CPU (2.1): a half-precision WebUI cannot run here")
def test_nan_retry_switches_dtype_vae_for_the_session(webui):
    webui.add_checkpoint("sd15.safetensors")
    webui.add_vae("overflows.safetensors", state_dict=fp16_overflowing_vae_state_dict())
    webui.write_config(sd_vae="overflows.safetensors")
    webui.start(half=True, ui=True)
    devices = webui.devices
    assert devices.dtype_vae == torch.float16 and webui.model.first_stage_model.dtype == torch.float16
    r = webui.txt2img(width=32, height=32)
    assert r.images and devices.dtype_vae == torch.float32, "retried in fp32 and the switch is sticky"
    decoded = webui.processing.decode_latent_batch(webui.model, torch.randn(1, 4, 4, 4), check_for_nans=True)
    assert torch.isfinite(decoded[0]).all()
    webui.sd_vae.reload_vae_weights(vae_file=None)
    assert webui.model.first_stage_model.dtype == torch.float32, "later VAEs are cast to the new dtype"


# ------------------------------------------------------------------------------------------------
# scripts and callbacks

def test_load_scripts_module_name_basedir_and_sys_path(started_webui):
    w = started_webui
    ext = w.add_extension("probe-ext", {"scripts/probe.py": PROBE,
                                        "scripts/imports_base.py": "from modules.scripts import Script\n"})
    w.reload_ui()
    mod = probe_module(w)
    assert mod.NAME == "probe.py" and "probe.py" not in sys.modules
    assert mod.BASEDIR == str(ext) and w.scripts.basedir() == w.paths.script_path
    assert mod.PATH_AT_IMPORT[0] == str(ext), "extension root first on sys.path while importing"
    assert str(ext) not in mod.path_now(), "and gone afterwards"
    data = w.scripts.scripts_data
    assert data[0].path.endswith("xyz_grid.py"), "root scripts/ first"
    assert [d.script_class.__name__ for d in data[-2:]] == ["ScriptSampler", "ScriptSeed"], "built-in processing scripts last"
    bogus = [d for d in data if d.path.endswith("imports_base.py")]
    assert [d.script_class for d in bogus] == [w.scripts.Script], "an imported Script base class is registered too"
    assert any("Error calling" in e and "imports_base.py/title" in e for e in w.errors.reported), \
        "…and its title() raises when the UI is built"


def test_callback_names_and_reload(started_webui):
    w = started_webui
    with_probe(w)
    w.reload_ui()
    names = [c.name for c in w.script_callbacks.callback_map["callbacks_model_loaded"]]
    assert names == ["probe-ext/probe.py/model_loaded", "probe-ext/probe.py/model_loaded-1"]
    first_module = probe_module(w)
    w.reload_ui()
    assert ("unloaded",) in first_module.EVENTS, "script_unloaded runs before re-import"
    second = probe_module(w)
    assert second is not first_module and second.EVENTS == [], "new module objects, state lost"
    assert len(w.script_callbacks.callback_map["callbacks_model_loaded"]) == 2, "cleared and re-registered"
    assert events(w, "model_loaded") == [], "model_loaded is not fired again on Reload UI"


def test_hooks_order_setup_once_and_args(started_webui):
    w = started_webui
    with_probe(w)
    w.reload_ui()
    w.txt2img(n_iter=2, scripts={"Probe": [True, "plain"]})
    names = [e[0] for e in events(w)]
    assert names == ["setup", "before_process", "process", "process_batch", "post_sample",
                     "process_batch", "post_sample", "postprocess"]
    assert events(w, "setup")[0][1] == (True, "plain")


def test_hook_exception_reported_and_generation_continues(started_webui):
    w = started_webui
    with_probe(w)
    w.reload_ui()
    r = w.txt2img(scripts={"Probe": [True, "raise-in-process"]})
    assert len(r.images) == 1 and any("Error running process" in e for e in w.errors.reported)
    assert events(w, "postprocess")


def test_postprocess_not_called_when_generation_raised_and_p_closed(started_webui):
    w = started_webui
    with_probe(w)
    w.reload_ui()
    w.write_config(sd_vae="Automatic")
    w.shared.opts.data["sd_vae"] = "Automatic"
    seen = []
    orig = w.processing.process_images_inner

    def boom(p):
        seen.append(p)
        raise RuntimeError("sampler exploded")
    w.processing.process_images_inner = boom
    try:
        r = w.txt2img(override_settings_texts=["VAE: vae-a.safetensors"], scripts={"Probe": [True, "x"]})
    finally:
        w.processing.process_images_inner = orig
    assert "sampler exploded" in r.html and r.processed is None
    assert events(w, "before_process") and not events(w, "postprocess")
    assert seen[0].closed, "with closing(p)"
    assert w.sd_vae.loaded_vae_file is None, "overrides restored in finally"


def test_interrupt_between_batches(started_webui):
    w = started_webui
    with_probe(w)
    w.reload_ui()
    r = w.txt2img(n_iter=3, scripts={"Probe": [True, "interrupt"]})
    assert len(r.images) == 1 and [e[1] for e in events(w, "process_batch")] == [(0,)]


def test_post_sample_can_hand_over_decoded_samples(started_webui):
    w = started_webui
    with_probe(w)
    w.reload_ui()
    before = w.sd_samplers_common.full_decodes
    r = w.txt2img(scripts={"Probe": [True, "decode-myself"]})
    assert w.sd_samplers_common.full_decodes == before, "the WebUI skipped its own decode"
    assert pixels(r.images[0]).min() == 255


def test_hires_fix_gives_post_sample_decoded_images_and_reloads_mid_run(started_webui):
    w = started_webui
    w.add_checkpoint("other.safetensors", vae_seed=9)
    w.sd_models.list_models()
    with_probe(w)
    w.reload_ui()
    r = w.txt2img(enable_hr=True, hr_scale=2.0, hr_checkpoint_name="other.safetensors", scripts={"Probe": [True, "x"]})
    assert events(w, "post_sample")[0][1] == (True,)
    assert r.images[0].size == (128, 128)
    assert w.model.sd_checkpoint_info.name == "other.safetensors", "hires checkpoint loaded mid-run"
    assert w.shared.opts.sd_model_checkpoint.startswith("sd15.safetensors"), "SkipWritingToConfig"
    w.txt2img()
    assert w.model.sd_checkpoint_info.name == "sd15.safetensors", "the next run swaps back"


def test_img2img_encodes_init_image_with_the_loaded_vae(started_webui, astronaut):
    from PIL import Image
    w = started_webui
    init = Image.fromarray(astronaut).resize((64, 64))
    base = pixels(w.img2img(init, denoising_strength=0.2).images[0])
    w.shared.opts.set("sd_vae", "vae-a.safetensors")
    other = pixels(w.img2img(init, denoising_strength=0.2).images[0])
    assert np.abs(base - other).mean() > 5


# ------------------------------------------------------------------------------------------------
# models

def test_lazy_sd_model_and_model_types(webui):
    webui.add_checkpoint("a-sd1.safetensors", kind="sd1")
    webui.add_checkpoint("b-xl.safetensors", kind="sdxl")
    webui.start(ui=False, load_model=False)
    assert webui.sd_models.model_data.sd_model is None
    fired = []
    webui.script_callbacks.on_model_loaded(lambda m: fired.append(m))
    m = webui.shared.sd_model
    assert fired == [m] and m.is_sd1 and not m.is_sdxl and m.scale_factor == 0.18215 and m.latent_channels == 4
    assert webui.shared.opts.data["sd_model_checkpoint"] == m.sd_checkpoint_info.title
    assert m.sd_checkpoint_info.title == f"a-sd1.safetensors [{m.sd_checkpoint_info.shorthash}]"
    xl_info = webui.sd_models.get_closet_checkpoint_match("b-xl")
    xl = webui.sd_models.reload_model_weights(info=xl_info)
    assert xl is not m and xl.is_sdxl and xl.scale_factor == 0.13025, "another config: a full load"
    assert fired[-1] is xl and webui.shared.sd_model is xl
    assert webui.sd_models.reload_model_weights(info=xl_info) is xl and len(fired) == 2, "same file: no-op"


# ------------------------------------------------------------------------------------------------
# infotext, API

def test_infotext_quoting_and_parsing(started_webui):
    w = started_webui
    iu = w.infotext_utils
    assert iu.quote("a, b") == '"a, b"' and iu.quote("plain") == "plain"
    w.shared.opts.set("sd_vae", "vae-a.safetensors")
    text = w.txt2img("a cat, on a mat", negative_prompt="blurry").processed.infotexts[0]
    params = iu.parse_generation_parameters(text)
    assert params["Prompt"] == "a cat, on a mat" and params["Negative prompt"] == "blurry"
    assert params["VAE"] == "vae-a.safetensors" and len(params["VAE hash"]) == 10
    assert params["Size-1"] == "64" and params["VAE Decoder"] == "Full"
    w.shared.opts.sd_vae = "Automatic"
    assert iu.get_override_settings(params) == [("VAE", "sd_vae", "vae-a.safetensors")]
    assert iu.create_override_settings_dict(["VAE: vae-b.safetensors"]) == {"sd_vae": "vae-b.safetensors"}
    values, chips = iu.paste_infotext("txt2img", text)
    assert chips == ["VAE: vae-a.safetensors"]
    p = w.processing.StableDiffusionProcessingTxt2Img(prompt="x", extra_generation_params={"My key": "v: 1", "Skip": None})
    p.all_prompts, p.all_negative_prompts, p.all_seeds, p.all_subseeds = ["x"], [""], [1], [1]
    txt = w.processing.create_infotext(p, ["x"], [1], [1])
    assert 'My key: "v: 1"' in txt and "Skip" not in txt


def test_api_alwayson_scripts_mapping(started_webui):
    from fastapi.exceptions import HTTPException
    w = started_webui
    with_probe(w)
    w.reload_ui()
    api = w.api
    out = api.text2imgapi({"prompt": "x", "width": 64, "height": 64, "steps": 2, "seed": 5,
                           "alwayson_scripts": {"PROBE": {"args": [True]}}})
    assert len(out["images"]) == 1 and json.loads(out["info"])["seed"] == 5
    assert events(w, "setup")[0][1] == (True, ""), "missing args keep the UI defaults"
    with pytest.raises(HTTPException) as e:
        api.text2imgapi({"prompt": "x", "alwayson_scripts": {"nope": {"args": []}}})
    assert e.value.status_code == 422
    with pytest.raises(HTTPException) as e:
        api.text2imgapi({"prompt": "x", "alwayson_scripts": {"X/Y/Z plot": {"args": []}}})
    assert e.value.status_code == 422
    out = api.text2imgapi({"prompt": "x", "width": 64, "height": 64, "steps": 2,
                           "infotext": "x\nSteps: 2, Seed: 9, Size: 64x64, VAE: vae-b.safetensors"})
    info = json.loads(out["info"])
    assert info["sd_vae_name"] == "vae-b.safetensors" and info["width"] == 64


# ------------------------------------------------------------------------------------------------
# UI, xyz_grid, launch

def test_ui_settings_tabs_and_refresh(started_webui):
    w = started_webui
    w.add_extension("tab-ext", {"scripts/tab.py": textwrap.dedent('''
        import gradio as gr
        from modules import script_callbacks, shared, sd_vae
        from modules.ui_components import InputAccordion
        def settings():
            shared.opts.add_option("tab_ext_vae", shared.OptionInfo("None", "Default", gr.Dropdown,
                lambda: {"choices": ["None"] + list(sd_vae.vae_dict)}, refresh=sd_vae.refresh_vae_list,
                section=("tab_ext", "Tab ext")))
        def tabs():
            with gr.Blocks(analytics_enabled=False) as tab:
                with InputAccordion(False, label="acc") as enabled:
                    gr.Textbox(label="inside")
            return [(tab, "Tab Ext", "tab_ext")]
        script_callbacks.on_ui_settings(settings)
        script_callbacks.on_ui_tabs(tabs)
    ''')})
    w.reload_ui()
    comp = w.shared.settings_components["sd_vae"]
    assert comp.choices[:2] == [("Automatic", "Automatic"), ("None", "None")] or comp.choices[:2] == ["Automatic", "None"]
    assert "tab_ext_vae" in w.shared.settings_components
    assert ("Tab Ext", "tab_ext") in w.demo.ui_tabs
    w.add_vae("new.safetensors", seed=6)
    btn = next(b for b in w.demo.blocks.values() if getattr(b, "elem_id", None) == "refresh_tab_ext_vae")
    update = btn.refresh_fn()
    assert "new.safetensors" in update["choices"]


def test_xyz_grid_vae_axis_and_module_name(started_webui):
    w = started_webui
    xyz = next(d.module for d in w.scripts.scripts_data if d.script_class.__module__ == "xyz_grid.py")
    assert xyz.find_vae("VAE-A.SAFETENSORS") == "vae-a.safetensors" and xyz.find_vae("auto") == "Automatic"
    script = next(s for s in w.scripts.scripts_txt2img.selectable_scripts if s.title() == "X/Y/Z plot")
    labels = [o.label for o in script.current_axis_options]
    idx = w.scripts.scripts_txt2img.selectable_scripts.index(script) + 1
    r = w.txt2img(selectable=idx, scripts={"X/Y/Z plot": [labels.index("VAE"), "vae-a.safetensors, vae-b.safetensors",
                                                         labels.index("Nothing"), ""]})
    assert len(r.images) == 3  # grid + 2 cells
    assert "VAE: vae-a" in r.processed.infotexts[1] and "VAE: vae-b" in r.processed.infotexts[2]
    # sd_vae was never saved: cell 1's override stays in opts.data, so cell 2 is restored to it
    assert w.shared.opts.sd_vae == "vae-a.safetensors" and w.sd_vae.get_loaded_vae_name() == "vae-a.safetensors"


def test_launch_run_pip_and_install_py_subprocess(webui):
    ext = webui.add_extension("inst", {"install.py": textwrap.dedent('''
        import os, launch
        if not launch.is_installed("surely_not_installed_pkg_xyz"):
            launch.run_pip("install surely_not_installed_pkg_xyz", "test pkg")
        print("cwd=" + os.getcwd())
    ''')})
    webui.start(ui=False, load_model=False)
    launch = webui.launch
    assert launch.is_installed("torch") and not launch.is_installed("surely_not_installed_pkg_xyz")
    out = launch.run_extension_installer(str(ext))
    assert f"cwd={ext}" not in out
    assert webui.pip_calls() == [{"command": "install surely_not_installed_pkg_xyz", "desc": "test pkg"}]


def test_run_pip_skip_install(webui):
    webui.start(["--skip-install"], ui=False, load_model=False)
    assert webui.launch.run_pip("install x", "x") is None and webui.pip_calls() == []


def test_vae_ram_cache_and_lowvram(webui):
    webui.add_checkpoint("sd15.safetensors")
    webui.add_vae("vae-a.safetensors", seed=1)
    webui.add_vae("vae-b.safetensors", seed=2)
    webui.write_config(sd_vae_checkpoint_cache=1)
    webui.start(["--lowvram"], ui=False)
    sd_vae, model = webui.sd_vae, webui.model
    a, b = sd_vae.vae_dict["vae-a.safetensors"], sd_vae.vae_dict["vae-b.safetensors"]
    moves = model.moves
    for f in (a, b, a, b):
        sd_vae.reload_vae_weights(vae_file=f)
    assert sd_vae.file_reads == [a, b], "the second time both come from the RAM cache"
    assert list(sd_vae.checkpoints_loaded) == [a, b]
    assert model.lowvram and model.moves == moves and webui.lowvram.offloads == 4, "lowvram: offload, no whole-model move"


def test_checkpoint_reuse_with_limit(webui):
    webui.add_checkpoint("one.safetensors", vae_seed=0)
    webui.add_checkpoint("two.safetensors", vae_seed=5)
    webui.add_vae("vae-a.safetensors", seed=1)
    webui.write_config(sd_checkpoints_limit=2)
    webui.start(ui=False)
    sdm, sd_vae = webui.sd_models, webui.sd_vae
    fired = []
    webui.script_callbacks.on_model_loaded(lambda m: fired.append(m.sd_checkpoint_info.name))
    one = webui.model
    sd_vae.reload_vae_weights(vae_file=sd_vae.vae_dict["vae-a.safetensors"])
    two = sdm.reload_model_weights(info=sdm.get_closet_checkpoint_match("two"))
    assert two is not one and sdm.load_count == 2 and sd_vae.loaded_vae_file is None
    back = sdm.reload_model_weights(info=sdm.get_closet_checkpoint_match("one"))
    assert back is one and sdm.load_count == 2, "the cached model is reused"
    # its VAE state is copied back into sd_vae, then the VAE is resolved again (Automatic -> baked)
    assert sd_vae.get_loaded_vae_name() is None
    baked = vae_state_dict(0)
    assert all(torch.equal(one.first_stage_model.state_dict()[k], baked[k]) for k in baked)
    assert fired == ["one.safetensors", "two.safetensors", "one.safetensors"], "the VAE changed: model_loaded"
    assert sdm.reload_model_weights(info=sdm.get_closet_checkpoint_match("two")) is two and len(fired) == 3


def test_component_hooks_and_tooltip(started_webui):
    w = started_webui
    w.add_extension("hooks", {"scripts/hooks.py": textwrap.dedent('''
        import gradio as gr
        from modules import script_callbacks
        SEEN = []
        def after(component, **kwargs):
            SEEN.append(kwargs.get("elem_id"))
        script_callbacks.on_after_component(after)
        def tabs():
            with gr.Blocks() as tab:
                gr.Textbox(label="t", elem_id="hooks_box", tooltip="shown on hover")
            return [(tab, "Hooks", "hooks")]
        script_callbacks.on_ui_tabs(tabs)
    ''')})
    w.reload_ui()
    mod = next(m for p, m in w.script_loading.loaded_scripts.items() if p.endswith("hooks.py") and hasattr(m, "SEEN"))
    assert "hooks_box" in mod.SEEN and "setting_sd_vae" in mod.SEEN and "txt2img_prompt" in mod.SEEN


def test_nowebui_api_builds_the_ui_for_script_defaults(webui):
    webui.add_checkpoint("sd15.safetensors")
    with_probe(webui)
    webui.start(["--nowebui"])
    assert webui.demo is None and webui.api_obj is not None
    runner = webui.scripts.scripts_txt2img
    probe = runner.script("probe")
    assert webui.api_obj.default_script_arg_txt2img[probe.args_from:probe.args_to] == [False, ""]


def test_disabled_extension_style_files_and_failing_callbacks(started_webui):
    w = started_webui
    w.add_extension("on", {"style.css": "x{}", "scripts/on.py": textwrap.dedent('''
        from modules import script_callbacks
        CALLS = []
        def broken(m):
            raise ValueError("broken handler")
        script_callbacks.on_model_loaded(broken)
        script_callbacks.on_model_loaded(lambda m: CALLS.append("second"))
    ''')})
    w.add_extension("off", {"style.css": "y{}", "scripts/off.py": "raise SystemExit('must not be imported')\n"})
    w.shared.opts.disabled_extensions = ["off"]
    w.reload_ui()
    assert [os.path.basename(os.path.dirname(p)) for p in w.scripts.list_files_with_name("style.css")] == ["on"]
    assert not any(d.path.endswith("off.py") for d in w.scripts.scripts_data)
    w.sd_vae.reload_vae_weights(vae_file=w.sd_vae.vae_dict["vae-a.safetensors"])
    mod = next(m for p, m in w.script_loading.loaded_scripts.items() if p.endswith("on.py"))
    assert mod.CALLS == ["second"], "a raising callback is reported and the next one runs"
    assert any("on/on.py/model_loaded" in e and "broken handler" in e for e in w.errors.reported)


def test_no_hashing_omits_the_vae_hash(webui):
    webui.add_checkpoint("sd15.safetensors")
    webui.add_vae("vae-a.safetensors")
    webui.write_config(sd_vae="vae-a.safetensors")
    webui.start(["--no-hashing"])
    text = webui.txt2img().processed.infotexts[0]
    assert "VAE: vae-a.safetensors" in text and "VAE hash" not in text and "Model hash" not in text


def test_saved_png_carries_the_infotext_and_callbacks_can_edit_it(started_webui):
    from PIL import Image
    w = started_webui
    seen = []

    def before(params):
        seen.append(params.filename)
        params.pnginfo["parameters"] += ", Extra: yes"
    w.script_callbacks.on_before_image_saved(before)
    r = w.txt2img("a cat")
    assert len(w.images.saved) == 1 and seen == w.images.saved
    with Image.open(w.images.saved[0]) as im:
        assert im.info["parameters"] == r.processed.infotexts[0] + ", Extra: yes"
    assert w.api.text2imgapi({"prompt": "x", "width": 64, "height": 64, "steps": 1})["images"] and len(w.images.saved) == 1, \
        "the API saves nothing unless save_images"


def test_sd3_ckpt_vae_dir_img2img_api_and_elem_id(webui, astronaut):
    import base64
    import io
    from PIL import Image
    webui.add_checkpoint("sd3.ckpt", kind="sd3", vae_seed=4)   # pickled {"state_dict": …}
    extra = webui.root / "more-vaes"
    webui.add_vae("flux-like.safetensors", kind="sd3", seed=2, folder=extra)
    with_probe(webui)
    webui.start(["--vae-dir", str(extra)])
    m = webui.model
    assert m.is_sd3 and m.latent_channels == 16 and not hasattr(m, "scale_factor")
    assert list(webui.sd_vae.vae_dict) == ["flux-like.safetensors"]
    probe = webui.scripts.scripts_img2img.script("probe")
    assert probe.elem_id("x") == "script_img2img_probe_x" and probe.tabname == "img2img"
    buf = io.BytesIO()
    Image.fromarray(astronaut).resize((64, 64)).save(buf, format="PNG")
    out = webui.api.img2imgapi({"init_images": [base64.b64encode(buf.getvalue()).decode()], "prompt": "x",
                                "width": 64, "height": 64, "steps": 1, "denoising_strength": 0.3,
                                "override_settings": {"sd_vae": "flux-like.safetensors"}})
    info = json.loads(out["info"])
    assert info["sd_vae_name"] == "flux-like.safetensors" and len(out["images"]) == 1


def test_a_nested_webui_puts_the_previous_stand_in_back(started_webui, tmp_path):
    from webui_env import FakeWebUI
    outer_shared = sys.modules["modules.shared"]
    with pytest.MonkeyPatch.context() as mp:
        inner = FakeWebUI(tmp_path / "inner", mp)
        inner.add_checkpoint("other.safetensors")
        inner.start(ui=False)
        assert sys.modules["modules.shared"] is not outer_shared
        assert inner.paths_internal.data_path == str(tmp_path / "inner")
        inner.close()
    assert sys.modules["modules.shared"] is outer_shared
    assert started_webui.paths_internal.data_path == str(started_webui.root)
    assert started_webui.txt2img().images, "the outer WebUI still works"


def test_sampler_step_callback_can_interrupt(started_webui):
    w = started_webui
    steps_seen = []

    def on_step(params):
        steps_seen.append(params.sampling_step)
        if params.sampling_step == 2:
            w.shared.state.interrupt()
    w.script_callbacks.on_cfg_denoiser(on_step)
    r = w.txt2img(steps=10, n_iter=3)
    assert steps_seen == [0, 1, 2], "interrupted inside the first batch's sampling"
    assert len(r.images) == 1, "that batch is still decoded; the next ones never start"


def test_ui_config_json_puts_recorded_values_back(started_webui):
    """modules/ui_loadsave.py: the first start records the UI's values; later builds put them back
    over the components' own, unless a component sets `do_not_save_to_config`."""
    import json

    w = started_webui
    path = w.root / "ui-config.json"
    recorded = json.loads(path.read_text())
    assert recorded["txt2img/CFG Scale/value"] == 7.0
    recorded["txt2img/CFG Scale/value"] = 9.5
    path.write_text(json.dumps(recorded))
    w.reload_ui()
    assert w.ui.tab_controls["txt2img"]["cfg_scale"].value == 9.5
