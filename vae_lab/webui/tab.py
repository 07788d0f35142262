"""The comparison tab inside the WebUI: `vae_lab.ui.tab` with the WebUI's folders, lock and
Settings, plus the loaded checkpoint's preference and "VAE in use" line."""

from __future__ import annotations

import gradio as gr

from vae_lab.errors import VaeLabError
from vae_lab.runtime import last_latents
from vae_lab.webui import checkpoint, settings, state, vaes
from vae_lab.webui.checkpoint import NO_PREFERENCE
from vae_lab.webui.script import TITLE, current_status
from vae_lab.webui.vaes import CHECKPOINT_VAE


def _tab_extra(tab_ui) -> None:
    """Per-checkpoint controls and the "VAE in use" line inside the comparison tab.

    Saving here updates every place that shows the preference or the VAE in use (Settings, the
    accordions); the hidden refresh button, clicked by javascript/vae_lab.js whenever the tab is
    opened, catches changes made elsewhere (Settings, the checkpoint dropdown, the API)."""
    from modules import shared

    with gr.Group():
        gr.Markdown("**Loaded checkpoint**")
        line = gr.Markdown(current_status, elem_id="vae_lab_in_use")
        with gr.Row():
            pref = gr.Dropdown(label="Preferred VAE for this checkpoint", choices=_pref_choices(),
                               value=checkpoint.current_preference, elem_id="vae_lab_checkpoint_pref")
            save = gr.Button("Save preference", elem_id="vae_lab_checkpoint_pref_save")
        refresh = gr.Button("Refresh", elem_id="vae_lab_in_use_refresh", elem_classes=["vae-lab-hidden"])

    setting = (getattr(shared, "settings_components", None) or {}).get(checkpoint.SETTING)
    views = list(state.current().status_views)
    outputs = [line, pref] + ([setting] if setting is not None else []) + views

    def shown(message: str | None = None) -> list:
        status, value = current_status(), checkpoint.current_preference()
        out = [message or status, gr.update(value=value, choices=_pref_choices())]
        if setting is not None:
            out.append(gr.update(value=value))
        return out + [status] * len(views)

    def do_save(value):
        from modules import call_queue

        try:
            with call_queue.queue_lock:  # never swap under a running generation
                msg = checkpoint.set_checkpoint_preference(value)
        except VaeLabError as err:
            msg = f"Error: {err}"
        return shown(msg)

    save.click(fn=do_save, inputs=[pref], outputs=outputs)
    refresh.click(fn=shown, inputs=[], outputs=outputs, queue=False)
    tab_ui.components["checkpoint_preference"] = pref
    # The WebUI's ui-config.json records each control's first value and puts it back over the one
    # the control is built with: these two show Settings / the loaded checkpoint, never a copy.
    for comp in (tab_ui.components.get("precision"), pref):
        if comp is not None:
            comp.do_not_save_to_config = True


def _pref_choices() -> list[str]:
    return [NO_PREFERENCE, CHECKPOINT_VAE] + vaes.vae_names()


def _settings_vae_lists() -> list:
    """The Settings "SD VAE" dropdown (also the quicksettings one), refreshed after a download."""
    from modules import shared

    comp = (getattr(shared, "settings_components", None) or {}).get("sd_vae")
    if comp is None:
        return []
    return [(comp, lambda: {"choices": ["Automatic", "None"] + vaes.vae_names()})]


def ui_context():
    from modules import call_queue, shared

    from vae_lab.ui import tab as ui

    return ui.UiContext(
        vae_dirs=vaes.vae_dirs(),
        download_dir=vaes.download_dir(),
        on_vaes_changed=vaes.refresh_vae_list,
        last_latents=last_latents.get,
        extra=_tab_extra,
        device=str(getattr(shared, "device", "") or "") or None,
        lock=call_queue.queue_lock,  # a comparison waits for a running generation (and vice versa)
        tokens=settings.tokens,  # the Settings tokens reach the tab's downloads
        precision=settings.default_precision,
        vae_list_outputs=_settings_vae_lists,
    )


def on_ui_tabs():
    from vae_lab.ui import tab as ui

    return [(ui.build_tab(ui_context()), TITLE, "vae_lab")]
