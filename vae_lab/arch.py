"""Architecture descriptions, read from weights rather than file names.

`KLArch` describes an LDM/CompVis kl-f8 AutoencoderKL (SD1/SD2/SDXL: 4 latent channels
with quant convs; SD3/Flux: 16 channels without). `kl_expected_shapes` lists every
tensor such a model has in the LDM layout, which is what loading validates against
(missing or extra tensors are errors) and what `vae_lab.models.kl` must build.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KLArch:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    in_channels: int = 3
    out_channels: int = 3
    use_quant_conv: bool = True
    has_encoder: bool = True
    has_decoder: bool = True

    @property
    def latent_channels(self) -> int:
        return self.z_channels

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


SD_KL = KLArch()  # the real SD1/SD2/SDXL configuration
SD3_KL = KLArch(z_channels=16, use_quant_conv=False)  # SD3 and Flux.1


def _conv(shapes, name, c_out, c_in, k):
    shapes[f"{name}.weight"] = (c_out, c_in, k, k)
    shapes[f"{name}.bias"] = (c_out,)


def _norm(shapes, name, c):
    shapes[f"{name}.weight"] = (c,)
    shapes[f"{name}.bias"] = (c,)


def _resnet(shapes, name, c_in, c_out):
    _norm(shapes, f"{name}.norm1", c_in)
    _conv(shapes, f"{name}.conv1", c_out, c_in, 3)
    _norm(shapes, f"{name}.norm2", c_out)
    _conv(shapes, f"{name}.conv2", c_out, c_out, 3)
    if c_in != c_out:
        _conv(shapes, f"{name}.nin_shortcut", c_out, c_in, 1)


def _mid(shapes, name, c):
    _resnet(shapes, f"{name}.block_1", c, c)
    _norm(shapes, f"{name}.attn_1.norm", c)
    for proj in ("q", "k", "v", "proj_out"):
        _conv(shapes, f"{name}.attn_1.{proj}", c, c, 1)
    _resnet(shapes, f"{name}.block_2", c, c)


def kl_expected_shapes(arch: KLArch) -> dict[str, tuple[int, ...]]:
    """Every tensor of `arch` in the LDM layout, with its shape."""
    s: dict[str, tuple[int, ...]] = {}
    mult = arch.ch_mult
    z = arch.z_channels
    if arch.has_encoder:
        _conv(s, "encoder.conv_in", arch.ch, arch.in_channels, 3)
        c_in = arch.ch
        for i, m in enumerate(mult):
            c_out = arch.ch * m
            for j in range(arch.num_res_blocks):
                _resnet(s, f"encoder.down.{i}.block.{j}", c_in, c_out)
                c_in = c_out
            if i != len(mult) - 1:
                _conv(s, f"encoder.down.{i}.downsample.conv", c_in, c_in, 3)
        _mid(s, "encoder.mid", c_in)
        _norm(s, "encoder.norm_out", c_in)
        _conv(s, "encoder.conv_out", 2 * z, c_in, 3)
        if arch.use_quant_conv:
            _conv(s, "quant_conv", 2 * z, 2 * z, 1)
    if arch.has_decoder:
        if arch.use_quant_conv:
            _conv(s, "post_quant_conv", z, z, 1)
        c_in = arch.ch * mult[-1]
        _conv(s, "decoder.conv_in", c_in, z, 3)
        _mid(s, "decoder.mid", c_in)
        for i in reversed(range(len(mult))):
            c_out = arch.ch * mult[i]
            for j in range(arch.num_res_blocks + 1):
                _resnet(s, f"decoder.up.{i}.block.{j}", c_in, c_out)
                c_in = c_out
            if i != 0:
                _conv(s, f"decoder.up.{i}.upsample.conv", c_in, c_in, 3)
        _norm(s, "decoder.norm_out", c_in)
        _conv(s, "decoder.conv_out", arch.out_channels, c_in, 3)
    return s
