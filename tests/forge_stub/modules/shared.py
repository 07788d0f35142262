"""Global WebUI state (modules/shared.py), Forge's: the A1111 stand-in's, with Forge's Gradio 4
shim instead of A1111's patch. `shared.sd_model` reads `sd_models.model_data.sd_model` and
never loads anything (Forge loads at the first generation, `forge_model_reload`)."""

import os
import sys

from modules import devices, gradio_extensions, options, paths_internal, shared_items, shared_options, shared_state, util  # noqa: F401
from modules.options import OptionHTML, OptionInfo, options_section  # noqa: F401
from modules.shared_cmd_options import cmd_opts, parser  # noqa: F401
from modules.util import natural_sort_key, listfiles, walk_files, html  # noqa: F401
from modules.shared_items import list_checkpoint_tiles, refresh_checkpoints  # noqa: F401

sys.modules[__name__].__class__ = shared_items.Shared

data_path = paths_internal.data_path
models_path = paths_internal.models_path
script_path = paths_internal.script_path

styles_filename = os.path.join(data_path, "styles.csv")
config_filename = cmd_opts.ui_settings_file
hide_dirs = {"visible": not cmd_opts.hide_ui_dir_config}

demo = None
device = devices.device
weight_load_location = None if cmd_opts.lowram else "cpu"
xformers_available = False
hypernetworks = {}
loaded_hypernetworks = []
settings_components = None
tab_names = []
latent_upscale_default_mode = "Latent"
latent_upscale_modes = {"Latent": {"mode": "bilinear", "antialias": False}}
sd_upscalers = []
face_restorers = []
prompt_styles = None
interrogator = None
gradio_theme = None

state = shared_state.State()

opts = options.Options(shared_options.options_templates, shared_options.restricted_opts)
opts.load(config_filename)



class _TotalTqdm:
    def reset(self):
        pass

    def update(self):
        pass

    def updateTotal(self, new_total):
        pass

    def clear(self):
        pass


total_tqdm = _TotalTqdm()
mem_mon = None
