"""ui-config.json (modules/ui_loadsave.py `UiLoadsave`, reduced): the UI remembers component values.

Faithful where an extension meets it: every tab but Settings/Extensions is walked after it is
rendered (`add_block(interface, tab_id)`); a component is keyed `<tab>/<label>/<field>` (script
controls: `customscript/<file>/<tab>/<label>/<field>`), a labelless button by its value; the first
run records each value; later runs put the recorded value back over the one the component was
created with (Dropdown/Radio only when it is still a choice), so an extension's own default is
overridden by what the file recorded; `do_not_save_to_config = True` on a component opts out;
the file is rewritten at the end of `create_ui` when anything was added. Not modelled: the
'Defaults' editing page, visible/min/max/step fields, Tabs selection.
"""

import json
import os

import gradio as gr

from modules.ui_components import InputAccordion


def _choices(comp):
    return [c[0] if isinstance(c, tuple) else c for c in getattr(comp, "choices", None) or []]


class UiLoadsave:
    def __init__(self, filename):
        self.filename = filename
        self.ui_settings = {}
        self.component_mapping = {}
        self.error_loading = False
        try:
            with open(filename, encoding="utf8") as f:
                self.ui_settings = json.load(f)
        except FileNotFoundError:
            pass
        except Exception:
            self.error_loading = True

    def add_component(self, path, x):
        def apply_field(obj, field, condition=None):
            key = f"{path}/{field}"
            if getattr(obj, "custom_script_source", None) is not None:
                key = f"customscript/{obj.custom_script_source}/{key}"
            if getattr(obj, "do_not_save_to_config", False):
                return
            saved = self.ui_settings.get(key, None)
            if saved is None:
                self.ui_settings[key] = getattr(obj, field)
            elif condition and not condition(saved):
                pass
            else:
                if isinstance(obj, gr.Textbox) and field == "value":
                    saved = str(saved)
                setattr(obj, field, saved)
            if field == "value" and key not in self.component_mapping:
                self.component_mapping[key] = obj

        if type(x) in (gr.Slider, gr.Checkbox, gr.Textbox, gr.Number):  # exact types, as the WebUI: subclasses differ
            apply_field(x, "value")
        elif type(x) is gr.Radio:
            apply_field(x, "value", lambda v: v in _choices(x))
        elif type(x) is gr.Dropdown:
            def check(v):
                return all(i in _choices(x) for i in v) if getattr(x, "multiselect", False) else v in _choices(x)
            apply_field(x, "value", check)
        elif type(x) is InputAccordion:
            apply_field(x, "value")

    def add_block(self, x, path=""):
        if hasattr(x, "children"):
            for c in x.children:
                self.add_block(c, path)
        elif getattr(x, "label", None) is not None:
            self.add_component(f"{path}/{x.label}", x)
        elif isinstance(x, gr.Button) and x.value is not None:
            self.add_component(f"{path}/{x.value}", x)

    def dump_defaults(self):
        if self.error_loading and os.path.exists(self.filename):
            return
        with open(self.filename, "w", encoding="utf8") as f:
            json.dump(self.ui_settings, f, indent=4, ensure_ascii=False)
