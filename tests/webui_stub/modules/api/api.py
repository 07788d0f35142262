"""The txt2img/img2img API (modules/api/api.py) without HTTP: call `Api().text2imgapi(dict)`.

Faithful: `alwayson_scripts` mapped by title (case-insensitive; unknown or selectable -> HTTP 422),
args copied over the UI defaults computed by calling every script's `ui()` in a throwaway
`gr.Blocks()`, `infotext` applied (fields and override settings), `p.is_api = True`,
`p.script_args` a tuple, `queue_lock` held, `with closing(p)`, state begin/end.
The request is a dict (unknown keys ignored, like the pydantic model); the response a dict with
base64 PNGs, the request echoed as `parameters`, and `info` (Processed.js()).
"""

from __future__ import annotations

import base64
import io
import types
from contextlib import closing

import gradio as gr
from fastapi.exceptions import HTTPException

from modules import call_queue, infotext_utils, scripts, shared
from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img, process_images
from modules.shared import opts

_API_ONLY = {"script_name": None, "script_args": [], "alwayson_scripts": {}, "infotext": None, "send_images": True,
             "save_images": False, "sampler_index": "Euler", "force_task_id": None}


def script_name_to_index(name, scripts_list):
    try:
        return [x.title().lower() for x in scripts_list].index(name.lower())
    except Exception as e:
        raise HTTPException(status_code=422, detail=f"Script '{name}' not found") from e


def encode_pil_to_base64(image):
    with io.BytesIO() as output_bytes:
        image.save(output_bytes, format="PNG")
        return base64.b64encode(output_bytes.getvalue()).decode()


def decode_base64_to_image(encoding):
    from PIL import Image
    if encoding.startswith("data:image/"):
        encoding = encoding.split(";")[1].split(",")[1]
    return Image.open(io.BytesIO(base64.b64decode(encoding)))


def _request(kind, body: dict):
    fields = dict(kind._defaults_all())
    fields.update(_API_ONLY)
    set_fields = {k for k in body if k in fields}
    fields.update({k: v for k, v in body.items() if k in fields})
    req = types.SimpleNamespace(**fields)
    req._set_fields = set_fields
    return req


def _defaults_all(cls):
    d = {}
    for klass in reversed(cls.__mro__):
        d.update(getattr(klass, "_defaults", {}))
    d.pop("script_args", None)
    return d


StableDiffusionProcessingTxt2Img._defaults_all = classmethod(_defaults_all)
StableDiffusionProcessingImg2Img._defaults_all = classmethod(_defaults_all)


