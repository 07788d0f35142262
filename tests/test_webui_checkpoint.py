"""Per-checkpoint preferred VAE, wrong-family refusal, Settings and Forge, in the WebUI stand-in."""

from __future__ import annotations

import json

import pytest
import torch

from webui_lab import AS_IN_SETTINGS, lab, make_p, run_p, vae_weights  # noqa: F401


def test_settings_section_and_token_fields(lab):
    from modules import shared

    import vae_lab.webui as w

    keys = [k for k, info in shared.opts.data_labels.items() if info.section and info.section[0] == "vae_lab"]
    assert set(keys) >= {
        "vae_lab_download_dir", "vae_lab_ram_cache_mb", "vae_lab_device_cache_mb", "vae_lab_precision", "vae_lab_auto_checkpoint_vae",
        "vae_lab_checkpoint_vae", "vae_lab_refuse_wrong_family", "vae_lab_hf_token", "vae_lab_civitai_token",
    }
    for key in ("vae_lab_hf_token", "vae_lab_civitai_token"):
        info = shared.opts.data_labels[key]
        assert info.restrict_api and info.component_args == {"type": "password"}
    # the API cannot set a token; Settings can, and it never reaches the infotext
    assert shared.opts.set("vae_lab_hf_token", "hf_secret", is_api=True) is False
    shared.opts.set("vae_lab_hf_token", "hf_secret")
    try:
        assert w.tokens()["hf"] == "hf_secret"
        res = run_p(make_p(lab, True, "a.safetensors", ["b.safetensors"]))
        assert all("hf_secret" not in t for t in res.infotexts) and "hf_secret" not in res.js()
    finally:
        shared.opts.set("vae_lab_hf_token", "")


def test_preferred_vae_applied_when_checkpoint_loads(lab):
    from modules import sd_vae, shared

    import vae_lab.webui as w

    msg = w.set_checkpoint_preference("b.safetensors")
    assert sd_vae.loaded_vae_file == lab.vae("b") and "Saved b.safetensors for sd15.safetensors" in msg
    saved = json.loads(open(w.preferences().path).read())
    assert saved["checkpoints"] == {"sd15.safetensors": "b.safetensors"}

    lab.load_checkpoint("sdxl_base")
    assert sd_vae.loaded_vae_file is None  # no preference for the SDXL checkpoint
    moves = len(shared.sd_model.to_calls)
    model = lab.load_checkpoint("sd15")
    assert sd_vae.loaded_vae_file == lab.vae("b") and model.loaded_vae_file == lab.vae("b")
    assert "VAE Lab's preference for sd15.safetensors" in w.current_status()
    assert shared.opts.data["vae_lab_checkpoint_vae"] == "b.safetensors"  # Settings shows it
    # generations use it and say so
    res = run_p(make_p(lab, False, AS_IN_SETTINGS, []))
    assert "VAE: b.safetensors" in res.infotexts[0]
    assert len(shared.sd_model.to_calls) >= moves  # (loading a checkpoint moves it; that is the WebUI's)


def test_webui_precedence_is_kept(lab):
    from modules import sd_vae

    import vae_lab.webui as w

    w.set_checkpoint_preference("b.safetensors")
    lab.set_sd_vae("a.safetensors")  # a specific SD VAE outranks per-model preferences (WebUI default)
    lab.load_checkpoint("sdxl_base")
    lab.load_checkpoint("sd15")
    assert sd_vae.loaded_vae_file == lab.vae("a")
    assert "outranked by Settings > SD VAE (a.safetensors)" in w.current_status()

    lab.set_opt("sd_vae_overrides_per_model_preferences", False)  # now the preference wins
    lab.load_checkpoint("sdxl_base")
    lab.load_checkpoint("sd15")
    assert sd_vae.loaded_vae_file == lab.vae("b")

    lab.set_opt("vae_lab_auto_checkpoint_vae", False)  # turned off: the WebUI's own choice
    lab.load_checkpoint("sdxl_base")
    lab.load_checkpoint("sd15")
    assert sd_vae.loaded_vae_file == lab.vae("a")


