"""Checkpoints and the loaded model (modules/sd_models.py).

Checkpoints are real safetensors/pickle files; the model built from one is the stand-in's
`stub_ldm.FakeDiffusionModel` (SD1/SD2/SDXL/SD3 detected from the state dict as the WebUI does),
whose `first_stage_model` is a real kl-f8 autoencoder loaded from the baked `first_stage_model.*`
keys. Loading, reloading, reuse of already-loaded models, titles/hashes, `opts.data` writes,
VAE resolution at load and the `model_loaded` callback follow the real code.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
import threading
from collections import OrderedDict

from modules import devices, errors, hashes, lowvram, paths, script_callbacks, sd_hijack, sd_vae, shared
from modules.shared import cmd_opts

model_dir = "Stable-diffusion"
model_path = os.path.abspath(os.path.join(paths.models_path, model_dir))

checkpoints_list: dict = {}
checkpoint_aliases: dict = {}
checkpoint_alisases = checkpoint_aliases  # the old misspelled name, kept by the WebUI
checkpoints_loaded = OrderedDict()
load_count = 0  # stand-in only: full model builds (load_model calls)


class ModelType(enum.Enum):
    SD1 = 1
    SD2 = 2
    SDXL = 3
    SSD = 4
    SD3 = 5


def replace_key(d, key, new_key, value):
    keys = list(d.keys())
    d[new_key] = value
    if key not in keys:
        return d
    index = keys.index(key)
    keys[index] = new_key
    new_d = {k: d[k] for k in keys}
    d.clear()
    d.update(new_d)
    return d


def read_metadata_from_safetensors(filename):
    with open(filename, mode="rb") as file:
        metadata_len = int.from_bytes(file.read(8), "little")
        json_start = file.read(2)
        assert metadata_len > 2 and json_start in (b'{"', b"{'"), f"{filename} is not a safetensors file"
        json_data = json_start + file.read(metadata_len - 2)
        json_obj = json.loads(json_data)
        res = {}
        for k, v in json_obj.get("__metadata__", {}).items():
            res[k] = v
            if isinstance(v, str) and v[0:1] == '{':
                try:
                    res[k] = json.loads(v)
                except Exception:
                    pass
        return res


class CheckpointInfo:
    def __init__(self, filename):
        self.filename = filename
        abspath = os.path.abspath(filename)
        abs_ckpt_dir = os.path.abspath(cmd_opts.ckpt_dir) if cmd_opts.ckpt_dir is not None else None
        self.is_safetensors = os.path.splitext(filename)[1].lower() == ".safetensors"
        if abs_ckpt_dir and abspath.startswith(abs_ckpt_dir):
            name = abspath.replace(abs_ckpt_dir, '')
        elif abspath.startswith(model_path):
            name = abspath.replace(model_path, '')
        else:
            name = os.path.basename(filename)
        if name.startswith("\\") or name.startswith("/"):
            name = name[1:]
        self.modelspec_thumbnail = None
        self.metadata = {}
        if self.is_safetensors:
            try:
                self.metadata = read_metadata_from_safetensors(filename)
                self.modelspec_thumbnail = self.metadata.pop('modelspec.thumbnail', None)
            except Exception as e:
                errors.display(e, f"reading metadata for {filename}")
        self.name = name
        self.name_for_extra = os.path.splitext(os.path.basename(filename))[0]
        self.model_name = os.path.splitext(name.replace("/", "_").replace("\\", "_"))[0]
        self.hash = model_hash(filename)
        self.sha256 = hashes.sha256_from_cache(self.filename, f"checkpoint/{name}")
        self.shorthash = self.sha256[0:10] if self.sha256 else None
        self.title = name if self.shorthash is None else f'{name} [{self.shorthash}]'
        self.short_title = self.name_for_extra if self.shorthash is None else f'{self.name_for_extra} [{self.shorthash}]'
        self.ids = [self.hash, self.model_name, self.title, name, self.name_for_extra, f'{name} [{self.hash}]']
        if self.shorthash:
            self.ids += [self.shorthash, self.sha256, f'{self.name} [{self.shorthash}]', f'{self.name_for_extra} [{self.shorthash}]']

    def register(self):
        checkpoints_list[self.title] = self
        for id_ in self.ids:
            checkpoint_aliases[id_] = self

    def calculate_shorthash(self):
        self.sha256 = hashes.sha256(self.filename, f"checkpoint/{self.name}")
        if self.sha256 is None:
            return
        shorthash = self.sha256[0:10]
        if self.shorthash == shorthash:
            return self.shorthash
        self.shorthash = shorthash
        if self.shorthash not in self.ids:
            self.ids += [self.shorthash, self.sha256, f'{self.name} [{self.shorthash}]', f'{self.name_for_extra} [{self.shorthash}]']
        old_title = self.title
        self.title = f'{self.name} [{self.shorthash}]'
        self.short_title = f'{self.name_for_extra} [{self.shorthash}]'
        replace_key(checkpoints_list, old_title, self.title, self)
        self.register()
        return self.shorthash

    def __repr__(self):
        return f"CheckpointInfo({self.title!r})"


def setup_model():
    os.makedirs(model_path, exist_ok=True)


def checkpoint_tiles(use_short=False):
    return [x.short_title if use_short else x.title for x in checkpoints_list.values()]


def _find_checkpoint_files(folder):
    found = []
    if folder and os.path.isdir(folder):
        for root, _, files in os.walk(folder, followlinks=True):
            for f in files:
                low = f.lower()
                if not low.endswith((".ckpt", ".safetensors")) or low.endswith((".vae.ckpt", ".vae.safetensors")):
                    continue
                found.append(os.path.join(root, f))
    return sorted(found, key=lambda p: shared.natural_sort_key(os.path.relpath(p, folder)))


def list_models():
    checkpoints_list.clear()
    checkpoint_aliases.clear()
    cmd_ckpt = cmd_opts.ckpt
    model_list = _find_checkpoint_files(model_path) + _find_checkpoint_files(cmd_opts.ckpt_dir)
    if cmd_ckpt is not None and os.path.exists(cmd_ckpt):
        checkpoint_info = CheckpointInfo(cmd_ckpt)
        checkpoint_info.register()
        shared.opts.data['sd_model_checkpoint'] = checkpoint_info.title
    elif cmd_ckpt is not None:
        print(f"Checkpoint in --ckpt argument not found: {cmd_ckpt}", file=sys.stderr)
    for filename in model_list:
        CheckpointInfo(filename).register()


re_strip_checksum = re.compile(r"\s*\[[^]]+]\s*$")


def get_closet_checkpoint_match(search_string):
    if not search_string:
        return None
    checkpoint_info = checkpoint_aliases.get(search_string, None)
    if checkpoint_info is not None:
        return checkpoint_info
    found = sorted([info for info in checkpoints_list.values() if search_string in info.title], key=lambda x: len(x.title))
    if found:
        return found[0]
    without = re.sub(re_strip_checksum, '', search_string)
    found = sorted([info for info in checkpoints_list.values() if without in info.title], key=lambda x: len(x.title))
    return found[0] if found else None


def model_hash(filename):
    """The old 8-hex hash of 64 KiB at offset 1 MiB (prone to collisions)."""
    try:
        with open(filename, "rb") as file:
            import hashlib
            m = hashlib.sha256()
            file.seek(0x100000)
            m.update(file.read(0x10000))
            return m.hexdigest()[0:8]
    except FileNotFoundError:
        return 'NOFILE'


def select_checkpoint():
    """Raises `FileNotFoundError` if no checkpoints are found."""
    model_checkpoint = shared.opts.sd_model_checkpoint
    checkpoint_info = checkpoint_aliases.get(model_checkpoint, None)
    if checkpoint_info is not None:
        return checkpoint_info
    if len(checkpoints_list) == 0:
        raise FileNotFoundError(f"No checkpoints found. When searching for checkpoints, looked at:\n - directory {model_path}\n"
                                "Can't run without a checkpoint. Find and place a .ckpt or .safetensors file into any of those locations.")
    checkpoint_info = next(iter(checkpoints_list.values()))
    if model_checkpoint is not None:
        print(f"Checkpoint {model_checkpoint} not found; loading fallback {checkpoint_info.title}", file=sys.stderr)
    return checkpoint_info


def get_state_dict_from_checkpoint(pl_sd):
    pl_sd = pl_sd.pop("state_dict", pl_sd)
    pl_sd.pop("state_dict", None)
    return pl_sd


def read_state_dict(checkpoint_file, print_global_state=False, map_location=None):
    """safetensors via safetensors.torch, anything else via (the WebUI's safe) torch.load;
    a pickle that the safe unpickler rejects gives None instead of an exception."""
    _, extension = os.path.splitext(checkpoint_file)
    if extension.lower() == ".safetensors":
        import safetensors.torch
        device = map_location or shared.weight_load_location or devices.get_optimal_device_name()
        if not shared.opts.disable_mmap_load_safetensors:
            pl_sd = safetensors.torch.load_file(checkpoint_file, device=device)
        else:
            with open(checkpoint_file, 'rb') as f:
                pl_sd = safetensors.torch.load(f.read())
            pl_sd = {k: v.to(device) for k, v in pl_sd.items()}
    else:
        from modules import safe
        pl_sd = safe.load(checkpoint_file, map_location=map_location or shared.weight_load_location)
        if pl_sd is None:
            return None
    return get_state_dict_from_checkpoint(pl_sd)


def get_checkpoint_state_dict(checkpoint_info: CheckpointInfo, timer=None):
    sd_model_hash = checkpoint_info.calculate_shorthash()
    if checkpoint_info in checkpoints_loaded:
        checkpoints_loaded.move_to_end(checkpoint_info)
        return checkpoints_loaded[checkpoint_info]
    print(f"Loading weights [{sd_model_hash}] from {checkpoint_info.filename}")
    return read_state_dict(checkpoint_info.filename)


class SkipWritingToConfig:
    """Inside it, loading a checkpoint does not write `opts.sd_model_checkpoint`."""

    skip = False
    previous = None

    def __enter__(self):
        self.previous = SkipWritingToConfig.skip
        SkipWritingToConfig.skip = True
        return self

    def __exit__(self, exc_type, exc_value, exc_traceback):
        SkipWritingToConfig.skip = self.previous


def set_model_type(model, state_dict):
    model.is_sd1 = False
    model.is_sd2 = False
    model.is_sdxl = False
    model.is_ssd = False
    model.is_sd3 = False
    model.is_sdxl_inpaint = False
    if "model.diffusion_model.x_embedder.proj.weight" in state_dict:
        model.is_sd3 = True
        model.model_type = ModelType.SD3
    elif hasattr(model, 'conditioner'):
        model.is_sdxl = True
        model.model_type = ModelType.SDXL
    elif hasattr(model.cond_stage_model, 'model'):
        model.is_sd2 = True
        model.model_type = ModelType.SD2
    else:
        model.is_sd1 = True
        model.model_type = ModelType.SD1


def load_model_weights(model, checkpoint_info: CheckpointInfo, state_dict, timer=None):
    sd_model_hash = checkpoint_info.calculate_shorthash()
    if not SkipWritingToConfig.skip:
        shared.opts.data["sd_model_checkpoint"] = checkpoint_info.title
    if state_dict is None:
        state_dict = get_checkpoint_state_dict(checkpoint_info, timer)
    set_model_type(model, state_dict)
    if shared.opts.sd_checkpoint_cache > 0:
        checkpoints_loaded[checkpoint_info] = dict(state_dict)
    model.load_state_dict(state_dict, strict=False)
    while len(checkpoints_loaded) > shared.opts.sd_checkpoint_cache:
        checkpoints_loaded.popitem(last=False)
    # the unet may be halved; the first stage never is: it takes devices.dtype_vae
    model.first_stage_model.to(devices.dtype_vae)
    model.sd_model_hash = sd_model_hash
    model.sd_model_checkpoint = checkpoint_info.filename
    model.sd_checkpoint_info = checkpoint_info
    shared.opts.data["sd_checkpoint_hash"] = checkpoint_info.sha256
    if hasattr(model, 'logvar'):
        model.logvar = model.logvar.to(devices.device)
    sd_vae.delete_base_vae()
    sd_vae.clear_loaded_vae()
    vae_file, vae_source = sd_vae.resolve_vae(checkpoint_info.filename).tuple()
    sd_vae.load_vae(model, vae_file, vae_source)


def _kind_of(state_dict):
    import stub_ldm
    return stub_ldm.detect_kind(state_dict)


class SdModelData:
    def __init__(self):
        self.sd_model = None
        self.loaded_sd_models = []
        self.was_loaded_at_least_once = False
        self.lock = threading.Lock()

    def get_sd_model(self):
        if self.was_loaded_at_least_once:
            return self.sd_model
        if self.sd_model is None:
            with self.lock:
                if self.sd_model is not None or self.was_loaded_at_least_once:
                    return self.sd_model
                try:
                    load_model()
                except Exception as e:
                    errors.display(e, "loading stable diffusion model", full_traceback=True)
                    print("Stable diffusion model failed to load", file=sys.stderr)
                    self.sd_model = None
        return self.sd_model

    def set_sd_model(self, v, already_loaded=False):
        self.sd_model = v
        if already_loaded:
            sd_vae.base_vae = getattr(v, "base_vae", None)
            sd_vae.loaded_vae_file = getattr(v, "loaded_vae_file", None)
            sd_vae.checkpoint_info = v.sd_checkpoint_info
        try:
            self.loaded_sd_models.remove(v)
        except ValueError:
            pass
        if v is not None:
            self.loaded_sd_models.insert(0, v)


model_data = SdModelData()


def send_model_to_cpu(m):
    if m is None:
        return
    if m.lowvram:
        lowvram.send_everything_to_cpu()
    else:
        m.to(devices.cpu)
    devices.torch_gc()


def send_model_to_device(m):
    lowvram.apply(m)
    if not m.lowvram:
        m.to(shared.device)


def send_model_to_trash(m):
    m.to(device="meta")
    devices.torch_gc()


def load_model(checkpoint_info=None, already_loaded_state_dict=None):
    """Build the model for `checkpoint_info`, load it, resolve its VAE, fire `model_loaded`."""
    global load_count
    import stub_ldm
    checkpoint_info = checkpoint_info or select_checkpoint()
    if model_data.sd_model:
        send_model_to_trash(model_data.sd_model)
        model_data.sd_model = None
        devices.torch_gc()
    if already_loaded_state_dict is not None:
        state_dict = already_loaded_state_dict
    else:
        state_dict = get_checkpoint_state_dict(checkpoint_info)
    if state_dict is None:
        raise RuntimeError(f"could not read checkpoint {checkpoint_info.filename}")
    kind = stub_ldm.detect_kind(state_dict)
    sd_model = stub_ldm.FakeDiffusionModel(kind)
    sd_model.used_config = kind
    sd_model.lowvram = False
    sd_model.base_vae = None
    sd_model.loaded_vae_file = None
    load_count += 1
    load_model_weights(sd_model, checkpoint_info, state_dict)
    lowvram.apply(sd_model)
    if not sd_model.lowvram:
        sd_model.to(shared.device)
    sd_hijack.model_hijack.hijack(sd_model)
    sd_model.eval()
    model_data.set_sd_model(sd_model)
    model_data.was_loaded_at_least_once = True
    script_callbacks.model_loaded_callback(sd_model)
    return sd_model


def reuse_model_from_already_loaded(sd_model, checkpoint_info, timer=None):
    if sd_model is not None and sd_model.sd_checkpoint_info.filename == checkpoint_info.filename:
        return sd_model
    if shared.opts.sd_checkpoints_keep_in_cpu:
        send_model_to_cpu(sd_model)
    already_loaded = None
    for i in reversed(range(len(model_data.loaded_sd_models))):
        loaded_model = model_data.loaded_sd_models[i]
        if loaded_model.sd_checkpoint_info.filename == checkpoint_info.filename:
            already_loaded = loaded_model
            continue
        if len(model_data.loaded_sd_models) > shared.opts.sd_checkpoints_limit > 0:
            del model_data.loaded_sd_models[i]
            send_model_to_trash(loaded_model)
    if already_loaded is not None:
        send_model_to_device(already_loaded)
        model_data.set_sd_model(already_loaded, already_loaded=True)
        if not SkipWritingToConfig.skip:
            shared.opts.data["sd_model_checkpoint"] = already_loaded.sd_checkpoint_info.title
            shared.opts.data["sd_checkpoint_hash"] = already_loaded.sd_checkpoint_info.sha256
        sd_vae.reload_vae_weights(already_loaded)
        return model_data.sd_model
    elif shared.opts.sd_checkpoints_limit > 1 and len(model_data.loaded_sd_models) < shared.opts.sd_checkpoints_limit:
        model_data.sd_model = None
        load_model(checkpoint_info)
        return model_data.sd_model
    elif len(model_data.loaded_sd_models) > 0:
        sd_model = model_data.loaded_sd_models.pop()
        model_data.sd_model = sd_model
        sd_vae.base_vae = getattr(sd_model, "base_vae", None)
        sd_vae.loaded_vae_file = getattr(sd_model, "loaded_vae_file", None)
        sd_vae.checkpoint_info = sd_model.sd_checkpoint_info
        return sd_model
    return None


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    """Switch to `info` (default: the selected checkpoint); no-op if it is the loaded file."""
    checkpoint_info = info or select_checkpoint()
    if not sd_model:
        sd_model = model_data.sd_model
    if sd_model is None:
        current_checkpoint_info = None
    else:
        current_checkpoint_info = sd_model.sd_checkpoint_info
        if sd_model.sd_model_checkpoint == checkpoint_info.filename and not forced_reload:
            return sd_model
    sd_model = reuse_model_from_already_loaded(sd_model, checkpoint_info)
    if not forced_reload and sd_model is not None and sd_model.sd_checkpoint_info.filename == checkpoint_info.filename:
        return sd_model
    if sd_model is not None:
        send_model_to_cpu(sd_model)
        sd_hijack.model_hijack.undo_hijack(sd_model)
    state_dict = get_checkpoint_state_dict(checkpoint_info)
    if state_dict is None:
        raise RuntimeError(f"could not read checkpoint {checkpoint_info.filename}")
    checkpoint_config = _kind_of(state_dict)
    if sd_model is None or checkpoint_config != sd_model.used_config:
        if sd_model is not None:
            send_model_to_trash(sd_model)
            model_data.loaded_sd_models = [m for m in model_data.loaded_sd_models if m is not sd_model]
            model_data.sd_model = None
        load_model(checkpoint_info, already_loaded_state_dict=state_dict)
        return model_data.sd_model
    try:
        load_model_weights(sd_model, checkpoint_info, state_dict)
    except Exception:
        print("Failed to load checkpoint, restoring previous", file=sys.stderr)
        load_model_weights(sd_model, current_checkpoint_info, None)
        raise
    finally:
        sd_hijack.model_hijack.hijack(sd_model)
        if not sd_model.lowvram:
            sd_model.to(devices.device)
        script_callbacks.model_loaded_callback(sd_model)
    model_data.set_sd_model(sd_model)
    return sd_model


def unload_model_weights(sd_model=None, info=None):
    send_model_to_cpu(sd_model or shared.sd_model)
    return sd_model


def apply_token_merging(sd_model, token_merging_ratio):
    pass


def apply_alpha_schedule_override(sd_model, p=None):
    pass
