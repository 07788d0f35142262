"""The latents of the last generation, kept so the comparison tab can decode them again.

The WebUI adapter stores each generation's latents here (diffusion space, on the CPU);
the tab reads them. Only the newest generation is kept, and only up to a byte budget,
so this never holds more than one batch of latents in RAM.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

MAX_BYTES = 64 * 1024 * 1024  # a 2048x2048 batch of 8 SDXL latents is 32 MiB in fp32


@dataclass
class LastLatents:
    latents: object  # torch.Tensor [B, C, h, w], diffusion space, float32, CPU
    family: str | None  # latent family of the model that made them ("sd1", "sdxl", …) or None
    model_name: str | None = None
    vae_name: str | None = None  # VAE that decoded them in the generation
    infotexts: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)


_lock = threading.Lock()
_last: LastLatents | None = None


def store(latents, family: str | None, **details) -> bool:
    """Keep `latents` (moved to CPU fp32) as the last generation's; False when over budget."""
    global _last
    t = latents.detach().to("cpu", dtype=_float32(latents))
    if t.numel() * t.element_size() > MAX_BYTES:
        return False
    with _lock:
        _last = LastLatents(t, family, **details)
    return True


def get() -> LastLatents | None:
    with _lock:
        return _last


def clear() -> None:
    global _last
    with _lock:
        _last = None


def _float32(t):
    import torch

    return torch.float32