def test_preference_set_from_settings(lab):
    from modules import sd_vae

    import vae_lab.webui as w

    lab.set_opt("vae_lab_checkpoint_vae", "c.safetensors")
    assert w.preferences().get("sd15.safetensors") == "c.safetensors"
    assert sd_vae.loaded_vae_file == lab.vae("c")
    lab.set_opt("vae_lab_checkpoint_vae", w.NO_PREFERENCE)
    assert w.preferences().get("sd15.safetensors") is None
    assert sd_vae.loaded_vae_file is None  # back to the WebUI's own choice (Automatic: the checkpoint's)
    assert "chosen by the WebUI" in w.current_status()


def test_apply_settings_after_a_checkpoint_switch_keeps_the_preferences(lab):
    """The Settings page shows the preference of the checkpoint loaded when the page loaded, and
    "Apply settings" sends every field back: a stale field must not overwrite (or erase) the
    preference of the checkpoint loaded now."""
    from modules import sd_vae, shared

    import vae_lab.webui as w

    key, info = "vae_lab_checkpoint_vae", shared.opts.data_labels["vae_lab_checkpoint_vae"]

    def page_load():  # what the WebUI's demo.load does for every setting
        value = getattr(shared.opts, key)
        info.component_args()
        return value

    w.set_checkpoint_preference("c.safetensors")  # sd15 prefers c
    lab.load_checkpoint("sdxl_base")
    shown = page_load()  # the page shows sdxl_base's (no preference)
    lab.load_checkpoint("sd15")
    assert sd_vae.loaded_vae_file == lab.vae("c")
    shared.opts.set(key, shown)  # Apply settings (any other field changed)
    assert w.preferences().get("sd15.safetensors") == "c.safetensors" and sd_vae.loaded_vae_file == lab.vae("c")
    assert shared.opts.data[key] == "c.safetensors"

    shown = page_load()  # the page shows sd15's c
    lab.load_checkpoint("sdxl_base")
    shared.opts.set(key, shown)
    assert w.preferences().get("sdxl_base.safetensors") is None and sd_vae.loaded_vae_file is None

    # a real choice on a stale page still counts
    shared.opts.set(key, "b.safetensors")
    assert w.preferences().get("sdxl_base.safetensors") == "b.safetensors"


def test_wrong_family_refused_and_model_keeps_its_vae(lab):
    from modules import sd_vae, shared

    import vae_lab.webui as w
    from vae_lab.errors import IncompatibleVae

    lab.set_sd_vae("a.safetensors")
    before = vae_weights(shared.sd_model)
    # the SDXL VAE (identified as such) on the SD1 model: refused, generation runs with a
    res = run_p(make_p(lab, True, "xl_vae.safetensors", []))
    assert "SDXL VAE but the loaded model is SD1/SD2" in res.comments
    assert "VAE: a.safetensors" in res.infotexts[0]
    assert all(torch.equal(v, before[k]) for k, v in vae_weights(shared.sd_model).items())
    with pytest.raises(IncompatibleVae, match="SDXL VAE"):
        w.set_checkpoint_preference("xl_vae.safetensors")
    assert w.preferences().get("sd15.safetensors") is None

    # the right family on the right model is fine; an SD1 VAE on the SDXL model is refused
    lab.set_sd_vae("Automatic")
    lab.load_checkpoint("sdxl_base")
    assert w.swap_vae(shared.sd_model, lab.vae("xl_vae"), source="test")
    with pytest.raises(IncompatibleVae, match="SD1/SD2 VAE but the loaded model is SDXL"):
        w.swap_vae(shared.sd_model, lab.vae("mse"), source="test")
    assert sd_vae.loaded_vae_file == lab.vae("xl_vae")

    # refusing can be turned off: then it is a warning
    lab.set_opt("vae_lab_refuse_wrong_family", False)
    assert w.swap_vae(shared.sd_model, lab.vae("mse"), source="test")


def test_16_channel_vae_always_refused(lab):
    from modules import sd_vae

    lab.set_opt("vae_lab_refuse_wrong_family", False)
    res = run_p(make_p(lab, True, "x16.safetensors", []))
    assert "16-channel latents" in res.comments
    assert sd_vae.loaded_vae_file is None


