"""Architecture descriptions, read from weights rather than file names.

`KLArch` describes an LDM/CompVis kl-f8 AutoencoderKL (SD1/SD2/SDXL: 4 latent channels
with quant convs; SD3/Flux: 16 channels without); `TAEArch` a tiny autoencoder. The tensors
each one has are read off the modules themselves (`vae_lab.models.shapes.expected_shapes`).
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


# --- architecture inference from weights (kl) ---------------------------------------------


def _shape(sd, key):
    """The shape of the conv weight `key`, None if absent; a clear `ValueError` if it is not 4-d."""
    t = sd.get(key)
    if t is None:
        return None
    shape = tuple(t.shape)
    if len(shape) != 4 or 0 in shape:
        raise ValueError(f"{key} has shape {list(shape)}, not a conv weight")
    return shape


def infer_kl_arch(sd) -> KLArch:
    """Read a `KLArch` from a state dict in the LDM layout (shapes only, never names of files).

    Works for encoder-only and decoder-only dicts. Raises `ValueError` with a short reason
    when the tensors that decide the configuration are missing; `loading` turns that into
    a `BadVaeFile` naming the file.
    """
    has_enc = any(k.startswith("encoder.") for k in sd)
    has_dec = any(k.startswith("decoder.") for k in sd)
    if not (has_enc or has_dec):
        raise ValueError("no encoder.* or decoder.* tensors")
    if has_enc:
        conv_in = _shape(sd, "encoder.conv_in.weight")
        conv_out = _shape(sd, "encoder.conv_out.weight")
        if conv_in is None or conv_out is None:
            raise ValueError(f"encoder.{'conv_in' if conv_in is None else 'conv_out'}.weight missing")
        ch, in_channels = conv_in[0], conv_in[1]
        z = conv_out[0] // 2
        levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.down.")})
        if not levels:
            raise ValueError("no encoder.down.* blocks")
        n_levels = levels[-1] + 1
        mult = []
        for i in range(n_levels):
            c = _shape(sd, f"encoder.down.{i}.block.0.conv1.weight")
            if c is None:
                raise ValueError(f"encoder.down.{i}.block.0.conv1.weight missing")
            mult.append(c[0] // ch)
        blocks = {int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block.")}
        num_res = max(blocks) + 1
        out_channels = 3
    if has_dec:
        d_in = _shape(sd, "decoder.conv_in.weight")
        d_out = _shape(sd, "decoder.conv_out.weight")
        if d_in is None or d_out is None:
            raise ValueError(f"decoder.{'conv_in' if d_in is None else 'conv_out'}.weight missing")
        dz, out_channels = d_in[1], d_out[0]
        dch = d_out[1]
        levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("decoder.up.")})
        if not levels:
            raise ValueError("no decoder.up.* blocks")
        dmult = []
        for i in range(levels[-1] + 1):
            c = _shape(sd, f"decoder.up.{i}.block.0.conv1.weight")
            if c is None:
                raise ValueError(f"decoder.up.{i}.block.0.conv1.weight missing")
            dmult.append(c[0] // dch)
        dblocks = {int(k.split(".")[4]) for k in sd if k.startswith("decoder.up.0.block.")}
        dnum_res = max(dblocks)  # the decoder has one block more per level
        if has_enc and (dz, dch, tuple(dmult), dnum_res) != (z, ch, tuple(mult), num_res):
            raise ValueError("encoder and decoder configurations disagree")
        z, ch, mult, num_res = dz, dch, dmult, dnum_res
        if not has_enc:
            in_channels = 3
    use_quant = "quant_conv.weight" in sd or "post_quant_conv.weight" in sd
    return KLArch(
        ch=ch,
        ch_mult=tuple(mult),
        num_res_blocks=num_res,
        z_channels=z,
        in_channels=in_channels,
        out_channels=out_channels,
        use_quant_conv=use_quant,
        has_encoder=has_enc,
        has_decoder=has_dec,
    )


# --- TAE (madebyollin's tiny autoencoders) ---------------------------------------------------
#
# The `.pth` files are bare nn.Sequential state dicts, so a tensor's key is its layer's index
# in madebyollin's `Encoder`/`Decoder` (8x) or `F32Encoder`/`F32Decoder` (32x, taesana).
# A plan lists the layers that have parameters: ("conv", index, c_in, c_out, stride, bias)
# or ("block", index, channels); ReLU, Clamp and Upsample only take up an index.


def tae_encoder_plan(downscale: int = 8) -> list[tuple]:
    plan, i = [], 0
    if downscale == 32:
        plan += [("conv", 0, 3, 32, 2, True), ("conv", 2, 32, 64, 2, True), ("block", 4, 64)]
        i, stages = 5, 4
    else:
        plan += [("conv", 0, 3, 64, 1, True), ("block", 1, 64)]
        i, stages = 2, 3
    for _ in range(stages):
        plan.append(("conv", i, 64, 64, 2, False))
        plan += [("block", i + 1, 64), ("block", i + 2, 64), ("block", i + 3, 64)]
        i += 4
    plan.append(("conv", i, 64, None, 1, True))  # c_out: the latent channels
    return plan


def tae_decoder_plan(downscale: int = 8) -> list[tuple]:
    widths = [256, 128, 64, 64, 64, 64] if downscale == 32 else [64, 64, 64, 64]
    plan = [("conv", 1, None, widths[0], 1, True)]  # 0 is the Clamp, 2 a ReLU; c_in: latent channels
    i = 3
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        plan += [("block", i, c_in), ("block", i + 1, c_in), ("block", i + 2, c_in)]
        plan.append(("conv", i + 4, c_in, c_out, 1, False))  # i + 3 is the Upsample
        i += 5
    plan += [("block", i, widths[-1]), ("conv", i + 1, widths[-1], 3, 1, True)]
    return plan


@dataclass(frozen=True)
class TAEArch:
    """A tiny autoencoder (TAESD family), read from its weights.

    Layers follow madebyollin's `taesd.py`: `downscale` 8 is `Encoder`/`Decoder` (taesd,
    taesdxl, taesd3, taef1, taef2), 32 is `F32Encoder`/`F32Decoder` (taesana). `variant` names
    it: "taesd" (plain Blocks), "taef2" (some Blocks carry a `pool` branch: 1x1 conv C->4C, no
    bias; GroupNorm(4, 4C); ReLU; 1x1 conv 4C->C, no bias; added to the Block input before its
    convs) or "f32". `encoder_pool_blocks` / `decoder_pool_blocks` are the `.pth` indices of the
    Blocks with a pool branch. Model code builds the halves from `tae_encoder_plan` /
    `tae_decoder_plan` and loads the normalised `encoder.N…` / `decoder.N…` keys without prefix.
    """

    latent_channels: int = 4
    variant: str = "taesd"
    encoder_pool_blocks: tuple[int, ...] = ()
    decoder_pool_blocks: tuple[int, ...] = ()
    has_encoder: bool = True
    has_decoder: bool = True
    downscale: int = 8


def infer_tae_arch(sd) -> TAEArch:
    """Read a `TAEArch` from normalised TAE keys (`encoder.N…` / `decoder.N…`)."""
    has_enc = any(k.startswith("encoder.") for k in sd)
    has_dec = any(k.startswith("decoder.") for k in sd)
    if not (has_enc or has_dec):
        raise ValueError("no encoder or decoder tensors")
    z = scale = None
    if has_enc:
        first = _shape(sd, "encoder.0.weight")
        if first is None:
            raise ValueError("encoder.0.weight (the first conv) missing")
        scale = 32 if first[0] == 32 else 8
        last = tae_encoder_plan(scale)[-1][1]
        shape = _shape(sd, f"encoder.{last}.weight")
        if shape is None:
            raise ValueError(f"encoder.{last}.weight (the latent conv) missing")
        z = shape[0]
    if has_dec:
        shape = _shape(sd, "decoder.1.weight")
        if shape is None:
            raise ValueError("decoder.1.weight (the first conv) missing")
        dscale = 32 if shape[0] == 256 else 8
        if z is not None and shape[1] != z:
            raise ValueError(f"the encoder makes {z} latent channels but the decoder takes {shape[1]}")
        if scale is not None and dscale != scale:
            raise ValueError(f"the encoder downscales {scale}x but the decoder upscales {dscale}x")
        z, scale = shape[1], dscale

    def pools(half):
        return tuple(sorted({int(k.split(".")[1]) for k in sd if k.startswith(f"{half}.") and ".pool." in k}))

    enc_pool, dec_pool = pools("encoder"), pools("decoder")
    variant = "f32" if scale == 32 else "taef2" if (enc_pool or dec_pool) else "taesd"
    return TAEArch(
        latent_channels=z,
        variant=variant,
        encoder_pool_blocks=enc_pool,
        decoder_pool_blocks=dec_pool,
        has_encoder=has_enc,
        has_decoder=has_dec,
        downscale=scale,
    )
