"""modules/sd_models.py, Forge's: checkpoint listing as in A1111, loading through the backend.

Faithful: `CheckpointInfo`, `list_models`, `select_checkpoint`, `get_closet_checkpoint_match`
are A1111's; `load_model`, `reload_model_weights`, `reuse_model_from_already_loaded`,
`send_model_to_*` are no-ops; `model_data.sd_model` starts as a `FakeInitialModel` (not None,
no `sd_checkpoint_info`) until the first generation; `model_data.forge_loading_parameters`
(set by `main_entry.refresh_model_loading_parameters`) and `forge_hash`;
`forge_model_reload()` (sd_models.py 473-526): nothing when `str(forge_loading_parameters)`
is unchanged, else drop the model, unload everything, build a new one from the checkpoint
file *and every additional module file* (`backend.loader.forge_loader`, under
`torch.inference_mode()`), set `sd_checkpoint_info`, `filename`, `sd_model_hash`,
`opts.data["sd_checkpoint_hash"]`, fire `model_loaded_callback` and return (model, True).
Stand-in only: `forge_reload_count`.
"""

import math

import torch

from modules._a1111 import inherit

inherit(globals(), "sd_models")

from backend import memory_management  # noqa: E402
from backend.args import dynamic_args  # noqa: E402
from backend.loader import forge_loader  # noqa: E402

forge_reload_count = 0  # stand-in only


def _checkpoint_info_repr(self):
    # Forge (sd_models.py 136-140): the loading parameters' string, hence `forge_hash`, names the
    # file and its old 8-hex hash only, so computing the sha256 later does not force a reload.
    return str(dict(filename=self.filename, hash=self.hash))


CheckpointInfo.__str__ = CheckpointInfo.__repr__ = _checkpoint_info_repr  # noqa: F821


class FakeInitialModel:
    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75

    def get_prompt_lengths_on_ui(self, prompt):
        r = len(prompt.strip('!,. ').replace(' ', ',').split(','))
        return r, math.ceil(max(r, 1) / self.chunk_length) * self.chunk_length


class SdModelData:
    def __init__(self):
        self.sd_model = FakeInitialModel()
        self.forge_loading_parameters = {}
        self.forge_hash = ''

    def get_sd_model(self):
        return self.sd_model

    def set_sd_model(self, v):
        self.sd_model = v


model_data = SdModelData()


def send_model_to_cpu(m):
    pass


def model_target_device(m):
    return devices.device  # noqa: F821


def send_model_to_device(m):
    pass


def send_model_to_trash(m):
    pass


def load_model(checkpoint_info=None, already_loaded_state_dict=None):
    pass


def reuse_model_from_already_loaded(sd_model, checkpoint_info, timer):
    pass


def reload_model_weights(sd_model=None, info=None, forced_reload=False):
    pass


def unload_model_weights(sd_model=None, info=None):
    memory_management.unload_all_models()


def apply_token_merging(sd_model, token_merging_ratio):
    pass


@torch.inference_mode()
def forge_model_reload():
    global forge_reload_count
    current_hash = str(model_data.forge_loading_parameters)
    if model_data.forge_hash == current_hash:
        return model_data.sd_model, False

    print('Loading Model: ' + str(model_data.forge_loading_parameters))
    if model_data.sd_model:
        model_data.sd_model = None
        memory_management.unload_all_models()
        memory_management.soft_empty_cache()

    checkpoint_info = model_data.forge_loading_parameters['checkpoint_info']
    if checkpoint_info is None:
        raise ValueError('You do not have any model! Please download at least one model in [models/Stable-diffusion].')

    state_dict = checkpoint_info.filename
    additional_state_dicts = model_data.forge_loading_parameters.get('additional_modules', [])
    dynamic_args['forge_unet_storage_dtype'] = model_data.forge_loading_parameters.get('unet_storage_dtype', None)
    sd_model = forge_loader(state_dict, additional_state_dicts=additional_state_dicts)
    forge_reload_count += 1

    sd_model.extra_generation_params = {}
    sd_model.comments = []
    sd_model.sd_checkpoint_info = checkpoint_info
    sd_model.filename = checkpoint_info.filename
    sd_model.sd_model_hash = checkpoint_info.calculate_shorthash()
    shared.opts.data["sd_checkpoint_hash"] = checkpoint_info.sha256  # noqa: F821

    model_data.set_sd_model(sd_model)
    script_callbacks.model_loaded_callback(sd_model)  # noqa: F821
    model_data.forge_hash = current_hash
    return sd_model, True
