"""Random-weight VAEs for tests, in the real key layouts.

kl-f8 VAEs are too large to ship, so tests build them from `vae_lab.models.arch` shapes with
seeded random weights (small configs for speed; `SD_KL` is the real SD size).
"""

from __future__ import annotations

import math

import torch

from vae_lab.models.arch import KLArch
from vae_lab.models.shapes import expected_shapes

# An f8 model (three downsamples) small enough for CPU tests: ~1.7 M parameters.
TINY_KL = KLArch(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=4)
TINY_KL16 = KLArch(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=16, use_quant_conv=False)


def random_kl_state_dict(arch: KLArch = TINY_KL, seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """A kl-f8 state dict in the LDM layout with well-scaled random weights.

    Convolutions get a fan-in scaled normal init (so activations stay finite through the
    network), norms weight 1 / bias 0 plus a little noise, so every tensor matters.
    """
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape in expected_shapes(arch).items():
        if len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        elif ".norm" in name or "norm_out" in name:
            base = 1.0 if name.endswith(".weight") else 0.0
            t = base + 0.05 * torch.randn(shape, generator=gen)
        else:
            t = 0.02 * torch.randn(shape, generator=gen)
        sd[name] = t.to(dtype).contiguous()
    return sd
