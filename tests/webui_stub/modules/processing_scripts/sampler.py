"""The built-in always-on "Sampler" script (modules/processing_scripts/sampler.py): steps, sampler, scheduler.
UI only (`setup_for_ui_only`): API requests set these fields directly."""

import gradio as gr

from modules import scripts


class ScriptSampler(scripts.ScriptBuiltinUI):
    section = "sampler"
    create_group = False
    setup_for_ui_only = True

    def title(self):
        return "Sampler"

    def ui(self, is_img2img):
        tab = "img2img" if is_img2img else "txt2img"
        self.sampler_name = gr.Dropdown(label='Sampling method', elem_id=f"{tab}_sampling", choices=["DPM++ 2M", "Euler a", "Euler"], value="DPM++ 2M")
        self.scheduler = gr.Dropdown(label='Schedule type', elem_id=f"{tab}_scheduler", choices=["Automatic", "Karras"], value="Automatic")
        self.steps = gr.Slider(minimum=1, maximum=150, step=1, elem_id=f"{tab}_steps", label="Sampling steps", value=20)
        self.infotext_fields = [(self.steps, "Steps"), (self.sampler_name, "Sampler"), (self.scheduler, "Schedule type")]
        return self.steps, self.sampler_name, self.scheduler

    def setup(self, p, steps, sampler_name, scheduler):
        p.steps = steps
        p.sampler_name = sampler_name
        p.scheduler = scheduler
