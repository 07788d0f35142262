"""backend/patcher/vae.py: Forge's VAE object (`sd_model.forge_objects.vae`).

Faithful: `first_stage_model` (the `IntegratedAutoencoderKL` module), `patcher`
(a `ModelPatcher` of that module), `latent_channels`, `downscale_ratio`, `vae_dtype`,
`clone()` sharing the same module; `decode(samples)` takes *VAE-space* latents (after
`process_out`) and returns NHWC pixels in [0, 1] on `output_device` (the whole batch in
one call, `model_vae_decode_wrapper` honoured); `encode(pixels)` takes NHWC [0, 1] and
returns VAE-space latents (a sample of the posterior), `model_vae_regulation` honoured.
Simplified: no memory estimate, no tiled fallback on OOM (the CPU never raises it here).
`decode_calls` (stand-in only) counts decodes of every VAE object.
"""

import torch

from backend import memory_management
from backend.patcher.base import ModelPatcher

decode_calls = 0  # stand-in only


class VAE:
    def __init__(self, model=None, device=None, dtype=None, no_init=False):
        if no_init:
            return
        self.downscale_ratio = 8
        self.latent_channels = int(model.latent_channels)
        self.first_stage_model = model.eval()
        self.device = device or memory_management.vae_device()
        self.vae_dtype = dtype or memory_management.vae_dtype()
        self.first_stage_model.to(self.vae_dtype)
        self.output_device = memory_management.intermediate_device()
        self.patcher = ModelPatcher(self.first_stage_model, load_device=self.device,
                                    offload_device=memory_management.vae_offload_device())

    def clone(self):
        n = VAE(no_init=True)
        n.patcher = self.patcher.clone()
        n.downscale_ratio = self.downscale_ratio
        n.latent_channels = self.latent_channels
        n.first_stage_model = self.first_stage_model
        n.device = self.device
        n.vae_dtype = self.vae_dtype
        n.output_device = self.output_device
        return n

    def decode_inner(self, samples_in):
        global decode_calls
        decode_calls += 1
        memory_management.load_models_gpu([self.patcher])
        samples = samples_in.to(self.vae_dtype).to(self.device)
        pixels = torch.clamp((self.first_stage_model.decode(samples).to(self.output_device).float() + 1.0) / 2.0, 0.0, 1.0)
        return pixels.movedim(1, -1)

    def decode(self, samples_in):
        wrapper = self.patcher.model_options.get("model_vae_decode_wrapper", None)
        if wrapper is None:
            return self.decode_inner(samples_in)
        return wrapper(self.decode_inner, samples_in)

    def encode_inner(self, pixel_samples):
        regulation = self.patcher.model_options.get("model_vae_regulation", None)
        memory_management.load_models_gpu([self.patcher])
        pixels_in = (2.0 * pixel_samples.movedim(-1, 1) - 1.0).to(self.vae_dtype).to(self.device)
        return self.first_stage_model.encode(pixels_in, regulation).to(self.output_device).float()

    def encode(self, pixel_samples):
        wrapper = self.patcher.model_options.get("model_vae_encode_wrapper", None)
        if wrapper is None:
            return self.encode_inner(pixel_samples)
        return wrapper(self.encode_inner, pixel_samples)
