"""Is VAE X right for model Y? A family check that refuses what would give wrong images.

Two things can tell: the latent shape (a 16-channel VAE can never decode a 4-channel
model's latents, so that is always refused) and the VAE's identity (`vae_lab.identity.identify`
knows the family of catalogued weights: an SDXL VAE loads into an SD1 model without any
error but gives washed-out colours). A VAE whose family identity cannot tell is allowed
with a warning. Refusing a known wrong family can be turned off in Settings, which turns
that refusal into a warning too.

`decode_refusal` / `check_decode` answer the narrower question "can this VAE decode these
latents?" (channels, known family) for the engine, the comparison and the tab: one rule,
one message format.
"""

from __future__ import annotations

from dataclasses import dataclass

from vae_lab.identity import families
from vae_lab.errors import IncompatibleVae

OK, WARN, REFUSE = "ok", "warn", "refuse"


@dataclass(frozen=True)
class Verdict:
    level: str  # OK | WARN | REFUSE
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.level != REFUSE

    def raise_if_refused(self) -> "Verdict":
        if self.level == REFUSE:
            raise IncompatibleVae(self.message)
        return self


def model_family(*, is_sdxl=False, is_sd3=False, is_flux=False, latent_channels=4) -> str:
    """The latent family of a loaded model from the WebUI's flags (SD1 and SD2 share one)."""
    if is_flux:
        return "flux"
    if is_sd3:
        return "sd3"
    if is_sdxl:
        return "sdxl"
    if latent_channels == 4:
        return "sd1"
    return families.UNKNOWN


def _label(family: str | None) -> str:
    fam = families.get(family or "")
    return fam.label if fam else "an unknown family"


def check(
    vae_name: str,
    *,
    vae_family: str | None,
    vae_channels: int | None,
    vae_kind: str = "kl",
    model_family: str,
    model_channels: int,
    refuse_wrong_family: bool = True,
) -> Verdict:
    """Decide whether `vae_name` may be swapped into a model of `model_family`."""
    if vae_kind == "tae":
        return Verdict(
            REFUSE,
            f"{vae_name} is a tiny autoencoder (TAESD), not a full VAE; "
            "the WebUI uses TAESD through Settings > VAE > 'VAE type for decode'",
        )
    if vae_channels is not None and model_channels and vae_channels != model_channels:
        return Verdict(
            REFUSE,
            f"{vae_name} makes {vae_channels}-channel latents but the loaded "
            f"{_label(model_family)} model uses {model_channels}; keeping the current VAE",
        )
    known = vae_family not in (None, "", families.UNKNOWN)
    if not known:
        return Verdict(WARN, f"{vae_name}: family unknown (not in the catalog); check that it suits the model")
    if model_family in (None, "", families.UNKNOWN) or vae_family == model_family:
        return Verdict(OK)
    msg = (
        f"{vae_name} is a {_label(vae_family)} VAE but the loaded model is {_label(model_family)}; "
        "it would give wrong colours"
    )
    if refuse_wrong_family:
        return Verdict(REFUSE, msg + "; keeping the current VAE")
    return Verdict(WARN, msg + " (allowed by Settings)")


def known_family(family: str | None) -> str | None:
    """`family` if it is a catalogued family key, else None (unknown families never refuse)."""
    return family if family and families.get(family) is not None else None


def decode_refusal(
    *,
    vae_channels: int | None,
    latent_channels: int | None,
    vae_family: str | None = None,
    latent_family: str | None = None,
    has_decoder: bool = True,
) -> str | None:
    """Why a VAE cannot decode latents of `latent_channels`/`latent_family`, or None if it can (or may).

    The reason reads after the VAE's name ("sd1.pt decodes 4-channel latents, these have 16
    channels") and alone (the tab's "✕ label — reason"). A channel count or family that is
    not known does not refuse: the decode itself decides.
    """
    if not has_decoder:
        return "has no decoder: it can only encode"
    if vae_channels and latent_channels and vae_channels != latent_channels:
        return f"decodes {vae_channels}-channel latents, these have {latent_channels} channels"
    fam_v, fam_l = known_family(vae_family), known_family(latent_family)
    if fam_v and fam_l and fam_v != fam_l:
        return f"is for {_label(fam_v)} latents, these are {_label(fam_l)}"
    return None


def check_decode(vae, latent_channels: int | None, latent_family: str | None = None) -> Verdict:
    """`decode_refusal` for a loaded VAE (anything with `name`, `latent_channels`, `family`, `has_decoder`)."""
    why = decode_refusal(
        vae_channels=getattr(vae, "latent_channels", None),
        latent_channels=latent_channels,
        vae_family=getattr(vae, "family", None),
        latent_family=latent_family,
        has_decoder=getattr(vae, "has_decoder", True),
    )
    return Verdict(REFUSE, f"{vae.name} {why}") if why else Verdict(OK)
