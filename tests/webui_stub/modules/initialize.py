"""Startup (modules/initialize.py, initialize_util.configure_opts_onchange) and "Reload UI".

Simplified: the startup model load is synchronous (the real one uses a background thread), and
Gradio is not launched; `app_started` gets a plain FastAPI app.
"""

from modules import call_queue, script_callbacks, shared


def configure_opts_onchange():
    from modules import sd_models, sd_vae
    shared.opts.onchange("sd_model_checkpoint", call_queue.wrap_queued_call(lambda: sd_models.reload_model_weights()), call=False)
    shared.opts.onchange("sd_vae", call_queue.wrap_queued_call(lambda: sd_vae.reload_vae_weights()), call=False)
    shared.opts.onchange("sd_vae_overrides_per_model_preferences", call_queue.wrap_queued_call(lambda: sd_vae.reload_vae_weights()), call=False)


def initialize():
    configure_opts_onchange()
    initialize_rest(reload_script_modules=False)


def initialize_rest(*, reload_script_modules=False):
    from modules import extensions, scripts, sd_models, sd_vae
    sd_models.setup_model()
    extensions.list_extensions()
    sd_models.list_models()
    scripts.load_scripts()
    sd_vae.refresh_vae_list()
    if not shared.cmd_opts.skip_load_model_at_start:
        shared.sd_model  # noqa: B018 -- the lazy property loads the checkpoint (once)


def start(*, ui=True, api=False):
    """webui.py: initialize, before_ui, create_ui, (api), app_started. Returns (demo, app, api)."""
    from fastapi import FastAPI
    from modules import ui as ui_module
    initialize()
    demo = None
    script_callbacks.before_ui_callback()
    if ui and not shared.cmd_opts.nowebui:
        demo = ui_module.create_ui()
        shared.demo = demo
    app = FastAPI()
    api_obj = None
    if api or shared.cmd_opts.nowebui or shared.cmd_opts.api:
        from modules.api.api import Api
        api_obj = Api(app, call_queue.queue_lock)
    script_callbacks.app_started_callback(demo, app)
    return demo, app, api_obj


def reload_ui():
    """The "Reload UI" button: before_reload, script_unloaded (reverse), re-import scripts, rebuild UI.
    The model stays loaded and `model_loaded` is NOT fired again."""
    from modules import ui as ui_module
    script_callbacks.app_reload_callback()
    script_callbacks.script_unloaded_callback()
    initialize_rest(reload_script_modules=True)
    script_callbacks.before_ui_callback()
    demo = ui_module.create_ui()
    shared.demo = demo
    return demo