class Api:
    def __init__(self, app=None, queue_lock=None):
        self.app = app
        self.queue_lock = queue_lock or call_queue.queue_lock
        if shared.cmd_opts.nowebui and not scripts.scripts_txt2img.scripts:
            from modules import ui
            ui.create_ui()
        self.default_script_arg_txt2img = self.init_default_script_args(scripts.scripts_txt2img)
        self.default_script_arg_img2img = self.init_default_script_args(scripts.scripts_img2img)

    def get_selectable_script(self, script_name, script_runner):
        if script_name is None or script_name == "":
            return None, None
        script_idx = script_name_to_index(script_name, script_runner.selectable_scripts)
        return script_runner.selectable_scripts[script_idx], script_idx

    def get_script(self, script_name, script_runner):
        if script_name is None or script_name == "":
            return None, None
        return script_runner.scripts[script_name_to_index(script_name, script_runner.scripts)]

    def get_scripts_list(self):
        return {"txt2img": [s.name for s in scripts.scripts_txt2img.scripts if s.name is not None],
                "img2img": [s.name for s in scripts.scripts_img2img.scripts if s.name is not None]}

    def get_script_info(self):
        return [s.api_info for runner in (scripts.scripts_txt2img, scripts.scripts_img2img) for s in runner.scripts if s.api_info is not None]

    def init_default_script_args(self, script_runner):
        last_arg_index = 1
        for script in script_runner.scripts:
            if script.args_to is not None and last_arg_index < script.args_to:
                last_arg_index = script.args_to
        script_args = [None] * last_arg_index
        script_args[0] = 0
        with gr.Blocks():
            for script in script_runner.scripts:
                if script.ui(script.is_img2img):
                    ui_default_values = [elem.value for elem in script.ui(script.is_img2img)]
                    script_args[script.args_from:script.args_to] = ui_default_values
        return script_args

    def init_script_args(self, request, default_script_args, selectable_scripts, selectable_idx, script_runner, *, input_script_args=None):
        script_args = default_script_args.copy()
        if input_script_args is not None:
            for index, value in input_script_args.items():
                script_args[index] = value
        if selectable_scripts:
            script_args[selectable_scripts.args_from:selectable_scripts.args_to] = request.script_args
            script_args[0] = selectable_idx + 1
        if request.alwayson_scripts:
            for name in request.alwayson_scripts.keys():
                alwayson_script = self.get_script(name, script_runner)
                if alwayson_script is None:
                    raise HTTPException(status_code=422, detail=f"always on script {name} not found")
                if alwayson_script.alwayson is False:
                    raise HTTPException(status_code=422, detail="Cannot have a selectable script in the always on scripts params")
                if "args" in request.alwayson_scripts[name]:
                    given = request.alwayson_scripts[name]["args"]
                    for idx in range(0, min(alwayson_script.args_to - alwayson_script.args_from, len(given))):
                        script_args[alwayson_script.args_from + idx] = given[idx]
        return script_args

    def apply_infotext(self, request, tabname, *, script_runner=None, mentioned_script_args=None):
        if not request.infotext:
            return {}
        possible_fields = infotext_utils.paste_fields.get(tabname, {}).get("fields", []) or []
        params = infotext_utils.parse_generation_parameters(request.infotext)

        def get_field_value(field, params):
            value = field.function(params) if field.function else params.get(field.label)
            if value is None:
                return None
            target_type = type(getattr(request, field.api)) if field.api and getattr(request, field.api, None) is not None else type(field.component.value)
            if target_type == type(None):
                return None
            if isinstance(value, dict) and value.get('__type__') == 'generic_update':
                value = value.get('value')
            if value is not None and not isinstance(value, target_type):
                value = target_type(float(value)) if target_type is int else target_type(value)
            return value

        for field in possible_fields:
            if not field.api or field.api in request._set_fields:
                continue
            value = get_field_value(field, params)
            if value is not None:
                setattr(request, field.api, value)
        if request.override_settings is None:
            request.override_settings = {}
        for _, setting_name, value in infotext_utils.get_override_settings(params):
            if setting_name not in request.override_settings:
                request.override_settings[setting_name] = value
        if script_runner is not None and mentioned_script_args is not None:
            indexes = {id(v): i for i, v in enumerate(script_runner.inputs)}
            for field in possible_fields:
                index = indexes.get(id(field.component))
                if index is None:
                    continue
                value = get_field_value(field, params)
                if value is not None:
                    mentioned_script_args[index] = value
        return params

    def _run(self, kind, body, runner, default_args, tabname, extra=None):
        request = _request(kind, body)
        infotext_script_args = {}
        self.apply_infotext(request, tabname, script_runner=runner, mentioned_script_args=infotext_script_args)
        selectable_scripts, selectable_script_idx = self.get_selectable_script(request.script_name, runner)
        args = dict(vars(request))
        for k in ("script_name", "script_args", "alwayson_scripts", "infotext", "_set_fields", "sampler_index", "force_task_id"):
            args.pop(k, None)
        send_images = args.pop('send_images', True)
        save_images = args.pop('save_images', False)
        args["do_not_save_samples"] = not save_images
        args["do_not_save_grid"] = not save_images
        if extra:
            args.update(extra(args))
        script_args = self.init_script_args(request, default_args, selectable_scripts, selectable_script_idx, runner, input_script_args=infotext_script_args)
        with self.queue_lock:
            with closing(kind(sd_model=shared.sd_model, **args)) as p:
                p.is_api = True
                p.scripts = runner
                p.outpath_grids = opts.outdir_txt2img_grids
                p.outpath_samples = opts.outdir_txt2img_samples
                try:
                    shared.state.begin(job=f"scripts_{tabname}")
                    if selectable_scripts is not None:
                        p.script_args = script_args
                        processed = runner.run(p, *p.script_args)
                    else:
                        p.script_args = tuple(script_args)
                        processed = process_images(p)
                finally:
                    shared.state.end()
                    shared.total_tqdm.clear()
        b64images = list(map(encode_pil_to_base64, processed.images)) if send_images else []
        return {"images": b64images, "parameters": body, "info": processed.js()}

    def text2imgapi(self, body: dict) -> dict:
        return self._run(StableDiffusionProcessingTxt2Img, body, scripts.scripts_txt2img, self.default_script_arg_txt2img, "txt2img")

    def img2imgapi(self, body: dict) -> dict:
        if not body.get("init_images"):
            raise HTTPException(status_code=404, detail="Init image not found")

        def convert(args):
            return {"init_images": [decode_base64_to_image(x) for x in args["init_images"]]}
        return self._run(StableDiffusionProcessingImg2Img, body, scripts.scripts_img2img, self.default_script_arg_img2img, "img2img", extra=convert)

    def get_options(self):
        return {k: getattr(opts, k) for k in opts.data_labels}

    def set_options(self, req: dict):
        for k, v in req.items():
            opts.set(k, v, is_api=True)
        return None
