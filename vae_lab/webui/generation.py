"""Per-generation VAE and "also decode with": the always-on script's hooks.

The WebUI calls them in this order for every generation (`processing.process_images`):
`before_process` (the VAE for this generation goes in; extras are checked), `process`
(the infotext's VAE fields), `post_sample` per batch (the latents are kept for the tab and
decoded again by each extra VAE, the sampler running once), `postprocess_batch_list` (the
extra images interleaved after each sample), `postprocess` (the VAE is restored). `p.close()`
restores it too, so an error or an interrupt never leaves a per-generation VAE behind.
A host that builds the model after `before_process` (`Host.rebuilds_model`: Forge) gets the
generation's VAE, and the extras' checks, in `process` instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from vae_lab.errors import VaeLabError
from vae_lab.runtime import last_latents
from vae_lab.webui import state, swap, vaes
from vae_lab.webui.state import display
from vae_lab.webui.vaes import CHECKPOINT_VAE

log = logging.getLogger(__name__)

AS_IN_SETTINGS = "As in Settings"  # per-generation default: no swap
EXTRA_LABEL_KEY = "VAE Lab"  # infotext key marking an extra decode
NOTE_KEY = "VAE Lab note"  # infotext key carrying what VAE Lab has to say about this generation
GRID_SCRIPTS = ("X/Y/Z plot",)  # scripts that keep only the first image of each generation they run


@dataclass
class Extra:
    """One "also decode with" VAE of a generation."""

    label: str  # the name shown (CHECKPOINT_VAE for the checkpoint's own)
    path: str | None
    short_hash: str | None


@dataclass
class GenState:
    """What one generation needs between hooks (kept on `p`)."""

    main_file: str | None = None
    extras: list[Extra] = field(default_factory=list)
    pending: dict[str, list] = field(default_factory=dict)  # label -> decoded samples of this batch
    labels: list[str | None] = field(default_factory=list)  # per image of the batch: None = main
    latents: list | None = field(default_factory=list)  # None: too large to keep
    request: str | None = None  # the VAE asked for, until a host that builds the model late swaps it in
    also: list[str] = field(default_factory=list)  # likewise the "also decode with" names


def gen_state(p) -> GenState:
    st = getattr(p, "_vae_lab", None)
    if st is None:
        st = GenState()
        p._vae_lab = st
    return st


def comment(p, message: str) -> None:
    """Tell every reader of this generation: the console, the UI (`p.comment`), and API callers
    and the images themselves (the WebUI's `info` has no comments, but has the infotext and
    `extra_generation_params`, so the note goes there under NOTE_KEY)."""
    log.warning("VAE Lab: %s", message)
    try:
        p.comment(message)
    except Exception:
        pass
    params = getattr(p, "extra_generation_params", None)
    if isinstance(params, dict):
        notes = params.get(NOTE_KEY)
        notes = notes if isinstance(notes, str) and notes else ""
        if message not in notes:
            params[NOTE_KEY] = f"{notes}; {message}" if notes else message


def selected_script_title(p) -> str | None:
    """The title of the "Script" dropdown's choice running this generation (e.g. "X/Y/Z plot"), or None."""
    try:
        index = int(p.script_args[0] or 0)
        return p.scripts.selectable_scripts[index - 1].title() if index > 0 else None
    except Exception:  # no script runner (a bare p), odd script_args
        return None


def _saves_images(p) -> bool:
    save = getattr(p, "save_samples", None)
    return bool(save()) if callable(save) else False


def parse_also(also) -> list[str]:
    if not also:
        return []
    if isinstance(also, str):
        also = [s for s in (x.strip() for x in also.split(",")) if s]
    seen, out = set(), []
    for name in also:
        if name and name not in seen and name != AS_IN_SETTINGS:
            seen.add(name)
            out.append(name)
    return out


def before_process(p, enabled=False, vae=AS_IN_SETTINGS, also=None):
    host = state.current().host
    request = vae if enabled and vae and vae != AS_IN_SETTINGS else None
    extras = parse_also(also) if enabled else []
    if host.rebuilds_model:
        # The model this generation uses is built after this hook: the swap waits for `process`,
        # which also tells the user when that model turns out to be one VAE Lab cannot swap.
        swap.restore_generation_vae(" (left over from an earlier generation)")
        st = gen_state(p)
        st.request, st.also = request or host.requested_vae(p), extras
        return
    if host.unsupported():
        return
    swap.restore_generation_vae(" (left over from an earlier generation)")
    _begin(p, gen_state(p), host.current_model(), request, extras)


