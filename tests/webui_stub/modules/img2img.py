"""The img2img tab's generate function (modules/img2img.py), with a REDUCED signature
(plain img2img only: no sketch/inpaint/batch modes), `with closing(p)` as in the real one."""

from contextlib import closing

import modules.scripts
from modules import processing, shared
from modules.infotext_utils import create_override_settings_dict
from modules.shared import opts
from modules.ui_common import plaintext_to_html

last_processed = None  # stand-in only


def img2img(id_task: str, request, prompt, negative_prompt, init_img, n_iter, batch_size, cfg_scale, denoising_strength,
            height, width, override_settings_texts, *args):
    global last_processed
    override_settings = create_override_settings_dict(override_settings_texts)
    image = init_img.convert("RGB")
    p = processing.StableDiffusionProcessingImg2Img(
        outpath_samples=opts.outdir_samples or opts.outdir_img2img_samples,
        outpath_grids=opts.outdir_grids or opts.outdir_img2img_grids,
        prompt=prompt, negative_prompt=negative_prompt, batch_size=batch_size, n_iter=n_iter, cfg_scale=cfg_scale,
        width=width, height=height, init_images=[image], denoising_strength=denoising_strength,
        override_settings=override_settings,
    )
    p.scripts = modules.scripts.scripts_img2img
    p.script_args = args
    p.user = getattr(request, "username", None)
    with closing(p):
        processed = modules.scripts.scripts_img2img.run(p, *args)
        if processed is None:
            processed = processing.process_images(p)
    last_processed = processed
    shared.total_tqdm.clear()
    return processed.images, processed.js(), plaintext_to_html(processed.info), plaintext_to_html(processed.comments, classname="comments")
