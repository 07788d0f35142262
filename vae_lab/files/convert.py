"""Any readable VAE → one `.safetensors` file in the normalised layout.

kl VAEs are written in the LDM layout that A1111 loads strictly (a diffusers folder or a
`.ckpt` becomes a file `models/VAE` can use); TAE pairs are written with both halves as
`encoder.N…` / `decoder.N…`. `half=True` stores floating tensors as fp16 (half the size;
the weights id does not change, because it is computed at fp16).

The source's name and identity travel in the safetensors `__metadata__` (`vae_lab.*` keys) for
people to read; `identify` never trusts them. A converted copy of a catalog VAE is still
recognised by its weights id, because identifying the source here recorded which catalogued
SHA-256 has those weights. An existing destination is never overwritten: the file is written
under a temporary name in the destination folder (with the user's umask, not 0600) and linked
into place only if the name is still free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from vae_lab.errors import VaeLabError
from vae_lab.identity.identify import DEFAULT_CACHE, identify
from vae_lab.files.atomic import place_new, remove_quietly, reserve_temp
from vae_lab.files.loading import load_vae_file

METADATA_PREFIX = "vae_lab."


class ConvertError(VaeLabError):
    """A conversion refused before anything was written (bad destination)."""


@dataclass
class ConvertResult:
    src: str
    dst: str
    kind: str
    tensors: int
    dtype: str
    size_bytes: int
    source_sha256: str
    weights_id: str
    metadata: dict


def _check_destination(dst: str) -> None:
    if not dst.lower().endswith(".safetensors"):
        raise ConvertError(f"{dst}: the destination must end in .safetensors")
    if os.path.lexists(dst):
        raise ConvertError(f"{dst}: already exists; not overwriting it (choose another name or remove it)")
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise ConvertError(f"{dst}: the folder {folder} does not exist")


def _place(tmp: str, dst: str) -> None:
    """Move `tmp` to `dst` only if `dst` does not exist, even if it appeared meanwhile."""
    try:
        place_new(tmp, dst)
    except FileExistsError:
        raise ConvertError(f"{dst}: already exists; not overwriting it") from None


def convert(src, dst, *, half: bool = False, cache=DEFAULT_CACHE, source_name: str | None = None) -> ConvertResult:
    """Write the VAE at `src` to `dst` (.safetensors). Raises `VaeLabError`; leaves no partial file.

    `source_name`: the name to record as the source (a download converts its hidden partial file).
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    src, dst = os.fspath(src), os.fspath(dst)
    _check_destination(dst)
    vae = load_vae_file(src)
    if os.path.abspath(dst) in {os.path.abspath(f) for f in vae.files}:
        raise ConvertError(f"{dst}: is the source file itself; not overwriting it")
    info = identify(vae, cache=cache)

    tensors = {}
    for key, t in vae.state_dict.items():
        t = t.detach().to("cpu")
        if half and t.is_floating_point() and t.dtype != torch.float16:
            t = t.to(torch.float16)
        tensors[key] = t.contiguous()
    dtypes = {str(t.dtype).replace("torch.", "") for t in tensors.values()}
    dtype = dtypes.pop() if len(dtypes) == 1 else "mixed"

    metadata = {
        "format": "pt",
        f"{METADATA_PREFIX}source_name": source_name or os.path.basename(os.path.normpath(src)),
        f"{METADATA_PREFIX}source_sha256": info.file_sha256,
        f"{METADATA_PREFIX}source_format": info.format,
        f"{METADATA_PREFIX}source_layout": info.layout,
        f"{METADATA_PREFIX}weights_id": info.weights_id,
        f"{METADATA_PREFIX}kind": info.kind,
        f"{METADATA_PREFIX}latent_channels": str(info.latent_channels),
        f"{METADATA_PREFIX}family": info.family,
        f"{METADATA_PREFIX}dtype": dtype,
    }
    if info.known:
        metadata[f"{METADATA_PREFIX}known"] = info.known
    if vae.kind == "tae":
        metadata[f"{METADATA_PREFIX}variant"] = vae.arch.variant

    folder = os.path.dirname(os.path.abspath(dst))
    try:
        tmp, mode = reserve_temp(folder, prefix=".vae_lab-", suffix=".safetensors.part")
    except OSError as err:
        raise ConvertError(f"{dst}: cannot write into {folder} ({err.strerror or err})") from None
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, mode)  # save_file may recreate the file privately
        _place(tmp, dst)
    except OSError as err:
        raise ConvertError(f"{dst}: cannot write ({err.strerror or err})") from None
    except SafetensorError as err:  # safetensors reports its own I/O errors (a full disk) this way
        raise ConvertError(f"{dst}: cannot write ({' '.join(str(err).split())})") from None
    finally:
        remove_quietly(tmp)
    return ConvertResult(
        src=src,
        dst=dst,
        kind=vae.kind,
        tensors=len(tensors),
        dtype=dtype,
        size_bytes=os.path.getsize(dst),
        source_sha256=info.file_sha256,
        weights_id=info.weights_id,
        metadata=metadata,
    )