def _begin(p, st: GenState, model, request: str | None, also: list[str]) -> None:
    """The generation's VAE goes in (undone by `postprocess` / `p.close()`); extras are checked."""
    host = state.current().host
    if request and host.fixed_vae():
        comment(p, "--vae-path fixes the VAE for every generation; 'VAE for this generation' is ignored")
    elif request:
        try:
            if swap.begin_generation_swap(p, model, vaes.resolve_name(request)):
                _guard_close(p)
        except VaeLabError as err:
            comment(p, f"{err}; generating with {display(host.loaded_vae_file(model))}")
    if also:
        for name in also:
            try:
                path = vaes.resolve_name(name)
                if any(vaes.same_file(path, e.path) for e in st.extras):
                    continue
                vaes.checked(model, path)
                st.extras.append(Extra(os.path.basename(path) if path else CHECKPOINT_VAE, path, vaes.vae_hash(path)))
            except VaeLabError as err:
                comment(p, f"'also decode with' skips {name}: {err}")
        grid = selected_script_title(p)
        if st.extras and grid in GRID_SCRIPTS:
            names = ", ".join(e.label for e in st.extras)
            if host.option("return_grid", True) and not getattr(p, "do_not_save_grid", False):
                # the WebUI makes each cell's images into one small grid, and the plot shows that
                comment(p, f"{grid}: each cell shows its main image first, then the extra decodes with {names}")
            elif _saves_images(p):
                comment(p, f"{grid} keeps one image per cell: the extra decodes with {names} are not in the grid; "
                           "they are saved with the other images")
            else:
                comment(p, f"{grid} keeps one image per cell: the extra decodes with {names} were not decoded "
                           "(nothing would show them with saving off); compare VAEs with the plot's VAE axis")
                st.extras = []
        if st.extras:
            _install_infotext_fields(p, st)


def _guard_close(p) -> None:
    """Restore the VAE in `p.close()`: the WebUI runs it (`with closing(p)`) even after errors."""
    original = p.close

    def close(*args, **kwargs):
        swap.restore_generation_vae(" after the generation")  # never raises
        return original(*args, **kwargs)

    p.close = close


def process(p, *args):
    """Right after the WebUI applied `override_settings` and captured `p.sd_vae_name/hash`:
    the VAE in the model now is the main one (an explicit sd_vae override beats the accordion);
    replace the WebUI's possibly stale hash."""
    host = state.current().host
    unsupported = host.unsupported()
    if unsupported:
        st = getattr(p, "_vae_lab", None)
        if st is not None and (st.request or st.also):  # asked for before the model showed it cannot
            comment(p, unsupported)
        return
    model = host.current_model()
    st = gen_state(p)
    if host.rebuilds_model:  # the model is built now: the generation's VAE goes in
        _begin(p, st, model, st.request, st.also)
    current = host.loaded_vae_file(model)
    st.main_file = current
    if host.rebuilds_model:
        host.record_main_vae(p, os.path.basename(current) if current else None, vaes.vae_hash(current))
        host.before_sampling(p, bool(st.extras))
    elif host.main_vae_name(p) and current:
        host.record_main_vae(p, host.main_vae_name(p), vaes.vae_hash(current) or host.main_vae_hash(p))


def _install_infotext_fields(p, st: GenState) -> None:
    """Per-image `VAE`/`VAE hash` through callables: they override the WebUI's keys in place."""
    host = state.current().host

    def extra_of(kw) -> Extra | None:
        if kw.get("use_main_prompt"):
            return None
        idx = kw.get("index") or 0
        label = st.labels[idx] if 0 <= idx < len(st.labels) else None
        return next((e for e in st.extras if e.label == label), None) if label else None

    def vae_name(**kw):
        if not host.option("add_vae_name_to_info", True):
            return None
        extra = extra_of(kw)
        if extra is not None:
            return os.path.basename(extra.path) if extra.path else None
        return host.main_vae_name(kw["p"])

    def vae_hash(**kw):
        if not host.option("add_vae_hash_to_info", True):
            return None
        extra = extra_of(kw)
        if extra is not None:
            return extra.short_hash
        return host.main_vae_hash(kw["p"])

    def marker(**kw):
        extra = extra_of(kw)
        if extra is None:
            return None
        return "extra decode" if extra.label != CHECKPOINT_VAE else "extra decode with the checkpoint VAE"

    p.extra_generation_params["VAE hash"] = vae_hash
    p.extra_generation_params["VAE"] = vae_name
    p.extra_generation_params[EXTRA_LABEL_KEY] = marker


