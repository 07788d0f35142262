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
