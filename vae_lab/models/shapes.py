"""The tensors a network has, read off the network itself.

Loading validates a state dict against `expected_shapes(arch)`: every key and shape of the
module `vae_lab.models` would build for `arch`. The modules are built on the meta device
(no memory, no initialisation), so there is one description of each network — its code —
and the validation can never drift from what is loaded into.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from vae_lab.models.arch import KLArch, TAEArch


@lru_cache(maxsize=32)
def _shapes(arch: KLArch | TAEArch) -> tuple[tuple[str, tuple[int, ...]], ...]:
    with torch.device("meta"):
        if isinstance(arch, KLArch):
            from vae_lab.models.kl import AutoencoderKL

            items = AutoencoderKL(arch).state_dict().items()
        else:
            from vae_lab.models.tae import build_decoder, build_encoder

            halves = []
            if arch.has_encoder:
                halves.append(("encoder", build_encoder(arch)))
            if arch.has_decoder:
                halves.append(("decoder", build_decoder(arch)))
            items = [(f"{half}.{k}", v) for half, module in halves for k, v in module.state_dict().items()]
    return tuple((key, tuple(value.shape)) for key, value in items)


def expected_shapes(arch: KLArch | TAEArch) -> dict[str, tuple[int, ...]]:
    """Every tensor of `arch` with its shape: LDM keys for kl-f8, `encoder.N…`/`decoder.N…` for a TAE."""
    return dict(_shapes(arch))
