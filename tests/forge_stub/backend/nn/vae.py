"""backend/nn/vae.py: `IntegratedAutoencoderKL`, the module inside Forge's VAE object.

Faithful: LDM parameter names at the top level (`encoder.*`, `decoder.*`, `quant_conv.*`,
`post_quant_conv.*`; Forge converts diffusers-layout files to these on load),
`scaling_factor`/`shift_factor`, `process_in(latent) = (latent - shift) * scale`,
`process_out(latent) = latent / scale + shift`, `encode(x, regulation=None)` returning a
*sample* (not a distribution), `decode(z)`.
Simplified: built from the A1111 stand-in's tiny kl-f8 (`stub_ldm`), not from a diffusers config.
"""

import stub_ldm


class IntegratedAutoencoderKL(stub_ldm._AutoencoderKL):
    def __init__(self, kind="sd1"):
        arch = stub_ldm.vae_arch_for(kind)
        super().__init__(arch)
        self.latent_channels = arch.z_channels
        if kind == "sd3":
            self.scaling_factor, self.shift_factor = stub_ldm.SD3_SCALE, stub_ldm.SD3_SHIFT
        else:
            self.scaling_factor = stub_ldm.SDXL_SCALE if kind == "sdxl" else stub_ldm.SD1_SCALE
            self.shift_factor = 0.0

    def encode(self, x, regulation=None):
        posterior = super().encode(x)
        if regulation is not None:
            return regulation(posterior)
        return posterior.sample()

    def process_in(self, latent):
        return (latent - self.shift_factor) * self.scaling_factor

    def process_out(self, latent):
        return (latent / self.scaling_factor) + self.shift_factor
