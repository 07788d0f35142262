"""Test-only bridge to `diffusers.AutoencoderKL`: the reference our kl-f8 model must equal.

Builds a diffusers model with the same configuration as a `KLArch` and loads an LDM state
dict into it after renaming the keys to diffusers' names.
"""

from __future__ import annotations

import re

from vae_lab.models.arch import KLArch


def diffusers_config(arch: KLArch) -> dict:
    n = len(arch.ch_mult)
    return dict(
        in_channels=arch.in_channels,
        out_channels=arch.out_channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(arch.ch * m for m in arch.ch_mult),
        layers_per_block=arch.num_res_blocks,
        latent_channels=arch.z_channels,
        norm_num_groups=32,
        use_quant_conv=arch.use_quant_conv,
        use_post_quant_conv=arch.use_quant_conv,
    )


def _rename(key: str, n_levels: int) -> str:
    k = key
    k = re.sub(r"^encoder\.down\.(\d+)\.block\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2.", k)
    k = re.sub(r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0.", k)

    def up(m):
        return f"decoder.up_blocks.{n_levels - 1 - int(m.group(1))}.{m.group(2)}"

    k = re.sub(r"^decoder\.up\.(\d+)\.(block\.\d+\.|upsample\.)", up, k)
    k = re.sub(r"\.block\.(\d+)\.", r".resnets.\1.", k)
    k = k.replace(".upsample.", ".upsamplers.0.")
    k = re.sub(r"\.mid\.block_(\d)\.", lambda m: f".mid_block.resnets.{int(m.group(1)) - 1}.", k)
    k = k.replace(".mid.attn_1.norm.", ".mid_block.attentions.0.group_norm.")
    for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")):
        k = k.replace(f".mid.attn_1.{a}.", f".mid_block.attentions.0.{b}.")
    k = k.replace(".nin_shortcut.", ".conv_shortcut.")
    k = k.replace("encoder.norm_out.", "encoder.conv_norm_out.").replace("decoder.norm_out.", "decoder.conv_norm_out.")
    return k


def ldm_to_diffusers(sd: dict, arch: KLArch) -> dict:
    out = {}
    for key, t in sd.items():
        new = _rename(key, len(arch.ch_mult))
        if ".attentions.0.to_" in new and new.endswith(".weight"):
            t = t.reshape(t.shape[0], t.shape[1])  # 1x1 conv -> linear
        out[new] = t
    return out


def diffusers_vae(sd: dict, arch: KLArch):
    from diffusers import AutoencoderKL

    model = AutoencoderKL(**diffusers_config(arch))
    model.load_state_dict(ldm_to_diffusers(sd, arch), strict=True)
    return model.eval().requires_grad_(False)
