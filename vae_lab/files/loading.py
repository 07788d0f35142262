"""`load_vae_file(path) -> VaeFile`: any VAE file, read safely, normalised and validated.

The path of a file through here: `readers` opens the container without running code,
`layout` finds the VAE's keys and renames them to the LDM layout (kl) or the `.pth`
layout (TAE), `arch` reads the configuration from tensor shapes, and every tensor is
checked against the full list that configuration needs. Missing, extra or mis-shaped
tensors are an error that names a few of them and how many there are. A TAE half
(`x_decoder.pth`) is joined with its sibling (`x_encoder.pth`) when that file exists.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from vae_lab.files import layout as L
from vae_lab.models.arch import KLArch, TAEArch, infer_kl_arch, infer_tae_arch
from vae_lab.models.shapes import expected_shapes
from vae_lab.errors import BadVaeFile
from vae_lab.files.folders import WEIGHT_EXTENSIONS
from vae_lab.files.readers import RawFile, read_container

_SHOW = 3  # tensor names shown in an error message


@dataclass
class VaeFile:
    path: str  # what was given (file or diffusers folder; for a TAE pair the file given)
    files: list[str]  # every file read (a TAE pair: the given half, then its sibling)
    format: str  # "safetensors" | "pickle" | "diffusers"
    layout: str  # on disk: "ldm" | "diffusers" | "checkpoint" | "tae" | "tae-diffusers"
    kind: str  # "kl" | "tae"
    state_dict: dict  # normalised: LDM keys (kl) or "encoder.N…"/"decoder.N…" (tae)
    arch: KLArch | TAEArch
    weights_file: str = ""  # the file holding the given weights (inside a diffusers folder: the weights file)
    config: dict | None = None  # diffusers config.json (a hint only: identity decides the family)
    metadata: dict = field(default_factory=dict)  # safetensors __metadata__ of the given file
    dropped_keys: int = 0  # loss*/model_ema.* entries and non-tensor bookkeeping that were ignored

    @property
    def latent_channels(self) -> int:
        return self.arch.latent_channels

    @property
    def has_encoder(self) -> bool:
        return self.arch.has_encoder

    @property
    def has_decoder(self) -> bool:
        return self.arch.has_decoder


def _names(keys, n=_SHOW) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:n])
    return shown + (", …" if len(keys) > n else "")


def _flat_mapping(raw: RawFile, path: str) -> Mapping:
    content = L.unwrap(raw.content)
    if not isinstance(content, Mapping):
        raise BadVaeFile(f"{path}: not a VAE (the file holds a {type(content).__name__}, not named tensors)")
    return content


def _not_a_vae(path: str, keys: list) -> BadVaeFile:
    if not keys:
        return BadVaeFile(f"{path}: not a VAE (no tensors)")
    if any(k.startswith(("model.diffusion_model.", "diffusion_model.")) for k in keys):
        return BadVaeFile(f"{path}: a Stable Diffusion checkpoint with no VAE inside")
    sample = sorted(keys)[0]
    count = f"{len(keys)} entr{'y' if len(keys) == 1 else 'ies'}"
    return BadVaeFile(f"{path}: not a VAE ({count}, none in a known VAE layout, e.g. {sample!r})")


def _normalise(raw: RawFile, path: str):
    """(kind, layout, normalised state dict, dropped count) of a container."""
    import torch

    content = _flat_mapping(raw, path)
    keys = [k for k in content.keys()]
    if any(not isinstance(k, str) for k in keys):
        raise BadVaeFile(f"{path}: not a VAE (the file holds a mapping with non-text keys)")
    prefix = L.find_prefix(keys)
    chosen = [k for k in keys if k.startswith(prefix)] if prefix else keys
    dropped = [k for k in chosen if L.is_dropped(k[len(prefix):])]
    wanted = [k for k in chosen if not L.is_dropped(k[len(prefix):])]
    found = L.detect(k[len(prefix):] for k in wanted)
    if found is None:
        raise _not_a_vae(path, keys)
    kind, disk_layout = found
    sd = {}
    for k in wanted:
        value = content[k]
        if not isinstance(value, torch.Tensor):
            # training bookkeeping next to the weights ("epoch": 3, "callbacks": {...}): not part of the model
            dropped.append(k)
            continue
        check_tensor_bytes(value, k, path)
        if not value.is_floating_point():
            raise BadVaeFile(f"{path}: {k!r} holds {value.dtype} values, not floating point weights")
        sd[k[len(prefix):]] = value
    if kind == "kl":
        if disk_layout == "diffusers":
            sd = L.diffusers_kl_to_ldm(sd)
    elif disk_layout == "tae-diffusers":
        sd = L.tae_diffusers_to_normalised(sd)
    elif not any(k.startswith(("encoder.", "decoder.")) for k in sd):
        half = L.tae_half_of(sd)
        if half is None:
            raise BadVaeFile(f"{path}: not a VAE (numbered tensors, but neither a TAE encoder nor decoder)")
        sd = L.tae_pth_to_normalised(sd, half)
    if prefix:
        disk_layout = "checkpoint"
    return kind, disk_layout, sd, len(dropped)


def shape_problems(sd: Mapping, expected: Mapping) -> list[str]:
    """What keeps `sd` from being exactly `expected` ({name: shape}): missing, unexpected and
    mis-shaped tensors, each counted and with a few names. The one check of a state dict
    against what a model needs, for files (`validate`) and for live modules (`runtime.swap`)."""
    have = set(sd)
    missing = set(expected) - have
    extra = have - set(expected)
    wrong = sorted(k for k in have & set(expected) if tuple(sd[k].shape) != tuple(expected[k]))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor{'s' * (len(missing) > 1)} ({_names(missing)})")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor{'s' * (len(extra) > 1)} ({_names(extra)})")
    if wrong:
        shown = ", ".join(f"{k} {list(sd[k].shape)} != {list(expected[k])}" for k in wrong[:_SHOW])
        problems.append(f"{len(wrong)} with the wrong shape ({shown}{', …' if len(wrong) > _SHOW else ''})")
    return problems


def validate(sd: Mapping, expected: Mapping, path: str, what: str) -> None:
    """Every expected tensor present with its shape, nothing else; else one line saying what is wrong."""
    problems = shape_problems(sd, expected)
    if problems:
        raise BadVaeFile(f"{path}: not a complete {what}: " + "; ".join(problems))


def check_tensor_bytes(t, key: str, path: str) -> None:
    """Refuse a tensor that is not plain dense data, or that claims more than its storage.

    A pickle chooses each tensor's size, strides and offset freely: stride 0 makes one float
    look like a 335 MB conv weight, and copying it (a swap, a convert) makes that real. Dense
    weights never hold more elements than their storage, so that is the rule.
    """
    import torch

    if t.layout is not torch.strided or t.is_quantized or t.device.type != "cpu":
        what = t.layout if t.layout is not torch.strided else ("quantized" if t.is_quantized else t.device.type)
        raise BadVaeFile(f"{path}: {key!r} is a {what} tensor, not dense weights")
    need = t.numel() * t.element_size()
    have = t.untyped_storage().nbytes()
    if need > have:
        raise BadVaeFile(
            f"{path}: refused: tensor {key!r} claims {need:,} bytes from a storage of {have:,} "
            "(a stride-0 or overlapping view)"
        )


def check_bytes_against_files(sd: Mapping, files: list[str], path: str) -> None:
    """Refuse tensors that together hold more bytes than the files they were read from.

    Each tensor passed `check_tensor_bytes`, but many tensors can view one storage: 248 views
    of one 1 MB storage are a 250 MB VAE from a 1 MB file. Weights are stored, not invented.
    """
    total = sum(t.numel() * t.element_size() for t in sd.values())
    size = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
    if total > size:
        raise BadVaeFile(
            f"{path}: refused: its tensors hold {total:,} bytes but the file has {size:,} "
            "(tensors that share or repeat storage)"
        )


def _arch_and_validate(kind: str, sd: dict, path: str):
    try:
        arch = infer_kl_arch(sd) if kind == "kl" else infer_tae_arch(sd)
    except (ValueError, IndexError, ZeroDivisionError) as err:
        what = "kl-f8 VAE" if kind == "kl" else "TAE"
        raise BadVaeFile(f"{path}: not a complete {what}: {err}") from None
    if kind == "kl":
        if arch.downscale != 8 or arch.in_channels != 3 or arch.out_channels != 3:
            raise BadVaeFile(
                f"{path}: an AutoencoderKL with {arch.downscale}x downscaling and "
                f"{arch.in_channels}->{arch.out_channels} image channels; only 8x RGB VAEs are supported"
            )
        if arch.z_channels == 4 and not arch.use_quant_conv:
            # 4-channel kl-f8 VAEs (SD1/SD2/SDXL) all have quant convs: without them it is a damaged file
            arch = replace(arch, use_quant_conv=True)
        validate(sd, expected_shapes(arch), path, "kl-f8 VAE")
    else:
        validate(sd, expected_shapes(arch), path, "TAE")
    return arch


_HALF_RE = re.compile(r"^(?P<stem>.+)_(?P<half>encoder|decoder)(?P<ext>\.[A-Za-z0-9]+)$")


def tae_sibling(path: str) -> str | None:
    """The other half of a TAE file named `x_decoder.ext` / `x_encoder.ext`, if it exists."""
    folder, name = os.path.split(path)
    m = _HALF_RE.match(name)
    if not m:
        return None
    other = "encoder" if m["half"] == "decoder" else "decoder"
    exts = [m["ext"]] + [e for e in WEIGHT_EXTENSIONS if e != m["ext"]]
    for ext in exts:
        candidate = os.path.join(folder, f"{m['stem']}_{other}{ext}")
        if os.path.isfile(candidate):
            return candidate
    return None


def load_vae_file(path, *, join_tae_pair: bool = True) -> VaeFile:
    """Read, normalise and validate the VAE at `path` (a file or a diffusers folder).

    Raises `BadVaeFile` (or `UnsafeFile`) with one line starting with the path; nothing on
    disk is changed.
    """
    path = os.fspath(path)
    raw = read_container(path)
    kind, disk_layout, sd, dropped = _normalise(raw, path)
    check_bytes_against_files(sd, raw.files, path)
    arch = _arch_and_validate(kind, sd, path)
    vae = VaeFile(
        path=path,
        files=list(raw.files),
        format=raw.format,
        layout=disk_layout,
        kind=kind,
        state_dict=sd,
        arch=arch,
        weights_file=raw.path,
        config=raw.config,
        metadata=dict(raw.metadata),
        dropped_keys=dropped,
    )
    if kind == "tae" and join_tae_pair and not (arch.has_encoder and arch.has_decoder):
        sibling = tae_sibling(raw.path)
        if sibling is not None:
            _join(vae, load_vae_file(sibling, join_tae_pair=False))
    return vae


def _join(vae: VaeFile, other: VaeFile) -> None:
    """Make `vae` one TAE with both halves, taking the missing half from `other`."""
    if other.kind != "tae":
        raise BadVaeFile(f"{other.path}: named like the other half of {vae.path}, but not a TAE")
    mine = "encoder" if vae.arch.has_encoder else "decoder"
    if other.arch.has_encoder == vae.arch.has_encoder or not (other.arch.has_encoder or other.arch.has_decoder):
        raise BadVaeFile(f"{other.path}: named like the other half of {vae.path}, but it is also a {mine}")
    if other.arch.latent_channels != vae.arch.latent_channels:
        raise BadVaeFile(
            f"{other.path}: has {other.arch.latent_channels} latent channels, "
            f"but {vae.path} has {vae.arch.latent_channels}; not halves of one TAE"
        )
    if other.arch.downscale != vae.arch.downscale:
        raise BadVaeFile(
            f"{other.path}: scales {other.arch.downscale}x, but {vae.path} scales {vae.arch.downscale}x; "
            "not halves of one TAE"
        )
    sd = dict(vae.state_dict)
    sd.update({k: t for k, t in other.state_dict.items() if not k.startswith(mine + ".")})
    vae.state_dict = sd
    vae.arch = infer_tae_arch(sd)
    vae.files = vae.files + [f for f in other.files if f not in vae.files]
