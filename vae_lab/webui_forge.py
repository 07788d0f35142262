"""Forge's side of the WebUI adapter: a VAE per generation without reloading the checkpoint.

In Forge (lllyasviel's stable-diffusion-webui-forge, 2.x) `sd_vae`'s loaders are no-ops and the
only VAE switch is the top bar's "VAE / Text Encoder" (`opts.forge_additional_modules`), which
rebuilds the whole model at the next generation (`sd_models.forge_model_reload`). The model
has `first_stage_model = None`; its VAE is `sd_model.forge_objects.vae`, whose
`first_stage_model` module (LDM parameter names) every decode goes through. VAE Lab copies a
VAE's weights into that module in place, from its RAM cache, and copies the model's own weights
back afterwards; the checkpoint is never reloaded.

What differs from A1111, and why the hooks are where they are:

* `before_process` runs before Forge (re)builds the model, so the swap happens in `process`
  (after `forge_model_reload`); a model rebuilt mid-generation gets it again in `on_model_loaded`.
* Forge builds the model under `torch.inference_mode()`: its weights are inference tensors that
  may only be written inside inference mode, so every copy runs in one.
* The model's own VAE (the checkpoint's, or the top bar's choice) is snapshotted once per model
  object before the first swap; restoring copies it back.
* Forge's infotext has no VAE fields, so "VAE"/"VAE hash" go into `p.extra_generation_params`
  whenever VAE Lab chose the VAE; Forge's parser turns a pasted "VAE" into a "VAE/TE" module
  override (a checkpoint reload), so `on_infotext_pasted` gives it back to the accordion.
* An `sd_vae` override (API, pasted chip, the X/Y/Z plot's VAE axis) does nothing in Forge;
  VAE Lab applies it as the generation's VAE, and an X/Y/Z cell that differs from the previous
  one only by that VAE reuses the previous cell's latents (the sampler runs once per image).
* A VAE chosen in the top bar is the user's setting ("As in Settings"): a per-checkpoint
  preference does not override it.

Forks that keep the VAE elsewhere (e.g. Haoming02's Forge Classic/Neo when they differ) are
detected by what this module needs (`forge_objects.vae.first_stage_model`) and get one message
instead of a half-working swap.

`vae_lab.webui` is imported inside functions as `import vae_lab.webui as webui`, not
`from vae_lab import webui`: after a restart of the WebUI's modules (the test stand-ins purge
them) the package attribute can still name the old module, the import statement never does.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from modules import devices, processing, sd_vae, shared

from vae_lab.errors import VaeLabError
from vae_lab.identity import compatibility

log = logging.getLogger("vae_lab.webui.forge")

UNSUPPORTED_MESSAGE = (
    "VAE Lab: this Forge variant keeps its VAE where VAE Lab cannot swap it (no "
    "sd_model.forge_objects.vae.first_stage_model); per-generation, 'also decode with' and "
    "per-checkpoint VAEs are off. The VAE Lab tab works as usual."
)
SOURCE_FORGE = "Forge"

_lock = threading.RLock()


# ---------------------------------------------------------------------------------------
# The model's VAE module and its own weights


def vae_module(model):
    """The `first_stage_model` of Forge's VAE object, or None (no model yet / another fork)."""
    vae = getattr(getattr(model, "forge_objects", None), "vae", None)
    return getattr(vae, "first_stage_model", None)


def supported(model) -> bool:
    return vae_module(model) is not None


def model_family(model) -> tuple[str, int]:
    channels = int(getattr(model.forge_objects.vae, "latent_channels", 4) or 4)
    fam = compatibility.model_family(
        is_sdxl=bool(getattr(model, "is_sdxl", False)),
        is_sd3=bool(getattr(model, "is_sd3", False)),
        is_flux=type(model).__name__ in ("Flux", "Chroma"),
        latent_channels=channels,
    )
    return fam, channels


def check_compatible(model, vae_file: str | None) -> compatibility.Verdict:
    import vae_lab.webui as webui

    if vae_file is None:
        return compatibility.Verdict(compatibility.OK)
    fam, channels = model_family(model)
    info = webui._vae_info(vae_file)
    return compatibility.check(
        os.path.basename(vae_file),
        vae_family=getattr(info, "family", None),
        vae_channels=getattr(info, "latent_channels", None),
        vae_kind=getattr(info, "kind", "kl"),
        model_family=fam,
        model_channels=channels,
        refuse_wrong_family=bool(getattr(shared.opts, "vae_lab_refuse_wrong_family", True)),
    )


def loaded_file(model) -> str | None:
    """The VAE file VAE Lab put into `model`; None while it has the VAE Forge loaded."""
    return getattr(model, "_vae_lab_file", None)


