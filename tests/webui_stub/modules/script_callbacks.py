"""Callback registrars and dispatchers (modules/script_callbacks.py).

Every `on_X(callback, *, name=None)` appends a `ScriptCallback` named
`<extension canonical name or 'base'>/<file basename>/<category>[/name]` (made unique with -1,
-2, …) to `callback_map['callbacks_X']`. Dispatchers call them in registration order; an
exception is reported with `errors.report` and the next callback runs. `load_scripts()` clears
everything first, so registrations must happen when a script file is imported.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from typing import Any, Callable, Optional

from modules import errors


class ImageSaveParams:
    def __init__(self, image, p, filename, pnginfo):
        self.image = image
        self.p = p
        self.filename = filename
        self.pnginfo = pnginfo


class ImageGridLoopParams:
    def __init__(self, imgs, cols, rows):
        self.imgs = imgs
        self.cols = cols
        self.rows = rows


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x = x
        self.image_cond = image_cond
        self.sigma = sigma
        self.sampling_step = sampling_step
        self.total_sampling_steps = total_sampling_steps
        self.text_cond = text_cond
        self.text_uncond = text_uncond
        self.denoiser = denoiser


@dataclasses.dataclass
class ScriptCallback:
    script: str
    callback: Callable
    name: Optional[str] = None


CATEGORIES = [
    "app_started", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings", "before_image_saved",
    "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "before_component",
    "after_component", "image_grid", "infotext_pasted", "script_unloaded", "before_ui", "on_reload",
    "list_optimizers", "list_unets", "before_token_counter",
]

callback_map: dict[str, list[ScriptCallback]] = {f"callbacks_{c}": [] for c in CATEGORIES}
ordered_callbacks_map: dict[str, list[ScriptCallback]] = {}


def _caller_file() -> str:
    """The file of the nearest frame outside this module (the real code walks inspect.stack())."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else "unknown file"


def add_callback(callbacks, fun, *, name=None, category="unknown", filename=None):
    if filename is None:
        filename = _caller_file()
    from modules import extensions
    extension = extensions.find_extension(filename)
    extension_name = extension.canonical_name if extension else "base"
    callback_name = f"{extension_name}/{os.path.basename(filename)}/{category}"
    if name is not None:
        callback_name += f"/{name}"
    unique = callback_name
    taken = {x.name for x in callbacks}
    for index in range(1000):
        if unique not in taken:
            break
        unique = f"{callback_name}-{index + 1}"
    callbacks.append(ScriptCallback(filename, fun, unique))


def sort_callbacks(category, unordered_callbacks, *, enable_user_sort=True):
    # the real one applies metadata.ini [callbacks/…] Before/After and prioritized_callbacks_<category>
    return list(unordered_callbacks)


def ordered_callbacks(category, unordered_callbacks=None, *, enable_user_sort=True):
    if unordered_callbacks is None:
        unordered_callbacks = callback_map.get("callbacks_" + category, [])
    return sort_callbacks(category, unordered_callbacks, enable_user_sort=enable_user_sort)


def enumerate_callbacks():
    for category, callbacks in callback_map.items():
        if category.startswith("callbacks_"):
            category = category[10:]
        yield category, callbacks


def _run(category, *args, **kwargs):
    results = []
    for c in ordered_callbacks(category):
        try:
            results.append(c.callback(*args, **kwargs))
        except Exception:
            errors.report(f"Error executing callback {c.name} for {category}", exc_info=True)
    return results


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()
    ordered_callbacks_map.clear()


def app_started_callback(demo, app):
    _run("app_started", demo, app)


def app_reload_callback():
    _run("on_reload")


def model_loaded_callback(sd_model):
    _run("model_loaded", sd_model)


def ui_tabs_callback():
    res = []
    for r in _run("ui_tabs"):
        res += r or []
    return res


def ui_train_tabs_callback(params):
    _run("ui_train_tabs", params)


def ui_settings_callback():
    _run("ui_settings")


def before_image_saved_callback(params: ImageSaveParams):
    _run("before_image_saved", params)


