"""The built-in settings a VAE extension meets (modules/shared_options.py, subset, real keys/defaults)."""

import gradio as gr

from modules import shared_items
from modules.options import OptionInfo, categories, options_section

categories.register_category("sd", "Stable Diffusion")
categories.register_category("ui", "User Interface")
categories.register_category("system", "System")
categories.register_category("saving", "Saving images")

restricted_opts = {"samples_filename_pattern", "directories_filename_pattern", "outdir_samples",
                   "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_grids"}

options_templates = {}

options_templates.update(options_section(('saving-images', "Saving images/grids", "saving"), {
    "samples_save": OptionInfo(True, "Always save all generated images"),
    "samples_format": OptionInfo('png', 'File format for images'),
    "grid_save": OptionInfo(True, "Always save all generated image grids"),
    "grid_format": OptionInfo('png', 'File format for grids'),
    "grid_only_if_multiple": OptionInfo(True, "Do not save grids consisting of one picture"),
    "return_grid": OptionInfo(True, "Show grid in gallery"),
    "enable_pnginfo": OptionInfo(True, "Save text information about generation parameters as chunks to png files"),
    "save_images_before_face_restoration": OptionInfo(False, "Save a copy of image before doing face restoration."),
    "save_images_before_color_correction": OptionInfo(False, "Save a copy of image before applying color correction."),
    "overlay_inpaint": OptionInfo(True, "Overlay original for inpaint"),
    "return_mask": OptionInfo(False, "For inpainting, include the greyscale mask in results"),
    "return_mask_composite": OptionInfo(False, "For inpainting, include masked composite in results"),
}))

options_templates.update(options_section(('saving-paths', "Paths for saving", "saving"), {
    "outdir_samples": OptionInfo("", "Output directory for images"),
    "outdir_txt2img_samples": OptionInfo("outputs/txt2img-images", 'Output directory for txt2img images'),
    "outdir_img2img_samples": OptionInfo("outputs/img2img-images", 'Output directory for img2img images'),
    "outdir_grids": OptionInfo("", "Output directory for grids"),
    "outdir_txt2img_grids": OptionInfo("outputs/txt2img-grids", 'Output directory for txt2img grids'),
    "outdir_img2img_grids": OptionInfo("outputs/img2img-grids", 'Output directory for img2img grids'),
}))

options_templates.update(options_section(('face-restoration', "Face restoration", "postprocessing"), {
    "face_restoration": OptionInfo(False, "Restore faces", infotext='Face restoration'),
    "face_restoration_model": OptionInfo("CodeFormer", "Face restoration model"),
}))

options_templates.update(options_section(('system', "System", "system"), {
    "disable_mmap_load_safetensors": OptionInfo(False, "Disable memmapping for loading .safetensors files."),
}))

options_templates.update(options_section(('sd', "Stable Diffusion", "sd"), {
    "sd_model_checkpoint": OptionInfo(None, "Stable Diffusion checkpoint", gr.Dropdown,
                                      lambda: {"choices": shared_items.list_checkpoint_tiles(False)},
                                      refresh=shared_items.refresh_checkpoints, infotext='Model hash'),
    "sd_checkpoints_limit": OptionInfo(1, "Maximum number of checkpoints loaded at the same time", gr.Slider, {"minimum": 1, "maximum": 10, "step": 1}),
    "sd_checkpoints_keep_in_cpu": OptionInfo(True, "Only keep one model on device"),
    "sd_checkpoint_cache": OptionInfo(0, "Checkpoints to cache in RAM", gr.Slider, {"minimum": 0, "maximum": 10, "step": 1}),
    "CLIP_stop_at_last_layers": OptionInfo(1, "Clip skip", gr.Slider, {"minimum": 1, "maximum": 12, "step": 1}, infotext="Clip skip"),
    "tiling": OptionInfo(False, "Tiling", infotext='Tiling'),
    "sd_vae_checkpoint_cache": OptionInfo(0, "VAE Checkpoints to cache in RAM", gr.Slider, {"minimum": 0, "maximum": 10, "step": 1}),
}))

