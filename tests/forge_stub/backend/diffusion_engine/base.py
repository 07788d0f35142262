"""backend/diffusion_engine/base.py: `ForgeObjects` and `ForgeDiffusionEngine`.

Faithful: the engine is not an nn.Module; `first_stage_model` and `cond_stage_model` are
None (`fix_for_webui_backward_compatibility`); the VAE is `forge_objects.vae` (a
`backend.patcher.vae.VAE`); `forge_objects_original` and `forge_objects_after_applying_lora`
are shallow copies sharing the same VAE object, and processing re-copies them into
`forge_objects` at every batch; flags `is_sd1/is_sd2/is_sdxl/is_sd3`;
`decode_first_stage(x)` = `vae.decode(vae.first_stage_model.process_out(x))` -> [-1, 1] NCHW;
`encode_first_stage(x)` likewise. Simplified: the unet and text encoders are placeholders.
"""

import types

import torch

from backend.patcher.vae import VAE


class ForgeObjects:
    def __init__(self, unet, clip, vae, clipvision):
        self.unet = unet
        self.clip = clip
        self.vae = vae
        self.clipvision = clipvision

    def shallow_copy(self):
        return ForgeObjects(self.unet, self.clip, self.vae, self.clipvision)


class ForgeDiffusionEngine:
    matched_guesses = []

    def __init__(self, estimated_config, huggingface_components):
        self.model_config = estimated_config
        self.is_inpaint = False
        self.forge_objects = None
        self.forge_objects_original = None
        self.forge_objects_after_applying_lora = None
        self.current_lora_hash = str([])
        self.fix_for_webui_backward_compatibility()

    def fix_for_webui_backward_compatibility(self):
        self.tiling_enabled = False
        self.first_stage_model = None
        self.cond_stage_model = None
        self.use_distilled_cfg_scale = False
        self.is_sd1 = False
        self.is_sd2 = False
        self.is_sdxl = False
        self.is_sd3 = False

    def is_webui_legacy_model(self):
        return self.is_sd1 or self.is_sd2 or self.is_sdxl or self.is_sd3

    def get_first_stage_encoding(self, x):
        return x  # legacy code, do not change

    def set_clip_skip(self, clip_skip):
        pass


class StandInEngine(ForgeDiffusionEngine):
    """The part every real engine (sd15.py, sdxl.py, ...) repeats: build the VAE object, keep copies."""

    flag = None

    def __init__(self, estimated_config, huggingface_components):
        super().__init__(estimated_config, huggingface_components)
        vae = VAE(model=huggingface_components["vae"])
        unet = types.SimpleNamespace(model=huggingface_components["unet"], model_options={})
        self.forge_objects = ForgeObjects(unet=unet, clip=None, vae=vae, clipvision=None)
        self.forge_objects_original = self.forge_objects.shallow_copy()
        self.forge_objects_after_applying_lora = self.forge_objects.shallow_copy()
        if self.flag:
            setattr(self, self.flag, True)

    @torch.inference_mode()
    def encode_first_stage(self, x):
        sample = self.forge_objects.vae.encode(x.movedim(1, -1) * 0.5 + 0.5)
        sample = self.forge_objects.vae.first_stage_model.process_in(sample)
        return sample.to(x)

    @torch.inference_mode()
    def decode_first_stage(self, x):
        sample = self.forge_objects.vae.first_stage_model.process_out(x)
        sample = self.forge_objects.vae.decode(sample).movedim(-1, 1) * 2.0 - 1.0
        return sample.to(x)
