"""Tiled encode/decode: run a network tile by tile and blend the overlaps.

Only the full-resolution half of a model is tiled (the models split themselves into
`*_head`/`*_tail`); the latent-resolution half, which holds the global mid-block
attention, runs whole — it is small. The input of the tiled half is cut into a grid
of overlapping tiles (balanced: every tile on an axis has the same size, at most
`tile`), and the outputs are blended with raised-cosine ramps across each overlap.
The ramps of two neighbours sum to one; tile edges, where zero padding differs most
from the whole-image pass, get the least weight.

GroupNorm is what usually makes tiles visible (each tile normalises with its own
statistics, so colours drift from tile to tile). Here the GroupNorms are
`SyncGroupNorm`s and tiling runs in two passes: pass 1 runs every tile and sums each
GroupNorm's statistics over the tile's *core* (its share of a partition of the image),
pass 2 runs every tile again normalising with the whole-image statistics so gathered.
That costs a second pass but makes tiles all but invisible (see README: PSNR vs the
whole-image decode). Peak memory is that of one tile plus the output buffer.

`fn` maps an input tile [B, C, h, w] to [B, C', h*num/den, w*num/den]: a decoder
(num=8, den=1, latent tiles) or an encoder (num=1, den=8, pixel tiles aligned to 8).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# Tiling is chosen automatically above this many latent positions (h * w): a
# 1024x1024 image (128x128 latents) decodes whole, anything larger is tiled.
AUTO_TILE_LATENT_AREA = 128 * 128
# Default tile and overlap, in latent positions (x8 in pixels): 512 px tiles with 128 px of overlap.
DEFAULT_TILE = 64
DEFAULT_OVERLAP = 16


class SyncGroupNorm(nn.GroupNorm):
    """A GroupNorm whose statistics can be gathered across tiles (`NormSync`); plain otherwise."""

    sync = None  # a NormSync while a tiled pass runs

    def forward(self, x):
        if self.sync is None:
            return super().forward(x)
        return self.sync(self, x)


class NormSync:
    """Gathers (pass "record") and applies (pass "apply") whole-image GroupNorm statistics."""

    def __init__(self, modules):
        self.modules = list(modules)
        self.mode = "record"
        self.core = None  # (cy0, cy1, cx0, cx1, th, tw): the tile's core, in tile-input units
        self._sums: dict = {}
        self._stats: dict = {}

    def __enter__(self):
        for m in self.modules:
            m.sync = self
        return self

    def __exit__(self, *exc):
        for m in self.modules:
            m.sync = None
        return False

    def finish_recording(self):
        stats = {}
        for key, (s, ss, n) in self._sums.items():
            mean = s / n
            var = (ss / n - mean * mean).clamp_min(0)
            stats[key] = (mean, var)
        self._stats = stats
        self._sums.clear()
        self.mode = "apply"

    def __call__(self, mod, x):
        b, c, h, w = x.shape
        g = mod.num_groups
        key = id(mod)
        if self.mode in ("record", "refine"):
            cy0, cy1, cx0, cx1, th, tw = self.core
            core = x[:, :, cy0 * h // th : cy1 * h // th, cx0 * w // tw : cx1 * w // tw].float()
            core = core.reshape(b, g, -1)
            s, ss, n = core.sum(-1).double(), core.square().sum(-1).double(), core.shape[-1]
            if key in self._sums:
                s0, ss0, n0 = self._sums[key]
                s, ss, n = s + s0, ss + ss0, n + n0
            self._sums[key] = (s, ss, n)
            if self.mode == "record":
                return F.group_norm(x, g, mod.weight, mod.bias, mod.eps)
        mean, var = self._stats[key]
        rstd = torch.rsqrt(var + mod.eps)  # [B, G] float64
        per = c // g
        scale = rstd.repeat_interleave(per, dim=1) * mod.weight.double()[None]
        shift = mod.bias.double()[None] - mean.repeat_interleave(per, dim=1) * scale
        scale = scale.to(x.dtype)[:, :, None, None]
        shift = shift.to(x.dtype)[:, :, None, None]
        return torch.addcmul(shift, x, scale)


def plan_axis(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """(start, end) of balanced tiles covering [0, length) with at least `overlap` shared."""
    if length <= tile:
        return [(0, length)]
    overlap = min(overlap, tile // 2)
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (n - 1) * overlap) / n)
    size = min(length, math.ceil(size / align) * align)
    spans = []
    for i in range(n):
        start = round(i * (length - size) / (n - 1)) if n > 1 else 0
        start = min((start // align) * align, length - size)
        spans.append((start, start + size))
    return spans


def _ramp(n_out: int, lead: int, trail: int):
    """1-D weights of one tile: cosine rise over `lead`, cosine fall over `trail`."""
    w = torch.ones(n_out)
    if lead > 0:
        t = (torch.arange(lead) + 0.5) / lead
        w[:lead] = 0.5 - 0.5 * torch.cos(math.pi * t)
    if trail > 0:
        t = (torch.arange(trail) + 0.5) / trail
        w[n_out - trail :] = 0.5 + 0.5 * torch.cos(math.pi * t)
    return w


def _axis_weights(spans, num: int, den: int):
    out = []
    for i, (s, e) in enumerate(spans):
        lead = (spans[i - 1][1] - s) * num // den if i > 0 else 0
        trail = (e - spans[i + 1][0]) * num // den if i + 1 < len(spans) else 0
        out.append(_ramp((e - s) * num // den, lead, trail))
    return out


def _cores(spans):
    """A partition of the axis: each tile owns up to the middle of its overlaps."""
    bounds = [0] + [(spans[i][1] + spans[i + 1][0]) // 2 for i in range(len(spans) - 1)] + [spans[-1][1]]
    return [(bounds[i] - s, bounds[i + 1] - s) for i, (s, _e) in enumerate(spans)]


def tiled_map(fn, x, *, tile: int, overlap: int, num: int, den: int, align: int = 1, out_device="cpu",
              norms=None, stat_passes: int = 1):
    """Apply `fn` to overlapping tiles of `x` [B, C, H, W] and blend; returns float32 on `out_device`.

    `norms`: the `SyncGroupNorm`s inside `fn`; when given (and there is more than one
    tile) a first pass gathers their whole-image statistics.
    """
    b, _, h, w = x.shape
    ys, xs = plan_axis(h, tile, overlap, align), plan_axis(w, tile, overlap, align)
    norms = list(norms or [])
    if norms and len(ys) * len(xs) > 1:
        cy, cx = _cores(ys), _cores(xs)
        with NormSync(norms) as sync:
            for i in range(stat_passes):
                sync.mode = "record" if i == 0 else "refine"
                for (y0, y1), (a0, a1) in zip(ys, cy):
                    for (x0, x1), (c0, c1) in zip(xs, cx):
                        sync.core = (a0, a1, c0, c1, y1 - y0, x1 - x0)
                        fn(x[:, :, y0:y1, x0:x1])
                sync.finish_recording()
            return _blend(fn, x, ys, xs, num, den, out_device)
    return _blend(fn, x, ys, xs, num, den, out_device)


def _blend(fn, x, ys, xs, num, den, out_device):
    b, _, h, w = x.shape
    wy, wx = _axis_weights(ys, num, den), _axis_weights(xs, num, den)
    out = None
    weight = torch.zeros(h * num // den, w * num // den, device=out_device)
    for (y0, y1), ry in zip(ys, wy):
        for (x0, x1), rx in zip(xs, wx):
            part = fn(x[:, :, y0:y1, x0:x1]).to(out_device, torch.float32)
            if out is None:
                out = torch.zeros(b, part.shape[1], h * num // den, w * num // den, device=out_device)
            m = (ry[:, None] * rx[None, :]).to(out_device)
            oy, ox = y0 * num // den, x0 * num // den
            out[:, :, oy : oy + part.shape[2], ox : ox + part.shape[3]] += part * m
            weight[oy : oy + part.shape[2], ox : ox + part.shape[3]] += m
            del part
    return out / weight.clamp_min(1e-8)


def tile_count(h: int, w: int, tile: int, overlap: int, align: int = 1) -> int:
    return len(plan_axis(h, tile, overlap, align)) * len(plan_axis(w, tile, overlap, align))
