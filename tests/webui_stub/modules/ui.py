"""Building the UI (modules/ui.py `create_ui`, reduced to what extensions meet).

Order as in the real one: `on_ui_settings` callbacks first; then each tab (txt2img, img2img)
creates one instance of every script (`initialize_scripts`) and builds the always-on and
selectable script UIs with `scripts_current` set (so component hooks fire); paste fields are
registered; then the Settings page (a component per option in a section, with `component_args`
evaluated and a 🔄 button for options with `refresh`); then `on_ui_tabs` results, rendered as
`gr.TabItem(title, id=elem_id, elem_id="tab_"+elem_id)`; every tab but Settings is then walked by
`ui_loadsave` (ui-config.json puts recorded values back over the components' own). The tab's own controls are a small
subset (prompt, negative prompt, CFG, size, batch, denoising, override settings); steps and seed come
from the built-in "Sampler" and "Seed" scripts, as in the real WebUI.
"""

import os

import gradio as gr

from modules import infotext_utils, paths_internal, script_callbacks, scripts, shared, ui_common, ui_loadsave
from modules.infotext_utils import PasteField
from modules.shared import opts
from modules.ui_components import FormRow

tab_controls = {}  # stand-in only: tabname -> {name: component} of the tab's own controls


def create_setting_component(key):
    def fun():
        return opts.data[key] if key in opts.data else opts.data_labels[key].default

    info = opts.data_labels[key]
    t = type(info.default)
    args = info.component_args() if callable(info.component_args) else info.component_args
    if info.component is not None:
        comp = info.component
    elif t == str:
        comp = gr.Textbox
    elif t in (int, float):
        comp = gr.Number
    elif t == bool:
        comp = gr.Checkbox
    else:
        raise Exception(f'bad options item type: {t} for key {key}')
    elem_id = f"setting_{key}"
    if info.refresh is not None:
        with FormRow():
            res = comp(label=info.label, value=fun(), elem_id=elem_id, **(args or {}))
            ui_common.create_refresh_button(res, info.refresh, info.component_args, f"refresh_{key}")
    else:
        res = comp(label=info.label, value=fun(), elem_id=elem_id, **(args or {}))
    return res


def _create_tab(tabname, runner, is_img2img):
    scripts.scripts_current = runner
    runner.initialize_scripts(is_img2img)
    c = {}
    with gr.Blocks(analytics_enabled=False) as iface:
        c["prompt"] = gr.Textbox(label="Prompt", elem_id=f"{tabname}_prompt", lines=3)
        c["negative_prompt"] = gr.Textbox(label="Negative prompt", elem_id=f"{tabname}_neg_prompt", lines=3)
        c["init_img"] = gr.Image(label="Image for img2img", elem_id="img2img_image", source="upload", type="pil") if is_img2img else None
        c["cfg_scale"] = gr.Slider(minimum=1.0, maximum=30.0, step=0.5, label="CFG Scale", value=7.0, elem_id=f"{tabname}_cfg_scale")
        c["width"] = gr.Slider(minimum=64, maximum=2048, step=8, label="Width", value=512, elem_id=f"{tabname}_width")
        c["height"] = gr.Slider(minimum=64, maximum=2048, step=8, label="Height", value=512, elem_id=f"{tabname}_height")
        c["batch_size"] = gr.Slider(minimum=1, maximum=8, step=1, label="Batch size", value=1, elem_id=f"{tabname}_batch_size")
        c["denoising_strength"] = gr.Slider(minimum=0.0, maximum=1.0, step=0.01, label="Denoising strength", value=0.75, elem_id=f"{tabname}_denoising_strength")
        c["override_settings"] = gr.Dropdown([], value=None, label="Override settings", visible=False, elem_id=f"{tabname}_override_settings", multiselect=True)
        with gr.Column(elem_id=f"{tabname}_script_container"):
            runner.prepare_ui()
            runner.setup_ui_for_section("sampler")
            runner.setup_ui_for_section("seed")
            runner.setup_ui()
        fields = [
            PasteField(c["prompt"], "Prompt", api="prompt"),
            PasteField(c["negative_prompt"], "Negative prompt", api="negative_prompt"),
            PasteField(c["cfg_scale"], "CFG scale", api="cfg_scale"),
            PasteField(c["width"], "Size-1", api="width"),
            PasteField(c["height"], "Size-2", api="height"),
            PasteField(c["batch_size"], "Batch size", api="batch_size"),
            PasteField(c["denoising_strength"], "Denoising strength", api="denoising_strength"),
            *runner.infotext_fields,
        ]
        infotext_utils.add_paste_fields(tabname, c["init_img"], fields, c["override_settings"])
    scripts.scripts_current = None
    tab_controls[tabname] = c
    return iface


def create_ui():
    infotext_utils.reset()
    script_callbacks.ui_settings_callback()  # UiSettings.register_settings()

    interfaces = [
        (_create_tab("txt2img", scripts.scripts_txt2img, False), "txt2img", "txt2img"),
        (_create_tab("img2img", scripts.scripts_img2img, True), "img2img", "img2img"),
    ]
    with gr.Blocks(analytics_enabled=False) as settings_interface:
        shared.settings_components = {}
        for key, info in list(opts.data_labels.items()):
            if info.section is None or info.section[0] is None:
                continue
            shared.settings_components[key] = create_setting_component(key)
    interfaces.append((settings_interface, "Settings", "settings"))
    interfaces += script_callbacks.ui_tabs_callback()

    loadsave = ui_loadsave.UiLoadsave(shared.cmd_opts.ui_config_file or os.path.join(paths_internal.data_path, "ui-config.json"))
    ui_settings_from_file = loadsave.ui_settings.copy()
    with gr.Blocks(analytics_enabled=False, title="Stable Diffusion") as demo:
        with gr.Tabs(elem_id="tabs"):
            for interface, label, ifid in interfaces:
                if ifid in opts.hidden_tabs:
                    continue
                with gr.TabItem(label, id=ifid, elem_id=f"tab_{ifid}"):
                    interface.render()
                if ifid not in ("extensions", "settings"):
                    loadsave.add_block(interface, ifid)
    if ui_settings_from_file != loadsave.ui_settings:
        loadsave.dump_defaults()
    demo.ui_loadsave = loadsave
    demo.ui_tabs = [(label, ifid) for _, label, ifid in interfaces]  # stand-in only
    return demo
