"""The WebUI's patch of Gradio components (modules/gradio_extensons.py, typo as in the original).

Every IOComponent accepts `tooltip=`, and creating one fires the current tab runner's
`before_component`/`after_component` and the global on_before/after_component callbacks.
The patch is global as in the WebUI; `uninstall()` (called by the test fixture) undoes it.
"""

import sys

import gradio as gr


def _patched_init(self, *args, **kwargs):
    self.webui_tooltip = kwargs.pop('tooltip', None)
    scripts = sys.modules.get("modules.scripts")
    callbacks = sys.modules.get("modules.script_callbacks")
    runner = getattr(scripts, "scripts_current", None) if scripts else None
    if runner is not None:
        runner.before_component(self, **kwargs)
    if callbacks is not None:
        callbacks.before_component_callback(self, **kwargs)
    res = gr.components.IOComponent._webui_original_init(self, *args, **kwargs)
    if callbacks is not None:
        callbacks.after_component_callback(self, **kwargs)
    if runner is not None:
        runner.after_component(self, **kwargs)
    return res


def install():
    klass = gr.components.IOComponent
    if "_webui_original_init" not in klass.__dict__:
        klass._webui_original_init = klass.__init__
        klass.__init__ = _patched_init


def uninstall():
    klass = gr.components.IOComponent
    if "_webui_original_init" in klass.__dict__:
        klass.__init__ = klass._webui_original_init
        del klass._webui_original_init


install()
