"""The WebUI adapter: the only module that imports A1111's `modules`.

It wires VAE Lab into AUTOMATIC1111's WebUI 1.10:

* Settings, section "VAE Lab" (`on_ui_settings`).
* The always-visible "VAE for this generation" accordion (`VaeLabScript`): a VAE used for
  one generation and restored afterwards, and "also decode with": the sampler runs once
  and every sample is decoded again by each extra VAE.
* A preferred VAE per checkpoint, applied when that checkpoint loads (`on_model_loaded`).
* The comparison tab (`vae_lab.ui.tab.build_tab`, registered through `on_ui_tabs`).

Swaps never go through `sd_vae.reload_vae_weights` (which moves the whole model to the
CPU and back): state dicts come from `vae_lab.runtime.ramcache` and are copied into the live
`first_stage_model` by `vae_lab.runtime.swap`, after a family check (`vae_lab.identity.compatibility`).
The WebUI's bookkeeping (`sd_vae.loaded_vae_file`, `sd_vae.base_vae`,
`model.loaded_vae_file`, `model.base_vae`) is kept exactly as its own `load_vae` would
leave it, so its later reloads (a Settings change, a checkpoint switch) behave.

The logic that does not need the WebUI lives in the core modules; this file only
translates between them and the WebUI's objects.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import gradio as gr

from modules import devices, processing, scripts, sd_models, sd_vae, shared

from vae_lab.identity import compatibility
from vae_lab.runtime import last_latents
from vae_lab.errors import IncompatibleVae, VaeLabError
from vae_lab.state.preferences import Preferences
from vae_lab.runtime.ramcache import RamCache, file_key, materialize

TITLE = "VAE Lab"
SECTION = ("vae_lab", "VAE Lab", "sd")
AS_IN_SETTINGS = "As in Settings"  # per-generation default: no swap
CHECKPOINT_VAE = "None"  # the checkpoint's own VAE (the WebUI's word for it)
NO_PREFERENCE = "(no preference)"
EXTRA_LABEL_KEY = "VAE Lab"  # infotext key marking an extra decode
MB = 1024 * 1024

_lock = threading.RLock()  # one swap at a time (model loads run on a background thread)
_ext_dir: str | None = None
_cache: RamCache | None = None
_info_cache: dict[tuple, object] = {}


# ---------------------------------------------------------------------------------------
# Small helpers around the WebUI's state


def is_forge() -> bool:
    """Forge's `sd_vae` functions are no-ops; it selects VAEs via `forge_additional_modules`."""
    if hasattr(shared.opts, "forge_additional_modules"):
        return True
    model = sd_models.model_data.sd_model  # peek: never load a model just to ask
    return model is not None and getattr(model, "first_stage_model", True) is None


def _opt(key: str, default):
    return getattr(shared.opts, key, default)


def ram_cache() -> RamCache:
    """The process-wide state-dict cache, sized by the Settings budget."""
    global _cache
    budget = int(_opt("vae_lab_ram_cache_mb", 1024)) * MB
    if _cache is None:
        _cache = RamCache(budget)
    elif _cache.budget != budget:
        _cache.set_budget(budget)
    return _cache


def data_dir() -> str:
    """The extension's data folder (the preferences file lives here).

    `VAE_LAB_DATA_DIR` moves it (a read-only install, e.g. a container image).
    """
    env = os.environ.get("VAE_LAB_DATA_DIR")
    if env:
        return env
    root = _ext_dir or os.path.join(getattr(shared.cmd_opts, "data_dir", None) or ".", "extensions", "vae-lab")
    return os.path.join(root, "data")


def preferences() -> Preferences:
    return Preferences(os.path.join(data_dir(), "checkpoint-vaes.json"))


def download_dir() -> str:
    return _opt("vae_lab_download_dir", "") or sd_vae.vae_path


def vae_dirs() -> list[str]:
    dirs = [sd_vae.vae_path]
    extra = getattr(shared.cmd_opts, "vae_dir", None)
    if extra:
        dirs.append(extra)
    dl = download_dir()
    if dl and os.path.abspath(dl) not in map(os.path.abspath, dirs):
        dirs.append(dl)
    return dirs


_webui_refresh = None  # the WebUI's own `sd_vae.refresh_vae_list`, while `hook_vae_list` wraps it


