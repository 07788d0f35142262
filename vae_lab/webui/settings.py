"""The "VAE Lab" section of the WebUI's Settings."""

from __future__ import annotations

import logging

import gradio as gr

from modules import shared

from vae_lab.errors import VaeLabError
from vae_lab.runtime import precision
from vae_lab.webui import checkpoint, state, vaes
from vae_lab.webui.checkpoint import NO_PREFERENCE
from vae_lab.webui.vaes import CHECKPOINT_VAE

log = logging.getLogger(__name__)

SECTION = ("vae_lab", "VAE Lab", "sd")
PRECISIONS = list(precision.CHOICES)


def tokens() -> dict[str, str]:
    """Download tokens from Settings, keyed like `vae_lab.download.tokens` ("hf", "civitai").

    Never logged, never in infotext; empty ones fall back to HF_TOKEN / CIVITAI_API_TOKEN
    in the downloader.
    """
    host = state.current().host
    return {"hf": host.option("vae_lab_hf_token", ""), "civitai": host.option("vae_lab_civitai_token", "")}


def default_precision() -> str:
    return state.current().host.option("vae_lab_precision", "auto")


def checkpoint_pref_choices() -> dict:
    """The Settings dropdown's choices. The WebUI evaluates them each time it (re)loads the
    page, right after reading the value it shows: remember which checkpoint that value was for."""
    session = state.current()
    session.settings_shown = (checkpoint.loaded_checkpoint_key(), shared.opts.data.get(checkpoint.SETTING, NO_PREFERENCE))
    return {"choices": [NO_PREFERENCE, CHECKPOINT_VAE] + vaes.vae_names()}


def on_checkpoint_vae_setting() -> None:
    session = state.current()
    value = session.host.option(checkpoint.SETTING, NO_PREFERENCE)
    key = checkpoint.loaded_checkpoint_key()
    shown = session.settings_shown
    if shown and shown[0] != key and value == shown[1]:
        # "Apply settings" sends every field back: this one still shows another checkpoint's
        # preference (the checkpoint changed since the page loaded). Not a choice: keep ours.
        try:
            checkpoint.show_preference_in_settings(checkpoint.preferences().get(key) if key else None)
        except VaeLabError as err:
            log.warning("VAE Lab: %s", err)
        return
    try:
        log.info("VAE Lab: %s", checkpoint.set_checkpoint_preference(value))
    except VaeLabError as err:
        log.warning("VAE Lab: %s", err)


def on_ui_settings() -> None:
    from modules import call_queue

    opts = shared.opts
    options = {
        "vae_lab_download_dir": shared.OptionInfo(
            "", "Download folder for VAEs (empty: models/VAE)", onchange=vaes.refresh_vae_list,
        ).info("a folder the WebUI does not scan is added to its VAE list by every refresh"),
        "vae_lab_ram_cache_mb": shared.OptionInfo(
            1024, "RAM cache for VAE weights (MB)", gr.Slider, {"minimum": 0, "maximum": 16384, "step": 128},
            onchange=lambda: state.current().ram_cache(),
        ).info("switching to a cached VAE never reads the disk; an SD VAE takes 320 MB in fp32; "
               "the comparison tab's VAEs share this cache"),
        "vae_lab_device_cache_mb": shared.OptionInfo(
            512, "GPU memory for ready-to-swap VAE copies (MB)", gr.Slider, {"minimum": 0, "maximum": 8192, "step": 64},
            onchange=lambda: state.current().ram_cache(),
        ).info("a VAE kept on the GPU in the model's precision swaps in without a copy; 0: one copy from RAM per "
               "swap; an SD VAE takes 160 MB in fp16"),
        "vae_lab_precision": shared.OptionInfo(
            "auto", "Default decode precision in the VAE Lab tab", gr.Radio, {"choices": PRECISIONS}
        ).info("generations decode with the WebUI's own VAE precision (--no-half-vae)"),
        "vae_lab_auto_checkpoint_vae": shared.OptionInfo(
            True, "Apply each checkpoint's preferred VAE when it loads"),
        checkpoint.SETTING: shared.OptionInfo(
            NO_PREFERENCE, "Preferred VAE for the loaded checkpoint", gr.Dropdown, checkpoint_pref_choices,
            refresh=vaes.refresh_vae_list, onchange=call_queue.wrap_queued_call(on_checkpoint_vae_setting),
        ).info("stored per checkpoint in VAE Lab's data; outranked by --vae-path and by a specific SD VAE "
               "when 'Selected VAE overrides per-model preferences' is on"),
        "vae_lab_refuse_wrong_family": shared.OptionInfo(
            True, "Refuse VAEs of the wrong family for the loaded model",
        ).info("e.g. an SDXL VAE on an SD1 model; a VAE with the wrong latent channels is always refused"),
        "vae_lab_hf_token": shared.OptionInfo(
            "", "Hugging Face token (gated downloads)", gr.Textbox, {"type": "password"}, restrict_api=True),
        "vae_lab_civitai_token": shared.OptionInfo(
            "", "Civitai API key", gr.Textbox, {"type": "password"}, restrict_api=True),
    }
    for key, info in shared.options_section(SECTION, options).items():
        opts.add_option(key, info)
