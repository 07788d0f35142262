"""modules/processing.py, Forge's control flow around the A1111 stand-in's fake sampler.

Faithful:
- `process_images` (processing.py 815-849): `before_process` runs FIRST, before overrides and
  before the model is (re)loaded; `stored_opts` keeps only keys already in `opts.data` (820),
  so an override of a key missing from config.json sticks for every later generation (846-847);
  overrides go through `sysinfo.set_config(..., run_callbacks=False)`, where
  `forge_additional_modules` / `sd_model_checkpoint` change the loading parameters;
  `manage_model_and_prompt_cache` -> `forge_model_reload()` (a whole-model reload whenever
  the loading parameters changed, e.g. on the first generation after start or after the top
  bar's "VAE / Text Encoder" changed).
- `process_images_inner` (852-1160): `p.sd_vae_name/hash` from `sd_vae` (always None in Forge),
  `p.scripts.process`, then per batch `forge_model_reload()` again and
  `p.sd_model.forge_objects = forge_objects_original.shallow_copy()`, rng shape from
  `forge_objects.vae.latent_channels`, `before_process_batch`, `process_batch`, sampling,
  `p.latents_after_sampling`, `post_sample` (DecodedSamples honoured), the VAE decode, the
  postprocess hooks, all inside `torch.inference_mode()`.
- `decode_latent_batch` (628-635): the whole batch in one `decode_first_stage` call; no NaN
  check and no automatic precision retry.
- `create_infotext`: A1111's keys, but "VAE hash"/"VAE" commented out (756-757) and
  `Module 1: <stem>`, `Module 2: …` for `forge_additional_modules` (778-780); callables in
  `extra_generation_params` are called with the function's locals, as in A1111.
Simplified: the sampler is the A1111 stand-in's fake one; no refiner, no hires checkpoint
swap (hires fix itself works), no Flux distilled CFG, no ZTSNR.
"""

import os

import numpy as np
import torch
from PIL import Image

from modules._a1111 import inherit

inherit(globals(), "processing")

from modules.sysinfo import set_config  # noqa: E402
from modules.sd_models import forge_model_reload  # noqa: E402
from backend import memory_management  # noqa: E402

_A1111Txt2Img = StableDiffusionProcessingTxt2Img  # noqa: F821
_A1111Img2Img = StableDiffusionProcessingImg2Img  # noqa: F821


def _latent_channels(p):
    return p.sd_model.forge_objects.vae.latent_channels


class StableDiffusionProcessingTxt2Img(_A1111Txt2Img):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.latents_after_sampling = []

    def sample(self, conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts):
        self.sd_model.latent_channels = _latent_channels(self)  # read by the A1111 stand-in's fake sampler
        try:
            return super().sample(conditioning, unconditional_conditioning, seeds, subseeds, subseed_strength, prompts)
        finally:
            del self.sd_model.latent_channels


class StableDiffusionProcessingImg2Img(_A1111Img2Img):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.latents_after_sampling = []


def decode_latent_batch(model, batch, target_device=None, check_for_nans=False):
    samples = DecodedSamples()  # noqa: F821
    samples_pytorch = decode_first_stage(model, batch).to(target_device)  # noqa: F821
    for x in samples_pytorch:
        samples.append(x)
    return samples


