"""The txt2img tab's generate function (modules/txt2img.py): real signature, `with closing(p)`."""

from contextlib import closing

import modules.scripts
from modules import processing, shared
from modules.infotext_utils import create_override_settings_dict
from modules.shared import opts
from modules.ui_common import plaintext_to_html

last_processed = None  # stand-in only: the Processed of the last call


def txt2img_create_processing(id_task, request, prompt, negative_prompt, prompt_styles, n_iter, batch_size, cfg_scale,
                              height, width, enable_hr, denoising_strength, hr_scale, hr_upscaler, hr_second_pass_steps,
                              hr_resize_x, hr_resize_y, hr_checkpoint_name, hr_sampler_name, hr_scheduler, hr_prompt,
                              hr_negative_prompt, override_settings_texts, *args, force_enable_hr=False):
    override_settings = create_override_settings_dict(override_settings_texts)
    if force_enable_hr:
        enable_hr = True
    p = processing.StableDiffusionProcessingTxt2Img(
        outpath_samples=opts.outdir_samples or opts.outdir_txt2img_samples,
        outpath_grids=opts.outdir_grids or opts.outdir_txt2img_grids,
        prompt=prompt, styles=prompt_styles, negative_prompt=negative_prompt, batch_size=batch_size, n_iter=n_iter,
        cfg_scale=cfg_scale, width=width, height=height, enable_hr=enable_hr, denoising_strength=denoising_strength,
        hr_scale=hr_scale, hr_upscaler=hr_upscaler, hr_second_pass_steps=hr_second_pass_steps, hr_resize_x=hr_resize_x,
        hr_resize_y=hr_resize_y,
        hr_checkpoint_name=None if hr_checkpoint_name == 'Use same checkpoint' else hr_checkpoint_name,
        hr_sampler_name=None if hr_sampler_name == 'Use same sampler' else hr_sampler_name,
        hr_scheduler=None if hr_scheduler == 'Use same scheduler' else hr_scheduler,
        hr_prompt=hr_prompt, hr_negative_prompt=hr_negative_prompt, override_settings=override_settings,
    )
    p.scripts = modules.scripts.scripts_txt2img
    p.script_args = args
    p.user = getattr(request, "username", None)
    return p


def txt2img(id_task: str, request, *args):
    global last_processed
    p = txt2img_create_processing(id_task, request, *args)
    with closing(p):
        processed = modules.scripts.scripts_txt2img.run(p, *p.script_args)
        if processed is None:
            processed = processing.process_images(p)
    last_processed = processed
    shared.total_tqdm.clear()
    generation_info_js = processed.js()
    return processed.images, generation_info_js, plaintext_to_html(processed.info), plaintext_to_html(processed.comments, classname="comments")
