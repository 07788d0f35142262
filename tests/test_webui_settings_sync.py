"""Settings, ui-config.json and the tab agree: the Settings default precision reaches the tab, and
the preferred VAE / "VAE in use" shown in Settings, the API and the tab are always the same."""

from __future__ import annotations

import json

from webui_lab import AS_IN_SETTINGS, lab, make_p, run_p  # noqa: F401

PRECISION_KEY = "vae_lab/Precision (auto: fp16 on GPU)/value"


def _component(demo, elem_id):
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def _page_load_value(comp):
    """What a page (re)load shows: Gradio evaluates a callable `value` again at each load."""
    event = getattr(comp, "load_event_to_attach", None)
    return event[0]() if event else comp.value


def test_default_precision_setting_is_honoured_over_ui_config(lab):
    """Defect: ui-config.json recorded the tab dropdown's first value and restored it over the setting."""
    ui_config = lab.root / "ui-config.json"
    assert ui_config.is_file()  # the WebUI records the UI's values at the first start
    assert _component(lab.demo, "vae_lab_precision").value == "auto"

    lab.set_opt("vae_lab_precision", "fp32")
    assert _page_load_value(_component(lab.demo, "vae_lab_precision")) == "fp32"  # a page reload shows it
    demo = lab.webui.reload_ui()  # Reload UI / restart: ui-config.json is applied again
    assert _component(demo, "vae_lab_precision").value == "fp32"
    assert PRECISION_KEY not in json.loads(ui_config.read_text())

    # what ui-config.json still keeps for the tab is the user's business (e.g. the tiling default)
    assert any(k.startswith("vae_lab/") for k in json.loads(ui_config.read_text()))


def _event_fn(demo, elem_id):
    """The Python function of the (last) event a component with `elem_id` triggers, and its outputs."""
    comp = _component(demo, elem_id)
    cfg = demo.get_config_file()
    for i, dep in enumerate(cfg["dependencies"]):
        ids = [t[0] if isinstance(t, (list, tuple)) else t for t in dep["targets"]]
        if comp._id in ids:
            found = (demo.fns[i].fn, dep["outputs"])
    return found


def test_settings_api_and_tab_show_the_same_preference_and_vae_in_use(lab):
    """Defect: clearing in the tab left the old VAE in Settings and /sdapi/v1/options; saving in the
    tab left "(no preference)" there until the next model load; "VAE in use" lines went stale."""
    from modules import shared

    from vae_lab.webui import NO_PREFERENCE

    setting = shared.settings_components["vae_lab_checkpoint_vae"]
    accordions = [c for c in lab.demo.blocks.values() if getattr(c, "elem_id", "") in
                  ("script_txt2img_vae_lab_status", "script_img2img_vae_lab_status")]
    assert len(accordions) == 2
    save, outputs = _event_fn(lab.demo, "vae_lab_checkpoint_pref_save")
    line, pref = _component(lab.demo, "vae_lab_in_use"), _component(lab.demo, "vae_lab_checkpoint_pref")
    assert outputs[:2] == [line._id, pref._id] and setting._id in outputs
    assert {c._id for c in accordions} <= set(outputs)

    def by_id(values):
        return dict(zip(outputs, values, strict=True))

    out = by_id(save("b.safetensors"))
    assert lab.api.get_options()["vae_lab_checkpoint_vae"] == "b.safetensors"
    assert shared.opts.vae_lab_checkpoint_vae == "b.safetensors"  # what the Settings page loads
    assert out[setting._id]["value"] == "b.safetensors" and out[pref._id]["value"] == "b.safetensors"
    assert "VAE in use: b.safetensors" in out[line._id]
    assert all("VAE in use: b.safetensors — chosen by VAE Lab's preference" in out[c._id] for c in accordions)

    out = by_id(save(NO_PREFERENCE))
    assert lab.api.get_options()["vae_lab_checkpoint_vae"] == NO_PREFERENCE
    assert out[setting._id]["value"] == NO_PREFERENCE
    assert all("VAE in use: the checkpoint's own VAE" in out[c._id] for c in accordions)

    # a change made elsewhere (Settings > SD VAE): opening the tab (its refresh) or an accordion shows it
    lab.set_sd_vae("a.safetensors")
    refresh, refresh_outputs = _event_fn(lab.demo, "vae_lab_in_use_refresh")
    assert refresh_outputs == outputs
    assert "VAE in use: a.safetensors" in by_id(refresh())[line._id]
    opened, opened_outputs = _event_fn(lab.demo, "script_txt2img_vae_lab_accordion-checkbox")
    assert opened_outputs == [accordions[0]._id] and "VAE in use: a.safetensors" in opened()