def post_sample(p, ps, *args):
    """Keep the latents; decode them with every extra VAE; put the main VAE back."""
    session = state.current()
    host = session.host
    if host.unsupported():
        return
    st = gen_state(p)
    samples = ps.samples
    model = host.current_model()
    if getattr(samples, "already_decoded", False):
        if st.extras:
            comment(p, "'also decode with' needs the latents, but hires fix already decoded them; extra decodes skipped")
            st.extras = []
        return
    # The main images are decoded by the WebUI right after this hook, by the VAE in the model
    # now (after overrides and the accordion's swap): that is the one to put back.
    st.main_file = host.loaded_vae_file(model)
    _keep_latents(p, st, samples, model)
    st.pending = {}
    extras = [e for e in st.extras if not vaes.same_file(e.path, st.main_file)]
    if not extras:
        return
    from modules import shared

    main_source = session.status.source
    try:
        for i, extra in enumerate(extras):
            if shared.state.interrupted or shared.state.stopping_generation:
                names = ", ".join(e.label for e in extras[i:])
                comment(p, f"interrupted: 'also decode with' {names} not decoded for the last batch")
                break
            try:
                swap.swap_vae(model, extra.path, source="'also decode with' (VAE Lab)", check=False)
            except VaeLabError as err:
                comment(p, f"'also decode with' skips {extra.label}: {err}")
                continue
            try:
                st.pending[extra.label] = host.decode(model, samples)
            except Exception as err:  # e.g. NaNs with automatic precision fallback off
                comment(p, f"'also decode with' {extra.label} failed: {err}")
    finally:
        with session.lock:
            try:
                swap.swap_vae(model, st.main_file, source=main_source, check=False)
            except Exception as err:
                log.error("VAE Lab: could not put %s back after the extra decodes: %s", display(st.main_file), err)


def _keep_latents(p, st: GenState, samples, model) -> None:
    """All batches of this generation, for the tab (bounded by `last_latents.MAX_BYTES`)."""
    if st.latents is None:  # already over the budget in an earlier batch
        return
    st.latents.append(samples.detach().to("cpu", dtype=samples.dtype))
    try:
        import torch

        batch = torch.cat(st.latents) if len(st.latents) > 1 else st.latents[0]
        fam, _ = vaes.model_family(model)
        kept = last_latents.store(batch, fam, model_name=getattr(p, "sd_model_name", None),
                                  vae_name=os.path.basename(st.main_file) if st.main_file else None)
    except Exception as err:  # mixed sizes etc.: keeping latents is a convenience
        log.warning("VAE Lab: could not keep the latents for the tab: %s", err)
        kept = False
    if not kept:
        st.latents = None


def postprocess_batch_list(p, pp, *args, batch_number=0, **kwargs):
    """Interleave the extra decodes after each sample and fix the per-image lists."""
    import torch

    st = gen_state(p)
    if not st.pending:
        st.labels = []
        return
    images, labels = [], []
    prompts, negatives, seeds, subseeds = [], [], [], []

    def take(lst, i):
        return lst[i] if lst is not None and i < len(lst) else (lst[-1] if lst else None)

    for i, img in enumerate(pp.images):
        rows = [(img, None)] + [
            (torch.clamp((dec[i].float() + 1.0) / 2.0, 0.0, 1.0), label)
            for label, dec in st.pending.items() if i < len(dec)
        ]
        for image, label in rows:
            images.append(image)
            labels.append(label)
            prompts.append(take(p.prompts, i))
            negatives.append(take(p.negative_prompts, i))
            seeds.append(take(p.seeds, i))
            subseeds.append(take(p.subseeds, i))
    pp.images = images
    p.prompts, p.negative_prompts, p.seeds, p.subseeds = prompts, negatives, seeds, subseeds
    st.labels = labels
    st.pending = {}


def postprocess(p, processed, *args):
    """Normal end of a generation: restore the VAE and leave the tab the infotexts."""
    swap.restore_generation_vae()
    last = last_latents.get()
    if last is not None and processed is not None:
        last.infotexts = list(getattr(processed, "infotexts", []) or [])