def top_bar_vae() -> str | None:
    """The VAE among the top bar's "VAE / Text Encoder" modules (None: the checkpoint's own)."""
    for path in getattr(shared.opts, "forge_additional_modules", None) or []:
        if _is_vae_file(path):
            return path
    return None


def _is_vae_file(path: str) -> bool:
    listed = sd_vae.vae_dict.get(os.path.basename(path))
    if listed and os.path.normcase(os.path.abspath(listed)) == os.path.normcase(os.path.abspath(path)):
        return True
    if path.lower().endswith(".safetensors") and os.path.isfile(path):
        try:
            from safetensors import safe_open

            with safe_open(path, framework="pt") as f:
                return any(k.endswith("decoder.conv_in.weight") for k in f.keys())
        except Exception:
            return False
    return False


def forge_choice_text() -> str:
    vae = top_bar_vae()
    return f"Forge's top bar ({os.path.basename(vae)})" if vae else "Forge (the checkpoint's own VAE)"


def swap(model, vae_file: str | None, *, source: str, check: bool = True) -> bool:
    """Copy `vae_file` (None: the VAE Forge loaded) into `model`'s VAE module, in place.

    Validates everything first (family, then every tensor's name and shape); on any error
    raises `VaeLabError` and the module is untouched. Returns False when already in use.
    """
    import torch

    import vae_lab.webui as webui
    from vae_lab.runtime import swap as weights

    with _lock:
        fsm = vae_module(model)
        if fsm is None:
            raise VaeLabError("this Forge variant has no swappable VAE module")
        if webui._same(loaded_file(model), vae_file):
            webui.status.file, webui.status.source = vae_file, source
            return False
        if vae_file is None:
            base = getattr(model, "_vae_lab_base", None)
            if base is None:
                raise VaeLabError("Forge's own VAE is not in memory; change the checkpoint to get it back")
            state_dict, name = base, "Forge's own VAE"
        else:
            if check:
                verdict = check_compatible(model, vae_file).raise_if_refused()
                if verdict.level == compatibility.WARN:
                    log.warning("VAE Lab: %s", verdict.message)
            state_dict, name = webui.ram_cache().get(vae_file, webui._read_state_dict), os.path.basename(vae_file)
        weights.check(fsm, state_dict, name=name)  # before anything changes
        with torch.inference_mode():  # Forge's weights are inference tensors
            if getattr(model, "_vae_lab_base", None) is None:
                model._vae_lab_base = weights.snapshot(fsm)
            weights.copy_into(fsm, state_dict, name=name)
        model._vae_lab_file = vae_file
        webui.status.file, webui.status.source, webui.status.note = vae_file, source, ""
        return True


# ---------------------------------------------------------------------------------------
# Per generation


@dataclass
class ActiveSwap:
    target: str | None
    model_id: int


_active: ActiveSwap | None = None


def restore(reason: str = "") -> None:
    """Put Forge's own VAE back after a per-generation swap (idempotent, never raises)."""
    global _active
    from modules import sd_models

    import vae_lab.webui as webui

    with _lock:
        active, _active = _active, None
        if active is None:
            return
        model = sd_models.model_data.sd_model
        if not supported(model) or loaded_file(model) is None:
            return
        target, source = _preferred(model)  # straight back to the preferred VAE: one copy, not two
        try:
            swap(model, target, source=source, check=False)
        except Exception as err:
            log.error("VAE Lab: could not restore %s%s: %s", _describe(target), reason, err)


def _override_vae(p) -> str | None:
    """An explicit `sd_vae` override of this generation (API, pasted chip, X/Y/Z), or None."""
    value = (getattr(p, "override_settings", None) or {}).get("sd_vae")
    if not value or str(value).lower() in ("automatic", ""):
        return None
    return str(value)


def before_process(p, enabled=False, vae=None, also=None):
    """Forge has not (re)built the model yet: only remember what this generation asked for."""
    import vae_lab.webui as webui

    restore(" (left over from an earlier generation)")
    st = webui._state(p)
    st.forge_request = vae if enabled and vae and vae != webui.AS_IN_SETTINGS else _override_vae(p)
    st.forge_also = webui._parse_also(also) if enabled else []


