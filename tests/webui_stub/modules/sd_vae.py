"""VAE listing, resolution and loading (modules/sd_vae.py), with the real semantics:

- `vae_dict` maps file BASENAMES to paths, in glob order (the "natural sort" is a no-op on an
  existing dict); the last duplicate basename wins and keeps the first position.
- `resolve_vae` order: --vae-path; a specific `opts.sd_vae` (while overrides-per-model is on);
  the checkpoint's user metadata "vae"; a prefix-matched name anywhere in vae_dict; the setting.
- `reload_vae_weights` is a silent no-op when the file equals `loaded_vae_file`; otherwise it moves
  the WHOLE model to CPU and back and fires `model_loaded`. No try/finally, as in the real one.
- `get_loaded_vae_hash` caches under the title 'vae' for every file (the real bug).
"""

import collections
import glob
import os
from copy import deepcopy
from dataclasses import dataclass

from modules import devices, extra_networks, hashes, lowvram, paths, script_callbacks, sd_hijack, sd_models, shared

vae_path = os.path.abspath(os.path.join(paths.models_path, "VAE"))
vae_ignore_keys = {"model_ema.decay", "model_ema.num_updates"}
vae_dict = {}

base_vae = None
loaded_vae_file = None
checkpoint_info = None

checkpoints_loaded = collections.OrderedDict()
file_reads: list[str] = []  # stand-in only: VAE files read from disk (not from the RAM cache)


def get_loaded_vae_name():
    return None if loaded_vae_file is None else os.path.basename(loaded_vae_file)


def get_loaded_vae_hash():
    if loaded_vae_file is None:
        return None
    sha256 = hashes.sha256(loaded_vae_file, 'vae')
    return sha256[0:10] if sha256 else None


def get_base_vae(model):
    if base_vae is not None and checkpoint_info == model.sd_checkpoint_info and model:
        return base_vae
    return None


def store_base_vae(model):
    global base_vae, checkpoint_info
    if checkpoint_info != model.sd_checkpoint_info:
        assert not loaded_vae_file, "Trying to store non-base VAE!"
        base_vae = deepcopy(model.first_stage_model.state_dict())
        checkpoint_info = model.sd_checkpoint_info


def delete_base_vae():
    global base_vae, checkpoint_info
    base_vae = None
    checkpoint_info = None


def restore_base_vae(model):
    global loaded_vae_file
    if base_vae is not None and checkpoint_info == model.sd_checkpoint_info:
        print("Restoring base VAE")
        _load_vae_dict(model, base_vae)
        loaded_vae_file = None
    delete_base_vae()


def get_filename(filepath):
    return os.path.basename(filepath)


def refresh_vae_list():
    vae_dict.clear()
    patterns = [os.path.join(sd_models.model_path, f'**/*.vae.{ext}') for ext in ("ckpt", "pt", "safetensors")]
    patterns += [os.path.join(vae_path, f'**/*.{ext}') for ext in ("ckpt", "pt", "safetensors")]
    if shared.cmd_opts.ckpt_dir is not None and os.path.isdir(shared.cmd_opts.ckpt_dir):
        patterns += [os.path.join(shared.cmd_opts.ckpt_dir, f'**/*.vae.{ext}') for ext in ("ckpt", "pt", "safetensors")]
    if shared.cmd_opts.vae_dir is not None and os.path.isdir(shared.cmd_opts.vae_dir):
        patterns += [os.path.join(shared.cmd_opts.vae_dir, f'**/*.{ext}') for ext in ("ckpt", "pt", "safetensors")]
    for pattern in patterns:
        for filepath in glob.iglob(pattern, recursive=True):
            vae_dict[get_filename(filepath)] = filepath
    # the real code "sorts" this way, which leaves the key order of an existing dict unchanged
    vae_dict.update(dict(sorted(vae_dict.items(), key=lambda item: shared.natural_sort_key(item[0]))))


def find_vae_near_checkpoint(checkpoint_file):
    """First vae_dict file whose basename STARTS WITH the checkpoint's name (any folder)."""
    checkpoint_path = os.path.basename(checkpoint_file).rsplit('.', 1)[0]
    for vae_file in vae_dict.values():
        if os.path.basename(vae_file).startswith(checkpoint_path):
            return vae_file
    return None


@dataclass
class VaeResolution:
    vae: str = None
    source: str = None
    resolved: bool = True

    def tuple(self):
        return self.vae, self.source


def is_automatic():
    return shared.opts.sd_vae in {"Automatic", "auto"}


