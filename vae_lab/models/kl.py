"""The kl-f8 AutoencoderKL of latent diffusion (SD1/SD2/SDXL/SD3/Flux.1 VAEs).

A compact re-implementation of CompVis/LDM `ldm/modules/diffusionmodules/model.py`
(encoder, decoder, quant convs) with the same module names, so the LDM state dict
loads directly and strictly. The configuration comes from the weights (`KLArch`).
Differences from the original, none of which change the numbers:

- no timestep embedding, dropout or per-level attention (kl-f8 VAEs have none);
- mid-block attention runs through `F.scaled_dot_product_attention` (fused kernels,
  no HW x HW matrix in memory on backends that have a memory-efficient kernel);
- the encoder returns the posterior mean (deterministic), never a sample.

Images are NCHW in [-1, 1]; latents here are *raw* (not scaled, see `families.py`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vae_lab.models.arch import KLArch
from vae_lab.models.ops import upsample2_conv3x3_padded


def Normalize(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv (computed as four 2x2 convs at low resolution, `ops.py`)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return upsample2_conv3x3_padded(F.pad(x, (1, 1, 1, 1)), self.conv.weight, self.conv.bias)

    def graph(self, g, x):
        return g.keep(g.up2_conv(x, self.conv, name="upsample"), "small")


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding right and bottom by one (LDM's asymmetric pad)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))

    def graph(self, g, x):
        return g.keep(g.conv(x, self.conv, pads=(0, 1, 0, 1), name="downsample"), "small")


class ResnetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1 = Normalize(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = Normalize(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x):
        # SiLU and the residual add work in place on tensors this block just made: same
        # numbers, two full-size temporaries fewer per block (allocating and page-faulting
        # those is a large part of a CPU decode's time at 512² and above).
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return h.add_(x)

    def graph(self, g, x):
        """This block in a `tiling.Graph` (same ops as `forward`; the output is kept between passes)."""
        h = g.keep(g.conv(g.norm(x, self.norm1, silu=True), self.conv1, name="res.conv1"), "small")
        h = g.conv(g.norm(h, self.norm2, silu=True), self.conv2, name="res.conv2")
        if self.nin_shortcut is not None:
            x = g.keep(g.conv(x, self.nin_shortcut, name="res.nin"), "small")
        return g.keep(g.add(h, x, name="res.out"), "always")


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, q/k/v/proj_out as 1x1 convs."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (p(n).reshape(b, 1, c, h * w).transpose(2, 3) for p in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
        a = a.transpose(2, 3).reshape(b, c, h, w)
        return self.proj_out(a).add_(x)


class MidBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, arch: KLArch):
        super().__init__()
        ch, mult = arch.ch, arch.ch_mult
        self.conv_in = nn.Conv2d(arch.in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        c_in = ch
        for i, m in enumerate(mult):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(arch.num_res_blocks):
                level.block.append(ResnetBlock(c_in, ch * m))
                c_in = ch * m
            if i != len(mult) - 1:
                level.downsample = Downsample(c_in)
            self.down.append(level)
        self.mid = MidBlock(c_in)
        self.norm_out = Normalize(c_in)
        self.conv_out = nn.Conv2d(c_in, 2 * arch.z_channels, 3, padding=1)

    def forward(self, x):
        return self.tail(self.head(x))

    def head(self, x):
        """Full resolution down to latent resolution: local convs only (tiled for large images)."""
        h = self.conv_in(x)
        for level in self.down[:-1]:
            for block in level.block:
                h = block(h)
            h = level.downsample(h)
        return h

    def head_graph(self, g):
        """`head` as a `tiling.Graph` (input: images); returns the output node."""
        h = g.conv(g.input, self.conv_in, name="conv_in")
        for level in self.down[:-1]:
            for block in level.block:
                h = block.graph(g, h)
            h = level.downsample.graph(g, h)
        return h

    def tail(self, h):
        """Latent resolution: the last level, the mid block with global attention, the moments (never tiled)."""
        for block in self.down[-1].block:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h)), inplace=True))


class Decoder(nn.Module):
    def __init__(self, arch: KLArch):
        super().__init__()
        ch, mult = arch.ch, arch.ch_mult
        c_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(arch.z_channels, c_in, 3, padding=1)
        self.mid = MidBlock(c_in)
        levels = []
        for i in reversed(range(len(mult))):
            level = nn.Module()
            level.block = nn.ModuleList()
            for _ in range(arch.num_res_blocks + 1):
                level.block.append(ResnetBlock(c_in, ch * mult[i]))
                c_in = ch * mult[i]
            if i != 0:
                level.upsample = Upsample(c_in)
            levels.insert(0, level)  # LDM indexes `up` from the highest resolution
        self.up = nn.ModuleList(levels)
        self.norm_out = Normalize(c_in)
        self.conv_out = nn.Conv2d(c_in, arch.out_channels, 3, padding=1)

    def forward(self, z):
        return self.tail(self.head(z))

    def head(self, z):
        """Latent resolution: conv_in, the mid block with global attention, the first level (never tiled)."""
        h = self.mid(self.conv_in(z))
        for block in self.up[-1].block:
            h = block(h)
        return h

    def tail(self, h):
        """Upsampling to full resolution: local convs and GroupNorms (tiled for large images)."""
        for i, level in enumerate(reversed(self.up)):
            if i > 0:
                for block in level.block:
                    h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))

    def tail_graph(self, g):
        """`tail` as a `tiling.Graph` (input: the head's output); returns the output node."""
        h = g.input
        for i, level in enumerate(reversed(self.up)):
            if i > 0:
                for block in level.block:
                    h = block.graph(g, h)
            if hasattr(level, "upsample"):
                h = level.upsample.graph(g, h)
        return g.conv(g.norm(h, self.norm_out, silu=True), self.conv_out, name="conv_out")


class AutoencoderKL(nn.Module):
    """kl-f8 VAE: `encode(images) -> raw latents` (posterior mean), `decode(raw) -> images`."""

    kind = "kl"

    def __init__(self, arch: KLArch):
        super().__init__()
        self.arch = arch
        self.downscale = arch.downscale
        self.latent_channels = arch.z_channels
        if arch.has_encoder:
            self.encoder = Encoder(arch)
            if arch.use_quant_conv:
                self.quant_conv = nn.Conv2d(2 * arch.z_channels, 2 * arch.z_channels, 1)
        if arch.has_decoder:
            if arch.use_quant_conv:
                self.post_quant_conv = nn.Conv2d(arch.z_channels, arch.z_channels, 1)
            self.decoder = Decoder(arch)

    @property
    def has_encoder(self) -> bool:
        return self.arch.has_encoder

    @property
    def has_decoder(self) -> bool:
        return self.arch.has_decoder

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_tail(self.encode_head(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode_tail(self.decode_head(z))

    # The split used by tiling: `*_head`/`*_tail` compose to `encode`/`decode`; the
    # full-resolution half is the one that may run tile by tile.
    def encode_head(self, x):
        return self.encoder.head(x)

    def encode_tail(self, h):
        moments = self.encoder.tail(h)
        if self.arch.use_quant_conv:
            moments = self.quant_conv(moments)
        mean, _logvar = moments.chunk(2, dim=1)
        return mean

    def decode_head(self, z):
        if self.arch.use_quant_conv:
            z = self.post_quant_conv(z)
        return self.decoder.head(z)

    def decode_tail(self, h):
        return self.decoder.tail(h)

    def decode_tail_graph(self, g):
        return self.decoder.tail_graph(g)

    def encode_head_graph(self, g):
        return self.encoder.head_graph(g)