def image_saved_callback(params: ImageSaveParams):
    _run("image_saved", params)


def extra_noise_callback(params, *args):
    _run("extra_noise", params)


def cfg_denoiser_callback(params):
    _run("cfg_denoiser", params)


def cfg_denoised_callback(params):
    _run("cfg_denoised", params)


def cfg_after_cfg_callback(params):
    _run("cfg_after_cfg", params)


def before_component_callback(component, **kwargs):
    _run("before_component", component, **kwargs)


def after_component_callback(component, **kwargs):
    _run("after_component", component, **kwargs)


def image_grid_callback(params: ImageGridLoopParams):
    _run("image_grid", params)


def infotext_pasted_callback(infotext: str, params: dict[str, Any]):
    _run("infotext_pasted", infotext, params)


def script_unloaded_callback():
    for c in reversed(ordered_callbacks("script_unloaded")):
        try:
            c.callback()
        except Exception:
            errors.report(f"Error executing callback {c.name} for script_unloaded", exc_info=True)


def before_ui_callback():
    for c in reversed(ordered_callbacks("before_ui")):
        try:
            c.callback()
        except Exception:
            errors.report(f"Error executing callback {c.name} for before_ui", exc_info=True)


def list_optimizers_callback():
    res = []
    _run("list_optimizers", res)
    return res


def list_unets_callback():
    res = []
    _run("list_unets", res)
    return res


def before_token_counter_callback(params):
    _run("before_token_counter", params)


def remove_current_script_callbacks():
    filename = _caller_file()
    if filename == "unknown file":
        return
    for callback_list in callback_map.values():
        for callback_to_remove in [cb for cb in callback_list if cb.script == filename]:
            callback_list.remove(callback_to_remove)
    ordered_callbacks_map.clear()


def remove_callbacks_for_function(callback_func):
    for callback_list in callback_map.values():
        for callback_to_remove in [cb for cb in callback_list if cb.callback == callback_func]:
            callback_list.remove(callback_to_remove)
    ordered_callbacks_map.clear()


def _register(category, callback, name):
    add_callback(callback_map["callbacks_" + category], callback, name=name, category=category, filename=_caller_file())


def on_app_started(callback, *, name=None):
    _register("app_started", callback, name)


def on_before_reload(callback, *, name=None):
    _register("on_reload", callback, name)


def on_model_loaded(callback, *, name=None):
    _register("model_loaded", callback, name)


def on_ui_tabs(callback, *, name=None):
    _register("ui_tabs", callback, name)


def on_ui_train_tabs(callback, *, name=None):
    _register("ui_train_tabs", callback, name)


def on_ui_settings(callback, *, name=None):
    _register("ui_settings", callback, name)


def on_before_image_saved(callback, *, name=None):
    _register("before_image_saved", callback, name)


def on_image_saved(callback, *, name=None):
    _register("image_saved", callback, name)


def on_extra_noise(callback, *, name=None):
    _register("extra_noise", callback, name)


def on_cfg_denoiser(callback, *, name=None):
    _register("cfg_denoiser", callback, name)


def on_cfg_denoised(callback, *, name=None):
    _register("cfg_denoised", callback, name)


def on_cfg_after_cfg(callback, *, name=None):
    _register("cfg_after_cfg", callback, name)


def on_before_component(callback, *, name=None):
    _register("before_component", callback, name)


def on_after_component(callback, *, name=None):
    _register("after_component", callback, name)


def on_image_grid(callback, *, name=None):
    _register("image_grid", callback, name)


def on_infotext_pasted(callback, *, name=None):
    _register("infotext_pasted", callback, name)


def on_script_unloaded(callback, *, name=None):
    _register("script_unloaded", callback, name)


def on_before_ui(callback, *, name=None):
    _register("before_ui", callback, name)


def on_list_optimizers(callback, *, name=None):
    _register("list_optimizers", callback, name)


def on_list_unets(callback, *, name=None):
    _register("list_unets", callback, name)


def on_before_token_counter(callback, *, name=None):
    _register("before_token_counter", callback, name)