def process(p, *args):
    """After `forge_model_reload`: swap the generation's VAE in and name it in the infotext."""
    global _active
    import vae_lab.webui as webui

    model = shared.sd_model
    st = webui._state(p)
    if not supported(model):
        if getattr(st, "forge_request", None) or getattr(st, "forge_also", None):
            webui._comment(p, UNSUPPORTED_MESSAGE)
        return
    request = getattr(st, "forge_request", None)
    if request:
        try:
            target = webui.resolve_name(request)
            if swap(model, target, source="this generation's choice (VAE Lab)"):
                _active = ActiveSwap(target, id(model))
                webui._guard_close_with(p, restore)
        except VaeLabError as err:
            webui._comment(p, f"{err}; generating with {_describe(loaded_file(model))}")
    st.main_file = loaded_file(model)
    if st.main_file is not None:
        p.sd_vae_name = os.path.basename(st.main_file)
        p.sd_vae_hash = webui.vae_hash(st.main_file)
    for name in getattr(st, "forge_also", []) or []:
        try:
            path = webui.resolve_name(name) if name != webui.CHECKPOINT_VAE else None
            if webui._same(path, st.main_file) or any(webui._same(path, e[1]) for e in st.extras):
                continue
            check_compatible(model, path).raise_if_refused()
            label = os.path.basename(path) if path else webui.CHECKPOINT_VAE
            st.extras.append((label, path, webui.vae_hash(path)))
        except VaeLabError as err:
            webui._comment(p, f"'also decode with' skips {name}: {err}")
    if st.main_file is not None or st.extras:
        webui._install_infotext_fields(p, st)
    if request and _override_vae(p) and not st.extras:
        _reuse_latents_across_cells(p)


def _describe(vae_file: str | None) -> str:
    return os.path.basename(vae_file) if vae_file else "Forge's VAE"


def post_sample(p, ps, *args):
    """Keep the latents; decode them with every extra VAE (one sampler run); main VAE back."""
    import vae_lab.webui as webui

    st = webui._state(p)
    model = shared.sd_model
    if not supported(model):
        return
    samples = ps.samples
    if getattr(samples, "already_decoded", False):
        if st.extras:
            webui._comment(p, "'also decode with' needs the latents, but hires fix already decoded them; extra decodes skipped")
            st.extras = []
        return
    webui._keep_latents(p, st, samples, model)
    st.pending = {}
    if not st.extras:
        return
    main_source = webui.status.source
    try:
        for label, path, _ in st.extras:
            if shared.state.interrupted or shared.state.stopping_generation:
                webui._comment(p, "interrupted: the remaining 'also decode with' images were not made")
                break
            try:
                swap(model, path, source="'also decode with' (VAE Lab)", check=False)
                st.pending[label] = processing.decode_latent_batch(model, samples, target_device=devices.cpu, check_for_nans=True)
            except VaeLabError as err:
                webui._comment(p, f"'also decode with' skips {label}: {err}")
            except Exception as err:
                webui._comment(p, f"'also decode with' {label} failed: {err}")
    finally:
        try:
            swap(model, st.main_file, source=main_source, check=False)
        except Exception as err:
            log.error("VAE Lab: could not put %s back after the extra decodes: %s", _describe(st.main_file), err)


# ---------------------------------------------------------------------------------------
# X/Y/Z: cells that differ only by the VAE reuse the sampled latents

_latents: OrderedDict = OrderedDict()  # signature -> latents of one batch, for the current plot only
_latents_run: list = [None]  # the `override_settings` dict the X/Y/Z cells of one plot share
_LATENT_ENTRIES = 16


def _signature(p) -> tuple:
    """Everything the sampler's result depends on that the cells of a plot can vary."""
    overrides = tuple(sorted((k, repr(v)) for k, v in (p.override_settings or {}).items() if k != "sd_vae"))
    return (
        type(p).__name__, tuple(p.all_prompts or ()), tuple(p.all_negative_prompts or ()),
        tuple(p.all_seeds or ()), tuple(p.all_subseeds or ()) if p.subseed_strength else (), p.subseed_strength,
        p.steps, p.cfg_scale,
        p.sampler_name, getattr(p, "scheduler", None), p.width, p.height, p.batch_size, p.n_iter,
        getattr(p, "denoising_strength", None), bool(getattr(p, "enable_hr", False)),
        getattr(p, "sd_model_hash", None), tuple(getattr(shared.opts, "forge_additional_modules", None) or ()),
        overrides, repr(getattr(p, "script_args", None)),
    )


