"""Startup (modules/initialize.py, initialize_util.configure_opts_onchange), Forge's.

Faithful: the `sd_model_checkpoint` and `sd_vae` onchange hooks are commented out in Forge
(initialize_util.py 184-185), only `sd_vae_overrides_per_model_preferences` keeps its (no-op)
VAE reload; no model is loaded at startup: the UI build ends in
`main_entry.forge_main_entry()` -> `refresh_model_loading_parameters()` (the model is only
*selected*), and the first generation's `forge_model_reload()` builds it.
Simplified: `refresh_models()` + `refresh_model_loading_parameters()` run at the end of the
startup also without a UI (the real one does it while building the UI).
"""

from modules._a1111 import inherit

inherit(globals(), "initialize")


def configure_opts_onchange():
    from modules import sd_vae
    shared.opts.onchange("sd_vae_overrides_per_model_preferences", call_queue.wrap_queued_call(lambda: sd_vae.reload_vae_weights()), call=False)  # noqa: F821


def initialize_rest(*, reload_script_modules=False):
    from modules import extensions, scripts, sd_models, sd_vae
    sd_models.setup_model()
    extensions.list_extensions()
    sd_models.list_models()
    scripts.load_scripts()
    sd_vae.refresh_vae_list()


_a1111_start = start  # noqa: F821


def start(*, ui=True, api=False):
    from modules_forge import main_entry
    demo, app, api_obj = _a1111_start(ui=ui, api=api)
    main_entry.refresh_models()
    main_entry.refresh_model_loading_parameters()
    return demo, app, api_obj
