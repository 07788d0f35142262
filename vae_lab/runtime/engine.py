"""Encode and decode with any supported VAE: the one path from weights to pixels.

    vae = load_vae("vae-ft-mse-840000-ema-pruned.safetensors")
    res = vae.decode(latents)            # diffusion-space latents in, [-1, 1] images out
    res.images, res.precision_used, res.fallback, res.tiled, res.seconds, res.peak_memory_bytes

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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vae_lab.identity import families
from vae_lab.runtime import precision as prec
from vae_lab.errors import IncompatibleVae, VaeLabError

log = logging.getLogger("vae_lab.engine")


@dataclass
class _Report:
    precision_used: str = "fp32"
    fallback: list = field(default_factory=list)  # precisions that gave NaN/Inf in this call
    skipped: list = field(default_factory=list)  # precisions skipped: known to fail for these weights
    unsupported: list = field(default_factory=list)  # precisions this device cannot run (prec.runs_on)
    tiled: bool = False
    tiles: int = 1
    seconds: float = 0.0
    peak_memory_bytes: int | None = None

    def to_dict(self) -> dict:
        return {
            "precision_used": self.precision_used,
            "fallback": list(self.fallback),
            "skipped": list(self.skipped),
            "unsupported": list(self.unsupported),
            "tiled": self.tiled,
            "tiles": self.tiles,
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
        self._model = model.to(self.device, memory_format=fmt)
        self._cast: dict[str, Any] = {}  # precision -> a cast copy of the model (the fp32 master is kept)

    # ----------------------------------------------------------------- building
    @classmethod
    def from_vaefile(cls, vf, device=None, *, info=None, family=None, state_dir=None):
        """Build from a `loading.VaeFile` (or anything with .kind, .state_dict, .arch, .path)."""
        from vae_lab.models import build_model

        model = build_model(vf.kind, vf.state_dict, getattr(vf, "arch", None))
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

    def _prepare(self, t):
        import torch

        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return t.contiguous(memory_format=fmt)

    def _run(self, op: str, x, precision: str, tile, step):
        """Run `step(model, x_at_dtype, tiled) -> float32 CPU tensor` with fallback and tiling."""
        import torch

        from vae_lab.runtime.memory import PeakMemory

        prec.check_precision(precision)
        chain = prec.fallback_chain(precision, self.device)
        unsupported = [p for p in chain if not prec.runs_on(p, self.device)]
        if unsupported:
            log.info("%s: %s cannot run at %s; using the next precision", self.name, self.device, ", ".join(unsupported))
        chain = [p for p in chain if p not in unsupported]
        known_bad = set(self.memory.failed(self.weights_id, op))
        skipped = [p for p in chain[:-1] if p in known_bad]
        chain = [p for p in chain if p not in skipped]
        tiled = _want_tiles(tile, x, op, self.downscale)
        failed: list[str] = []
        peak: int | None = None
        t0 = time.perf_counter()
        for i, p in enumerate(chain):
            # The half-precision copy of the weights is built (once, then cached) outside the
            # measured region: the peak is what this call needs on top of the loaded model.
            model = self._model_at(p)
            with PeakMemory(self.device) as pm:
                xi = self._prepare(x.to(self.device, prec.dtype_of(p)))
                with torch.inference_mode():
                    try:
                        out = step(model, xi, tiled)
                    except Exception as err:  # noqa: BLE001 — only memory failures are retried
                        if not _is_oom(err) or tiled is not None or tile not in ("auto", None):
                            raise
                        if self.device.type == "cuda":
                            torch.cuda.empty_cache()
                        tiled = _default_tiles(op)
                        out = step(model, xi, tiled)
                del xi
            if pm.peak_bytes is not None:
                peak = max(peak or 0, pm.peak_bytes)
            if i == len(chain) - 1 or prec.is_finite(out):
                break
            failed.append(p)
            out = None  # free the failed attempt's output before the next precision runs
        if not prec.is_finite(out):
            raise VaeLabError(
                f"{self.name} gives NaN/Inf even at {p} ({op}): its weights are damaged or unfit for this input"
            )
        report = dict(precision_used=p, fallback=failed, skipped=skipped, unsupported=unsupported,
                      tiled=tiled is not None, seconds=time.perf_counter() - t0, peak_memory_bytes=peak)
        if failed:
            self.memory.record(self.weights_id, op, failed, p)
        return out, report, tiled

    # ------------------------------------------------------------------ public
    def decode(self, latents, *, precision: str = "auto", tile="auto", size=None) -> DecodeResult:
        """Diffusion-space latents [B, C, h, w] (or [C, h, w]) -> images float32 CPU [B, 3, H, W] in [-1, 1].

        `tile`: "auto" (tile above `tiling.AUTO_TILE_LATENT_AREA` or on out-of-memory),
        False/0 (never), True (default tiles) or an int tile size in pixels.
        `size`: (H, W) to crop to (an image padded to a multiple of 8 before encoding).
        """
        from vae_lab.runtime import tiling

        if not self.has_decoder:
            raise IncompatibleVae(f"{self.name} has no decoder: it can only encode")
        z = _as_batch(latents, "latents")
        if z.shape[1] != self.latent_channels:
            raise IncompatibleVae(
                f"{self.name} decodes {self.latent_channels}-channel latents, these have {z.shape[1]} channels"
            )
        raw = families.from_diffusion(z.float(), self.scale, self.shift)

        def step(model, x, tiles):
            if tiles is None:
                return model.decode(x).float().cpu()
            t, o = tiles
            return tiling.tiled_map(model.decode_tail, model.decode_head(x), tile=t, overlap=o,
                                    num=self.downscale, den=1, norms=_sync_norms(model))

        out, rep, tiles = self._run("decode", raw, precision, tile, step)
        if size is not None:
            h, w = int(size[0]), int(size[1])
            if h > out.shape[2] or w > out.shape[3]:
                raise VaeLabError(f"cannot crop a {out.shape[2]}x{out.shape[3]} decode to {h}x{w}")
            out = out[:, :, :h, :w]
        res = DecodeResult(images=out.clamp(-1, 1).contiguous(), **rep)
        if tiles is not None:
            res.tiles = tiling.tile_count(raw.shape[2], raw.shape[3], *tiles)
        return res

    def encode(self, images, *, precision: str = "auto", tile="auto") -> EncodeResult:
        """Images float [B, 3, H, W] (or [3, H, W]) in [-1, 1], any H, W -> diffusion-space latents.

        Sides that are not multiples of the VAE's scale are reflect-padded; decode with
        `size=result.image_size` to crop back.
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

        def step(model, xi, tiles):
            if tiles is None:
                return model.encode(xi).float().cpu()
            t, o = tiles
            head = tiling.tiled_map(model.encode_head, xi, tile=t * f, overlap=o * f, num=1, den=f, align=f,
                                    out_device=xi.device, norms=_sync_norms(model))
            return model.encode_tail(head.to(xi.dtype)).float().cpu()

        raw, rep, tiles = self._run("encode", x, precision, tile, step)
        lat = families.to_diffusion(raw, self.scale, self.shift).contiguous()
        res = EncodeResult(latents=lat, image_size=(h, w), **rep)
        if tiles is not None:
            res.tiles = tiling.tile_count(x.shape[2], x.shape[3], tiles[0] * f, tiles[1] * f, f)
        return res

    def __repr__(self):
        return f"Vae({self.name!r}, kind={self.kind}, family={self.family}, channels={self.latent_channels}, device={self.device})"


def _sync_norms(model):
    from vae_lab.runtime.tiling import SyncGroupNorm

    return [m for m in model.modules() if isinstance(m, SyncGroupNorm)]


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


def _default_tiles(op: str):
    from vae_lab.runtime import tiling

    return tiling.DEFAULT_TILE, tiling.DEFAULT_OVERLAP


def _want_tiles(tile, x, op: str, f: int):
    """(tile, overlap) in latent positions, or None for a whole-image pass."""
    from vae_lab.runtime import tiling

    if tile is None:
        tile = "auto"
    if tile is False or tile == 0:
        return None
    if tile is True:
        return _default_tiles(op)
    if isinstance(tile, str):
        if tile != "auto":
            raise VaeLabError(f"tile must be 'auto', a size in pixels, True or False; got {tile!r}")
        h, w = x.shape[2], x.shape[3]
        area = h * w if op == "decode" else (h // f) * (w // f)
        return _default_tiles(op) if area > tiling.AUTO_TILE_LATENT_AREA else None
    size = int(tile)
    if size < 0:
        raise VaeLabError(f"tile size must be positive, got {tile}")
    t = max(8, size // f)
    return t, min(tiling.DEFAULT_OVERLAP, t // 4)


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
