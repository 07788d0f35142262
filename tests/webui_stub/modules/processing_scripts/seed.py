"""The built-in always-on "Seed" script (modules/processing_scripts/seed.py). UI only (`setup_for_ui_only`)."""

import gradio as gr

from modules import scripts


class ScriptSeed(scripts.ScriptBuiltinUI):
    section = "seed"
    create_group = False
    setup_for_ui_only = True

    def title(self):
        return "Seed"

    def ui(self, is_img2img):
        tab = "img2img" if is_img2img else "txt2img"
        self.seed = gr.Number(label='Seed', value=-1, elem_id=f"{tab}_seed", precision=0)
        seed_checkbox = gr.Checkbox(label='Extra', elem_id=f"{tab}_subseed_show", value=False)
        subseed = gr.Number(label='Variation seed', value=-1, elem_id=f"{tab}_subseed", precision=0)
        subseed_strength = gr.Slider(label='Variation strength', value=0.0, minimum=0, maximum=1, step=0.01, elem_id=f"{tab}_subseed_strength")
        seed_resize_from_w = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize seed from width", value=0, elem_id=f"{tab}_seed_resize_from_w")
        seed_resize_from_h = gr.Slider(minimum=0, maximum=2048, step=8, label="Resize seed from height", value=0, elem_id=f"{tab}_seed_resize_from_h")
        self.infotext_fields = [(self.seed, "Seed"), (seed_checkbox, lambda d: "Variation seed" in d or "Seed resize from-1" in d),
                                (subseed, "Variation seed"), (subseed_strength, "Variation seed strength"),
                                (seed_resize_from_w, "Seed resize from-1"), (seed_resize_from_h, "Seed resize from-2")]
        return self.seed, seed_checkbox, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h

    def setup(self, p, seed, seed_checkbox, subseed, subseed_strength, seed_resize_from_w, seed_resize_from_h):
        p.seed = seed
        if seed_checkbox and subseed_strength > 0:
            p.subseed = subseed
            p.subseed_strength = subseed_strength
        if seed_checkbox and seed_resize_from_w > 0 and seed_resize_from_h > 0:
            p.seed_resize_from_w = seed_resize_from_w
            p.seed_resize_from_h = seed_resize_from_h
