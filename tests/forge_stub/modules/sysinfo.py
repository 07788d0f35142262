"""modules/sysinfo.py `set_config` (Forge): how overrides and the API's options are applied.

Faithful (sysinfo.py 218-260): unchanged values are skipped; `sd_model_checkpoint` goes
through `main_entry.checkpoint_change` and `forge_additional_modules` through
`main_entry.modules_change` (both without saving or refreshing), and either change ends in
one `refresh_model_loading_parameters()` (so the next `forge_model_reload` rebuilds the
model); every other key is `opts.set(k, v, is_api=..., run_callbacks=...)`.
"""

from typing import Any


def set_config(req: dict[str, Any], is_api=False, run_callbacks=True, save_config=True):
    from modules import shared, sd_models
    from modules_forge import main_entry

    should_refresh_model_loading_params = False
    for k, v in req.items():
        if v == shared.opts.data.get(k):
            continue
        if k == 'sd_model_checkpoint':
            if v is not None and v not in sd_models.checkpoint_aliases:
                raise RuntimeError(f"model {v!r} not found")
            if main_entry.checkpoint_change(v, save=False, refresh=False):
                should_refresh_model_loading_params = True
        elif k == 'forge_additional_modules':
            if main_entry.modules_change(v, save=False, refresh=False):
                should_refresh_model_loading_params = True
        else:
            shared.opts.set(k, v, is_api=is_api, run_callbacks=run_callbacks)
    if should_refresh_model_loading_params:
        main_entry.refresh_model_loading_parameters()
    if save_config:
        shared.opts.save(shared.config_filename)