def test_forge_turns_swaps_off_with_one_message(lab):
    """A Forge-like WebUI that vae_lab.webui.forge does not recognise (no `modules_forge`): A1111's
    host reports it once and swaps nothing. Forge proper: tests/test_webui_forge.py."""
    from modules import sd_vae, shared

    import vae_lab.webui as w

    shared.opts.data["forge_additional_modules"] = []
    assert w.is_forge()
    res = run_p(make_p(lab, True, "b.safetensors", ["c.safetensors"]))
    assert len(res.images) == 1 and sd_vae.loaded_vae_file is None
    assert w.current_status() == w.FORGE_MESSAGE


def test_vae_list_refresh_includes_the_download_folder(lab, tmp_path):
    from modules import sd_vae

    from testkit.factories import random_kl_state_dict
    from safetensors.torch import save_file

    import vae_lab.webui as w

    # a download into models/VAE shows up in the WebUI's list through the tab's callback
    ctx = w.ui_context()
    save_file(random_kl_state_dict(seed=78), str(lab.webui.vae_dir / "downloaded.safetensors"))
    ctx.on_vaes_changed()
    assert "downloaded.safetensors" in sd_vae.vae_dict and "downloaded.safetensors" in w.vae_choices()
    assert ctx.download_dir == sd_vae.vae_path and w.tokens() == {"hf": "", "civitai": ""}
    from modules import call_queue

    assert ctx.lock is call_queue.queue_lock

    save_file(random_kl_state_dict(seed=76), str(tmp_path / "early.safetensors"))
    lab.set_opt("vae_lab_download_dir", str(tmp_path))
    try:
        assert "early.safetensors" in sd_vae.vae_dict  # choosing the folder lists its files at once
        save_file(random_kl_state_dict(seed=77), str(tmp_path / "fresh.safetensors"))
        assert "fresh.safetensors" not in sd_vae.vae_dict
        w.refresh_vae_list()
        assert sd_vae.vae_dict["fresh.safetensors"] == str(tmp_path / "fresh.safetensors")
        assert "fresh.safetensors" in w.vae_choices()
        assert str(tmp_path) in w.vae_dirs()

        # the WebUI's own 🔄 next to Settings > SD VAE keeps them (it rebuilds the list from its folders)
        btn = next(b for b in lab.demo.blocks.values() if getattr(b, "elem_id", None) == "refresh_sd_vae")
        save_file(random_kl_state_dict(seed=75), str(tmp_path / "later.safetensors"))
        choices = [c[0] if isinstance(c, tuple) else c for c in btn.refresh_fn()["choices"]]
        assert {"early.safetensors", "fresh.safetensors", "later.safetensors", "a.safetensors"} <= set(choices)

        # Reload UI unwraps and re-wraps the WebUI's refresh (once, not twice)
        lab.webui.reload_ui()
        hooked = sd_vae.refresh_vae_list
        assert callable(getattr(hooked, "webui_refresh", None))  # VAE Lab's hook, around the WebUI's own
        assert not hasattr(hooked.webui_refresh, "webui_refresh")  # once, not twice
        sd_vae.refresh_vae_list()
        assert "later.safetensors" in sd_vae.vae_dict
    finally:
        lab.set_opt("vae_lab_download_dir", "")
        w.refresh_vae_list()


def test_vae_path_on_the_command_line_outranks_everything(tmp_path, monkeypatch):
    from webui_env import FakeWebUI
    from webui_lab import Lab

    monkeypatch.setenv("VAE_LAB_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("VAE_LAB_DATA_DIR", str(tmp_path / "d"))
    fake = FakeWebUI(tmp_path / "webui", monkeypatch)
    try:
        lab = Lab(fake)
        fixed = str(fake.vae_dir / "a.safetensors")
        lab.build(args=["--vae-path", fixed])
        from modules import sd_vae

        import vae_lab.webui as w

        assert sd_vae.loaded_vae_file == fixed
        res = run_p(make_p(lab, True, "b.safetensors", ["c.safetensors"]))
        assert "--vae-path fixes the VAE" in res.comments
        assert "VAE: a.safetensors" in res.infotexts[0] and "VAE: c.safetensors" in res.infotexts[1]
        assert sd_vae.loaded_vae_file == fixed
        assert "not applied now" in w.set_checkpoint_preference("b.safetensors")
        assert sd_vae.loaded_vae_file == fixed
    finally:
        fake.close()
