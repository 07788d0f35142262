"""The X/Y/Z plot script (scripts/xyz_grid.py), reduced to X and Y axes.

Kept because extensions add axes to it: `axis_options` / `AxisOption` / `apply_override`, the
built-in VAE axis (`find_vae`, cost 0.7), a cell = `process_images(copy(p))` (a SHALLOW copy: the
cells share one `override_settings` dict), and `SharedSettingsStackHelper`, which reloads the
checkpoint and the VAE when the plot ends. The module's `__name__` is "xyz_grid.py".
"""

import csv
from copy import copy
from io import StringIO

import gradio as gr

import modules.scripts as scripts
from modules import images, sd_models, sd_vae, shared
from modules.processing import Processed, process_images


def apply_field(field):
    def fun(p, x, xs):
        setattr(p, field, x)
    return fun


def apply_override(field, boolean: bool = False):
    def fun(p, x, xs):
        if boolean:
            x = True if x.lower() == "true" else False
        p.override_settings[field] = x
    return fun


def boolean_choice(reverse: bool = False):
    def choice():
        return ["False", "True"] if reverse else ["True", "False"]
    return choice


def apply_checkpoint(p, x, xs):
    info = sd_models.get_closet_checkpoint_match(x)
    if info is None:
        raise RuntimeError(f"Unknown checkpoint: {x}")
    p.override_settings['sd_model_checkpoint'] = info.name


def find_vae(name: str):
    if (name := name.strip().lower()) in ('auto', 'automatic'):
        return 'Automatic'
    elif name == 'none':
        return 'None'
    return next((k for k in sd_vae.vae_dict if k.lower() == name), print(f'No VAE found for {name}; using Automatic') or 'Automatic')


def apply_vae(p, x, xs):
    p.override_settings['sd_vae'] = find_vae(x)


def format_value_add_label(p, opt, x):
    if type(x) == float:
        x = round(x, 8)
    return f"{opt.label}: {x}"


def format_value(p, opt, x):
    if type(x) == float:
        x = round(x, 8)
    return x


def format_remove_path(p, opt, x):
    return x


def format_nothing(p, opt, x):
    return ""


def do_nothing(p, x, xs):
    pass


def str_permutations(x):
    return x


class AxisOption:
    def __init__(self, label, type, apply, format_value=format_value_add_label, confirm=None, cost=0.0, choices=None, prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


axis_options = [
    AxisOption("Nothing", str, do_nothing, format_value=format_nothing),
    AxisOption("Seed", int, apply_field("seed")),
    AxisOption("Steps", int, apply_field("steps")),
    AxisOption("CFG Scale", float, apply_field("cfg_scale")),
    AxisOption("Checkpoint name", str, apply_checkpoint, format_value=format_remove_path, cost=1.0, choices=lambda: sorted(sd_models.checkpoints_list, key=str.casefold)),
    AxisOption("VAE", str, apply_vae, cost=0.7, choices=lambda: ['Automatic', 'None'] + list(sd_vae.vae_dict)),
    AxisOptionImg2Img("Denoising", float, apply_field("denoising_strength")),
]


class SharedSettingsStackHelper(object):
    def __enter__(self):
        pass

    def __exit__(self, exc_type, exc_value, tb):
        sd_models.reload_model_weights()
        sd_vae.reload_vae_weights()


def _parse(opt, vals: str):
    if opt.type == str_permutations or opt.choices is not None and isinstance(vals, list):
        return list(vals)
    values = [x.strip() for x in next(csv.reader(StringIO(vals))) if x.strip()] if vals else []
    return [opt.type(x) for x in values]


class Script(scripts.Script):
    def title(self):
        return "X/Y/Z plot"

    def ui(self, is_img2img):
        self.current_axis_options = [x for x in axis_options if type(x) == AxisOption or x.is_img2img == is_img2img]
        labels = [x.label for x in self.current_axis_options]
        x_type = gr.Dropdown(label="X type", choices=labels, value=labels[1], type="index", elem_id=self.elem_id("x_type"))
        x_values = gr.Textbox(label="X values", lines=1, elem_id=self.elem_id("x_values"))
        y_type = gr.Dropdown(label="Y type", choices=labels, value=labels[0], type="index", elem_id=self.elem_id("y_type"))
        y_values = gr.Textbox(label="Y values", lines=1, elem_id=self.elem_id("y_values"))
        return [x_type, x_values, y_type, y_values]

    def run(self, p, x_type, x_values, y_type, y_values):
        x_opt = self.current_axis_options[x_type]
        y_opt = self.current_axis_options[y_type]
        xs = _parse(x_opt, x_values)
        ys = _parse(y_opt, y_values) if y_opt.label != "Nothing" else [None]
        for opt, vals in ((x_opt, xs), (y_opt, ys)):
            if opt.confirm and vals != [None]:
                opt.confirm(p, vals)
        shared.state.job_count = len(xs) * len(ys) * p.n_iter
        cells = []
        infotexts = []
        with SharedSettingsStackHelper():
            # the cheaper axis changes fastest, as in the real script
            order = [(ix, iy) for iy in range(len(ys)) for ix in range(len(xs))] if x_opt.cost <= y_opt.cost else \
                [(ix, iy) for ix in range(len(xs)) for iy in range(len(ys))]
            results = {}
            for ix, iy in order:
                if shared.state.interrupted or shared.state.stopping_generation:
                    break
                pc = copy(p)
                x_opt.apply(pc, xs[ix], xs)
                if ys != [None]:
                    y_opt.apply(pc, ys[iy], ys)
                res = process_images(pc)
                results[(ix, iy)] = res
            for iy in range(len(ys)):
                for ix in range(len(xs)):
                    res = results.get((ix, iy))
                    if res is not None and res.images:
                        cells.append(res.images[0])
                        infotexts.append(res.infotexts[0])
        if not cells:
            return Processed(p, [])
        grid = images.image_grid(cells, rows=len(ys))
        return Processed(p, [grid] + cells, p.seed, infotexts[0] if infotexts else "", infotexts=[infotexts[0]] + infotexts)