def refresh_vae_list() -> None:
    """The WebUI's own refresh, plus files in a download folder it does not scan."""
    (_webui_refresh or sd_vae.refresh_vae_list)()
    dl = download_dir()
    if dl and os.path.isdir(dl):
        for root, _, files in os.walk(dl):
            for fn in sorted(files):
                if fn.endswith((".safetensors", ".ckpt", ".pt")) and fn not in sd_vae.vae_dict:
                    sd_vae.vae_dict[fn] = os.path.abspath(os.path.join(root, fn))


def hook_vae_list() -> None:
    """Make every refresh of the WebUI's VAE list include the download folder.

    The WebUI rebuilds `vae_dict` from its own folders at startup, on the SD VAE setting's 🔄,
    in the checkpoint editor and through the API; each looks `sd_vae.refresh_vae_list` up at
    call time, so wrapping it keeps downloads in a custom folder listed everywhere.
    """
    global _webui_refresh
    if sd_vae.refresh_vae_list is not refresh_vae_list:
        _webui_refresh = sd_vae.refresh_vae_list
        sd_vae.refresh_vae_list = refresh_vae_list


def on_script_unloaded() -> None:
    """Reload UI: give the WebUI its own refresh back (the reloaded script wraps it again)."""
    global _webui_refresh
    if _webui_refresh is not None and sd_vae.refresh_vae_list is refresh_vae_list:
        sd_vae.refresh_vae_list = _webui_refresh
    _webui_refresh = None


def vae_names() -> list[str]:
    return list(sd_vae.vae_dict)


def resolve_name(name: str | None) -> str | None:
    """A VAE name from the UI/API/infotext -> absolute path; "None" -> None (checkpoint's own).

    Raises `VaeLabError` for a name the WebUI does not list (after one refresh).
    """
    name = (name or "").strip()
    if name.lower() in ("none", CHECKPOINT_VAE.lower()):
        return None
    for attempt in range(2):
        for key, path in sd_vae.vae_dict.items():
            if key.lower() == name.lower():
                return path
        if attempt == 0:
            refresh_vae_list()
    raise VaeLabError(f"unknown VAE '{name}': not in the WebUI's VAE list (models/VAE); refresh the list or check the name")


def _display(vae_file: str | None) -> str:
    return os.path.basename(vae_file) if vae_file else "the checkpoint's own VAE"


def vae_hash(vae_file: str | None) -> str | None:
    """The 10-hex infotext hash of `vae_file`: its own full-file SHA-256 (WebUI pitfall 9).

    From VAE Lab's identity when the file was already read, else from the WebUI's hash cache
    under the file's own title (`vae/<name>`, not the shared `vae` that goes stale); None
    under `--no-hashing`, as the WebUI does.
    """
    if not vae_file or getattr(shared.cmd_opts, "no_hashing", False):
        return None
    try:
        info = _info_cache.get(file_key(vae_file))
    except OSError:
        return None
    if info is not None and getattr(info, "file_sha256", None):
        return info.file_sha256[:10]
    from modules import hashes

    full = hashes.sha256(vae_file, f"vae/{os.path.basename(vae_file)}")
    return full[:10] if full else None


def _read_state_dict(path: str) -> dict:
    """Read `path` once: identify it (family, hash) and return its weights in owned memory."""
    from vae_lab.identity.identify import identify
    from vae_lab.files.loading import load_vae_file

    vf = load_vae_file(path)
    _info_cache[file_key(path)] = identify(vf)
    if vf.kind != "kl":
        raise IncompatibleVae(f"{os.path.basename(path)} is a tiny autoencoder (TAESD), not a full VAE")
    return materialize(vf.state_dict)


def _vae_info(path: str):
    """The `VaeInfo` of `path`, from the same single read that fills the RAM cache."""
    key = file_key(path)
    if key not in _info_cache:
        try:
            ram_cache().get(path, _read_state_dict)
        except IncompatibleVae:
            pass  # a TAE: identified, not cached
        if key not in _info_cache:  # cached weights of an older identity run: identify only
            from vae_lab.identity.identify import inspect

            _info_cache[key] = inspect(path)
    return _info_cache[key]


def model_family(model) -> tuple[str, int]:
    if getattr(model, "forge_objects", None) is not None:
        import vae_lab.webui_forge as webui_forge

        return webui_forge.model_family(model)
    channels = int(getattr(model, "latent_channels", 4) or 4)
    fam = compatibility.model_family(
        is_sdxl=bool(getattr(model, "is_sdxl", False)),
        is_sd3=bool(getattr(model, "is_sd3", False)),
        is_flux=bool(getattr(model, "is_flux", False)),
        latent_channels=channels,
    )
    return fam, channels


