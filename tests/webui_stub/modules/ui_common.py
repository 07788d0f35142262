"""UI helpers (modules/ui_common.py, the parts extensions use)."""

import html

import gradio as gr

from modules.ui_components import ToolButton

refresh_symbol = '\U0001f504'  # 🔄
folder_symbol = '\U0001f4c2'  # 📂


def plaintext_to_html(text, classname=None):
    content = "<br>\n".join(html.escape(x) for x in text.split('\n'))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"


def create_refresh_button(refresh_component, refresh_method, refreshed_args, elem_id):
    """A 🔄 ToolButton: runs refresh_method(), then sets refreshed_args (dict or callable) on the component(s)."""
    refresh_components = refresh_component if isinstance(refresh_component, list) else [refresh_component]
    label = None
    for comp in refresh_components:
        label = getattr(comp, 'label', None)
        if label is not None:
            break

    def refresh():
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        for k, v in args.items():
            for comp in refresh_components:
                setattr(comp, k, v)
        return [gr.update(**(args or {})) for _ in refresh_components] if len(refresh_components) > 1 else gr.update(**(args or {}))

    refresh_button = ToolButton(value=refresh_symbol, elem_id=elem_id, tooltip=f"{label}: refresh" if label else "Refresh")
    refresh_button.click(fn=refresh, inputs=[], outputs=refresh_components)
    refresh_button.refresh_fn = refresh  # stand-in only: lets tests press it without a browser
    return refresh_button