def create_infotext(p, all_prompts, all_seeds, all_subseeds, comments=None, iteration=0, position_in_batch=0, use_main_prompt=False, index=None, all_negative_prompts=None):
    if use_main_prompt:
        index = 0
    elif index is None:
        index = position_in_batch + iteration * p.batch_size
    if all_negative_prompts is None:
        all_negative_prompts = p.all_negative_prompts
    clip_skip = getattr(p, 'clip_skip', opts.CLIP_stop_at_last_layers)  # noqa: F821
    enable_hr = getattr(p, 'enable_hr', False)
    token_merging_ratio = p.get_token_merging_ratio()
    token_merging_ratio_hr = p.get_token_merging_ratio(for_hr=True)
    prompt_text = p.main_prompt if use_main_prompt else all_prompts[index]
    negative_prompt = p.main_negative_prompt if use_main_prompt else all_negative_prompts[index]

    generation_params = {
        "Steps": p.steps,
        "Sampler": p.sampler_name,
        "Schedule type": p.scheduler,
        "CFG scale": p.cfg_scale,
    }
    generation_params.update({
        "Image CFG scale": getattr(p, 'image_cfg_scale', None),
        "Seed": p.all_seeds[0] if use_main_prompt else all_seeds[index],
        "Face restoration": opts.face_restoration_model if p.restore_faces else None,  # noqa: F821
        "Size": f"{p.width}x{p.height}",
        "Model hash": p.sd_model_hash if opts.add_model_hash_to_info else None,  # noqa: F821
        "Model": p.sd_model_name if opts.add_model_name_to_info else None,  # noqa: F821
        "FP8 weight": None,
        "Cache FP16 weight for LoRA": None,
        # "VAE hash": p.sd_vae_hash if opts.add_vae_hash_to_info else None,
        # "VAE": p.sd_vae_name if opts.add_vae_name_to_info else None,
        "Variation seed": (None if p.subseed_strength == 0 else (p.all_subseeds[0] if use_main_prompt else all_subseeds[index])),
        "Variation seed strength": (None if p.subseed_strength == 0 else p.subseed_strength),
        "Seed resize from": (None if p.seed_resize_from_w <= 0 or p.seed_resize_from_h <= 0 else f"{p.seed_resize_from_w}x{p.seed_resize_from_h}"),
        "Denoising strength": p.extra_generation_params.get("Denoising strength"),
        "Conditional mask weight": None,
        "Clip skip": None if clip_skip <= 1 else clip_skip,
        "ENSD": None,
        "Token merging ratio": None if token_merging_ratio == 0 else token_merging_ratio,
        "Token merging ratio hr": None if not enable_hr or token_merging_ratio_hr == 0 else token_merging_ratio_hr,
        "Init image hash": getattr(p, 'init_img_hash', None),
        "RNG": None,
        "Tiling": "True" if p.tiling else None,
        **p.extra_generation_params,
        "Version": program_version() if opts.add_version_to_infotext else None,  # noqa: F821
        "User": p.user if opts.add_user_name_to_info else None,  # noqa: F821
    })

    if shared.opts.forge_unet_storage_dtype != 'Automatic':  # noqa: F821
        generation_params['Diffusion in Low Bits'] = shared.opts.forge_unet_storage_dtype  # noqa: F821

    if isinstance(shared.opts.forge_additional_modules, list) and len(shared.opts.forge_additional_modules) > 0:  # noqa: F821
        for i, m in enumerate(shared.opts.forge_additional_modules):  # noqa: F821
            generation_params[f'Module {i+1}'] = os.path.splitext(os.path.basename(m))[0]

    for key, value in generation_params.items():
        try:
            if isinstance(value, list):
                generation_params[key] = value[index]
            elif callable(value):
                generation_params[key] = value(**locals())
        except Exception:
            errors.report(f'Error creating infotext for key "{key}"', exc_info=True)  # noqa: F821
            generation_params[key] = None

    generation_params_text = ", ".join([k if k == v else f'{k}: {infotext_utils.quote(v)}' for k, v in generation_params.items() if v is not None])  # noqa: F821
    negative_prompt_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt_text}{negative_prompt_text}\n{generation_params_text}".strip()


need_global_unload = False


def manage_model_and_prompt_cache(p):
    global need_global_unload
    p.sd_model, just_reloaded = forge_model_reload()
    if need_global_unload and not just_reloaded:
        memory_management.unload_all_models()
    need_global_unload = False


