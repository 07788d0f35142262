"""Built-in settings (modules/shared_options.py), Forge's: A1111's plus Forge's changes.

Faithful: "sd_vae" is a `gr.State` labelled "(Managed by Forge)" (shared_options.py 209): it
is still in `opts` and still has `infotext='VAE'`, but nothing reads it to load a VAE; the
hidden Forge options of `modules_forge/shared_options.register` with their defaults, among
them `forge_additional_modules` (a list of absolute paths: the top bar's "VAE / Text Encoder").
"""

import gradio as gr

from modules._a1111 import inherit

inherit(globals(), "shared_options")

options_templates["sd_vae"] = OptionInfo("Automatic", "(Managed by Forge)", gr.State, infotext='VAE')  # noqa: F821
options_templates["sd_vae"].section = options_templates["sd_vae_overrides_per_model_preferences"].section  # noqa: F821

options_templates.update(options_section((None, "Forge Hidden options"), {  # noqa: F821
    "forge_unet_storage_dtype": OptionInfo('Automatic'),  # noqa: F821
    "forge_inference_memory": OptionInfo(1024),  # noqa: F821
    "forge_async_loading": OptionInfo('Queue'),  # noqa: F821
    "forge_pin_shared_memory": OptionInfo('CPU'),  # noqa: F821
    "forge_preset": OptionInfo('sd'),  # noqa: F821
    "forge_additional_modules": OptionInfo([]),  # noqa: F821
}))