def check_compatible(model, vae_file: str | None) -> compatibility.Verdict:
    """Family check of `vae_file` for `model` (the checkpoint's own VAE always fits)."""
    if vae_file is None:
        return compatibility.Verdict(compatibility.OK)
    fam, channels = model_family(model)
    info = _vae_info(vae_file)
    return compatibility.check(
        os.path.basename(vae_file),
        vae_family=getattr(info, "family", None),
        vae_channels=getattr(info, "latent_channels", None),
        vae_kind=getattr(info, "kind", "kl"),
        model_family=fam,
        model_channels=channels,
        refuse_wrong_family=bool(_opt("vae_lab_refuse_wrong_family", True)),
    )


# ---------------------------------------------------------------------------------------
# The swap itself, with the WebUI's bookkeeping


@dataclass
class VaeStatus:
    file: str | None = None
    source: str = "the WebUI"
    note: str = ""

    def text(self) -> str:
        s = f"VAE in use: {_display(self.file)} — chosen by {self.source}"
        return s + (f" ({self.note})" if self.note else "")


status = VaeStatus()


def _same(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def swap_vae(model, vae_file: str | None, *, source: str, check: bool = True) -> bool:
    """Put `vae_file` (None: the checkpoint's own VAE) into `model` from RAM.

    Validates first (family, then every tensor's name and shape); on any error raises
    `VaeLabError` and the model keeps its VAE. Returns False when it was already in use.
    """
    from vae_lab.runtime import swap

    with _lock:
        current = sd_vae.loaded_vae_file
        if _same(current, vae_file):
            status.file, status.source = current, source
            return False
        fsm = model.first_stage_model
        if vae_file is None:
            base = sd_vae.base_vae
            if base is None:
                raise VaeLabError("the checkpoint's own VAE is not in memory; reload the checkpoint to get it back")
            swap.copy_into(fsm, base, name="the checkpoint's own VAE")
            sd_vae.delete_base_vae()  # what the WebUI's restore_base_vae leaves behind
            _set_loaded(model, None)
        else:
            if check:
                verdict = check_compatible(model, vae_file).raise_if_refused()
                if verdict.level == compatibility.WARN:
                    print(f"VAE Lab: {verdict.message}")
            cache = ram_cache()
            state_dict = cache.get(vae_file, _read_state_dict)
            swap.check(fsm, state_dict, name=os.path.basename(vae_file))  # before anything changes
            if current is None:
                sd_vae.store_base_vae(model)  # keep the checkpoint's own VAE, as load_vae does
            elif current not in cache and os.path.isfile(current):
                # The WebUI loaded it from disk; keep it so swapping back never reads the disk.
                cache.put(current, swap.snapshot(fsm))
            swap.copy_into(fsm, state_dict, name=os.path.basename(vae_file))
            _set_loaded(model, vae_file)
        status.file, status.source, status.note = vae_file, source, ""
        return True


def _set_loaded(model, vae_file: str | None) -> None:
    sd_vae.loaded_vae_file = vae_file
    model.loaded_vae_file = vae_file
    model.base_vae = sd_vae.base_vae
    if vae_file and os.path.basename(vae_file) not in sd_vae.vae_dict:
        sd_vae.vae_dict[os.path.basename(vae_file)] = vae_file


# ---------------------------------------------------------------------------------------
# Per-generation VAE: swap in before_process, restore in postprocess / p.close()


@dataclass
class ActiveSwap:
    """A per-generation VAE that must be undone."""

    previous: str | None
    previous_source: str
    target: str | None
    owner: int  # id() of the processing object
    checkpoint: str | None = None  # the checkpoint file it was applied to


_active: ActiveSwap | None = None


def restore_generation_vae(reason: str = "") -> None:
    """Put back the VAE that was in use before a per-generation swap (idempotent)."""
    global _active
    with _lock:
        active, _active = _active, None
        if active is None:
            return
        model = sd_models.model_data.sd_model
        if model is None:
            return
        try:
            swap_vae(model, active.previous, source=active.previous_source, check=False)
        except Exception as err:  # never let a restore failure break the WebUI's cleanup
            print(f"VAE Lab: could not restore {_display(active.previous)}{reason}: {err}")


def _comment(p, message: str) -> None:
    print(f"VAE Lab: {message}")
    try:
        p.comment(message)
    except Exception:
        pass


@dataclass
class GenState:
    """What one generation needs between hooks (kept on `p`)."""

    main_file: str | None = None
    extras: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # (label, path, hash)
    pending: dict[str, list] = field(default_factory=dict)  # label -> decoded samples of this batch
    labels: list[str | None] = field(default_factory=list)  # per image of the batch: None = main
    latents: list | None = field(default_factory=list)  # None: too large to keep


def _state(p) -> GenState:
    st = getattr(p, "_vae_lab", None)
    if st is None:
        st = GenState()
        p._vae_lab = st
    return st


def _parse_also(also) -> list[str]:
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
    global _active
    if is_forge():
        import vae_lab.webui_forge as webui_forge

        return webui_forge.before_process(p, enabled, vae, also)
    restore_generation_vae(" (left over from an earlier generation)")
    st = _state(p)
    model = shared.sd_model
    if enabled and vae and vae != AS_IN_SETTINGS and getattr(shared.cmd_opts, "vae_path", None):
        _comment(p, "--vae-path fixes the VAE for every generation; 'VAE for this generation' is ignored")
    elif enabled and vae and vae != AS_IN_SETTINGS:
        try:
            target = resolve_name(vae)
            previous, prev_source = sd_vae.loaded_vae_file, status.source
            if swap_vae(model, target, source="this generation's choice (VAE Lab)"):
                _active = ActiveSwap(previous, prev_source, target, id(p), _checkpoint_file(model))
                _guard_close(p)
        except VaeLabError as err:
            _comment(p, f"{err}; generating with {_display(sd_vae.loaded_vae_file)}")
    st.main_file = sd_vae.loaded_vae_file
    if enabled:
        for name in _parse_also(also):
            try:
                path = resolve_name(name)
                if _same(path, st.main_file) or any(_same(path, e[1]) for e in st.extras):
                    continue
                verdict = check_compatible(model, path).raise_if_refused()
                if verdict.level == compatibility.WARN:
                    print(f"VAE Lab: {verdict.message}")
                st.extras.append((os.path.basename(path) if path else CHECKPOINT_VAE, path, vae_hash(path)))
            except VaeLabError as err:
                _comment(p, f"'also decode with' skips {name}: {err}")
        if st.extras:
            _install_infotext_fields(p, st)


def _guard_close(p) -> None:
    _guard_close_with(p, restore_generation_vae)


def _guard_close_with(p, restore) -> None:
    """Restore the VAE in `p.close()`: the WebUI runs it (`with closing(p)`) even after errors."""
    original = p.close

    def close(*args, **kwargs):
        restore(" after the generation")  # never raises
        return original(*args, **kwargs)

    p.close = close


def process(p, *args):
    """Right after the WebUI captured `p.sd_vae_name/hash`: replace its possibly stale hash."""
    if is_forge():
        import vae_lab.webui_forge as webui_forge

        return webui_forge.process(p, *args)
    if p.sd_vae_name and sd_vae.loaded_vae_file:
        p.sd_vae_hash = vae_hash(sd_vae.loaded_vae_file) or p.sd_vae_hash


def _install_infotext_fields(p, st: GenState) -> None:
    """Per-image `VAE`/`VAE hash` through callables: they override the WebUI's keys in place."""

    def label_of(kw):
        if kw.get("use_main_prompt"):
            return None
        idx = kw.get("index") or 0
        return st.labels[idx] if 0 <= idx < len(st.labels) else None

    def vae_name(**kw):
        label = label_of(kw)
        if not _opt("add_vae_name_to_info", True):
            return None
        entry = next((e for e in st.extras if e[0] == label), None)
        if entry is not None:
            return os.path.basename(entry[1]) if entry[1] else None
        return kw["p"].sd_vae_name

    def vae_hash_(**kw):
        label = label_of(kw)
        if not _opt("add_vae_hash_to_info", True):
            return None
        entry = next((e for e in st.extras if e[0] == label), None)
        if entry is not None:
            return entry[2]
        return kw["p"].sd_vae_hash

    def marker(**kw):
        label = label_of(kw)
        if not label:
            return None
        return "extra decode" if label != CHECKPOINT_VAE else "extra decode with the checkpoint VAE"

    p.extra_generation_params["VAE hash"] = vae_hash_
    p.extra_generation_params["VAE"] = vae_name
    p.extra_generation_params[EXTRA_LABEL_KEY] = marker


def post_sample(p, ps, enabled=False, vae=None, also=None):
    """Keep the latents; decode them with every extra VAE; put the main VAE back."""
    if is_forge():
        import vae_lab.webui_forge as webui_forge

        return webui_forge.post_sample(p, ps)
    st = _state(p)
    samples = ps.samples
    model = shared.sd_model
    if getattr(samples, "already_decoded", False):
        if st.extras:
            _comment(p, "'also decode with' needs the latents, but hires fix already decoded them; extra decodes skipped")
            st.extras = []
        return
    _keep_latents(p, st, samples, model)
    st.pending = {}
    if not st.extras:
        return
    main_source = status.source
    try:
        for label, path, _ in st.extras:
            if shared.state.interrupted or shared.state.stopping_generation:
                break
            try:
                swap_vae(model, path, source="'also decode with' (VAE Lab)", check=False)
            except VaeLabError as err:
                _comment(p, f"'also decode with' skips {label}: {err}")
                continue
            try:
                st.pending[label] = processing.decode_latent_batch(model, samples, target_device=devices.cpu,
                                                                   check_for_nans=True)
            except Exception as err:  # e.g. NaNs with automatic precision fallback off
                _comment(p, f"'also decode with' {label} failed: {err}")
    finally:
        with _lock:
            try:
                swap_vae(model, st.main_file, source=main_source, check=False)
            except Exception as err:
                print(f"VAE Lab: could not put {_display(st.main_file)} back after the extra decodes: {err}")


def _keep_latents(p, st: GenState, samples, model) -> None:
    """All batches of this generation, for the tab (bounded by `last_latents.MAX_BYTES`)."""
    if st.latents is None:  # already over the budget in an earlier batch
        return
    st.latents.append(samples.detach().to("cpu", dtype=samples.dtype))
    try:
        import torch

        batch = torch.cat(st.latents) if len(st.latents) > 1 else st.latents[0]
        fam, _ = model_family(model)
        kept = last_latents.store(batch, fam, model_name=getattr(p, "sd_model_name", None),
                                  vae_name=os.path.basename(st.main_file) if st.main_file else None)
    except Exception as err:  # mixed sizes etc.: keeping latents is a convenience
        print(f"VAE Lab: could not keep the latents for the tab: {err}")
        kept = False
    if not kept:
        st.latents = None


def postprocess_batch_list(p, pp, *args, batch_number=0, **kwargs):
    """Interleave the extra decodes after each sample and fix the per-image lists."""
    import torch

    st = _state(p)
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
    if is_forge():
        import vae_lab.webui_forge as webui_forge

        webui_forge.restore()
    else:
        restore_generation_vae()
    last = last_latents.get()
    if last is not None and processed is not None:
        last.infotexts = list(getattr(processed, "infotexts", []) or [])


# ---------------------------------------------------------------------------------------
# Per-checkpoint preference


def _checkpoint_file(model) -> str | None:
    info = getattr(model, "sd_checkpoint_info", None)
    return getattr(info, "filename", None)


def checkpoint_key(model) -> str | None:
    info = getattr(model, "sd_checkpoint_info", None)
    return getattr(info, "name", None) if info is not None else None


def preference_blocked_by() -> str | None:
    """What outranks a VAE Lab preference right now (see the precedence table)."""
    if getattr(shared.cmd_opts, "vae_path", None):
        return "the command line (--vae-path)"
    if _opt("sd_vae_overrides_per_model_preferences", True) and not sd_vae.is_automatic():
        return f"Settings > SD VAE ({shared.opts.sd_vae})"
    return None


def describe_webui_choice(model) -> str:
    info = getattr(model, "sd_checkpoint_info", None)
    try:
        res = sd_vae.resolve_vae(info.filename) if info is not None else None
    except Exception:
        res = None
    if res is not None and _same(res.vae, sd_vae.loaded_vae_file) and res.source:
        return f"the WebUI ({res.source})"
    return "the WebUI"


def on_model_loaded(model) -> None:
    """Apply this checkpoint's preferred VAE (or re-apply a per-generation one)."""
    if is_forge():
        import vae_lab.webui_forge as webui_forge

        return webui_forge.on_model_loaded(model)
    with _lock:
        status.file, status.source, status.note = sd_vae.loaded_vae_file, describe_webui_choice(model), ""
        if _active is not None:
            if _checkpoint_file(model) == _active.checkpoint:
                # The WebUI reloaded the VAE of the same checkpoint mid-generation: an explicit
                # `override_settings['sd_vae']` (XYZ plot's VAE axis, pasted overrides) wins.
                return
            # Another checkpoint was loaded mid-generation (hires checkpoint, refiner): the
            # generation's VAE goes into it too, and the end restores that checkpoint's own choice.
            try:
                previous, prev_source = sd_vae.loaded_vae_file, status.source
                swap_vae(model, _active.target, source="this generation's choice (VAE Lab)")
                _active.previous, _active.previous_source = previous, prev_source
                _active.checkpoint = _checkpoint_file(model)
            except VaeLabError as err:
                print(f"VAE Lab: {err}")
            return
        key = checkpoint_key(model)
        try:
            pref = preferences().get(key) if key else None
        except VaeLabError as err:
            print(f"VAE Lab: {err}")
            return
        _show_preference_in_settings(pref)
        if not pref or not _opt("vae_lab_auto_checkpoint_vae", True):
            return
        blocker = preference_blocked_by()
        if blocker:
            status.note = f"the preferred {pref} is outranked by {blocker}"
            return
        try:
            swap_vae(model, resolve_name(pref), source=f"VAE Lab's preference for {key}")
        except VaeLabError as err:
            status.note = str(err)
            print(f"VAE Lab: preferred VAE for {key} not applied: {err}")


def _show_preference_in_settings(pref: str | None) -> None:
    # Plain assignment to opts.data: no onchange, safe inside a model load.
    shared.opts.data["vae_lab_checkpoint_vae"] = pref or NO_PREFERENCE


def set_checkpoint_preference(vae: str | None, *, apply: bool = True) -> str:
    """Prefer `vae` for the loaded checkpoint (None / NO_PREFERENCE clears); returns a status line."""
    model = sd_models.model_data.sd_model
    key = checkpoint_key(model) if model is not None else None
    if not key:
        raise VaeLabError("no checkpoint is loaded")
    vae = None if vae in (None, "", NO_PREFERENCE) else vae
    if is_forge():
        import vae_lab.webui_forge as webui_forge

        return webui_forge.set_checkpoint_preference(model, key, vae, apply=apply)
    if vae is not None:
        path = resolve_name(vae)
        check_compatible(model, path).raise_if_refused()
    was_applied = status.source.startswith("VAE Lab's preference")
    preferences().set(key, vae)
    if vae is None:
        if was_applied:  # hand the choice back to the WebUI's own rules
            res = sd_vae.resolve_vae(model.sd_checkpoint_info.filename)
            swap_vae(model, res.vae, source=f"the WebUI ({res.source})" if res.source else "the WebUI", check=False)
        return f"No preferred VAE for {key}. {status.text()}"
    if apply and _opt("vae_lab_auto_checkpoint_vae", True):
        blocker = preference_blocked_by()
        if blocker:
            return f"Saved {vae} for {key}; not applied now: {blocker} outranks it"
        swap_vae(model, resolve_name(vae), source=f"VAE Lab's preference for {key}")
    return f"Saved {vae} for {key}. {status.text()}"


_settings_shown: tuple | None = None  # (checkpoint, value) the Settings page last showed


def _checkpoint_pref_choices() -> dict:
    """The Settings dropdown's choices. The WebUI evaluates them each time it (re)loads the
    page, right after reading the value it shows: remember which checkpoint that value was for."""
    global _settings_shown
    model = sd_models.model_data.sd_model
    _settings_shown = (checkpoint_key(model) if model is not None else None,
                       shared.opts.data.get("vae_lab_checkpoint_vae", NO_PREFERENCE))
    return {"choices": [NO_PREFERENCE, CHECKPOINT_VAE] + vae_names()}


def _on_checkpoint_vae_setting() -> None:
    value = _opt("vae_lab_checkpoint_vae", NO_PREFERENCE)
    model = sd_models.model_data.sd_model
    key = checkpoint_key(model) if model is not None else None
    if _settings_shown and _settings_shown[0] != key and value == _settings_shown[1]:
        # "Apply settings" sends every field back: this one still shows another checkpoint's
        # preference (the checkpoint changed since the page loaded). Not a choice: keep ours.
        try:
            _show_preference_in_settings(preferences().get(key) if key else None)
        except VaeLabError as err:
            print(f"VAE Lab: {err}")
        return
    try:
        print(f"VAE Lab: {set_checkpoint_preference(value)}")
    except VaeLabError as err:
        print(f"VAE Lab: {err}")


def current_status() -> str:
    if is_forge():
        import vae_lab.webui_forge as webui_forge

        model = sd_models.model_data.sd_model
        if getattr(model, "sd_checkpoint_info", None) is not None and not webui_forge.supported(model):
            return webui_forge.UNSUPPORTED_MESSAGE
    return status.text()


# ---------------------------------------------------------------------------------------
# Settings


def on_ui_settings() -> None:
    from modules import call_queue

    opts = shared.opts
    section = SECTION
    options = {
        "vae_lab_download_dir": shared.OptionInfo(
            "", "Download folder for VAEs (empty: models/VAE)", onchange=refresh_vae_list,
        ).info("a folder the WebUI does not scan is added to its VAE list by every refresh"),
        "vae_lab_ram_cache_mb": shared.OptionInfo(
            1024, "RAM cache for VAE weights (MB)", gr.Slider, {"minimum": 0, "maximum": 16384, "step": 128},
            onchange=lambda: ram_cache()).info("switching to a cached VAE never reads the disk; an SD VAE takes 320 MB in fp32"),
        "vae_lab_precision": shared.OptionInfo(
            "auto", "Default decode precision in the VAE Lab tab", gr.Radio, {"choices": ["auto", "fp32", "fp16", "bf16"]}
        ).info("generations decode with the WebUI's own VAE precision (--no-half-vae)"),
        "vae_lab_auto_checkpoint_vae": shared.OptionInfo(
            True, "Apply each checkpoint's preferred VAE when it loads"),
        "vae_lab_checkpoint_vae": shared.OptionInfo(
            NO_PREFERENCE, "Preferred VAE for the loaded checkpoint", gr.Dropdown, _checkpoint_pref_choices,
            refresh=refresh_vae_list, onchange=call_queue.wrap_queued_call(_on_checkpoint_vae_setting),
        ).info("stored per checkpoint in VAE Lab's data; outranked by --vae-path and by a specific SD VAE when 'Selected VAE overrides per-model preferences' is on"),
        "vae_lab_refuse_wrong_family": shared.OptionInfo(
            True, "Refuse VAEs of the wrong family for the loaded model").info("e.g. an SDXL VAE on an SD1 model; a VAE with the wrong latent channels is always refused"),
        "vae_lab_hf_token": shared.OptionInfo(
            "", "Hugging Face token (gated downloads)", gr.Textbox, {"type": "password"}, restrict_api=True),
        "vae_lab_civitai_token": shared.OptionInfo(
            "", "Civitai API key", gr.Textbox, {"type": "password"}, restrict_api=True),
    }
    for key, info in shared.options_section(section, options).items():
        opts.add_option(key, info)


def tokens() -> dict[str, str]:
    """Download tokens from Settings, keyed like `vae_lab.download.tokens` ("hf", "civitai").

    Never logged, never in infotext; empty ones fall back to HF_TOKEN / CIVITAI_API_TOKEN
    in the downloader.
    """
    return {"hf": _opt("vae_lab_hf_token", ""), "civitai": _opt("vae_lab_civitai_token", "")}


# ---------------------------------------------------------------------------------------
# The per-generation accordion (an always-on script)


def vae_choices() -> list[str]:
    return [AS_IN_SETTINGS, CHECKPOINT_VAE] + vae_names()


def extra_choices() -> list[str]:
    return [CHECKPOINT_VAE] + vae_names()


def _paste_vae(params: dict):
    """Infotext -> dropdown: the `VAE` name when the WebUI lists it (by name, then by hash)."""
    name = params.get("VAE")
    if not name:
        return gr.update(value=AS_IN_SETTINGS)
    for key in sd_vae.vae_dict:
        if key.lower() == str(name).lower():
            return gr.update(value=key)
    wanted = str(params.get("VAE hash") or "").lower()
    if wanted:
        from modules import hashes

        for key, path in sd_vae.vae_dict.items():
            cached = hashes.sha256_from_cache(path, f"vae/{key}")
            if cached and cached[:10].lower() == wanted:
                return gr.update(value=key)
    print(f"VAE Lab: pasted VAE {name} is not in the VAE list; keeping 'As in Settings'")
    return gr.update(value=AS_IN_SETTINGS)


class VaeLabScript(scripts.Script):
    """The "VAE for this generation" accordion in txt2img and img2img."""

    def title(self):
        return TITLE

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        from modules.ui_components import FormRow, InputAccordion, ToolButton

        with InputAccordion(False, label="VAE for this generation", elem_id=self.elem_id("accordion")) as enabled:
            with FormRow():
                vae = gr.Dropdown(label="VAE", choices=vae_choices(), value=AS_IN_SETTINGS, elem_id=self.elem_id("vae"))
                also = gr.Dropdown(label="Also decode with (the sampler runs once)", choices=extra_choices(),
                                   value=[], multiselect=True, elem_id=self.elem_id("also"))
                refresh = ToolButton(value="\U0001f504", elem_id=self.elem_id("refresh"))
            info = gr.HTML(value=current_status, elem_id=self.elem_id("status"))

        def do_refresh():
            refresh_vae_list()
            return gr.update(choices=vae_choices()), gr.update(choices=extra_choices()), current_status()

        refresh.click(fn=do_refresh, inputs=[], outputs=[vae, also, info])
        if not self.infotext_fields:  # the API calls ui() again in a throwaway Blocks: keep the real ones
            # The label "VAE" (a string key) claims the infotext's VAE for the accordion, so the paste
            # offers no "VAE" override chip, whose sd_vae override the WebUI may never restore.
            self.infotext_fields = [(enabled, "VAE"), (vae, _paste_vae)]
            self.paste_field_names = ["VAE"]
        return [enabled, vae, also]

    def before_process(self, p, *args):
        before_process(p, *args)

    def process(self, p, *args):
        process(p, *args)

    def post_sample(self, p, ps, *args):
        post_sample(p, ps, *args)

    def postprocess_batch_list(self, p, pp, *args, **kwargs):
        postprocess_batch_list(p, pp, *args, **kwargs)

    def postprocess(self, p, processed, *args):
        postprocess(p, processed, *args)


# ---------------------------------------------------------------------------------------
# The comparison tab


def _tab_extra(tab_ui) -> None:
    """Per-checkpoint controls and the "VAE in use" line inside the comparison tab."""
    with gr.Group():
        gr.Markdown("**Loaded checkpoint**")
        line = gr.Markdown(current_status, elem_id="vae_lab_in_use")
        with gr.Row():
            pref = gr.Dropdown(label="Preferred VAE for this checkpoint",
                               choices=[NO_PREFERENCE, CHECKPOINT_VAE] + vae_names(),
                               value=_current_preference, elem_id="vae_lab_checkpoint_pref")
            save = gr.Button("Save preference", elem_id="vae_lab_checkpoint_pref_save")

    def do_save(value):
        from modules import call_queue

        try:
            with call_queue.queue_lock:  # never swap under a running generation
                msg = set_checkpoint_preference(value)
        except VaeLabError as err:
            msg = f"Error: {err}"
        return msg

    save.click(fn=do_save, inputs=[pref], outputs=[line])
    tab_ui.components["checkpoint_preference"] = pref


def _current_preference():
    model = sd_models.model_data.sd_model
    key = checkpoint_key(model) if model is not None else None
    try:
        return (preferences().get(key) if key else None) or NO_PREFERENCE
    except VaeLabError:
        return NO_PREFERENCE


def _last_latents_for_tab():
    return last_latents.get()


def ui_context():
    from modules import call_queue

    from vae_lab.ui import tab as ui

    return ui.UiContext(
        vae_dirs=vae_dirs(),
        download_dir=download_dir(),
        on_vaes_changed=refresh_vae_list,
        last_latents=_last_latents_for_tab,
        extra=_tab_extra,
        device=str(getattr(shared, "device", "") or "") or None,
        lock=call_queue.queue_lock,  # a comparison waits for a running generation (and vice versa)
        tokens=tokens,  # the Settings tokens reach the tab's downloads
        precision=lambda: _opt("vae_lab_precision", "auto"),
        vae_list_outputs=_settings_vae_lists,
    )


def _settings_vae_lists() -> list:
    """The Settings "SD VAE" dropdown (also the quicksettings one), refreshed after a download."""
    comp = (getattr(shared, "settings_components", None) or {}).get("sd_vae")
    if comp is None:
        return []
    return [(comp, lambda: {"choices": ["Automatic", "None"] + list(sd_vae.vae_dict)})]


def on_ui_tabs():
    from vae_lab.ui import tab as ui

    return [(ui.build_tab(ui_context()), TITLE, "vae_lab")]


# ---------------------------------------------------------------------------------------
# Start-up (scripts/vae_lab.py calls this at import time, on every (re)load, then registers
# on_ui_settings, on_ui_tabs, on_model_loaded and on_script_unloaded itself)


def init(ext_dir: str) -> None:
    global _ext_dir
    _ext_dir = ext_dir
    hook_vae_list()  # before the WebUI's startup refresh, which runs after scripts are loaded
    if is_forge():
        import vae_lab.webui_forge as webui_forge

        webui_forge.init()
