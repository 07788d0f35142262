"""Latent files: latents as a sampler produces them (diffusion space).

Convention (ComfyUI `.latent`): a safetensors file whose tensor `latent_tensor` holds
[B, C, h, w] latents already multiplied by the family's scaling factor (and shifted,
for SD3/Flux). We write exactly that, plus metadata naming the family and the image
size. We read that, or any `.safetensors` / `.pt` file holding a single tensor under
any name (a 3-D tensor is taken as one latent). `.pt` is read with `weights_only`.
"""

from __future__ import annotations

from pathlib import Path

from vae_lab.errors import VaeLabError

TENSOR_NAME = "latent_tensor"


class BadLatentFile(VaeLabError):
    """A latent file that cannot be read as one latent tensor."""


def _pick(tensors: dict, path) -> object:
    import torch

    if TENSOR_NAME in tensors:
        t = tensors[TENSOR_NAME]
    else:
        found = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)}
        if len(found) != 1:
            names = ", ".join(sorted(found)) or "none"
            raise BadLatentFile(f"{path}: want one latent tensor (or '{TENSOR_NAME}'), found {len(found)}: {names[:200]}")
        t = next(iter(found.values()))
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise BadLatentFile(f"{path}: the latent is not a floating-point tensor")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise BadLatentFile(f"{path}: latents must be [B, C, h, w], got shape {list(t.shape)}")
    return t.float().contiguous()


def load_latents(path) -> tuple[object, dict]:
    """(latents float32 [B, C, h, w], metadata dict) from a latent file."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise BadLatentFile(f"{path}: no such latent file")
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
        try:
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
