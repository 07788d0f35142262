"""The networks: kl-f8 AutoencoderKL (`kl.py`) and the TAE family (`tae.py`).

Both expose the same small surface, which is all `engine.py` relies on:
`encode(images) -> raw latents`, `decode(raw latents) -> images` (images NCHW in
[-1, 1]), plus `kind`, `latent_channels`, `downscale`, `has_encoder`, `has_decoder`.
"""

from __future__ import annotations


def can_assign() -> bool:
    """Whether this torch loads state dicts by assignment (`load_state_dict(assign=True)`, torch >= 2.1)."""
    import inspect

    import torch.nn as nn

    return "assign" in inspect.signature(nn.Module.load_state_dict).parameters


def empty_init():
    """A context in which modules are built without memory or random initialisation (the meta
    device), to be filled by `load_state_dict(..., assign=True)`; a no-op where torch can't."""
    import contextlib

    import torch

    return torch.device("meta") if can_assign() else contextlib.nullcontext()


def load_weights(module, state_dict: dict) -> None:
    """`module.load_state_dict(state_dict, strict=True)`, by assignment where torch can (no copy)."""
    if can_assign():
        module.load_state_dict(state_dict, strict=True, assign=True)
    else:
        module.load_state_dict(state_dict, strict=True)


def build_model(kind: str, state_dict: dict, arch=None, *, share: bool = False):
    """Build the network for `kind` ("kl" | "tae") and load `state_dict` strictly (CPU, fp32).

    The network is built on the meta device and takes the tensors by assignment: no random
    initialisation, no copy (a ready model in about the time of reading the file). With
    `share=False` float32 tensors are cloned first, so the model never aliases the caller's
    tensors (a RAM cache); pass `share=True` for tensors nobody else holds (a file just read).
    """
    from vae_lab.errors import BadVaeFile

    def own(v):
        if not v.is_floating_point():
            return v
        f = v.float()
        return f.clone() if f is v and not share else f

    sd = {k: own(v) for k, v in state_dict.items()}
    if kind == "kl":
        from vae_lab.models.kl import AutoencoderKL

        if arch is None:
            raise BadVaeFile("a kl-f8 VAE needs its architecture (KLArch) to be built")
        with empty_init():
            model = AutoencoderKL(arch)
        try:
            load_weights(model, sd)
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