options_templates.update(options_section(('vae', "VAE", "sd"), {
    "sd_vae_checkpoint_cache": OptionInfo(0, "VAE Checkpoints to cache in RAM", gr.Slider, {"minimum": 0, "maximum": 10, "step": 1}),
    "sd_vae": OptionInfo("Automatic", "SD VAE", gr.Dropdown, lambda: {"choices": shared_items.sd_vae_items()},
                         refresh=shared_items.refresh_vae_list, infotext='VAE').info("choose VAE model: Automatic = use one with same filename as checkpoint; None = use VAE from checkpoint"),
    "sd_vae_overrides_per_model_preferences": OptionInfo(True, "Selected VAE overrides per-model preferences").info("you can set per-model VAE either by editing user metadata for checkpoints, or by making the VAE have same name as checkpoint"),
    "auto_vae_precision_bfloat16": OptionInfo(False, "Automatically convert VAE to bfloat16").info("triggers when a tensor with NaNs is produced in VAE; disabling the option in this case will result in a black square image; if enabled, overrides the option below"),
    "auto_vae_precision": OptionInfo(True, "Automatically revert VAE to 32-bit floats").info("triggers when a tensor with NaNs is produced in VAE; disabling the option in this case will result in a black square image"),
    "sd_vae_encode_method": OptionInfo("Full", "VAE type for encode", gr.Radio, {"choices": ["Full", "TAESD"]}, infotext='VAE Encoder'),
    "sd_vae_decode_method": OptionInfo("Full", "VAE type for decode", gr.Radio, {"choices": ["Full", "TAESD"]}, infotext='VAE Decoder'),
}))

options_templates.update(options_section(('img2img', "img2img", "sd"), {
    "inpainting_mask_weight": OptionInfo(1.0, "Inpainting conditioning mask strength", gr.Slider, {"minimum": 0.0, "maximum": 1.0, "step": 0.01}, infotext='Conditional mask weight'),
    "img2img_color_correction": OptionInfo(False, "Apply color correction to img2img results to match original colors."),
}))

options_templates.update(options_section(('sampler-params', "Sampler parameters", "sd"), {
    "eta_noise_seed_delta": OptionInfo(0, "Eta noise seed delta", gr.Number, {"precision": 0}, infotext='ENSD'),
    "randn_source": OptionInfo("GPU", "Random number generator source.", gr.Radio, {"choices": ["GPU", "CPU", "NV"]}, infotext="RNG"),
}))

options_templates.update(options_section(('infotext', "Infotext", "ui"), {
    "add_model_hash_to_info": OptionInfo(True, "Add model hash to infotext"),
    "add_model_name_to_info": OptionInfo(True, "Add model name to infotext"),
    "add_user_name_to_info": OptionInfo(False, "Add user name to infotext when authenticated"),
    "add_version_to_infotext": OptionInfo(True, "Add program version to infotext"),
    "add_vae_name_to_info": OptionInfo(True, "Add VAE name to infotext"),
    "add_vae_hash_to_info": OptionInfo(True, "Add VAE hash to infotext"),
    "disable_weights_auto_swap": OptionInfo(True, "Disregard checkpoint information from pasted infotext"),
    "infotext_skip_pasting": OptionInfo([], "Disregard fields from pasted infotext", gr.Dropdown,
                                        lambda: {"choices": shared_items.get_infotext_names(), "multiselect": True}),
    "infotext_styles": OptionInfo("Apply if any", "Infer styles from prompts of pasted infotext", gr.Radio,
                                  {"choices": ["Ignore", "Apply", "Discard", "Apply if any"]}),
}))

options_templates.update(options_section(('ui', "User interface", "ui"), {
    "quicksettings_list": OptionInfo(["sd_model_checkpoint"], "Quicksettings list", gr.Dropdown, {"multiselect": True}),
    "ui_tab_order": OptionInfo([], "UI tab order", gr.Dropdown, {"multiselect": True}),
    "hidden_tabs": OptionInfo([], "Hidden UI tabs", gr.Dropdown, {"multiselect": True}),
}))

options_templates.update(options_section(('ui', "Live previews", "ui"), {
    "live_previews_enable": OptionInfo(True, "Show live previews of the created image"),
    "show_progress_type": OptionInfo("Approx NN", "Live preview method", gr.Radio, {"choices": ["Full", "Approx NN", "Approx cheap", "TAESD"]}),
}))

options_templates.update(options_section((None, "Hidden options"), {
    "disabled_extensions": OptionInfo([], "Disable these extensions"),
    "disable_all_extensions": OptionInfo("none", "Disable all extensions (preserves the list of disabled extensions)", gr.Radio, {"choices": ["none", "extra", "all"]}),
    "restore_config_state_file": OptionInfo("", "Config state file to restore from"),
    "sd_checkpoint_hash": OptionInfo("", "SHA256 hash of the current checkpoint"),
}))
