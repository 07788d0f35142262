"""Scripts and the ScriptRunner (modules/scripts.py).

Faithful where an extension can tell: discovery order (root `scripts/`, then active extensions'
`scripts/*.py`, sorted, top level only), the extension root on `sys.path` and `basedir()` only
while the file is imported, registration of EVERY `Script` subclass in the module namespace,
one instance per tab, `AlwaysVisible` scripts getting the processing hooks (only where the
method is overridden), args_from/args_to, hooks wrapped with `errors.report`.
Simplified: no metadata.ini ordering, no user callback ordering, no processing_scripts.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections import namedtuple
from dataclasses import dataclass

import gradio as gr

from modules import errors, extensions, paths, script_callbacks, script_loading, shared

AlwaysVisible = object()


class MaskBlendArgs:
    def __init__(self, current_latent, nmask, init_latent, mask, blended_latent, denoiser=None, sigma=None):
        self.current_latent = current_latent
        self.nmask = nmask
        self.init_latent = init_latent
        self.mask = mask
        self.blended_latent = blended_latent
        self.denoiser = denoiser
        self.is_final_blend = denoiser is None
        self.sigma = sigma


class PostSampleArgs:
    def __init__(self, samples):
        self.samples = samples


class PostprocessImageArgs:
    def __init__(self, image):
        self.image = image


class PostProcessMaskOverlayArgs:
    def __init__(self, index, mask_for_overlay, overlay_image):
        self.index = index
        self.mask_for_overlay = mask_for_overlay
        self.overlay_image = overlay_image


class PostprocessBatchListArgs:
    def __init__(self, images):
        self.images = images


@dataclass
class OnComponent:
    component: gr.blocks.Block


class Script:
    name = None
    section = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    tabname = None
    group = None
    create_group = True
    infotext_fields = None
    paste_field_names = None
    api_info = None
    on_before_component_elem_id = None
    on_after_component_elem_id = None
    setup_for_ui_only = False
    controls = None

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def run(self, p, *args):
        pass

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, *args, **kwargs):
        pass

    def on_mask_blend(self, p, mba: MaskBlendArgs, *args):
        pass

    def post_sample(self, p, ps: PostSampleArgs, *args):
        pass

    def postprocess_image(self, p, pp: PostprocessImageArgs, *args):
        pass

    def postprocess_maskoverlay(self, p, ppmo: PostProcessMaskOverlayArgs, *args):
        pass

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs, *args):
        pass

    def postprocess(self, p, processed, *args):
        pass

    def before_component(self, component, **kwargs):
        pass

    def after_component(self, component, **kwargs):
        pass

    def on_before_component(self, callback, *, elem_id):
        if self.on_before_component_elem_id is None:
            self.on_before_component_elem_id = []
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback, *, elem_id):
        if self.on_after_component_elem_id is None:
            self.on_after_component_elem_id = []
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self):
        return ""

    def elem_id(self, item_id):
        need_tabname = self.show(True) == self.show(False)
        tabkind = 'img2img' if self.is_img2img else 'txt2img'
        tabname = f"{tabkind}_" if need_tabname else ""
        title = re.sub(r'[^a-z_0-9]', '', re.sub(r'\s', '_', self.title().lower()))
        return f'script_{tabname}{title}_{item_id}'

    def before_hr(self, p, *args):
        pass


class ScriptBuiltinUI(Script):
    setup_for_ui_only = True

    def elem_id(self, item_id):
        need_tabname = self.show(True) == self.show(False)
        tabname = ('img2img' if self.is_img2img else 'txt2img') + "_" if need_tabname else ""
        return f'{tabname}{item_id}'

    def show(self, is_img2img):
        return AlwaysVisible


current_basedir = paths.script_path


def basedir():
    """The extension root while its script files are imported; the webui root at any other time."""
    return current_basedir


ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])

scripts_data = []
postprocessing_scripts_data = []
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])


def list_scripts(scriptdirname, extension, *, include_extensions=True):
    scripts_list = []
    basedir_ = os.path.join(paths.script_path, scriptdirname)
    if os.path.exists(basedir_):
        for filename in sorted(os.listdir(basedir_)):
            scripts_list.append(ScriptFile(paths.script_path, filename, os.path.join(basedir_, filename)))
    if include_extensions:
        for ext in extensions.active():
            scripts_list += ext.list_files(scriptdirname, extension)
    return [x for x in scripts_list if os.path.splitext(x.path)[1].lower() == extension and os.path.isfile(x.path)]


def list_files_with_name(filename):
    res = []
    dirs = [paths.script_path] + [ext.path for ext in extensions.active()]
    for dirpath in dirs:
        if not os.path.isdir(dirpath):
            continue
        path = os.path.join(dirpath, filename)
        if os.path.isfile(path):
            res.append(path)
    return res


def load_scripts():
    global current_basedir, scripts_txt2img, scripts_img2img, scripts_current
    scripts_data.clear()
    postprocessing_scripts_data.clear()
    script_callbacks.clear_callbacks()

    scripts_list = list_scripts("scripts", ".py") + list_scripts("modules/processing_scripts", ".py", include_extensions=False)
    syspath = sys.path

    def register_scripts_from_module(module, scriptfile):
        for script_class in module.__dict__.values():
            if not inspect.isclass(script_class):
                continue
            if issubclass(script_class, Script):
                scripts_data.append(ScriptClassData(script_class, scriptfile.path, scriptfile.basedir, module))

    for scriptfile in scripts_list:
        try:
            if scriptfile.basedir != paths.script_path:
                sys.path = [scriptfile.basedir] + sys.path
            current_basedir = scriptfile.basedir
            script_module = script_loading.load_module(scriptfile.path)
            register_scripts_from_module(script_module, scriptfile)
        except Exception:
            errors.report(f"Error loading script: {scriptfile.filename}", exc_info=True)
        finally:
            sys.path = syspath
            current_basedir = paths.script_path

    scripts_txt2img = ScriptRunner()
    scripts_img2img = ScriptRunner()
    scripts_current = None


reload_scripts = load_scripts


def wrap_call(func, filename, funcname, *args, default=None, **kwargs):
    try:
        return func(*args, **kwargs)
    except Exception:
        errors.report(f"Error calling: {filename}/{funcname}", exc_info=True)
    return default


_HOOKS = [
    'setup', 'before_process', 'process', 'before_process_batch', 'after_extra_networks_activate',
    'process_batch', 'process_before_every_sampling', 'postprocess', 'postprocess_batch',
    'postprocess_batch_list', 'post_sample', 'on_mask_blend', 'postprocess_image',
    'postprocess_maskoverlay', 'postprocess_image_after_composite', 'before_hr',
]


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.selectable_scripts = []
        self.alwayson_scripts = []
        self.titles = []
        self.title_map = {}
        self.infotext_fields = []
        self.paste_field_names = []
        self.inputs = [None]
        self.callback_map = {}
        self.on_before_component_elem_id = {}
        self.on_after_component_elem_id = {}
        self.is_img2img = False

    def initialize_scripts(self, is_img2img):
        self.scripts.clear()
        self.alwayson_scripts.clear()
        self.selectable_scripts.clear()
        self.is_img2img = is_img2img
        for script_data in scripts_data:
            try:
                script = script_data.script_class()
            except Exception:
                errors.report(f"Error # failed to initialize Script {script_data.module}: ", exc_info=True)
                continue
            script.filename = script_data.path
            script.is_txt2img = not is_img2img
            script.is_img2img = is_img2img
            script.tabname = "img2img" if is_img2img else "txt2img"
            visibility = script.show(script.is_img2img)
            if visibility == AlwaysVisible:
                self.scripts.append(script)
                self.alwayson_scripts.append(script)
                script.alwayson = True
            elif visibility:
                self.scripts.append(script)
                self.selectable_scripts.append(script)
        self.callback_map.clear()
        self.apply_on_before_component_callbacks()

    def apply_on_before_component_callbacks(self):
        for script in self.scripts:
            on_before = script.on_before_component_elem_id or []
            on_after = script.on_after_component_elem_id or []
            for elem_id, callback in on_before:
                self.on_before_component_elem_id.setdefault(elem_id, []).append((callback, script))
            for elem_id, callback in on_after:
                self.on_after_component_elem_id.setdefault(elem_id, []).append((callback, script))
            on_before.clear()
            on_after.clear()

    def create_script_ui(self, script):
        script.args_from = len(self.inputs)
        script.args_to = len(self.inputs)
        try:
            self.create_script_ui_inner(script)
        except Exception:
            errors.report(f"Error creating UI for {script.name}: ", exc_info=True)

    def create_script_ui_inner(self, script):
        controls = wrap_call(script.ui, script.filename, "ui", script.is_img2img)
        script.controls = controls
        if controls is None:
            return
        script.name = wrap_call(script.title, script.filename, "title", default=script.filename).lower()
        api_args = []
        for control in controls:
            control.custom_script_source = os.path.basename(script.filename)
            arg_info = {"label": getattr(control, "label", None) or ""}
            for field in ("value", "minimum", "maximum", "step"):
                v = getattr(control, field, None)
                if v is not None:
                    arg_info[field] = v
            choices = getattr(control, "choices", None)
            if choices is not None:
                arg_info["choices"] = [x[0] if isinstance(x, tuple) else x for x in choices]
            api_args.append(arg_info)
        script.api_info = {"name": script.name, "is_img2img": script.is_img2img, "is_alwayson": script.alwayson, "args": api_args}
        if script.infotext_fields is not None:
            self.infotext_fields += script.infotext_fields
        if script.paste_field_names is not None:
            self.paste_field_names += script.paste_field_names
        self.inputs += controls
        script.args_to = len(self.inputs)

    def setup_ui_for_section(self, section, scriptlist=None):
        if scriptlist is None:
            scriptlist = self.alwayson_scripts
        for script in scriptlist:
            if script.alwayson and script.section != section:
                continue
            if script.create_group:
                with gr.Group(visible=script.alwayson) as group:
                    self.create_script_ui(script)
                script.group = group
            else:
                self.create_script_ui(script)

    def prepare_ui(self):
        self.inputs = [None]

    def setup_ui(self):
        all_titles = [wrap_call(script.title, script.filename, "title") or script.filename for script in self.scripts]
        self.title_map = {title.lower(): script for title, script in zip(all_titles, self.scripts)}
        self.titles = [wrap_call(script.title, script.filename, "title") or f"{script.filename} [error]" for script in self.selectable_scripts]
        self.setup_ui_for_section(None)
        dropdown = gr.Dropdown(label="Script", elem_id="script_list", choices=["None"] + self.titles, value="None", type="index")
        self.inputs[0] = dropdown
        self.setup_ui_for_section(None, self.selectable_scripts)

        def select_script(script_index):
            selected = self.selectable_scripts[script_index - 1] if script_index else None
            return [gr.update(visible=selected == s) for s in self.selectable_scripts]

        dropdown.change(fn=select_script, inputs=[dropdown], outputs=[s.group for s in self.selectable_scripts])
        self.infotext_fields.append((dropdown, lambda x: gr.update(value=x.get('Script', 'None'))))
        self.apply_on_before_component_callbacks()
        return self.inputs

    def run(self, p, *args):
        script_index = args[0]
        if script_index == 0 or script_index is None:
            return None
        script = self.selectable_scripts[script_index - 1]
        if script is None:
            return None
        script_args = args[script.args_from:script.args_to]
        processed = script.run(p, *script_args)
        shared.total_tqdm.clear()
        return processed

    def list_scripts_for_method(self, method_name):
        if method_name in ('before_component', 'after_component'):
            return self.scripts
        return self.alwayson_scripts

    def ordered_scripts(self, method_name):
        """Scripts that override `method_name`, in load order (the real one may reorder by settings)."""
        script_list = self.list_scripts_for_method(method_name)
        cached = self.callback_map.get(method_name)
        if cached is None or cached[0] != len(script_list):
            chosen = [s for s in script_list if getattr(s.__class__, method_name, None) != getattr(Script, method_name, None)]
            self.callback_map[method_name] = (len(script_list), chosen)
        return self.callback_map[method_name][1]

    def _call(self, method_name, p, *pre, **kwargs):
        for script in self.ordered_scripts(method_name):
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                getattr(script, method_name)(p, *pre, *script_args, **kwargs)
            except Exception:
                errors.report(f"Error running {method_name}: {script.filename}", exc_info=True)

    def before_process(self, p):
        self._call('before_process', p)

    def process(self, p):
        self._call('process', p)

    def process_before_every_sampling(self, p, **kwargs):
        self._call('process_before_every_sampling', p, **kwargs)

    def before_process_batch(self, p, **kwargs):
        self._call('before_process_batch', p, **kwargs)

    def after_extra_networks_activate(self, p, **kwargs):
        self._call('after_extra_networks_activate', p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._call('process_batch', p, **kwargs)

    def postprocess(self, p, processed):
        self._call('postprocess', p, processed)

    def postprocess_batch(self, p, images, **kwargs):
        self._call('postprocess_batch', p, images=images, **kwargs)

    def postprocess_batch_list(self, p, pp: PostprocessBatchListArgs, **kwargs):
        self._call('postprocess_batch_list', p, pp, **kwargs)

    def post_sample(self, p, ps: PostSampleArgs):
        self._call('post_sample', p, ps)

    def on_mask_blend(self, p, mba: MaskBlendArgs):
        self._call('on_mask_blend', p, mba)

    def postprocess_image(self, p, pp: PostprocessImageArgs):
        self._call('postprocess_image', p, pp)

    def postprocess_maskoverlay(self, p, ppmo: PostProcessMaskOverlayArgs):
        self._call('postprocess_maskoverlay', p, ppmo)

    def postprocess_image_after_composite(self, p, pp: PostprocessImageArgs):
        self._call('postprocess_image_after_composite', p, pp)

    def before_hr(self, p):
        self._call('before_hr', p)

    def before_component(self, component, **kwargs):
        for callback, script in self.on_before_component_elem_id.get(kwargs.get("elem_id"), []):
            try:
                callback(OnComponent(component=component))
            except Exception:
                errors.report(f"Error running on_before_component: {script.filename}", exc_info=True)
        for script in self.ordered_scripts('before_component'):
            try:
                script.before_component(component, **kwargs)
            except Exception:
                errors.report(f"Error running before_component: {script.filename}", exc_info=True)

    def after_component(self, component, **kwargs):
        for callback, script in self.on_after_component_elem_id.get(getattr(component, "elem_id", None), []):
            try:
                callback(OnComponent(component=component))
            except Exception:
                errors.report(f"Error running on_after_component: {script.filename}", exc_info=True)
        for script in self.ordered_scripts('after_component'):
            try:
                script.after_component(component, **kwargs)
            except Exception:
                errors.report(f"Error running after_component: {script.filename}", exc_info=True)

    def script(self, title):
        return self.title_map.get(title.lower())

    def setup_scrips(self, p, *, is_ui=True):
        for script in self.ordered_scripts('setup'):
            if not is_ui and script.setup_for_ui_only:
                continue
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                script.setup(p, *script_args)
            except Exception:
                errors.report(f"Error running setup: {script.filename}", exc_info=True)

    def set_named_arg(self, args, script_name, arg_elem_id, value, fuzzy=False):
        script = next((x for x in self.scripts if x.name == script_name), None)
        if script is None:
            raise RuntimeError(f"script {script_name} not found")
        for i, control in enumerate(script.controls):
            if arg_elem_id in control.elem_id if fuzzy else arg_elem_id == control.elem_id:
                index = script.args_from + i
                if isinstance(args, tuple):
                    return args[:index] + (value,) + args[index + 1:]
                elif isinstance(args, list):
                    args[index] = value
                    return args
                raise RuntimeError(f"args is not a list or tuple, but {type(args)}")
        raise RuntimeError(f"arg_elem_id {arg_elem_id} not found in script {script_name}")


scripts_txt2img: ScriptRunner = None
scripts_img2img: ScriptRunner = None
scripts_current: ScriptRunner = None