def process_images(p):
    if p.scripts is not None:
        p.scripts.before_process(p)

    stored_opts = {k: opts.data[k] if k in opts.data else opts.get_default(k) for k in p.override_settings.keys() if k in opts.data}  # noqa: F821

    try:
        if sd_models.checkpoint_aliases.get(p.override_settings.get('sd_model_checkpoint')) is None:  # noqa: F821
            p.override_settings.pop('sd_model_checkpoint', None)
        set_config(p.override_settings, is_api=True, run_callbacks=False, save_config=False)
        if not getattr(p, 'txt2img_upscale', False):
            manage_model_and_prompt_cache(p)
        res = process_images_inner(p)
    finally:
        if p.override_settings_restore_afterwards:
            set_config(stored_opts, save_config=False)
    return res


def process_images_inner(p):
    if isinstance(p.prompt, list):
        assert len(p.prompt) > 0
    else:
        assert p.prompt is not None
    devices.torch_gc()  # noqa: F821
    seed = get_fixed_seed(p.seed)  # noqa: F821
    subseed = get_fixed_seed(p.subseed)  # noqa: F821
    if p.restore_faces is None:
        p.restore_faces = opts.face_restoration  # noqa: F821
    if p.tiling is None:
        p.tiling = opts.tiling  # noqa: F821

    p.sd_model_name = shared.sd_model.sd_checkpoint_info.name_for_extra  # noqa: F821
    p.sd_model_hash = shared.sd_model.sd_model_hash  # noqa: F821
    p.sd_vae_name = sd_vae.get_loaded_vae_name()  # noqa: F821
    p.sd_vae_hash = sd_vae.get_loaded_vae_hash()  # noqa: F821
    p.sd_model.comments = []
    p.sd_model.extra_generation_params = {}

    p.fill_fields_from_opts()
    p.setup_prompts()
    p.all_seeds = seed if isinstance(seed, list) else [int(seed) + (x if p.subseed_strength == 0 else 0) for x in range(len(p.all_prompts))]
    p.all_subseeds = subseed if isinstance(subseed, list) else [int(subseed) + x for x in range(len(p.all_prompts))]

    if p.scripts is not None:
        p.scripts.process(p)

    infotexts = []
    output_images = []
    with torch.inference_mode():
        with devices.autocast():  # noqa: F821
            p.init(p.all_prompts, p.all_seeds, p.all_subseeds)
        if state.job_count == -1:  # noqa: F821
            state.job_count = p.n_iter  # noqa: F821

        for n in range(p.n_iter):
            p.iteration = n
            if state.skipped:  # noqa: F821
                state.skipped = False  # noqa: F821
            if state.interrupted or state.stopping_generation:  # noqa: F821
                break

            sd_models.forge_model_reload()  # model can be changed for example by refiner, hiresfix  # noqa: F821
            p.sd_model.forge_objects = p.sd_model.forge_objects_original.shallow_copy()
            p.prompts = p.all_prompts[n * p.batch_size:(n + 1) * p.batch_size]
            p.negative_prompts = p.all_negative_prompts[n * p.batch_size:(n + 1) * p.batch_size]
            p.seeds = p.all_seeds[n * p.batch_size:(n + 1) * p.batch_size]
            p.subseeds = p.all_subseeds[n * p.batch_size:(n + 1) * p.batch_size]

            if p.scripts is not None:
                p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
            if len(p.prompts) == 0:
                break
            p.parse_extra_network_prompts()
            if not p.disable_extra_networks:
                extra_networks.activate(p, p.extra_network_data)  # noqa: F821
            p.sd_model.forge_objects = p.sd_model.forge_objects_after_applying_lora.shallow_copy()
            if p.scripts is not None:
                p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
            p.setup_conds()
            p.extra_generation_params.update(p.sd_model.extra_generation_params)
            for comment in p.sd_model.comments:
                p.comment(comment)
            if p.n_iter > 1:
                shared.state.job = f"Batch {n+1} out of {p.n_iter}"  # noqa: F821

            samples_ddim = p.sample(conditioning=p.c, unconditional_conditioning=p.uc, seeds=p.seeds, subseeds=p.subseeds, subseed_strength=p.subseed_strength, prompts=p.prompts)
            for x_sample in samples_ddim:
                p.latents_after_sampling.append(x_sample)

            if p.scripts is not None:
                ps = scripts.PostSampleArgs(samples_ddim)  # noqa: F821
                p.scripts.post_sample(p, ps)
                samples_ddim = ps.samples

            if getattr(samples_ddim, 'already_decoded', False):
                x_samples_ddim = samples_ddim
            else:
                devices.test_for_nans(samples_ddim, "unet")  # noqa: F821
                if opts.sd_vae_decode_method != 'Full':  # noqa: F821
                    p.extra_generation_params['VAE Decoder'] = opts.sd_vae_decode_method  # noqa: F821
                x_samples_ddim = decode_latent_batch(p.sd_model, samples_ddim, target_device=devices.cpu, check_for_nans=True)  # noqa: F821

            x_samples_ddim = torch.stack(x_samples_ddim).float()
            x_samples_ddim = torch.clamp((x_samples_ddim + 1.0) / 2.0, min=0.0, max=1.0)
            del samples_ddim
            devices.torch_gc()  # noqa: F821
            state.nextjob()  # noqa: F821

            if p.scripts is not None:
                p.scripts.postprocess_batch(p, x_samples_ddim, batch_number=n)
                p.prompts = p.all_prompts[n * p.batch_size:(n + 1) * p.batch_size]
                p.negative_prompts = p.all_negative_prompts[n * p.batch_size:(n + 1) * p.batch_size]
                batch_params = scripts.PostprocessBatchListArgs(list(x_samples_ddim))  # noqa: F821
                p.scripts.postprocess_batch_list(p, batch_params, batch_number=n)
                x_samples_ddim = batch_params.images

            def infotext(index=0, use_main_prompt=False):
                return create_infotext(p, p.prompts, p.seeds, p.subseeds, use_main_prompt=use_main_prompt, index=index, all_negative_prompts=p.negative_prompts)

            save_samples = p.save_samples()
            for i, x_sample in enumerate(x_samples_ddim):
                p.batch_index = i
                x_sample = (255. * np.moveaxis(x_sample.cpu().numpy(), 0, 2)).astype(np.uint8)
                image = Image.fromarray(x_sample)
                if p.scripts is not None:
                    pp = scripts.PostprocessImageArgs(image)  # noqa: F821
                    p.scripts.postprocess_image(p, pp)
                    image = pp.image
                if save_samples:
                    images.save_image(image, p.outpath_samples, "", p.seeds[i], p.prompts[i], opts.samples_format, info=infotext(i), p=p)  # noqa: F821
                text = infotext(i)
                infotexts.append(text)
                if opts.enable_pnginfo:  # noqa: F821
                    image.info["parameters"] = text
                output_images.append(image)
            del x_samples_ddim
            devices.torch_gc()  # noqa: F821

        if not infotexts:
            infotexts.append(Processed(p, []).infotext(p, 0))  # noqa: F821
        index_of_first_image = 0
        unwanted_grid_because_of_img_count = len(output_images) < 2 and opts.grid_only_if_multiple  # noqa: F821
        if (opts.return_grid or opts.grid_save) and not p.do_not_save_grid and not unwanted_grid_because_of_img_count:  # noqa: F821
            grid = images.image_grid(output_images, p.batch_size)  # noqa: F821
            if opts.return_grid:  # noqa: F821
                text = create_infotext(p, p.all_prompts, p.all_seeds, p.all_subseeds, use_main_prompt=True)
                infotexts.insert(0, text)
                if opts.enable_pnginfo:  # noqa: F821
                    grid.info["parameters"] = text
                output_images.insert(0, grid)
                index_of_first_image = 1

    if not p.disable_extra_networks and p.extra_network_data:
        extra_networks.deactivate(p, p.extra_network_data)  # noqa: F821
    devices.torch_gc()  # noqa: F821
    res = Processed(p, images_list=output_images, seed=p.all_seeds[0], info=infotexts[0], subseed=p.all_subseeds[0],  # noqa: F821
                    index_of_first_image=index_of_first_image, infotexts=infotexts)
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res
