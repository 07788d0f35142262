"""modules_forge/main_entry.py: the top bar's checkpoint and "VAE / Text Encoder" choice.

Faithful: `module_list` ({basename: absolute path} of models/VAE, models/text_encoder,
--vae-dir, --text-encoder-dir, extensions ckpt/pt/bin/safetensors/gguf; `refresh_models`),
the multiselect dropdown "VAE / Text Encoder" (76-81) whose change calls `modules_change`
(258-276: basenames -> paths through `module_list`, unknown names dropped, unchanged ->
False; else `opts.set('forge_additional_modules', paths)`, save, refresh), `checkpoint_change`,
and `refresh_model_loading_parameters` (checkpoint_info, additional_modules,
unet_storage_dtype; the next generation's `forge_model_reload` rebuilds the whole model).
Simplified: no presets, no memory sliders; `make_checkpoint_manager_ui` builds only the
checkpoint and module dropdowns (and is not called by the stand-in's `create_ui`).
"""

import os

from modules import paths, processing, sd_models, shared, shared_items
from backend.args import dynamic_args

ui_checkpoint = None
ui_vae = None
module_list = {}

forge_unet_storage_dtype_options = {'Automatic': (None, False), 'Automatic (fp16 LoRA)': (None, True)}


def find_files_with_extensions(base_path, extensions):
    found_files = {}
    for root, _, files in os.walk(base_path):
        for file in files:
            if any(file.endswith(ext) for ext in extensions):
                found_files[file] = os.path.join(root, file)
    return found_files


def refresh_models():
    shared_items.refresh_checkpoints()
    ckpt_list = shared_items.list_checkpoint_tiles(False)
    module_list.clear()
    module_paths = [
        os.path.abspath(os.path.join(paths.models_path, "VAE")),
        os.path.abspath(os.path.join(paths.models_path, "text_encoder")),
    ]
    if isinstance(getattr(shared.cmd_opts, "vae_dir", None), str):
        module_paths.append(os.path.abspath(shared.cmd_opts.vae_dir))
    if isinstance(getattr(shared.cmd_opts, "text_encoder_dir", None), str):
        module_paths.append(os.path.abspath(shared.cmd_opts.text_encoder_dir))
    for vae_path in module_paths:
        module_list.update(find_files_with_extensions(vae_path, ['ckpt', 'pt', 'bin', 'safetensors', 'gguf']))
    return ckpt_list, module_list.keys()


def make_checkpoint_manager_ui():
    import gradio as gr
    global ui_checkpoint, ui_vae
    ckpt_list, vae_list = refresh_models()
    ui_checkpoint = gr.Dropdown(value=lambda: shared.opts.sd_model_checkpoint, label="Checkpoint", choices=ckpt_list)
    ui_vae = gr.Dropdown(value=lambda: [os.path.basename(x) for x in shared.opts.forge_additional_modules],
                         multiselect=True, label="VAE / Text Encoder", choices=list(vae_list))
    ui_checkpoint.change(checkpoint_change, inputs=[ui_checkpoint], show_progress=False)
    ui_vae.change(modules_change, inputs=[ui_vae], queue=False, show_progress=False)


def refresh_model_loading_parameters():
    from modules.sd_models import select_checkpoint, model_data
    checkpoint_info = select_checkpoint()
    unet_storage_dtype, lora_fp16 = forge_unet_storage_dtype_options.get(shared.opts.forge_unet_storage_dtype, (None, False))
    dynamic_args['online_lora'] = lora_fp16
    model_data.forge_loading_parameters = dict(
        checkpoint_info=checkpoint_info,
        additional_modules=shared.opts.forge_additional_modules,
        unet_storage_dtype=unet_storage_dtype,
    )
    print(f'Model selected: {model_data.forge_loading_parameters}')
    processing.need_global_unload = True


def checkpoint_change(ckpt_name: str, save=True, refresh=True):
    new_ckpt_info = sd_models.get_closet_checkpoint_match(ckpt_name)
    current_ckpt_info = sd_models.get_closet_checkpoint_match(shared.opts.data.get('sd_model_checkpoint', '') or '')
    if new_ckpt_info == current_ckpt_info:
        return False
    shared.opts.set('sd_model_checkpoint', ckpt_name)
    if save:
        shared.opts.save(shared.config_filename)
    if refresh:
        refresh_model_loading_parameters()
    return True


def modules_change(module_values: list, save=True, refresh=True) -> bool:
    modules = []
    for v in module_values:
        module_name = os.path.basename(v)
        if module_name in module_list:
            modules.append(module_list[module_name])
    if sorted(modules) == sorted(shared.opts.data.get('forge_additional_modules', [])):
        return False
    shared.opts.set('forge_additional_modules', modules)
    if save:
        shared.opts.save(shared.config_filename)
    if refresh:
        refresh_model_loading_parameters()
    return True
