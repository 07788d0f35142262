"""How big one request may be: the sizes the app and `eval --size` accept, in one place.

A VAE decoder's mid-block attention is quadratic in the latent area (512×512 latents took 141 s
on a CPU, 1024×1024 would take ~18 min) and the activations grow with the image, so one request
without a bound can hold the app for everyone or be OOM-killed. The defaults allow 2048×2048
images (SDXL's 1024² four times over) and the latents of such an image (256×256); an operator
raises them with `serve --max-pixels N` / `eval --max-pixels N` or `VAE_LAB_MAX_PIXELS`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from vae_lab.errors import VaeLabError

LATENT_SCALE = 8  # every supported VAE downsamples by 8 per side
DEFAULT_MAX_PIXELS = 2048 * 2048
ENV_MAX_PIXELS = "VAE_LAB_MAX_PIXELS"
# the comparison app's overall limit for one "Get VAEs" download (the largest VAE-like file,
# 2.5 GB, takes ~7 min at 50 Mbit/s); `serve --download-minutes` changes it
DEFAULT_DOWNLOAD_SECONDS = 30 * 60


class TooLarge(VaeLabError):
    """An image or latents over the configured size limit."""


def _env_pixels() -> int:
    raw = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        raise VaeLabError(f"{ENV_MAX_PIXELS}={raw!r}: not a whole number of pixels") from None
    if value < 64 * 64:
        raise VaeLabError(f"{ENV_MAX_PIXELS}={value}: must be at least {64 * 64} (64×64)")
    return value


@dataclass(frozen=True)
class Limits:
    """`max_pixels`: width × height of an image; latents may cover as much (area × 8²)."""

    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def default(cls) -> "Limits":
        return cls(max_pixels=_env_pixels())

    @property
    def max_latent_area(self) -> int:
        return self.max_pixels // (LATENT_SCALE * LATENT_SCALE)

    def check_image(self, width: int, height: int, what: str = "the image") -> None:
        if int(width) * int(height) > self.max_pixels:
            raise TooLarge(
                f"{what} is {width}×{height} ({int(width) * int(height):,} pixels); the limit here is "
                f"{self.max_pixels:,} pixels ({_side(self.max_pixels)}): use a smaller one"
            )

    def check_latents(self, shape, what: str = "the latents") -> None:
        h, w = int(shape[-2]), int(shape[-1])
        if h * w > self.max_latent_area:
            raise TooLarge(
                f"{what} are {w}×{h} (an image of {w * LATENT_SCALE}×{h * LATENT_SCALE}); the limit here is "
                f"{self.max_latent_area:,} latent pixels ({_side(self.max_pixels)} images)"
            )

    def check_size(self, size: int, option: str = "--size") -> None:
        """`eval --size N` (N×N images)."""
        if size < LATENT_SCALE:
            raise TooLarge(f"{option} {size}: must be at least {LATENT_SCALE}")
        if size * size > self.max_pixels:
            raise TooLarge(f"{option} {size}: {size}×{size} is over the limit of {self.max_pixels:,} pixels "
                           f"({_side(self.max_pixels)}); pass --max-pixels to raise it")


def _side(pixels: int) -> str:
    side = int(pixels ** 0.5)
    return f"{side}×{side}" if side * side == pixels else f"about {side}×{side}"