def resolve_vae_from_setting() -> VaeResolution:
    if shared.opts.sd_vae == "None":
        return VaeResolution()
    found = vae_dict.get(shared.opts.sd_vae, None)
    if found is not None:
        return VaeResolution(found, 'specified in settings')
    if not is_automatic():
        print(f"Couldn't find VAE named {shared.opts.sd_vae}; using None instead")
    return VaeResolution(resolved=False)


def resolve_vae_from_user_metadata(checkpoint_file) -> VaeResolution:
    wanted = extra_networks.get_user_metadata(checkpoint_file).get("vae", None)
    if wanted is not None and wanted != "Automatic":
        if wanted == "None":
            return VaeResolution()
        found = vae_dict.get(wanted, None)
        if found is not None:
            return VaeResolution(found, "from user metadata")
    return VaeResolution(resolved=False)


def resolve_vae_near_checkpoint(checkpoint_file) -> VaeResolution:
    near = find_vae_near_checkpoint(checkpoint_file)
    if near is not None and (not shared.opts.sd_vae_overrides_per_model_preferences or is_automatic()):
        return VaeResolution(near, 'found near the checkpoint')
    return VaeResolution(resolved=False)


def resolve_vae(checkpoint_file) -> VaeResolution:
    if shared.cmd_opts.vae_path is not None:
        return VaeResolution(shared.cmd_opts.vae_path, 'from commandline argument')
    if shared.opts.sd_vae_overrides_per_model_preferences and not is_automatic():
        return resolve_vae_from_setting()
    for resolver in (resolve_vae_from_user_metadata, resolve_vae_near_checkpoint):
        res = resolver(checkpoint_file)
        if res.resolved:
            return res
    return resolve_vae_from_setting()


def load_vae_dict(filename, map_location):
    vae_ckpt = sd_models.read_state_dict(filename, map_location=map_location)
    file_reads.append(filename)
    return {k: v for k, v in vae_ckpt.items() if k[0:4] != "loss" and k not in vae_ignore_keys}


def load_vae(model, vae_file=None, vae_source="from unknown source"):
    global base_vae, loaded_vae_file
    cache_enabled = shared.opts.sd_vae_checkpoint_cache > 0
    if vae_file:
        if cache_enabled and vae_file in checkpoints_loaded:
            print(f"Loading VAE weights {vae_source}: cached {get_filename(vae_file)}")
            store_base_vae(model)
            _load_vae_dict(model, checkpoints_loaded[vae_file])
        else:
            assert os.path.isfile(vae_file), f"VAE {vae_source} doesn't exist: {vae_file}"
            print(f"Loading VAE weights {vae_source}: {vae_file}")
            store_base_vae(model)
            state = load_vae_dict(vae_file, map_location=shared.weight_load_location)
            _load_vae_dict(model, state)
            if cache_enabled:
                checkpoints_loaded[vae_file] = state.copy()
        if cache_enabled:
            while len(checkpoints_loaded) > shared.opts.sd_vae_checkpoint_cache + 1:
                checkpoints_loaded.popitem(last=False)
        if get_filename(vae_file) not in vae_dict:
            vae_dict[get_filename(vae_file)] = vae_file
    elif loaded_vae_file:
        restore_base_vae(model)
    loaded_vae_file = vae_file
    model.base_vae = base_vae
    model.loaded_vae_file = loaded_vae_file


def _load_vae_dict(model, state_dict):
    # strict: wrong keys (diffusers layout) or shapes raise; a None state dict (rejected pickle) raises too
    model.first_stage_model.load_state_dict(state_dict)
    model.first_stage_model.to(devices.dtype_vae)


def clear_loaded_vae():
    global loaded_vae_file
    loaded_vae_file = None


unspecified = object()


def reload_vae_weights(sd_model=None, vae_file=unspecified):
    if not sd_model:
        sd_model = shared.sd_model
    checkpoint_file = sd_model.sd_checkpoint_info.filename
    if vae_file == unspecified:
        vae_file, vae_source = resolve_vae(checkpoint_file).tuple()
    else:
        vae_source = "from function argument"
    if loaded_vae_file == vae_file:
        return
    if sd_model.lowvram:
        lowvram.send_everything_to_cpu()
    else:
        sd_model.to(devices.cpu)
    sd_hijack.model_hijack.undo_hijack(sd_model)
    load_vae(sd_model, vae_file, vae_source)
    sd_hijack.model_hijack.hijack(sd_model)
    if not sd_model.lowvram:
        sd_model.to(devices.device)
    script_callbacks.model_loaded_callback(sd_model)
    print("VAE weights loaded.")
    return sd_model
