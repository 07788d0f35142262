"""The preferred VAE per checkpoint: stored in VAE Lab's data, applied when the checkpoint loads."""

from __future__ import annotations

import logging
import os

from vae_lab.errors import VaeLabError
from vae_lab.state.preferences import Preferences
from vae_lab.webui import state, swap, vaes

log = logging.getLogger(__name__)

NO_PREFERENCE = "(no preference)"
SETTING = "vae_lab_checkpoint_vae"  # the Settings field mirroring the loaded checkpoint's preference


def data_dir() -> str:
    """The extension's data folder (the preferences file lives here).

    `VAE_LAB_DATA_DIR` moves it (a read-only install, e.g. a container image).
    """
    env = os.environ.get("VAE_LAB_DATA_DIR")
    if env:
        return env
    session = state.current()
    root = session.ext_dir
    if not root:
        from modules import shared

        root = os.path.join(getattr(shared.cmd_opts, "data_dir", None) or ".", "extensions", "vae-lab")
    return os.path.join(root, "data")


def preferences() -> Preferences:
    return Preferences(os.path.join(data_dir(), "checkpoint-vaes.json"))


def loaded_checkpoint_key() -> str | None:
    host = state.current().host
    model = host.loaded_model()
    return host.checkpoint_key(model) if model is not None else None


def current_preference() -> str:
    """The loaded checkpoint's preference as the dropdowns show it."""
    key = loaded_checkpoint_key()
    try:
        return (preferences().get(key) if key else None) or NO_PREFERENCE
    except VaeLabError:
        return NO_PREFERENCE


def show_preference_in_settings(pref: str | None) -> None:
    from modules import shared

    # Plain assignment to opts.data: no onchange, safe inside a model load.
    shared.opts.data[SETTING] = pref or NO_PREFERENCE


def on_model_loaded(model) -> None:
    """Apply this checkpoint's preferred VAE (or re-apply a per-generation one)."""
    session = state.current()
    host = session.host
    if host.unsupported():
        return
    status = session.status
    with session.lock:
        status.file, status.note = host.loaded_vae_file(model), ""
        status.source = _webui_source(model)
        active = session.active
        if active is not None:
            same_checkpoint = host.checkpoint_file(model) == active.checkpoint
            if same_checkpoint and not host.rebuilds_model:
                # The WebUI reloaded the VAE of the same checkpoint mid-generation: an explicit
                # `override_settings['sd_vae']` (XYZ plot's VAE axis, pasted overrides) wins.
                return
            # Another checkpoint was loaded mid-generation (hires checkpoint, refiner), or Forge
            # rebuilt the model (with its own VAE): the generation's VAE goes into it too, and the
            # end restores that checkpoint's own choice (the same checkpoint's: as before).
            try:
                previous, prev_source = host.loaded_vae_file(model), status.source
                swap.swap_vae(model, active.target, source="this generation's choice (VAE Lab)")
                if not same_checkpoint:
                    active.previous, active.previous_source = previous, prev_source
                active.checkpoint = host.checkpoint_file(model)
            except VaeLabError as err:
                log.warning("VAE Lab: %s", err)
            return
        key = host.checkpoint_key(model)
        try:
            pref = preferences().get(key) if key else None
        except VaeLabError as err:
            log.warning("VAE Lab: %s", err)
            return
        show_preference_in_settings(pref)
        if not pref or not host.option("vae_lab_auto_checkpoint_vae", True):
            return
        blocker = host.preference_blocked_by()
        if blocker:
            status.note = f"the preferred {pref} is outranked by {blocker}"
            return
        try:
            swap.swap_vae(model, vaes.resolve_name(pref), source=f"VAE Lab's preference for {key}")
        except VaeLabError as err:
            status.note = str(err)
            log.warning("VAE Lab: preferred VAE for %s not applied: %s", key, err)


def _webui_source(model) -> str:
    """Who chose the VAE now in `model` when VAE Lab did not."""
    host = state.current().host
    chosen, source = host.webui_choice(model)
    if vaes.same_file(chosen, host.loaded_vae_file(model)):
        return source
    return "the WebUI"


def set_checkpoint_preference(vae: str | None, *, apply: bool = True) -> str:
    """Prefer `vae` for the loaded checkpoint (None / NO_PREFERENCE clears); returns a status line."""
    session = state.current()
    host = session.host
    model = host.loaded_model()
    key = host.checkpoint_key(model) if model is not None else None
    if not key:
        raise VaeLabError("no checkpoint is loaded")
    vae = None if vae in (None, "", NO_PREFERENCE) else vae
    if vae is not None:
        path = vaes.resolve_name(vae)
        vaes.check_compatible(model, path).raise_if_refused()
    was_applied = session.status.source.startswith("VAE Lab's preference")
    preferences().set(key, vae)
    show_preference_in_settings(vae)  # Settings, /sdapi/v1/options and the tab show the same preference
    if vae is None:
        if was_applied and not host.unsupported():  # hand the choice back to the WebUI's own rules
            chosen, source = host.webui_choice(model)
            swap.swap_vae(model, chosen, source=source, check=False)
        return f"No preferred VAE for {key}. {session.status.text()}"
    if apply and not host.unsupported() and host.option("vae_lab_auto_checkpoint_vae", True):
        blocker = host.preference_blocked_by()
        if blocker:
            return f"Saved {vae} for {key}; not applied now: {blocker} outranks it"
        swap.swap_vae(model, vaes.resolve_name(vae), source=f"VAE Lab's preference for {key}")
    return f"Saved {vae} for {key}. {session.status.text()}"
