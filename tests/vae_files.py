"""Writing test VAEs in every on-disk form the loader must read.

The LDM → diffusers mapping here is written independently of `vae_lab.files.layout` (forward,
not inverse, and from the diffusers side), so a mistake in one is not hidden by the same
mistake in the other; the real `diffusers.AutoencoderKL` naming is covered separately.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

_ATTN_NEW = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTN_OLD = {"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"}


def ldm_to_diffusers(sd: dict, old_names: bool = False) -> dict:
    """An LDM-layout kl state dict renamed as diffusers `AutoencoderKL` would store it."""
    attn = _ATTN_OLD if old_names else _ATTN_NEW
    n_up = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.up."))
    out = {}
    for key, t in sd.items():
        new = key
        m = re.match(r"^encoder\.down\.(\d+)\.block\.(\d+)\.(.*)$", key)
        if m:
            new = f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{m[3]}"
        m = re.match(r"^encoder\.down\.(\d+)\.downsample\.(.*)$", key)
        if m:
            new = f"encoder.down_blocks.{m[1]}.downsamplers.0.{m[2]}"
        m = re.match(r"^decoder\.up\.(\d+)\.block\.(\d+)\.(.*)$", key)
        if m:
            new = f"decoder.up_blocks.{n_up - 1 - int(m[1])}.resnets.{m[2]}.{m[3]}"
        m = re.match(r"^decoder\.up\.(\d+)\.upsample\.(.*)$", key)
        if m:
            new = f"decoder.up_blocks.{n_up - 1 - int(m[1])}.upsamplers.0.{m[2]}"
        m = re.match(r"^(encoder|decoder)\.mid\.block_(\d)\.(.*)$", key)
        if m:
            new = f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}.{m[3]}"
        m = re.match(r"^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$", key)
        if m:
            new = f"{m[1]}.mid_block.attentions.0.{attn[m[2]]}.{m[3]}"
            if m[2] != "norm" and m[3] == "weight":
                t = t.reshape(t.shape[0], t.shape[1])
        m = re.match(r"^(encoder|decoder)\.norm_out\.(.*)$", key)
        if m:
            new = f"{m[1]}.conv_norm_out.{m[2]}"
        new = new.replace(".nin_shortcut.", ".conv_shortcut.")
        out[new] = t.clone()
    return out


def diffusers_config(arch, scaling_factor=0.18215, shift_factor=None) -> dict:
    n = len(arch.ch_mult)
    cfg = {
        "_class_name": "AutoencoderKL",
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": [arch.ch * m for m in arch.ch_mult],
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "layers_per_block": arch.num_res_blocks,
        "latent_channels": arch.z_channels,
        "norm_num_groups": 32,
        "scaling_factor": scaling_factor,
        "use_quant_conv": arch.use_quant_conv,
        "use_post_quant_conv": arch.use_quant_conv,
    }
    if shift_factor is not None:
        cfg["shift_factor"] = shift_factor
    return cfg


def write_diffusers_folder(folder: Path, sd: dict, arch, *, old_names=False, bin_=False, **cfg) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(diffusers_config(arch, **cfg)))
    dsd = ldm_to_diffusers(sd, old_names=old_names)
    if bin_:
        torch.save(dsd, folder / "diffusion_pytorch_model.bin")
    else:
        save_file(dsd, str(folder / "diffusion_pytorch_model.safetensors"))
    return folder


def write(sd: dict, path: Path, *, legacy: bool = False, **metadata) -> Path:
    """`sd` as safetensors (by extension) or as a zip pickle / legacy pickle."""
    path = Path(path)
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata=metadata or None)
    else:
        torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    return path


def unet_keys(n: int = 4) -> dict:
    """A few stand-in UNet/text-encoder tensors for fake full checkpoints."""
    g = torch.Generator().manual_seed(7)
    out = {f"model.diffusion_model.input_blocks.{i}.0.weight": torch.randn(8, 4, 3, 3, generator=g) for i in range(n)}
    out["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = torch.randn(16, 8, generator=g)
    return out


def assert_same_tensors(a: dict, b: dict, dtype=None):
    assert sorted(a) == sorted(b)
    for k in a:
        x, y = a[k], b[k]
        if dtype is not None:
            x, y = x.to(dtype), y.to(dtype)
        assert tuple(x.shape) == tuple(y.shape), k
        assert torch.equal(x, y), k
