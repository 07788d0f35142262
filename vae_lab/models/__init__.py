"""The networks: kl-f8 AutoencoderKL (`kl.py`) and the TAE family (`tae.py`).

Both expose the same small surface, which is all `engine.py` relies on:
`encode(images) -> raw latents`, `decode(raw latents) -> images` (images NCHW in
[-1, 1]), plus `kind`, `latent_channels`, `downscale`, `has_encoder`, `has_decoder`.
"""

from __future__ import annotations


def build_model(kind: str, state_dict: dict, arch=None):
    """Build the network for `kind` ("kl" | "tae") and load `state_dict` strictly (CPU, fp32)."""
    from vae_lab.errors import BadVaeFile

    sd = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    if kind == "kl":
        from vae_lab.models.kl import AutoencoderKL

        if arch is None:
            raise BadVaeFile("a kl-f8 VAE needs its architecture (KLArch) to be built")
        model = AutoencoderKL(arch)
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as err:
            lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
            raise BadVaeFile(f"kl-f8 weights do not fit {arch}: {lines[1] if len(lines) > 1 else lines[0]}") from None
    elif kind == "tae":
        from vae_lab.models.tae import TAE

        model = TAE(sd, arch)
    else:
        raise BadVaeFile(f"unknown VAE kind {kind!r} (want 'kl' or 'tae')")
    model.eval().requires_grad_(False)
    return model
