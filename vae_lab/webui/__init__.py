"""The WebUI adapter: the only package that imports the WebUI's `modules`.

It wires VAE Lab into AUTOMATIC1111's WebUI 1.10 (and, through another `Host`, Forge):

* `settings`: the "VAE Lab" section of Settings.
* `script` + `generation`: the always-visible "VAE for this generation" accordion — a VAE used
  for one generation and restored afterwards, and "also decode with": the sampler runs once and
  every sample is decoded again by each extra VAE.
* `checkpoint`: a preferred VAE per checkpoint, applied when that checkpoint loads.
* `tab`: the comparison tab (`vae_lab.ui.tab`) with the WebUI's folders, lock and Settings.
* `swap`: VAE swaps from RAM (`vae_lab.runtime.ramcache` / `vae_lab.runtime.swap`, by reference)
  with the host's bookkeeping; the tab's models are built over the same RAM cache; `vaes`: the host's VAE list, hashes, identities and family checks.
* `host` / `a1111` / `forge`: what differs between WebUIs, behind one small interface; `state`: the one
  `Session` object each load of `scripts/vae_lab.py` starts.

The logic that does not need a WebUI lives in the core packages; this one only translates.
"""

from __future__ import annotations

import importlib.util
import logging

from vae_lab.webui import state
from vae_lab.webui.a1111 import FORGE_MESSAGE, A1111Host, looks_like_forge
from vae_lab.webui.checkpoint import NO_PREFERENCE, on_model_loaded, preferences, set_checkpoint_preference
from vae_lab.webui.host import Host
from vae_lab.webui.script import TITLE, VaeLabScript, current_status, extra_choices, vae_choices
from vae_lab.webui.settings import on_ui_settings, tokens
from vae_lab.webui.swap import swap_vae
from vae_lab.webui.tab import on_ui_tabs, ui_context
from vae_lab.webui.vaes import download_dir, refresh_vae_list, vae_dirs

log = logging.getLogger(__name__)

__all__ = [
    "FORGE_MESSAGE", "NO_PREFERENCE", "TITLE", "Host", "VaeLabScript", "current_status", "detect_host",
    "download_dir", "extra_choices", "init", "on_infotext_pasted", "on_model_loaded", "on_script_unloaded",
    "on_ui_settings", "on_ui_tabs", "preferences", "ram_cache", "refresh_vae_list", "set_checkpoint_preference",
    "swap_vae", "tokens", "ui_context", "vae_choices", "vae_dirs", "wants_pasted_infotext",
]


class _ConsoleUnlessConfigured(logging.StreamHandler):
    """The adapter's messages in the WebUI's console when nobody configured logging (A1111 does
    only with SD_WEBUI_LOG_LEVEL), and not twice when somebody did."""

    def emit(self, record):
        if not logging.root.handlers:
            super().emit(record)


def _console_logging() -> None:
    logger = logging.getLogger("vae_lab")
    if not any(isinstance(h, _ConsoleUnlessConfigured) for h in logger.handlers):
        handler = _ConsoleUnlessConfigured()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def detect_host() -> Host:
    """The WebUI we run in: Forge's host when `vae_lab.webui.forge` exists and recognises it, else A1111's."""
    if looks_like_forge() and importlib.util.find_spec("vae_lab.webui.forge") is not None:
        from vae_lab.webui import forge

        if forge.detect():
            return forge.ForgeHost()
    return A1111Host()


def ram_cache():
    return state.current().ram_cache()


def is_forge() -> bool:
    """True when swaps are off because the host is Forge without VAE Lab's Forge support."""
    return state.current().host.unsupported() is not None


def init(ext_dir: str) -> None:
    """Start a session (scripts/vae_lab.py calls this at import time, on every (re)load, then
    registers on_ui_settings, on_ui_tabs, on_model_loaded, on_script_unloaded (and, when the host
    wants it, on_infotext_pasted) itself)."""
    _console_logging()
    session = state.start(detect_host(), ext_dir)
    from vae_lab.compare.cache import default_cache

    default_cache().use_weights(session.ram_cache())  # one cache of weights: swaps and the tab
    # before the WebUI's startup refresh, which runs after scripts are loaded
    session.host.hook_vae_list(also=_add_download_folder)
    unsupported = session.host.unsupported()
    if unsupported:
        log.warning(unsupported)


def _add_download_folder() -> None:
    from vae_lab.webui import vaes

    vaes.add_download_folder()


def wants_pasted_infotext() -> bool:
    """Whether this session's host adjusts pasted infotexts (Forge); A1111 gets no such callback."""
    return type(state.current().host).on_infotext_pasted is not Host.on_infotext_pasted


def on_infotext_pasted(infotext: str, params: dict) -> None:
    """The host's say on a pasted infotext's fields (Forge: a pasted "VAE" goes to the accordion)."""
    state.current().host.on_infotext_pasted(infotext, params)


def on_script_unloaded() -> None:
    """Reload UI: give the WebUI its own VAE list refresh back (the reloaded script hooks it again)."""
    state.current().host.unhook_vae_list()
