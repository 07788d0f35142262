"""Encode and decode with any supported VAE: the one path from weights to pixels.

    vae = load_vae("vae-ft-mse-840000-ema-pruned.safetensors")
    res = vae.decode(latents)            # diffusion-space latents in, [-1, 1] images out
    res.images, res.precision_used, res.fallback, res.tiled, res.seconds, res.peak_memory_bytes
    vae.decode(latents, attention="window")  # opt-in, inexact: mid-block attention within windows

What a call does, in order:
1. check the input (channels, rank) and pad images to a multiple of the VAE's scale
   (reflect padding; the result is cropped back, so any size works);
2. convert latents between diffusion space and the VAE's raw space (`families.py`);
3. pick the precision chain (`precision.py`), skipping precisions this VAE is known to
   fail at; run under `torch.inference_mode()`, tiled when large (`tiling.py`) or when
   memory runs out; any NaN/Inf in the output means: retry at the next safer precision;
4. report what happened, and remember failures per weights id.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vae_lab.identity import compatibility, families
from vae_lab.runtime import precision as prec
from vae_lab.errors import BadOption, Cancelled, IncompatibleVae, VaeLabError

_log = logging.getLogger("vae_lab.engine")

# `attention=`: "global" (exact, the default) or "window" (opt-in: the mid-block attention
# within overlapping windows of `attention_window` pixels; linear instead of quadratic in
# the image area, slightly inexact — measured in docs/benchmarks.md, *Windowed attention*).
ATTENTION_MODES = ("global", "window")
DEFAULT_ATTENTION_WINDOW = 512  # pixels: 64 latent positions at f8
MIN_ATTENTION_WINDOW = 64  # pixels
# Side of the pooled far field each window also attends to (`kl.WindowedAttention`): latents
# up to this side (1024 px) are exact; 4 x 4-position cells at 4096 px, 8 x 8 at 8192 px.
ATTENTION_FAR_GRID = 128


@dataclass
class _Report:
    precision_used: str = "fp32"
    fallback: list = field(default_factory=list)  # precisions that gave NaN/Inf in this call
    skipped: list = field(default_factory=list)  # precisions skipped: known to fail for these weights
    unsupported: list = field(default_factory=list)  # precisions this device cannot run (prec.runs_on)
    tiled: bool = False
    tiles: int = 1
    attention: str = "global"  # "global" (exact), "window" (windowed, inexact) or "none" (a VAE without attention)
    attention_windows: int = 1  # windows of the mid-block attention (1: global)
    seconds: float = 0.0
    peak_memory_bytes: int | None = None
    estimated_seconds: float | None = None  # the estimate made before the call (None: nothing measured yet)

    def to_dict(self) -> dict:
        return {
            "estimated_seconds": None if self.estimated_seconds is None else round(self.estimated_seconds, 2),
            "precision_used": self.precision_used,
            "fallback": list(self.fallback),
            "skipped": list(self.skipped),
            "unsupported": list(self.unsupported),
            "tiled": self.tiled,
            "tiles": self.tiles,
            "attention": self.attention,
            "attention_windows": self.attention_windows,
            "seconds": round(self.seconds, 4),
            "peak_memory_bytes": self.peak_memory_bytes,
        }


@dataclass
class EncodeResult(_Report):
    latents: Any = None  # float32 CPU [B, C, h, w], diffusion space
    image_size: tuple = (0, 0)  # (H, W) of the input images


@dataclass
class DecodeResult(_Report):
    images: Any = None  # float32 CPU [B, 3, H, W] in [-1, 1]


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _is_oom(err: BaseException) -> bool:
    import torch

    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    msg = str(err).lower()
    return isinstance(err, (RuntimeError, MemoryError)) and (
        "out of memory" in msg or "can't allocate" in msg or "not enough memory" in msg or isinstance(err, MemoryError)
    )


class Vae:
    """A loaded VAE on a device. Build with `load_vae`, `Vae.from_vaefile` or `Vae.from_state_dict`."""

    # channels_last is faster for these conv stacks on CPU and on tensor-core GPUs (see bench/).
    channels_last = True

    def __init__(self, model, *, name: str, path: str | None, family: str | None, weights_id: str | None,
                 device=None, info=None, state_dir=None):
        import torch

        self.device = torch.device(device or default_device())
        self.name = name
        self.path = path
        self.info = info
        self.kind = model.kind
        self.latent_channels = model.latent_channels
        self.downscale = model.downscale
        self.has_encoder = model.has_encoder
        self.has_decoder = model.has_decoder
        self.family = family
        self.weights_id = weights_id
        self.scale, self.shift = families.latent_scaling(self.kind, family, self.latent_channels)
        self.memory = prec.PrecisionMemory(state_dir)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        # On CPU the weights stay as loaded (no copy): a channels_last input is enough for
        # oneDNN's channels_last kernels, which reorder the weights themselves. Elsewhere the
        # move to the device copies anyway, so it also lays the weights out channels_last.
        self._model = model if self.device.type == "cpu" else model.to(self.device, memory_format=fmt)
        self._cast: dict[str, Any] = {}  # precision -> a cast copy of the model (the fp32 master is kept)
        # Keep that half-precision copy after a call (faster repeated half decodes, twice the
        # memory)? Off by default: nothing but the fp32 master is held between calls.
        self.keep_cast = False
        self._rates: dict[tuple, float] = {}  # (op, precision, device type) -> measured seconds per multiply-add, for estimates

    # ----------------------------------------------------------------- building
    @classmethod
    def from_vaefile(cls, vf, device=None, *, info=None, family=None, state_dir=None):
        """Build from a `loading.VaeFile` (or anything with .kind, .state_dict, .arch, .path)."""
        from vae_lab.models import build_model

        model = build_model(vf.kind, vf.state_dict, getattr(vf, "arch", None), share=bool(getattr(vf, "path", None)))
        if info is None:
            info = _inspect(vf)
        fam = family or getattr(info, "family", None)
        wid = getattr(info, "weights_id", None)
        path = getattr(vf, "path", None)
        name = Path(path).name if path else "(in memory)"
        return cls(model, name=name, path=path, family=fam, weights_id=wid, device=device, info=info,
                   state_dir=state_dir)

    @classmethod
    def from_state_dict(cls, state_dict, *, kind="kl", arch=None, family=None, weights_id=None,
                        name="(in memory)", device=None, state_dir=None):
        """Build from weights already in RAM (the WebUI's RAM cache, tests)."""
        from vae_lab.models import build_model

        model = build_model(kind, state_dict, arch)
        return cls(model, name=name, path=None, family=family, weights_id=weights_id, device=device,
                   state_dir=state_dir)

    def set_family(self, family: str | None) -> None:
        """Decode/encode in `family`'s latent space from now on (for VAEs the catalog does not know)."""
        self.family = family
        self.scale, self.shift = families.latent_scaling(self.kind, family, self.latent_channels)

    # ---------------------------------------------------------------- internals
    def _model_at(self, precision: str):
        if precision == "fp32":
            return self._model
        if precision not in self._cast:
            import copy

            self._cast.clear()  # keep at most one half-precision copy
            self._cast[precision] = copy.deepcopy(self._model).to(prec.dtype_of(precision))
        return self._cast[precision]

    def on(self, device) -> "Vae":
        """This VAE with its weights on `device`: itself when already there, else a copy whose
        device weights go when it is dropped (the master stays where it is, e.g. in RAM)."""
        import copy

        import torch
        import torch.nn as nn

        device = torch.device(device)
        if device == self.device or (device.type == self.device.type and device.index is None):
            return self
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        memo = {}
        for p in self._model.parameters():
            moved = p.detach().to(device, memory_format=fmt if p.ndim == 4 else torch.preserve_format)
            memo[id(p)] = nn.Parameter(moved, requires_grad=False)
        twin = copy.copy(self)
        twin._model = copy.deepcopy(self._model, memo)
        twin._cast = {}
        twin.device = device
        return twin

    def _prepare(self, t):
        import torch

        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return t.contiguous(memory_format=fmt)

    def _run(self, op: str, x, precision: str, tile, step, *, cancel=None, on_estimate=None, window=None):
        """Run `step(model, x_at_dtype, tile) -> float32 CPU tensor` with fallback and tiling.

        `tile` is None (whole image) or a tile edge in latent positions (see `_want_tiles`);
        `window` the `WindowedAttention` that runs (None: global), for the estimate.
        """
        import torch

        from vae_lab.runtime.memory import PeakMemory

        prec.check_precision(precision)
        chain = prec.fallback_chain(precision, self.device)
        unsupported = [p for p in chain if not prec.runs_on(p, self.device)]
        if unsupported:
            _log.info("%s: %s cannot run at %s; using the next precision", self.name, self.device, ", ".join(unsupported))
        chain = [p for p in chain if p not in unsupported]
        known_bad = set(self.memory.failed(self.weights_id, op))
        skipped = [p for p in chain[:-1] if p in known_bad]
        chain = [p for p in chain if p not in skipped]
        failed: list[str] = []
        tiled = None
        estimate = None
        peak: int | None = None
        t0 = time.perf_counter()
        for i, p in enumerate(chain):
            # The half-precision copy of the weights is built outside the measured region:
            # the peak is what this call needs on top of the loaded model.
            model = self._model_at(p)
            # Stop's hooks go on the model that runs (a half-precision copy is made from the bare
            # master: hooks holding the caller's Event would not deep-copy, nor belong there).
            with _checking_cancel(model, cancel), PeakMemory(self.device) as pm:
                xi = self._prepare(x.to(self.device, prec.dtype_of(p)))
                tiled = _want_tiles(tile, model, op, xi, self.device)
                work = _work(model, op, xi.shape, tiled, window)
                if i == 0:
                    rate = self._rates.get((op, p, self.device.type))
                    estimate = None if rate is None else work * rate
                    if estimate is not None and estimate > 10:
                        _log.info("%s: %s of %s will take about %.0f s", self.name, op, list(xi.shape), estimate)
                    if on_estimate is not None:
                        on_estimate(estimate)
                t_step = time.perf_counter()
                with torch.inference_mode():
                    try:
                        out = step(model, xi, tiled)
                    except Exception as err:  # noqa: BLE001 — only memory failures are retried
                        if not _is_oom(err) or tiled is not None or tile not in ("auto", None):
                            raise
                        del err
                        if self.device.type == "cuda":
                            torch.cuda.empty_cache()
                        tiled = _default_tiles(op)
                        _log.info("%s: out of memory for a whole-image %s; retrying in %d px tiles", self.name,
                                  op, tiled * self.downscale)
                        out = step(model, xi, tiled)
                del xi
                self._rates[(op, p, self.device.type)] = (time.perf_counter() - t_step) / max(work, 1.0)
            if pm.peak_bytes is not None:
                peak = max(peak or 0, pm.peak_bytes)
            if i == len(chain) - 1 or prec.is_finite(out):
                break
            failed.append(p)
            out = None  # free the failed attempt's output before the next precision runs
        if not self.keep_cast:
            self._cast.clear()
        if not prec.is_finite(out):
            raise VaeLabError(
                f"{self.name} gives NaN/Inf even at {p} ({op}): its weights are damaged or unfit for this input"
            )
        report = dict(precision_used=p, fallback=failed, skipped=skipped, unsupported=unsupported,
                      tiled=tiled is not None, seconds=time.perf_counter() - t0, peak_memory_bytes=peak,
                      estimated_seconds=estimate)
        if failed:
            self.memory.record(self.weights_id, op, failed, p)
        return out, report, tiled

    # ------------------------------------------------------------------ public
    def decode(self, latents, *, precision: str = "auto", tile="auto", size=None, progress=None,
               cancel=None, on_estimate=None, attention: str = "global", attention_window=None) -> DecodeResult:
        """Diffusion-space latents [B, C, h, w] (or [C, h, w]) -> images float32 CPU [B, 3, H, W] in [-1, 1].

        `tile`: "auto" (tiles when the whole decode would not fit in free memory, or after
        an out-of-memory error), False/0 (never), True (default tiles) or a tile edge in
        pixels. A tiled decode equals the whole one up to float rounding (`tiling.py`).
        `size`: (H, W) to crop to (an image padded to a multiple of 8 before encoding).
        `attention`: "global" (default: exact) or "window": the mid-block attention within
        overlapping windows of `attention_window` pixels (default 512), blended without
        seams; linear instead of quadratic in the image area, slightly inexact (a latent
        that fits in one window is exact). Tiling stays exact for either mode.
        `progress(done, total)`: called after every window of a windowed attention and after
        every tile of every pass of a tiled decode (each phase counts from 1 to its total).
        `cancel`: a `threading.Event` or a no-argument callable; once set / true, the
        decode stops at the next block, window or tile (within a second or two) and raises
        `errors.Cancelled`.
        `on_estimate(seconds or None)`: called before the work starts with the expected time,
        from this VAE's measured speed on earlier calls (None on the first); also in the result.
        """
        from vae_lab.runtime import tiling

        if not self.has_decoder:
            compatibility.check_decode(self, None).raise_if_refused()
        z = _as_batch(latents, "latents")
        compatibility.check_decode(self, int(z.shape[1])).raise_if_refused()
        raw = families.from_diffusion(z.float(), self.scale, self.shift)
        spec, att = self._attention(attention, attention_window, raw.shape[2:], cancel, progress)

        def step(model, x, tiles):
            if tiles is None:
                return model.decode(x, **att).float().cpu()
            head = model.decode_head(x, **att)
            g = tiling.Graph(head.shape[1])
            return tiling.run_tiled(g, model.decode_tail_graph(g), head, tile=tiles, progress=progress, cancel=cancel)

        out, rep, tiles = self._run("decode", raw, precision, tile, step, cancel=cancel, on_estimate=on_estimate,
                                    window=spec[0])
        if size is not None:
            h, w = int(size[0]), int(size[1])
            if h > out.shape[2] or w > out.shape[3]:
                raise VaeLabError(f"cannot crop a {out.shape[2]}x{out.shape[3]} decode to {h}x{w}")
            out = out[:, :, :h, :w]
        res = DecodeResult(images=out.clamp(-1, 1).contiguous(), attention=spec[1], attention_windows=spec[2], **rep)
        if tiles is not None:
            res.tiles = tiling.tile_count(raw.shape[2], raw.shape[3], tiles)
        return res

    def encode(self, images, *, precision: str = "auto", tile="auto", progress=None, cancel=None,
               on_estimate=None, attention: str = "global", attention_window=None) -> EncodeResult:
        """Images float [B, 3, H, W] (or [3, H, W]) in [-1, 1], any H, W -> diffusion-space latents.

        Sides that are not multiples of the VAE's scale are reflect-padded; decode with
        `size=result.image_size` to crop back. `tile`, `progress`, `cancel`, `on_estimate`,
        `attention`, `attention_window` (the encoder's mid-block attention): as in `decode`.
        """
        import torch.nn.functional as F

        from vae_lab.runtime import tiling

        if not self.has_encoder:
            raise IncompatibleVae(f"{self.name} has no encoder (a decoder-only file): it cannot encode images")
        x = _as_batch(images, "images")
        if x.shape[1] != 3:
            raise VaeLabError(f"images must have 3 channels (RGB), got {x.shape[1]}")
        h, w = x.shape[2], x.shape[3]
        f = self.downscale
        ph, pw = (-h) % f, (-w) % f
        x = x.float()
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        spec, att = self._attention(attention, attention_window, (x.shape[2] // f, x.shape[3] // f), cancel, progress)

        def step(model, xi, tiles):
            if tiles is None:
                return model.encode(xi, **att).float().cpu()
            g = tiling.Graph(xi.shape[1])
            head = tiling.run_tiled(g, model.encode_head_graph(g), xi, tile=tiles * f, align=f, out_device=xi.device,
                                    progress=progress, cancel=cancel)
            return model.encode_tail(self._prepare(head.to(xi.dtype)), **att).float().cpu()

        raw, rep, tiles = self._run("encode", x, precision, tile, step, cancel=cancel, on_estimate=on_estimate,
                                    window=spec[0])
        lat = families.to_diffusion(raw, self.scale, self.shift).contiguous()
        res = EncodeResult(latents=lat, image_size=(h, w), attention=spec[1], attention_windows=spec[2], **rep)
        if tiles is not None:
            res.tiles = tiling.tile_count(x.shape[2], x.shape[3], tiles * f, f)
        return res

    def _attention(self, attention, window, latent_hw, cancel, progress):
        """Check `attention`/`attention_window`; returns ((window in latent positions or None,
        the mode that runs, its window count), the model's keyword arguments)."""
        px = check_attention(attention, window)
        if not getattr(self._model, "has_attention", False):
            return (None, "none", 0), {}
        if attention == "global":
            return (None, "global", 1), {}
        from vae_lab.models.kl import WindowedAttention

        def check():
            if _cancelled(cancel):
                raise Cancelled("stopped")

        spec = WindowedAttention(max(1, px // self.downscale), ATTENTION_FAR_GRID,
                                 check=check if cancel is not None else None, progress=progress)
        plan = spec.plan(int(latent_hw[0]), int(latent_hw[1]))
        if plan is None:  # small enough that the exact global attention is as cheap
            return (None, "global", 1), {}
        return (spec, "window", len(plan[0]) * len(plan[1])), {"attention": spec}

    def __repr__(self):
        return f"Vae({self.name!r}, kind={self.kind}, family={self.family}, channels={self.latent_channels}, device={self.device})"


class _checking_cancel:
    """Checks `cancel` before every block of a whole-image pass (forward pre-hooks), so Stop
    ends it within a block's time; tiled runs check between tiles themselves."""

    def __init__(self, model, cancel):
        self.model, self.cancel, self.handles = model, cancel, []

    def _check(self, *_args):
        if _cancelled(self.cancel):
            raise Cancelled("stopped")

    def __enter__(self):
        if self.cancel is not None:
            self._check()
            for m in self.model.modules():
                if next(m.children(), None) is not None:
                    self.handles.append(m.register_forward_pre_hook(self._check))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


def check_attention(attention, window=None) -> int:
    """The attention window in pixels, after checking `attention` and `window` (None: the default)."""
    if not isinstance(attention, str) or attention not in ATTENTION_MODES:
        raise BadOption(f"attention must be one of {', '.join(map(repr, ATTENTION_MODES))}; got {attention!r}")
    px = DEFAULT_ATTENTION_WINDOW if window is None else window
    if isinstance(px, bool) or not isinstance(px, int) or px < MIN_ATTENTION_WINDOW:
        raise BadOption(f"the attention window must be a whole number of pixels, at least {MIN_ATTENTION_WINDOW}; "
                        f"got {window!r}")
    return px


def _cancelled(cancel) -> bool:
    """Whether `cancel` (None, a `threading.Event` or a no-argument callable) asks to stop."""
    if cancel is None:
        return False
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())


def _as_batch(t, what: str):
    import torch

    if not isinstance(t, torch.Tensor):
        raise VaeLabError(f"{what} must be a torch tensor, got {type(t).__name__}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4:
        raise VaeLabError(f"{what} must be [B, C, H, W], got shape {list(t.shape)}")
    if t.shape[0] == 0 or t.shape[2] == 0 or t.shape[3] == 0:
        raise VaeLabError(f"{what} are empty (shape {list(t.shape)})")
    if not t.is_floating_point():
        raise VaeLabError(f"{what} must be floating point, got {t.dtype}")
    if not bool(torch.isfinite(t).all()):
        raise VaeLabError(f"the {what} contain NaN or Inf values")
    return t


def _default_tiles(op: str) -> int:
    from vae_lab.runtime import tiling

    return tiling.DEFAULT_TILE


def _want_tiles(tile, model, op: str, x, device):
    """The tile edge in latent positions, or None for a whole-image pass."""
    from vae_lab.runtime import tiling

    f = model.downscale
    if tile is None:
        tile = "auto"
    if tile is False or tile == 0:
        return None
    if tile is True:
        return _default_tiles(op)
    if isinstance(tile, str):
        if tile != "auto":
            raise VaeLabError(f"tile must be 'auto', a size in pixels, True or False; got {tile!r}")
        return _default_tiles(op) if not _whole_fits(model, op, x, device) else None
    size = int(tile)
    if size < 0:
        raise VaeLabError(f"tile size must be positive, got {tile}")
    return max(tiling.MIN_TILE, size // f)


def _work(model, op: str, shape, tile, window=None) -> float:
    """Multiply-adds of one call: the tiled half from its graph (with a tiled run's recomputation),
    the latent-resolution half from its convs, plus the mid-block attention's (h*w)^2 terms
    (or, windowed, the sum of each window's (tokens)^2)."""
    import torch.nn as nn

    from vae_lab.runtime import tiling

    g = tiling.Graph(shape[1])
    f = model.downscale
    if op == "decode":
        part = [m for n, m in model.named_children() if n in ("decoder", "post_quant_conv")]
        head = model.decode_tail_graph(g)
        hw, lat = (shape[2], shape[3]), (shape[2], shape[3])
    else:
        part = [m for n, m in model.named_children() if n in ("encoder", "quant_conv")]
        head = model.encode_head_graph(g)
        hw, lat = (shape[2], shape[3]), (shape[2] // f, shape[3] // f)
    if tile is None:
        graph_macs = tiling.whole_cost(g, head, hw, shape[0])
    else:
        import torch

        x = torch.empty(shape[0], g.input.channels, *hw, device="meta")
        graph_macs = tiling.TiledRun(g, head, x, tile=tile * (f if op == "encode" else 1),
                                     align=f if op == "encode" else 1).cost()
    in_graph = {id(n.op.conv) for n in g.nodes if hasattr(n.op, "conv")}
    rest, positions = 0.0, lat[0] * lat[1]
    for p in part:
        for m in p.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in in_graph:
                rest += m.in_channels // m.groups * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * positions
            elif type(m).__name__ == "AttnBlock":
                rest += 2.0 * _attention_pairs(lat, window) * m.q.in_channels
    return graph_macs + rest * shape[0]


def _attention_pairs(lat, window) -> float:
    """Query-key pairs of the mid-block attention on a latent of `lat` (h, w): global or windowed."""
    plan = None if window is None else window.plan(lat[0], lat[1])
    if plan is None:
        return float(lat[0] * lat[1]) ** 2
    ys, xs, cell = plan
    far = math.ceil(lat[0] / cell) * math.ceil(lat[1] / cell) if cell else 0
    return float(sum(((b - a) * (d - c)) * ((b - a) * (d - c) + far) for a, b in ys for c, d in xs))


def _whole_fits(model, op: str, x, device) -> bool:
    """Whether a whole-image pass is expected to fit in the memory free on `device` now."""
    from vae_lab.runtime import memory, tiling

    free = memory.free_bytes(device)
    if free is None:
        return True
    if op == "decode":
        g = tiling.Graph(x.shape[1])
        model.decode_tail_graph(g)  # builds the graph in g
        hw = (x.shape[2], x.shape[3])  # the tail's input is at latent resolution too
    else:
        g = tiling.Graph(x.shape[1])
        model.encode_head_graph(g)
        hw = (x.shape[2], x.shape[3])
    need = tiling.whole_peak_bytes(g, hw, x.shape[0], x.element_size())
    return need <= 0.9 * free


def _inspect(vf):
    """VaeInfo (family, weights id) of a loaded file, hashes cached by `identify`; None in RAM only."""
    from vae_lab.identity import identify

    if not getattr(vf, "files", None):
        return None
    return identify.identify(vf)


def load_vae(path_or_vaefile, device=None, *, family=None, state_dir=None) -> Vae:
    """Load a VAE file (kl-f8 in any layout, or a TAE `.pth`) or wrap a ready `VaeFile`."""
    if isinstance(path_or_vaefile, (str, Path)):
        from vae_lab.files.loading import load_vae_file

        vf = load_vae_file(path_or_vaefile)
    else:
        vf = path_or_vaefile
    return Vae.from_vaefile(vf, device, family=family, state_dir=state_dir)
