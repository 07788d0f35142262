"""Forge's Gradio 4 compatibility shim (modules/gradio_extensions.py, spelled right in Forge).

Faithful: every Gradio component accepts `tooltip=` and fires the tab runner's
`before_component`/`after_component` plus the global callbacks; `source=` becomes
`sources=[source]`; unknown constructor kwargs are dropped with a `GradioDeprecationWarning`;
`Component.update` is `gr.update` (old `gr.Dropdown.update(...)` code keeps working); `gr.Box`
is `gr.Group`; the WebUI's own component classes write no `.pyi` files.
Simplified: layout blocks (`BlockContext`) fire no component hooks. `uninstall()` (used by the
test fixture) undoes the global patch.
"""

import inspect
import sys
import warnings

import gradio as gr


def _hooks(self, kwargs, when):
    scripts = sys.modules.get("modules.scripts")
    callbacks = sys.modules.get("modules.script_callbacks")
    runner = getattr(scripts, "scripts_current", None) if scripts else None
    if when == "before":
        if runner is not None:
            runner.before_component(self, **kwargs)
        if callbacks is not None:
            callbacks.before_component_callback(self, **kwargs)
    else:
        if callbacks is not None:
            callbacks.after_component_callback(self, **kwargs)
        if runner is not None:
            runner.after_component(self, **kwargs)


class GradioDeprecationWarning(DeprecationWarning):
    pass


def _accepted_kwargs(fn):
    """Parameter names `fn` takes, or None when it takes **kwargs."""
    fn = inspect.unwrap(fn)
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _wrap_init(original):
    """Each component class's own __init__: kwargs rewritten once, hooks fired once (outermost call)."""
    def __init__(self, *args, **kwargs):
        outermost = not self.__dict__.get("_forge_in_init", False)
        if not outermost:
            return original(self, *args, **kwargs)
        self.__dict__["_forge_in_init"] = True
        try:
            self.webui_tooltip = kwargs.pop("tooltip", None)
            if "source" in kwargs:
                kwargs["sources"] = [kwargs.pop("source")]
            accepted = _accepted_kwargs(original)
            if accepted is not None:
                for key in [k for k in kwargs if k not in accepted]:
                    warnings.warn(f"unexpected argument for {type(self).__name__}: {key}", GradioDeprecationWarning, stacklevel=2)
                    kwargs.pop(key)
            _hooks(self, kwargs, "before")
            res = original(self, *args, **kwargs)
            _hooks(self, kwargs, "after")
            return res
        finally:
            self.__dict__["_forge_in_init"] = False
    __init__._forge_original = original
    return __init__


def _component_classes():
    seen, todo = [], [gr.components.Component]
    while todo:
        klass = todo.pop()
        if klass not in seen:
            seen.append(klass)
            todo.extend(klass.__subclasses__())
    return seen


def install():
    for klass in _component_classes():
        init = klass.__dict__.get("__init__")
        if init is not None and not hasattr(init, "_forge_original"):
            klass.__init__ = _wrap_init(init)
    klass = gr.components.Component
    if "_forge_had_update" not in klass.__dict__:
        klass._forge_had_update = "update" in klass.__dict__
        klass.update = staticmethod(gr.update)
    gr.Box = gr.Group


def uninstall():
    for klass in _component_classes():
        init = klass.__dict__.get("__init__")
        if init is not None and hasattr(init, "_forge_original"):
            klass.__init__ = init._forge_original
    klass = gr.components.Component
    if "_forge_had_update" in klass.__dict__:
        if not klass._forge_had_update and "update" in klass.__dict__:
            del klass.update
        del klass._forge_had_update


install()


def _create_or_modify_pyi(component_class, class_name, events):
    """Forge: the WebUI's own component classes never write .pyi files next to their source."""
    if hasattr(component_class, "webui_do_not_create_gradio_pyi_thank_you"):
        return
    return _original_create_or_modify_pyi(component_class, class_name, events)


import gradio.component_meta  # noqa: E402

if not getattr(gradio.component_meta.create_or_modify_pyi, "_forge", False):
    _original_create_or_modify_pyi = gradio.component_meta.create_or_modify_pyi
    _create_or_modify_pyi._forge = True
    gradio.component_meta.create_or_modify_pyi = _create_or_modify_pyi
