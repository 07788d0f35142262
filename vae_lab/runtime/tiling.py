"""Exact tiled encode/decode: the whole-image result, computed tile by tile.

Only the full-resolution half of a model is tiled (the models split themselves into
`*_head`/`*_tail`); the latent-resolution half, which holds the mid-block attention
(global, or windowed with `attention="window"`), runs whole — it is small. The tiled half
is described as a graph of local operations (`Graph`: convs, nearest upsampling, pointwise
maps, adds, GroupNorms), built by the model itself (`tail_graph`/`head_graph`), and run in
*passes*:

- Every GroupNorm is a synchronisation point: it needs statistics over the whole image.
  A pass runs every tile up to the input of the next GroupNorm whose earlier norms are
  known and sums that input's per-group count, mean and squared deviations over each
  tile's own *core* (the cores partition the image, so every position is counted once;
  the per-tile moments combine exactly — Chan's parallel formula, in float64 — into the
  whole-image mean and variance; never an average of per-tile variances).
- Between synchronisation points everything is local, so a tile computes its core
  exactly from its inputs plus a halo: each op says which input box an output box
  needs (`need`), boxes propagate back through the graph, and inputs are cut with zero
  padding only where the image itself ends — exactly what the whole-image pass sees.
- Some intermediate tensors are kept between passes (`Graph.keep`, row strips freed as
  soon as no later tile reads them) so that later passes need not recompute from the
  start: residual-block outputs always, others when they are at most `store_limit` bytes.

So a tiled decode equals the whole decode up to float rounding (tests/test_tiling.py,
bench/tiling.py). Peak memory is one tile's working set plus the kept tensors.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction

import torch
import torch.nn as nn
import torch.nn.functional as F

from vae_lab.errors import Cancelled
from vae_lab.models.ops import phase_kernel, upsample2_conv3x3_padded

log = logging.getLogger("vae_lab.tiling")

# Default tile edge, in latent positions (x8 in pixels): 512 px tiles.
DEFAULT_TILE = 64
# The smallest tile accepted, in latent positions (x8 in pixels).
MIN_TILE = 8


# ------------------------------------------------------------------ boxes
Box = tuple  # (y0, y1, x0, x1), half-open, in one node's own pixel grid


def _union(boxes):
    return (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes), max(b[3] for b in boxes))


def _clip(box, hw):
    return (max(0, box[0]), min(hw[0], box[1]), max(0, box[2]), min(hw[1], box[3]))


def _crop(t, have, want):
    """The part `want` of a tensor `t` that covers the box `have`."""
    return t[:, :, want[0] - have[0] : want[1] - have[0], want[2] - have[2] : want[3] - have[2]]


def _cut(t, have, want, hw):
    """`want` (may reach outside the image `hw`) from `t` covering `have`: zeros outside the image."""
    inside = _clip(want, hw)
    part = _crop(t, have, inside)
    pads = (inside[2] - want[2], want[3] - inside[3], inside[0] - want[0], want[1] - inside[1])
    return F.pad(part, pads) if any(pads) else part


# ------------------------------------------------------------------ ops
class Op:
    """A local operation: `need` maps an output box to an input box, `run` computes it."""

    def need(self, box, i: int):
        return box

    def out_hw(self, hws):
        return hws[0]

    def run(self, xs, haves, hws, box):
        raise NotImplementedError


class Conv(Op):
    """A Conv2d with zero padding (the module's own, or explicit (top, bottom, left, right))."""

    def __init__(self, conv: nn.Conv2d, pads=None):
        assert conv.dilation == (1, 1) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
        self.conv = conv
        (self.kh, self.kw), (self.sh, self.sw) = conv.kernel_size, conv.stride
        ph, pw = conv.padding
        self.pads = pads or (ph, ph, pw, pw)

    def need(self, box, i):
        t, _b, l, _r = self.pads
        y0, y1, x0, x1 = box
        return (y0 * self.sh - t, (y1 - 1) * self.sh - t + self.kh, x0 * self.sw - l, (x1 - 1) * self.sw - l + self.kw)

    def out_hw(self, hws):
        h, w = hws[0]
        t, b, l, r = self.pads
        return ((h + t + b - self.kh) // self.sh + 1, (w + l + r - self.kw) // self.sw + 1)

    def run(self, xs, haves, hws, box):
        x = _cut(xs[0], haves[0], self.need(box, 0), hws[0])
        c = self.conv
        return F.conv2d(x, c.weight, c.bias, c.stride, 0, 1, c.groups)


class Up2(Op):
    """Nearest-neighbour upsampling by 2."""

    def need(self, box, i):
        return (box[0] // 2, (box[1] - 1) // 2 + 1, box[2] // 2, (box[3] - 1) // 2 + 1)

    def out_hw(self, hws):
        return (hws[0][0] * 2, hws[0][1] * 2)

    def run(self, xs, haves, hws, box):
        src = self.need(box, 0)
        x = F.interpolate(_crop(xs[0], haves[0], src), scale_factor=2.0, mode="nearest")
        dy, dx = box[0] - 2 * src[0], box[2] - 2 * src[2]
        return x[:, :, dy : dy + box[1] - box[0], dx : dx + box[3] - box[2]]


class Up2Conv(Op):
    """Nearest x2 then a 3x3 conv with padding 1, fused (`models.ops.upsample2_conv3x3_padded`)."""

    def __init__(self, conv: nn.Conv2d):
        assert conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
        self.conv = conv
        self._kernel = None  # made on first use, for all tiles

    def _src(self, box):
        return (box[0] // 2, (box[1] - 1) // 2 + 1, box[2] // 2, (box[3] - 1) // 2 + 1)

    def need(self, box, i):
        y0, y1, x0, x1 = self._src(box)
        return (y0 - 1, y1 + 1, x0 - 1, x1 + 1)

    def out_hw(self, hws):
        return (hws[0][0] * 2, hws[0][1] * 2)

    def run(self, xs, haves, hws, box):
        src = self._src(box)
        if self._kernel is None:
            self._kernel = phase_kernel(self.conv.weight)
        xp = _cut(xs[0], haves[0], self.need(box, 0), hws[0])
        y = upsample2_conv3x3_padded(xp, self.conv.weight, self.conv.bias, self._kernel)
        dy, dx = box[0] - 2 * src[0], box[2] - 2 * src[2]
        return y[:, :, dy : dy + box[1] - box[0], dx : dx + box[3] - box[2]]


class Map(Op):
    """A pointwise function (activation, affine map)."""

    def __init__(self, fn):
        self.fn = fn

    def run(self, xs, haves, hws, box):
        return self.fn(_crop(xs[0], haves[0], box))


class Add(Op):
    def run(self, xs, haves, hws, box):
        return _crop(xs[0], haves[0], box) + _crop(xs[1], haves[1], box)


class Norm(Op):
    """A GroupNorm applied with whole-image statistics (`stats`, set by a statistics pass),
    optionally followed by SiLU (fused: done in place on the fresh output)."""

    def __init__(self, gn: nn.GroupNorm, silu: bool = False):
        self.gn = gn
        self.silu = silu
        self.stats = None  # (mean, var) [B, G] float64
        self._affine = None

    def set_stats(self, mean, var):
        gn = self.gn
        per = gn.num_channels // gn.num_groups
        scale = torch.rsqrt(var + gn.eps).repeat_interleave(per, dim=1)
        shift = -mean.repeat_interleave(per, dim=1) * scale
        if gn.affine:
            scale = scale * gn.weight.double()[None]
            shift = shift * gn.weight.double()[None] + gn.bias.double()[None]
        self.stats = (mean, var)
        self._affine = scale, shift

    def run(self, xs, haves, hws, box):
        x = _crop(xs[0], haves[0], box)
        scale, shift = (t.to(x.device, x.dtype)[:, :, None, None] for t in self._affine)
        y = torch.addcmul(shift, x, scale)
        return F.silu(y, inplace=True) if self.silu else y


class _Moments:
    """Per-group count, mean and sum of squared deviations, merged tile by tile (Chan et al.)."""

    def __init__(self):
        self.n = 0
        self.mean = None
        self.m2 = None

    def add(self, x, groups: int):
        # per-channel moments (a reduction over H, W: cheap in channels_last too), then the
        # channels of each group merged (equal counts: the group mean is the mean of means)
        b, c = x.shape[:2]
        var, mean = torch.var_mean(x.float(), dim=(2, 3), correction=0)
        per = x.shape[2] * x.shape[3]
        mean, m2 = mean.double().view(b, groups, c // groups), var.double().view(b, groups, c // groups) * per
        n = per * (c // groups)
        gmean = mean.mean(-1)
        m2 = m2.sum(-1) + ((mean - gmean[..., None]) ** 2).sum(-1) * per
        mean = gmean
        if self.mean is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        tot = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / tot)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n / tot)
        self.n = tot

    def result(self):
        return self.mean, self.m2 / self.n


# ------------------------------------------------------------------ graph
@dataclass(eq=False)
class Node:
    op: Op | None
    inputs: list
    scale: Fraction  # this node's resolution / the graph input's
    hw: tuple = (0, 0)
    channels: int = 0
    keep: str | None = None  # "always", "small" (kept when at most store_limit bytes) or None
    name: str = ""
    index: int = 0


class Graph:
    """A DAG of local ops over one input; models build theirs with `conv`, `up2`, `map`, `add`, `norm`."""

    def __init__(self, channels: int, hw=(0, 0)):
        self.nodes: list[Node] = []
        self.input = self._add(Node(None, [], Fraction(1), hw, channels, keep="always", name="input"))

    def _add(self, node):
        node.index = len(self.nodes)
        self.nodes.append(node)
        return node

    def _op(self, op, inputs, scale, channels, name):
        return self._add(Node(op, list(inputs), scale, channels=channels, name=name))

    def conv(self, x, conv: nn.Conv2d, pads=None, name="conv"):
        s = Fraction(1, conv.stride[0])
        return self._op(Conv(conv, pads), [x], x.scale * s, conv.out_channels, name)

    def up2(self, x, name="up"):
        return self._op(Up2(), [x], x.scale * 2, x.channels, name)

    def up2_conv(self, x, conv: nn.Conv2d, name="up2_conv"):
        return self._op(Up2Conv(conv), [x], x.scale * 2, conv.out_channels, name)

    def map(self, x, fn, name="map"):
        return self._op(Map(fn), [x], x.scale, x.channels, name)

    def add(self, a, b, name="add"):
        return self._op(Add(), [a, b], a.scale, a.channels, name)

    def norm(self, x, gn: nn.GroupNorm, silu=False, name="norm"):
        return self._op(Norm(gn, silu), [x], x.scale, x.channels, name)

    def keep(self, node, how="always"):
        node.keep = how
        return node

    def bind(self, hw):
        """Set every node's size for an input of size `hw`."""
        self.input.hw = tuple(hw)
        for n in self.nodes[1:]:
            n.hw = n.op.out_hw([i.hw for i in n.inputs])


# ------------------------------------------------------------------ stores
class _Store:
    """A node's full tensor kept between passes, as row strips (one per tile row) freed early."""

    def __init__(self, node, rows, like, device, b):
        self.node = node
        self.rows = rows  # [(r0, r1)] strip spans in the node's grid
        self.strips = [None] * len(rows)
        self.like = like
        self.device = device
        self.b = b
        self.complete = False

    def write(self, box, t):
        for i, (r0, r1) in enumerate(self.rows):
            lo, hi = max(r0, box[0]), min(r1, box[1])
            if lo >= hi:
                continue
            if self.strips[i] is None:
                self.strips[i] = torch.empty(self.b, self.node.channels, r1 - r0, self.node.hw[1], device=self.device,
                                             dtype=t.dtype).contiguous(memory_format=_fmt(t))
            self.strips[i][:, :, lo - r0 : hi - r0, box[2] : box[3]] = t[:, :, lo - box[0] : hi - box[0]]

    def read(self, box):
        parts = []
        for i, (r0, r1) in enumerate(self.rows):
            lo, hi = max(r0, box[0]), min(r1, box[1])
            if lo < hi:
                s = self.strips[i]
                if s is None:
                    raise RuntimeError(f"tiling: strip {i} of {self.node.name} read after it was freed")
                parts.append(s[:, :, lo - r0 : hi - r0, box[2] : box[3]])
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def free_above(self, row):
        for i, (_r0, r1) in enumerate(self.rows):
            if r1 <= row:
                self.strips[i] = None

    def nbytes(self):
        return sum(s.untyped_storage().nbytes() for s in self.strips if s is not None)


def _fmt(t):
    if t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


# ------------------------------------------------------------------ plan
def split_axis(length: int, tile: int, align: int = 1) -> list[tuple[int, int]]:
    """A partition of [0, length) into balanced spans of at most `tile` (multiples of `align`)."""
    n = max(1, math.ceil(length / max(tile, align)))
    units = length // align
    n = min(n, max(1, units))
    bounds = [round(i * units / n) * align for i in range(n)] + [length]
    return [(bounds[i], bounds[i + 1]) for i in range(n) if bounds[i + 1] > bounds[i]]


def tile_grid(h: int, w: int, tile: int, align: int = 1):
    """The tiles' cores (y0, y1, x0, x1) in the graph input's grid, row by row."""
    return [(y0, y1, x0, x1) for y0, y1 in split_axis(h, tile, align) for x0, x1 in split_axis(w, tile, align)]


def tile_count(h: int, w: int, tile: int, align: int = 1) -> int:
    return len(split_axis(h, tile, align)) * len(split_axis(w, tile, align))


def _scaled(box, s: Fraction):
    return tuple(int(v * s) for v in box)


@dataclass
class _Pass:
    stats: list  # Norm nodes whose input's moments this pass sums
    keep: list  # nodes this pass writes into stores
    output: bool = False
    reads: list = field(default_factory=list)  # stores read
    cost: float = 0.0  # multiply-adds per graph-input position (for estimates)


class TiledRun:
    """One tiled evaluation of `graph` on `x`: plan the passes, run them tile by tile.

    `progress(done, total)` is called after every tile of every pass; `cancel()` returning
    true (checked before every tile) stops the run with `Cancelled`.
    """

    def __init__(self, graph: Graph, output: Node, x, *, tile: int, align: int = 1, store_limit: int | None = None,
                 out_device="cpu", progress=None, cancel=None):
        self.g, self.out, self.x = graph, output, x
        graph.bind(x.shape[2:])
        self.tiles = tile_grid(x.shape[2], x.shape[3], tile, align)
        self.rows = split_axis(x.shape[2], tile, align)
        self.b = x.shape[0]
        self.itemsize = x.element_size()
        if store_limit is None:
            always = [n for n in graph.nodes if n.keep == "always" and n is not graph.input]
            store_limit = max((self._bytes(n) for n in always), default=0) // 2
        self.store_limit = store_limit
        self.out_device = out_device
        self.progress, self.cancel = progress, cancel
        self.passes = self._plan()
        self.peak_store_bytes = 0  # the most bytes the kept tensors held at once (after a tile)

    def _bytes(self, n):
        return self.b * n.channels * n.hw[0] * n.hw[1] * self.itemsize

    # ---------------------------------------------------------------- planning
    def _kept(self, n):
        return n.keep == "always" or (n.keep == "small" and self._bytes(n) <= self.store_limit)

    def _deps(self, n, available, memo):
        """Norms (and stores) needed to compute `n` from the stores in `available`."""
        if n in available:
            return frozenset(), frozenset([n])
        if n.index in memo:
            return memo[n.index]
        norms, stores = set(), set()
        if isinstance(n.op, Norm):
            norms.add(n)
        for i in n.inputs:
            a, s = self._deps(i, available, memo)
            norms |= a
            stores |= s
        memo[n.index] = (frozenset(norms), frozenset(stores))
        return memo[n.index]

    def _plan(self):
        nodes = self.g.nodes
        norms = [n for n in nodes if isinstance(n.op, Norm)]
        kept = [n for n in nodes[1:] if self._kept(n) and n is not self.out]
        available, known, passes = {self.g.input}, set(), []
        while True:
            memo = {}
            ready = lambda n: self._deps(n, available, memo)[0] <= known  # noqa: E731, B023 (called within this iteration)
            if ready(self.out):
                p = _Pass([], [], output=True)
                p.reads = sorted(self._deps(self.out, available, memo)[1], key=lambda n: n.index)
                p.cost = self._cost([self.out], available)
                passes.append(p)
                break
            stats = [n for n in norms if n not in known and ready(n.inputs[0])]
            keep = [n for n in kept if n not in available and ready(n)]
            if not stats:
                raise RuntimeError("tiling: the graph's GroupNorms cannot be ordered")
            p = _Pass(stats, keep)
            targets = [n.inputs[0] for n in stats] + keep
            reads = set()
            for t in targets:
                reads |= self._deps(t, available, memo)[1]
            p.reads = sorted(reads, key=lambda n: n.index)
            p.cost = self._cost(targets, available)
            passes.append(p)
            known |= set(stats)
            available |= set(keep)
        return passes

    def _cost(self, targets, available):
        """Multiply-adds of computing `targets` from `available` once, per input position."""
        seen, total, todo = set(), 0.0, list(targets)
        while todo:
            n = todo.pop()
            if n in available or n.index in seen:
                continue
            seen.add(n.index)
            total += _macs(n.op) * float(n.scale) ** 2
            todo.extend(n.inputs)
        return total

    # ---------------------------------------------------------------- running
    def _needs(self, targets, available):
        """Per tile: {node: box} to compute, for `targets` = [(node, box_fn)]."""
        out = []
        order = self.g.nodes
        for core in self.tiles:
            need: dict = {}
            for n, _kind in targets:
                box = _scaled(core, n.scale)
                need[n] = box if n not in need else _union([need[n], box])
            for n in reversed(order):
                if n not in need or n in available:
                    continue
                need[n] = _clip(need[n], n.hw)
                for i, inp in enumerate(n.inputs):
                    b = n.op.need(need[n], i)
                    need[inp] = b if inp not in need else _union([need[inp], b])
            for n in list(need):
                need[n] = _clip(need[n], n.hw)
            out.append((core, need))
        return out

    def _eval(self, need, stores, available):
        vals, refs = {}, {}
        for n in need:
            if n not in available:
                for i in n.inputs:
                    refs[i] = refs.get(i, 0) + 1
        for n in self.g.nodes:
            if n not in need:
                continue
            if n is self.g.input:
                vals[n] = _crop(self.x, (0, n.hw[0], 0, n.hw[1]), need[n])
            elif n in available:
                vals[n] = stores[n].read(need[n])
            else:
                xs = [vals[i] for i in n.inputs]
                vals[n] = n.op.run(xs, [need[i] for i in n.inputs], [i.hw for i in n.inputs], need[n])
                for i in n.inputs:
                    refs[i] -= 1
                    if refs[i] == 0 and i not in self._pinned:
                        del vals[i]
        return vals

    def _check_cancel(self):
        if self.cancel is not None and (self.cancel.is_set() if hasattr(self.cancel, "is_set") else self.cancel()):
            raise Cancelled("stopped")

    def run(self):
        stores: dict = {}
        available = {self.g.input}
        total = len(self.passes) * len(self.tiles)
        done = 0
        out = None
        for pi, p in enumerate(self.passes):
            targets = [(n.inputs[0], "stats") for n in p.stats] + [(n, "keep") for n in p.keep]
            if p.output:
                targets = [(self.out, "out")]
            self._pinned = {n for n, _k in targets}
            needs = self._needs(targets, available)
            moments = {n: _Moments() for n in p.stats}
            for n in p.keep:
                stores[n] = _Store(n, [_scaled((r0, r1), n.scale) for r0, r1 in self.rows], None, self.x.device, self.b)
            last_reader = [s for s in p.reads if s is not self.g.input and
                           not any(s in q.reads for q in self.passes[pi + 1 :])]
            for ti, (core, need) in enumerate(needs):
                self._check_cancel()
                vals = self._eval(need, stores, available)
                for n, kind in targets:
                    box = _scaled(core, n.scale)
                    part = _crop(vals[n], need[n], box)
                    if kind == "stats":
                        for norm in p.stats:
                            if norm.inputs[0] is n:
                                moments[norm].add(part, norm.op.gn.num_groups)
                    elif kind == "keep":
                        stores[n].write(box, part)
                    else:
                        if out is None:
                            out = torch.empty(self.b, n.channels, n.hw[0], n.hw[1], device=self.out_device,
                                              dtype=torch.float32)
                        out[:, :, box[0] : box[1], box[2] : box[3]] = part.to(self.out_device, torch.float32)
                del vals
                self.peak_store_bytes = max(self.peak_store_bytes, sum(st.nbytes() for st in stores.values()))
                for s in last_reader:  # free the strips no later tile of this pass reads
                    rest = [nd[s][0] for _c, nd in needs[ti + 1 :] if s in nd]
                    stores[s].free_above(min(rest) if rest else s.hw[0])
                done += 1
                if self.progress is not None:
                    self.progress(done, total)
            for s in last_reader:
                del stores[s]
                available.discard(s)
            for norm in p.stats:
                norm.op.set_stats(*moments[norm].result())
            available |= set(p.keep)
        return out

    def cost(self) -> float:
        """Multiply-adds of the whole run (all passes), for time estimates."""
        h, w = self.x.shape[2:]
        return sum(p.cost for p in self.passes) * h * w * self.b


def _macs(op) -> float:
    """Multiply-adds per output position of one op."""
    if isinstance(op, Conv):
        c = op.conv
        return c.in_channels // c.groups * c.out_channels * op.kh * op.kw
    if isinstance(op, Up2Conv):
        return op.conv.in_channels * op.conv.out_channels * 4
    return 0.0


def whole_cost(graph: Graph, output: Node, hw, batch: int = 1) -> float:
    """Multiply-adds of one whole-image pass through `graph` (for the tiled/whole time ratio)."""
    graph.bind(hw)
    total = 0.0
    for n in graph.nodes:
        total += _macs(n.op) * n.hw[0] * n.hw[1]
    return total * batch


def whole_peak_bytes(graph: Graph, hw, batch: int, itemsize: int) -> int:
    """A (generous) estimate of a whole-image pass's peak: three of its largest tensors at once."""
    graph.bind(hw)
    return 3 * max(batch * n.channels * n.hw[0] * n.hw[1] * itemsize for n in graph.nodes)


def run_tiled(graph: Graph, output: Node, x, *, tile: int, align: int = 1, store_limit=None, out_device="cpu",
              progress=None, cancel=None):
    """The graph's output for input `x` [B, C, H, W], computed tile by tile (float32 on `out_device`)."""
    run = TiledRun(graph, output, x, tile=tile, align=align, store_limit=store_limit, out_device=out_device,
                   progress=progress, cancel=cancel)
    t0 = time.perf_counter()
    out = run.run()
    log.debug("tiled run: %d tiles x %d passes in %.2f s", len(run.tiles), len(run.passes), time.perf_counter() - t0)
    return out
