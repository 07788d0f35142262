"""The kl-f8 AutoencoderKL of latent diffusion (SD1/SD2/SDXL/SD3/Flux.1 VAEs).

A compact re-implementation of CompVis/LDM `ldm/modules/diffusionmodules/model.py`
(encoder, decoder, quant convs) with the same module names, so the LDM state dict
loads directly and strictly. The configuration comes from the weights (`KLArch`).
Differences from the original, none of which change the numbers:

- no timestep embedding, dropout or per-level attention (kl-f8 VAEs have none);
- mid-block attention runs through `F.scaled_dot_product_attention` (fused kernels,
  no HW x HW matrix in memory on backends that have a memory-efficient kernel);
  an opt-in `WindowedAttention` (not in the original, inexact) bounds its quadratic cost;
- the encoder returns the posterior mean (deterministic), never a sample.

Images are NCHW in [-1, 1]; latents here are *raw* (not scaled, see `families.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

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


@dataclass(frozen=True)
class WindowedAttention:
    """Mid-block attention within overlapping `size` x `size` windows of latent positions,
    each window's queries also seeing the rest of the latent as a coarse far field.

    Global attention costs (h*w)^2 * channels: sixteen times more per doubling of the
    image side, so it dominates huge decodes. Here every window (overlapping its neighbours
    by a quarter) attends to its own keys exactly plus the keys outside it average-pooled
    to at most `far_grid` x `far_grid` cells (each cell's logit raised by the log of how
    many positions outside the window it stands for: a cell of similar keys then weighs
    what its positions would; for a cell wholly outside, by Jensen's inequality never
    more). Outputs are a tent-weighted blend of the windows that hold them, so there are
    no seams. Cost about 1.8 * h*w * (size^2 + far_grid^2) * channels: linear in the image
    area. GroupNorm statistics stay global. The error grows with the cell size (latent side / far_grid):
    bench/attention.py. `far_grid=0` drops the far field (pure windows: faster, and many
    times the error). Where the global attention is as cheap — a latent that fits in one
    window, or cells of one position — it runs instead (exact). `check()` runs before
    every window (it may raise to stop), `progress(done, total)` after every one.
    """

    size: int = 64
    far_grid: int = 128
    check: Callable[[], None] | None = None
    progress: Callable[[int, int], None] | None = None

    def plan(self, h: int, w: int):
        """(row spans, column spans, far-field cell side or 0) for an h x w latent; None: run global."""
        ys, xs = window_spans(h, self.size), window_spans(w, self.size)
        cell = math.ceil(max(h, w) / self.far_grid) if self.far_grid > 0 else 0
        if len(ys) * len(xs) == 1 or cell == 1:
            return None
        return ys, xs, cell


def window_spans(length: int, size: int) -> list[tuple[int, int]]:
    """Windows [a, a + size) covering [0, length) at a stride of at most 3/4 size (one span if it fits)."""
    if length <= size:
        return [(0, length)]
    n = math.ceil((length - size) / max(1, 3 * size // 4)) + 1
    return [(s, s + size) for s in (round(i * (length - size) / (n - 1)) for i in range(n))]


def _tent(n: int, alone: bool, device) -> torch.Tensor:
    """Blend weights along one window axis: highest in the middle, where a query sees keys on every side."""
    if alone:
        return torch.ones(n, device=device)
    t = torch.arange(n, device=device, dtype=torch.float32) + 0.5
    return torch.minimum(t, n - t) / (n / 2)


def _overlaps(a: int, b: int, cells: int, p: int, length: int, device) -> torch.Tensor:
    """How many positions of [a, b) each of the `cells` pooling cells of side `p` holds."""
    lo = torch.arange(cells, device=device) * p
    return (torch.clamp(lo + p, max=min(b, length)) - torch.clamp(lo, min=a)).clamp(min=0)


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions (or within windows), q/k/v/proj_out as 1x1 convs."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = Normalize(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x, attention: WindowedAttention | None = None):
        n = self.norm(x)
        plan = None if attention is None else attention.plan(x.shape[2], x.shape[3])
        if plan is not None:
            return self.proj_out(self._windowed(n, *plan, attention)).add_(x)
        return self.proj_out(self._attend(n)).add_(x)

    @staticmethod
    def _tokens(t):
        b, c, h, w = t.shape
        return t.reshape(b, 1, c, h * w).transpose(2, 3).contiguous()

    def _attend(self, n, far=None, bias=None):
        """Attention of `n`'s positions among themselves, plus the (keys, values) `far` with logit `bias`."""
        b, c, h, w = n.shape
        q, k, v = (self._tokens(p(n)) for p in (self.q, self.k, self.v))
        mask = None
        if far is not None:
            bias = torch.cat([bias.new_zeros(h * w), bias])
            pad = (-bias.numel()) % 8  # aligned key counts for the fused kernels; the padding is masked off
            k, v = (F.pad(torch.cat([t, f], 2), (0, 0, 0, pad)) for t, f in ((k, far[0]), (v, far[1])))
            mask = F.pad(bias, (0, pad), value=-math.inf).to(q.dtype).expand(h * w, -1)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return a.transpose(2, 3).reshape(b, c, h, w)

    def _far_field(self, n, p):
        """Keys and values average-pooled over p x p cells (as tokens), and the cells' sizes."""
        sums = [F.avg_pool2d(proj(n), p, ceil_mode=True, divisor_override=1) for proj in (self.k, self.v)]
        ones = torch.ones(1, 1, *n.shape[2:], device=n.device, dtype=torch.float32)
        count = F.avg_pool2d(ones, p, ceil_mode=True, divisor_override=1)[0, 0]
        return [self._tokens(s / count.to(s.dtype)) for s in sums], count

    def _windowed(self, n, ys, xs, p, spec: WindowedAttention):
        """Attention per window (plus the far field in p x p cells), blended: sum(w_i * attn_i) / sum(w_i), in float32."""
        h, w = n.shape[2:]
        far = None
        if p > 0:
            far, count = self._far_field(n, p)
            gh, gw = count.shape
        acc = torch.zeros_like(n, dtype=torch.float32)
        wsum = torch.zeros(h, w, device=n.device)
        total, done = len(ys) * len(xs), 0
        for y0, y1 in ys:
            wy = _tent(y1 - y0, len(ys) == 1, n.device)
            for x0, x1 in xs:
                if spec.check is not None:
                    spec.check()
                bias = None
                if far is not None:
                    inside = _overlaps(y0, y1, gh, p, h, n.device)[:, None] * _overlaps(x0, x1, gw, p, w, n.device)[None, :]
                    bias = torch.log(count - inside).reshape(-1)
                wt = wy[:, None] * _tent(x1 - x0, len(xs) == 1, n.device)[None, :]
                acc[:, :, y0:y1, x0:x1].add_(self._attend(n[:, :, y0:y1, x0:x1], far, bias).float().mul_(wt))
                wsum[y0:y1, x0:x1] += wt
                done += 1
                if spec.progress is not None:
                    spec.progress(done, total)
        return acc.div_(wsum).to(n.dtype)


class MidBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x, attention: WindowedAttention | None = None):
        return self.block_2(self.attn_1(self.block_1(x), attention))


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

    def forward(self, x, attention: WindowedAttention | None = None):
        return self.tail(self.head(x), attention)

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

    def tail(self, h, attention: WindowedAttention | None = None):
        """Latent resolution: the last level, the mid block with its attention, the moments (never tiled)."""
        for block in self.down[-1].block:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h, attention)), inplace=True))


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

    def forward(self, z, attention: WindowedAttention | None = None):
        return self.tail(self.head(z, attention))

    def head(self, z, attention: WindowedAttention | None = None):
        """Latent resolution: conv_in, the mid block with its attention, the first level (never tiled)."""
        h = self.mid(self.conv_in(z), attention)
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
    """kl-f8 VAE: `encode(images) -> raw latents` (posterior mean), `decode(raw) -> images`.

    `attention`: None (exact global mid-block attention) or a `WindowedAttention`.
    """

    kind = "kl"
    has_attention = True

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

    def encode(self, x: torch.Tensor, attention: WindowedAttention | None = None) -> torch.Tensor:
        return self.encode_tail(self.encode_head(x), attention)

    def decode(self, z: torch.Tensor, attention: WindowedAttention | None = None) -> torch.Tensor:
        return self.decode_tail(self.decode_head(z, attention))

    # The split used by tiling: `*_head`/`*_tail` compose to `encode`/`decode`; the
    # full-resolution half is the one that may run tile by tile.
    def encode_head(self, x):
        return self.encoder.head(x)

    def encode_tail(self, h, attention: WindowedAttention | None = None):
        moments = self.encoder.tail(h, attention)
        if self.arch.use_quant_conv:
            moments = self.quant_conv(moments)
        mean, _logvar = moments.chunk(2, dim=1)
        return mean

    def decode_head(self, z, attention: WindowedAttention | None = None):
        if self.arch.use_quant_conv:
            z = self.post_quant_conv(z)
        return self.decoder.head(z, attention)

    def decode_tail(self, h):
        return self.decoder.tail(h)

    def decode_tail_graph(self, g):
        return self.decoder.tail_graph(g)

    def encode_head_graph(self, g):
        return self.encoder.head_graph(g)
