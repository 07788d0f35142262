"""Latent files: latents as a sampler produces them (diffusion space).

Convention (ComfyUI `.latent`): a safetensors file whose tensor `latent_tensor` holds
[B, C, h, w] latents already multiplied by the family's scaling factor (and shifted,
for SD3/Flux). We write exactly that, plus metadata naming the family and the image
size. We read that, or any `.safetensors` / `.pt` file holding a single tensor under
any name (a 3-D tensor is taken as one latent). `.pt` is read with `weights_only`, after
the structure checks of `vae_lab.files.torchfile`; the latent may not claim more bytes than
its storage (`vae_lab.files.loading.check_tensor_bytes`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from vae_lab.errors import BadVaeFile, VaeLabError

TENSOR_NAME = "latent_tensor"


class BadLatentFile(VaeLabError):
    """A latent file that cannot be read as one latent tensor."""


def _pick(tensors: dict, path) -> object:
    import torch

    from vae_lab.files.loading import check_tensor_bytes

    if TENSOR_NAME in tensors:
        t = tensors[TENSOR_NAME]
    else:
        found = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
        if len(found) != 1:
            if not found:
                raise BadLatentFile(f"{path}: holds no tensor, so no latents")
            hint = " (a model or VAE file, not latents?)" if len(found) > 8 else ""
            raise BadLatentFile(f"{path}: holds {len(found)} tensors, not one latent tensor{hint}; "
                                f"a latent file has one, or one named '{TENSOR_NAME}'")
        t = next(iter(found.values()))
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise BadLatentFile(f"{path}: the latent is not a floating-point tensor")
    try:
        check_tensor_bytes(t, "latents", str(path))  # a stride-0 view is a bomb once made contiguous
    except BadVaeFile as err:
        raise BadLatentFile(str(err)) from None
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise BadLatentFile(f"{path}: latents must be [B, C, h, w], got shape {list(t.shape)}")
    return t.float().contiguous()


def load_latents(path) -> tuple[object, dict]:
    """(latents float32 [B, C, h, w], metadata dict) from a latent file."""
    import torch

    from vae_lab.files import torchfile
    from vae_lab.files.folders import regular_file_problem
    from vae_lab.files.readers import sniff

    p = Path(path)
    problem = regular_file_problem(p)
    if problem is not None:
        raise BadLatentFile(f"{path}: {'no such latent file' if problem == 'no such file' else problem}")
    meta: dict = {}
    if p.suffix.lower() in (".safetensors", ".latent"):
        from safetensors import safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                meta = dict(f.metadata() or {})
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # noqa: BLE001 — SafetensorError and friends: a bad file
            raise BadLatentFile(f"{path}: not a readable safetensors file ({str(err).splitlines()[0][:120]})") from None
    else:
        try:  # the same structure checks as for VAE pickles: no compressed records, no storage bigger than its bytes
            kind = sniff(str(p))
            if kind == "zip-pickle":
                torchfile.check_zip(str(p))
            elif kind == "pickle":
                torchfile.check_legacy(str(p))
        except BadVaeFile as err:
            raise BadLatentFile(str(err)) from None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch 2.1's TypedStorage warning would break the one-line error
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 — any unpickling failure is a bad file
            raise BadLatentFile(f"{path}: not a readable tensor file ({err.__class__.__name__})") from None
        if isinstance(obj, torch.Tensor):
            tensors = {TENSOR_NAME: obj}
        elif isinstance(obj, dict):
            tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
            if "samples" in obj and isinstance(obj["samples"], torch.Tensor):
                tensors = {TENSOR_NAME: obj["samples"]}  # ComfyUI's in-memory LATENT dict
        else:
            raise BadLatentFile(f"{path}: holds a {type(obj).__name__}, not a latent tensor")
    return _pick(tensors, path), meta


def save_latents(path, latents, *, family: str | None = None, image_size=None, vae: str | None = None) -> str:
    """Write diffusion-space `latents` as `latent_tensor` in a safetensors file (atomically)."""
    import os

    from safetensors.torch import save_file

    meta = {"format": "vae_lab.latent", "space": "diffusion"}
    if family:
        meta["family"] = family
    if image_size:
        meta["image_size"] = f"{int(image_size[0])}x{int(image_size[1])}"
    if vae:
        meta["vae"] = vae
    from vae_lab.files.atomic import remove_quietly, reserve_temp

    p = Path(path)
    tmp, mode = reserve_temp(p.parent, prefix=f".{p.name}.", suffix=".part")  # a unique name: saves may overlap
    try:
        save_file({TENSOR_NAME: latents.detach().float().cpu().contiguous()}, tmp, metadata=meta)
        os.chmod(tmp, mode)
        os.replace(tmp, p)
    finally:
        remove_quietly(tmp)  # nothing left behind when the write or the replace fails
    return str(p)


def image_size_from_meta(meta: dict):
    """(H, W) from our metadata, or None."""
    try:
        h, w = (int(v) for v in meta.get("image_size", "").split("x"))
        return h, w
    except ValueError:
        return None