def _reuse_latents_across_cells(p) -> None:
    """Wrap `p.sample`: the same inputs give the latents of the previous cell (plain txt2img only).

    Only cells of one plot share latents: the X/Y/Z script's cells are shallow copies of one
    `p` and share its `override_settings` dict; a new request never does.
    """
    if getattr(p, "enable_hr", False) or not isinstance(p, processing.StableDiffusionProcessingTxt2Img):
        return
    if _latents_run[0] is not p.override_settings:  # another plot or a plain request: nothing to reuse
        _latents.clear()
        _latents_run[0] = p.override_settings
    sample = p.sample
    base = _signature(p)

    def reuse(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        key = base + (tuple(seeds), tuple(subseeds) if subseed_strength else ())
        cached = _latents.get(key)
        if cached is not None:
            _latents.move_to_end(key)
            reuse.hits += 1
            return cached.clone()
        out = sample(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts)
        if not getattr(out, "already_decoded", False) and not shared.state.interrupted:
            _latents[key] = out.detach().clone()
            while len(_latents) > _LATENT_ENTRIES:
                _latents.popitem(last=False)
        return out

    reuse.hits = 0
    p.sample = reuse


# ---------------------------------------------------------------------------------------
# Per checkpoint


def preference_blocked_by() -> str | None:
    vae = top_bar_vae()
    return f"Forge's top bar 'VAE / Text Encoder' ({os.path.basename(vae)})" if vae else None


def _preferred(model) -> tuple[str | None, str]:
    """(file, source) the model should have between generations: the checkpoint's preferred
    VAE when it applies, else Forge's own (None). Notes why a preference does not apply."""
    import vae_lab.webui as webui

    key = webui.checkpoint_key(model)
    try:
        pref = webui.preferences().get(key) if key else None
    except VaeLabError as err:
        log.error("VAE Lab: %s", err)
        return None, forge_choice_text()
    webui._show_preference_in_settings(pref)
    if not pref or not getattr(shared.opts, "vae_lab_auto_checkpoint_vae", True):
        return None, forge_choice_text()
    blocker = preference_blocked_by()
    if blocker:
        webui.status.note = f"the preferred {pref} is outranked by {blocker}"
        return None, forge_choice_text()
    try:
        target = webui.resolve_name(pref)
        if target is not None:
            check_compatible(model, target).raise_if_refused()
        return target, f"VAE Lab's preference for {key}"
    except VaeLabError as err:
        webui.status.note = str(err)
        log.error("VAE Lab: preferred VAE for %s not applied: %s", key, err)
        return None, forge_choice_text()


def _apply_preference(model) -> None:
    import vae_lab.webui as webui

    target, source = _preferred(model)
    note = webui.status.note
    try:
        swap(model, target, source=source, check=False)
    except VaeLabError as err:
        note = str(err)
        log.error("VAE Lab: %s not applied: %s", _describe(target), err)
    webui.status.note = note


def on_model_loaded(model) -> None:
    """A model Forge just built has Forge's VAE: re-apply this generation's or the preferred one."""
    import vae_lab.webui as webui

    with _lock:
        if not supported(model):
            if getattr(model, "sd_checkpoint_info", None) is not None:
                log.warning(UNSUPPORTED_MESSAGE)
            return
        webui.status.file, webui.status.source, webui.status.note = None, forge_choice_text(), ""
        if _active is not None:  # rebuilt mid-generation (e.g. a hires checkpoint)
            try:
                swap(model, _active.target, source="this generation's choice (VAE Lab)")
                _active.model_id = id(model)
            except VaeLabError as err:
                log.error("VAE Lab: %s", err)
            return
        _apply_preference(model)


def set_checkpoint_preference(model, key: str, vae: str | None, *, apply: bool = True) -> str:
    import vae_lab.webui as webui

    if vae is not None:
        check_compatible(model, webui.resolve_name(vae)).raise_if_refused()
    webui.preferences().set(key, vae)
    if vae is None:
        if loaded_file(model) is not None and _active is None:
            swap(model, None, source=forge_choice_text(), check=False)
        return f"No preferred VAE for {key}. {webui.status.text()}"
    if apply and getattr(shared.opts, "vae_lab_auto_checkpoint_vae", True):
        blocker = preference_blocked_by()
        if blocker:
            return f"Saved {vae} for {key}; not applied now: {blocker} outranks it"
        swap(model, webui.resolve_name(vae), source=f"VAE Lab's preference for {key}")
    return f"Saved {vae} for {key}. {webui.status.text()}"


# ---------------------------------------------------------------------------------------
# Paste


def on_infotext_pasted(infotext: str, params: dict) -> None:
    """Give a pasted "VAE: x" back to the accordion instead of Forge's "VAE/TE" module override.

    Forge's parser pops "VAE" and offers it as a module (`forge_additional_modules`), which
    would reload the whole checkpoint; VAE Lab applies it for that generation instead.
    """
    from modules import infotext_utils

    lastline = infotext.strip().split("\n")[-1]
    written = {k: v for k, v in infotext_utils.re_param.findall(lastline)}
    vae = written.get("VAE")
    if not vae:
        return
    if vae.startswith('"') and vae.endswith('"'):
        vae = infotext_utils.unquote(vae)
    if params.get("VAE/TE") == [vae]:
        params.pop("VAE/TE")
    params["VAE"] = vae


def init() -> None:
    from modules import script_callbacks

    script_callbacks.on_infotext_pasted(on_infotext_pasted)


def is_forge() -> bool:
    return hasattr(shared.opts, "forge_additional_modules")
