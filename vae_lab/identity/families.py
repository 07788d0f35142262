"""Latent families: which latent space a VAE speaks, and how its latents are scaled.

Latents are exchanged in *diffusion space*, as a sampler produces them (ComfyUI's
`.latent` convention). A kl-f8 VAE works in its raw space, so its latents are converted
here, and only here:

    diffusion = (raw - shift) * scale        raw = diffusion / scale + shift

TAE models (madebyollin's tiny autoencoders) are trained directly on diffusion-space
latents, so their conversion is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    key: str
    label: str
    latent_channels: int
    scaling_factor: float
    shift_factor: float = 0.0


FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        Family("sd1", "SD1/SD2", 4, 0.18215),
        Family("sdxl", "SDXL", 4, 0.13025),
        Family("sd3", "SD3/SD3.5", 16, 1.5305, 0.0609),
        Family("flux", "Flux.1", 16, 0.3611, 0.1159),
        Family("flux2", "FLUX.2", 32, 1.0, 0.0),
    )
}

UNKNOWN = "unknown"


def get(key: str) -> Family | None:
    return FAMILIES.get(key)


def latent_scaling(kind: str, family: str | None, latent_channels: int) -> tuple[float, float]:
    """(scale, shift) between a VAE's raw latents and diffusion space.

    TAE: identity. kl-f8 of a known family: that family's factors. kl-f8 of an unknown
    family: the factors of the only family with that channel count that A1111 can run
    (SD1 for 4 channels), else identity.
    """
    if kind == "tae":
        return 1.0, 0.0
    fam = FAMILIES.get(family or "")
    if fam is None:
        fam = {4: FAMILIES["sd1"]}.get(latent_channels)
    if fam is None:
        return 1.0, 0.0
    return fam.scaling_factor, fam.shift_factor


def to_diffusion(raw, scale: float, shift: float):
    """Raw VAE latents -> diffusion-space latents."""
    return (raw - shift) * scale


def from_diffusion(latents, scale: float, shift: float):
    """Diffusion-space latents -> raw VAE latents."""
    return latents / scale + shift
