"""The comparison core: encode once, decode with many VAEs, measure against a reference.

Two modes:

* **round trip** (`image` given): the image is encoded once — by the first VAE's own
  encoder (default), by each VAE's own encoder (`encoder="own"`), or by a chosen VAE file —
  and decoded by every VAE. The reference is the original image.
* **latents** (`latents` given: the last generation's, or a latent file): every VAE decodes
  the same latents. The reference, when asked for, is a chosen VAE's fp32 decode.

What the metrics compare is what the user sees: each decode is quantised to uint8 (the
PNG that is shown and written), and PSNR/SSIM/LPIPS are computed between that array and
the reference's uint8 array, as float in [0, 1] (`vae_lab.compare.metrics`).

Each VAE is run on its own: one that fails to load, has no decoder, or does not speak the
latents' space gets its error in its own `VaeOutcome` and the others still run. Loaded
VAEs are kept in a small LRU (`VaeCache`) so repeated runs in the tab don't re-read files.

The Gradio tab (`vae_lab/ui.py`) and `python -m vae_lab compare/eval` are built on
`run_compare`; this module does not know about either.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from vae_lab.errors import IncompatibleVae, VaeLabError

SSIM_DEFINITION = "Gaussian window sigma=1.5 (11x11), K1=0.01, K2=0.03, population covariance, per RGB channel, data range 1"
ENCODERS = ("first", "own")


class CompareCancelled(VaeLabError):
    """The user cancelled the comparison."""


# --------------------------------------------------------------------------- request / results


@dataclass
class CompareRequest:
    """What to compare. Give exactly one of `image` (round trip) and `latents` (latent mode)."""

    image: Any = None  # HxWx3 uint8 numpy array (round trip)
    latents: Any = None  # torch.Tensor [B, C, h, w] or [C, h, w], diffusion space (latent mode)
    vae_paths: list[str] = field(default_factory=list)
    encoder: str = "first"  # "first" | "own" | path of a VAE whose encoder makes the latents
    precision: str = "auto"  # passed to Vae.encode/decode: "auto" (fp16 on GPU) | "fp32" | "fp16" | "bf16"
    tile: Any = "auto"  # passed to Vae.encode/decode: "auto" | True | False
    reference: str | None = None  # latent mode: a VAE path whose fp32 decode is the reference
    diff_pair: tuple | None = None  # (a, b): entries by index in `entries()` (0 = reference) or label
    diff_gain: float = 4.0
    latents_family: str | None = None  # family the latents come from, when known ("sd1", "sdxl", …)
    batch_index: int = 0  # which image of a latent batch
    image_size: tuple | None = None  # latent mode: (H, W) to crop decodes to (from the latent file)
    lpips: bool = True  # compute LPIPS when its weights are local
    lpips_dir: str | None = None  # folder with LPIPS weights (else $VAE_LAB_LPIPS_DIR / lpips package)
    device: str | None = None  # device for the VAEs and metrics (default: cuda when present, else cpu)

    @classmethod
    def from_last_latents(cls, vae_paths, **options) -> "CompareRequest":
        """A latent-mode request for the last generation's latents (`vae_lab.runtime.last_latents`)."""
        from vae_lab.runtime import last_latents

        last = last_latents.get()
        if last is None:
            raise VaeLabError("there are no latents from a generation yet: generate an image first, or use a latent file")
        options.setdefault("latents_family", last.family)
        return cls(latents=last.latents, vae_paths=list(vae_paths), **options)


@dataclass
class VaeOutcome:
    """One VAE's entry: its image and numbers, or the one-line reason it has none."""

    name: str
    path: str
    family: str | None = None
    kind: str | None = None
    image: Any = None  # HxWx3 uint8 numpy array, or None
    error: str | None = None
    precision_used: str | None = None
    fallback: list = field(default_factory=list)  # precisions that gave NaN/Inf and were retried
    unsupported: list = field(default_factory=list)  # precisions the device cannot run (fp16 on torch 2.1 CPU)
    tiled: bool | None = None
    encode_seconds: float | None = None  # only when this VAE's own encoder ran for this entry
    decode_seconds: float | None = None
    peak_memory_bytes: int | None = None
    psnr: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    encoder: str | None = None  # name of the VAE whose encoder made the latents (round trip)

    @property
    def ok(self) -> bool:
        return self.error is None and self.image is not None


@dataclass
class CompareResult:
    mode: str  # "roundtrip" | "latents"
    outcomes: list[VaeOutcome]
    reference_image: Any = None  # HxWx3 uint8 or None
    reference_label: str | None = None
    lpips_note: str | None = None  # why the LPIPS column is empty, when it is
    metrics_note: str | None = None  # why PSNR/SSIM are empty, when they are
    diff_image: Any = None  # the requested difference map (uint8) or None
    diff_label: str | None = None
    cancelled: bool = False
    settings: dict = field(default_factory=dict)

    # ---- entries, table

    def entries(self) -> list[tuple[str, Any]]:
        """(label, uint8 image or None) in display order: the reference first when there is one."""
        out = []
        if self.reference_image is not None:
            out.append((self.reference_label or "reference", self.reference_image))
        out.extend((o.name, o.image) for o in self.outcomes)
        return out

    def rows(self) -> list[dict]:
        """One dict per VAE for a table: raw numbers (None when absent)."""
        rows = []
        for o in self.outcomes:
            rows.append(
                {
                    "vae": o.name,
                    "path": o.path,
                    "family": o.family,
                    "kind": o.kind,
                    "encoder": o.encoder,
                    "precision": o.precision_used,
                    "fallback": list(o.fallback or []),
                    "tiled": o.tiled,
                    "encode_s": o.encode_seconds,
                    "decode_s": o.decode_seconds,
                    "peak_memory_bytes": o.peak_memory_bytes,
                    "psnr": _finite_or_none(o.psnr),
                    "psnr_infinite": bool(o.psnr is not None and math.isinf(o.psnr)),
                    "ssim": o.ssim,
                    "lpips": o.lpips,
                    "error": o.error,
                }
            )
        return rows

    def display_rows(self) -> tuple[list[str], list[list[str]]]:
        """(headers, rows of strings) for people: the CLI table and the tab's dataframe."""
        headers = ["VAE", "family", "precision", "decode s", "peak MB", "PSNR dB", "SSIM", "LPIPS", "note"]
        body = []
        for o in self.outcomes:
            if o.error:
                err = o.error if len(o.error) <= 110 else o.error[:109] + "…"
                body.append([o.name, family_label(o.family), "", "", "", "", "", "", err])
                continue
            prec = o.precision_used or ""
            if o.unsupported:
                prec += f" ({'/'.join(o.unsupported)} unsupported here)"
            if o.fallback:
                prec += f" (after {'/'.join(o.fallback)} NaN)"
            note = []
            if o.tiled:
                note.append("tiled")
            if o.encoder and o.encoder != o.name:
                note.append(f"encoded by {o.encoder}")
            body.append(
                [
                    o.name,
                    family_label(o.family),
                    prec,
                    _fmt(o.decode_seconds, "{:.2f}"),
                    _fmt(None if o.peak_memory_bytes is None else o.peak_memory_bytes / 2**20, "{:.0f}"),
                    "inf" if (o.psnr is not None and math.isinf(o.psnr)) else _fmt(o.psnr, "{:.2f}"),
                    _fmt(o.ssim, "{:.4f}"),
                    _fmt(o.lpips, "{:.4f}") if o.lpips is not None else ("n/a" if self.lpips_note else ""),
                    ", ".join(note),
                ]
            )
        return headers, body

    def table(self) -> str:
        """The metrics table as aligned text, with the reference and notes underneath."""
        headers, body = self.display_rows()
        widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out = [line(headers), line(["-" * w for w in widths])]
        out += [line(r) for r in body]
        if self.reference_label:
            out.append(f"reference: {self.reference_label}")
        for note in (self.metrics_note, self.lpips_note):
            if note:
                out.append(note)
        if self.cancelled:
            out.append("cancelled: the entries marked so did not run")
        return "\n".join(out)

    def to_csv(self) -> str:
        buf = io.StringIO()
        rows = self.rows()
        cols = list(rows[0]) if rows else ["vae"]
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            r = dict(r)
            r["fallback"] = "/".join(r["fallback"])
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        return buf.getvalue()

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "reference": self.reference_label,
            "metrics_compare": "uint8 images as shown, as float in [0, 1]",
            "ssim": SSIM_DEFINITION,
            "metrics_note": self.metrics_note,
            "lpips_note": self.lpips_note,
            "diff": self.diff_label,
            "cancelled": self.cancelled,
            "settings": self.settings,
            "results": self.rows(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    # ---- images

    def _entry(self, key) -> tuple[str, Any]:
        entries = self.entries()
        if isinstance(key, int):
            if not -len(entries) <= key < len(entries):
                raise VaeLabError(f"no entry {key}: there are {len(entries)}")
            return entries[key]
        for label, img in entries:
            if label == key:
                return label, img
        for o in self.outcomes:
            if key in (o.path, os.path.basename(o.path)):
                return o.name, o.image
        if key == "reference" and self.reference_image is not None:
            return entries[0]
        raise VaeLabError(f"no entry named {key!r}")

    def difference_map(self, a, b, gain: float = 4.0):
        """|a − b| × gain per channel, clipped, as a uint8 HxWx3 image (a, b: index or label)."""
        import numpy as np

        la, ia = self._entry(a)
        lb, ib = self._entry(b)
        if ia is None or ib is None:
            missing = la if ia is None else lb
            raise VaeLabError(f"{missing} has no image to compare")
        if ia.shape != ib.shape:
            raise VaeLabError(f"{la} and {lb} differ in size: {ia.shape[1]}x{ia.shape[0]} vs {ib.shape[1]}x{ib.shape[0]}")
        d = np.abs(ia.astype(np.int16) - ib.astype(np.int16)).astype(np.float32) * float(gain)
        return np.clip(d + 0.5, 0, 255).astype(np.uint8)

    def grid(self, *, columns: int | None = None, tile: int | None = None, include_diff: bool = True):
        """The side-by-side grid (PIL image): reference first, one labelled tile per VAE."""
        from vae_lab.compare.grid import Tile, make_grid

        tiles = []
        if self.reference_image is not None:
            tiles.append(Tile(self.reference_image, self.reference_label or "reference", ["reference"]))
        for o in self.outcomes:
            tiles.append(Tile(o.image, o.name, caption_lines(o), error=o.error))
        if include_diff and self.diff_image is not None:
            tiles.append(Tile(self.diff_image, "difference", [self.diff_label or ""]))
        return make_grid(tiles, columns=columns, tile=tile)


def caption_lines(o: VaeOutcome) -> list[str]:
    """The caption under one decoded image, shared by the tab's cells and the grid PNG:
    family, kind and precision (and any NaN fallback); times and peak memory; metrics;
    whose encoder made the latents when it was another VAE's. Empty for a failed entry."""
    if o.error:
        return []
    prec = o.precision_used or "?"
    if o.unsupported:
        prec += f" ({', '.join(o.unsupported)} unsupported here)"
    if o.fallback:
        prec += f" (after NaN in {', '.join(o.fallback)})"
    first = [family_label(o.family) or "unknown family", o.kind or "?", prec] + (["tiled"] if o.tiled else [])
    t = f"decode {o.decode_seconds:.2f} s" if o.decode_seconds is not None else "decode n/a"
    if o.encode_seconds:
        t += f" · encode {o.encode_seconds:.2f} s"
    lines = [" · ".join(first), f"{t} · peak {format_bytes(o.peak_memory_bytes)}"]
    m = []
    if o.psnr is not None:
        m.append("PSNR inf (identical)" if math.isinf(o.psnr) else f"PSNR {o.psnr:.2f} dB")
    if o.ssim is not None:
        m.append(f"SSIM {o.ssim:.4f}")
    if o.lpips is not None:
        m.append(f"LPIPS {o.lpips:.4f}")
    if m:
        lines.append(" · ".join(m))
    if o.encoder and o.encoder != o.name:
        lines.append(f"latents from {o.encoder}'s encoder")
    return lines


def format_bytes(n) -> str:
    """'11.1 MiB' for a byte count; 'n/a' for None."""
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def family_label(key: str | None) -> str:
    """'SDXL' for 'sdxl'; unknown keys as they are; '' for None."""
    from vae_lab.identity import families

    fam = families.get(key or "")
    return fam.label if fam else (key or "")


def _fmt(v, spec):
    return "" if v is None else spec.format(v)


def _finite_or_none(v):
    return None if v is None or not math.isfinite(v) else float(v)


# --------------------------------------------------------------------------- loaded-VAE cache


class VaeCache:
    """A small LRU of loaded `Vae` objects keyed by (real path, mtime, size, device).

    A changed file (new mtime or size) is loaded again; at most `maxsize` models are kept
    (4: a typical comparison of up to four VAEs is not re-read on the next run). Models stay
    on their device until evicted, so a host that needs the memory back calls `clear()`.
    """

    def __init__(self, maxsize: int = 4):
        self.maxsize = maxsize
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: str, device=None) -> tuple:
        real = os.path.realpath(path)
        try:
            st = os.stat(real)
            return real, st.st_mtime_ns, st.st_size, str(device)
        except OSError:
            return real, None, None, str(device)

    def load(self, path: str, device=None):
        from vae_lab.runtime.engine import load_vae

        k = self.key(path, device)
        with self._lock:
            if k in self._items:
                self._items.move_to_end(k)
                return self._items[k]
        vae = load_vae(path, device=device)
        with self._lock:
            self._items[k] = vae
            self._items.move_to_end(k)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return vae

    def __len__(self):
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_default_cache = VaeCache()


def default_cache() -> VaeCache:
    return _default_cache


# --------------------------------------------------------------------------- running


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _error_line(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, VaeLabError):
        return msg or type(err).__name__
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def _entry_error(err: BaseException, path: str) -> str:
    """`_error_line` for one VAE's entry, naming the file by its name (the entry's label),
    not by the full path the loader put in its message; always starts with the name."""
    msg = _error_line(err)
    name = _name_of(path)
    for p in sorted({path, os.path.abspath(path), os.path.realpath(path)}, key=len, reverse=True):
        msg = msg.replace(p, name)
    return msg if msg.startswith(name) else f"{name}: {msg}"


def _name_of(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or path


def _to_uint8(images):
    """Decoded float NCHW in [-1, 1] -> HxWx3 uint8 of the first image."""
    from vae_lab.files.imaging import tensor_to_array

    return tensor_to_array(images[:1])[0]


def _from_uint8(image):
    from vae_lab.files.imaging import array_to_tensor

    return array_to_tensor(image)


def _known_family(f) -> str | None:
    from vae_lab.identity import families

    return f if f and families.get(f) is not None else None


def check_compatible(vae, latents, latents_family: str | None) -> None:
    """Raise `IncompatibleVae` when `vae` cannot decode `latents` (channels or known family)."""
    c = int(latents.shape[1])
    if not getattr(vae, "has_decoder", True):
        raise IncompatibleVae(f"{vae.name} has no decoder")
    if vae.latent_channels != c:
        raise IncompatibleVae(
            f"{vae.name} takes {vae.latent_channels}-channel latents, these have {c} channels"
        )
    fam_v, fam_l = _known_family(getattr(vae, "family", None)), _known_family(latents_family)
    if fam_v and fam_l and fam_v != fam_l:
        from vae_lab.identity import families

        raise IncompatibleVae(
            f"{vae.name} is a {families.get(fam_v).label} VAE; these latents are {families.get(fam_l).label}"
        )


def _check_request(req: CompareRequest) -> None:
    if (req.image is None) == (req.latents is None):
        raise VaeLabError("give either an image (round trip) or latents, not both or neither")
    if not req.vae_paths:
        raise VaeLabError("no VAE to compare: give at least one")
    if req.image is not None:
        shape = getattr(req.image, "shape", None)
        if shape is None or len(shape) != 3 or shape[2] != 3 or str(getattr(req.image, "dtype", "")) != "uint8":
            raise VaeLabError(f"the image must be an HxWx3 uint8 array, got {shape}")
        if shape[0] < 8 or shape[1] < 8:
            raise VaeLabError(f"the image is too small ({shape[1]}x{shape[0]}); at least 8x8")
    else:
        shape = tuple(req.latents.shape)
        if len(shape) not in (3, 4):
            raise VaeLabError(f"latents must be [C, h, w] or [B, C, h, w], got {list(shape)}")
        batch = 1 if len(shape) == 3 else shape[0]
        if not 0 <= req.batch_index < batch:
            raise VaeLabError(f"batch index {req.batch_index} is out of range: the latents hold {batch}")
    if req.encoder not in ENCODERS and not os.path.exists(req.encoder):
        raise VaeLabError(f"encoder must be 'first', 'own' or a VAE file; {req.encoder} does not exist")
    if req.diff_pair is not None and len(req.diff_pair) != 2:
        raise VaeLabError("diff_pair must name two entries")


def run_compare(
    request: CompareRequest,
    *,
    progress: Callable[[float, str], None] | None = None,
    cancel=None,
    load: Callable[[str], Any] | None = None,
) -> CompareResult:
    """Run the comparison (see the module doc). Bad requests raise `VaeLabError`.

    `progress(fraction, text)` is called before each step; `cancel` (a callable or a
    `threading.Event`) is checked between steps — when set, the entries not yet run get
    "cancelled" and the result has `cancelled=True`. `load(path)` returns a `Vae`
    (default: the shared `VaeCache`, on `request.device`).
    """
    _check_request(request)
    if load is None:
        load = lambda path: _default_cache.load(path, device=request.device)  # noqa: E731
    return _Comparison(request, progress, cancel, load).run()


class _Comparison:
    """One run of `run_compare`: the steps, in order, and the state they share."""

    def __init__(self, req: CompareRequest, progress, cancel, load):
        self.req = req
        self.progress = progress
        self.cancel = cancel
        self.load = load
        self.paths = [os.fspath(p) for p in req.vae_paths]
        self.roundtrip = req.image is not None
        self.result = CompareResult(
            mode="roundtrip" if self.roundtrip else "latents",
            outcomes=[VaeOutcome(name=_name_of(p), path=p) for p in self.paths],
            settings={
                "encoder": req.encoder if self.roundtrip else None,
                "precision": req.precision,
                "tile": req.tile,
                "reference": req.reference,
                "batch_index": None if self.roundtrip else req.batch_index,
            },
        )
        shared_encode = self.roundtrip and req.encoder != "own"
        self.steps = len(self.paths) + int(shared_encode) + int(not self.roundtrip and bool(req.reference))
        self.done = 0
        self._vaes: dict[int, Any] = {}
        # what every VAE decodes (round trip with encoder="own": made per VAE instead)
        self.latents = None
        self.latents_family = req.latents_family
        self.size = None
        self.pixels = None
        self.encoder_name = None
        self.encoder_index = None  # which entry's own encoder made the shared latents
        self.encode_seconds = None
        self.lpips_model = None

    # ---- steps

    def run(self) -> CompareResult:
        res = self.result
        try:
            if self.roundtrip:
                self._prepare_round_trip()
            else:
                self._prepare_latents()
            self._prepare_lpips()
            for i, o in enumerate(res.outcomes):
                if o.error:  # already failed (no encoder could make the latents)
                    self.done += 1
                    continue
                self._step(f"decoding with {o.name}")
                self._run_one(i, o)
        except CompareCancelled:
            res.cancelled = True
            for o in res.outcomes:
                if o.image is None and o.error is None:
                    o.error = "cancelled"
        self._difference_map()
        if self.progress is not None:
            self.progress(1.0, "cancelled" if res.cancelled else "done")
        return res

    def _step(self, text: str) -> None:
        if _is_cancelled(self.cancel):
            raise CompareCancelled("comparison cancelled")
        if self.progress is not None:
            self.progress(min(self.done / max(self.steps, 1), 0.99), text)
        self.done += 1

    def _vae(self, i: int):
        """The i-th VAE, loaded once per run; a load error is re-raised for each use."""
        if i not in self._vaes:
            try:
                self._vaes[i] = self.load(self.paths[i])
            except Exception as err:  # the entry shows it; the others still run
                self._vaes[i] = err
        if isinstance(self._vaes[i], Exception):
            raise self._vaes[i]
        return self._vaes[i]

    def _prepare_round_trip(self) -> None:
        req, res = self.req, self.result
        res.reference_image = req.image
        res.reference_label = "original image"
        self.size = tuple(req.image.shape[:2])
        self.pixels = _from_uint8(req.image)
        if req.encoder == "own":
            return
        self._step("encoding the image")
        vae, index = self._pick_encoder()
        if isinstance(vae, str):
            error = vae
        else:
            try:
                er = vae.encode(self.pixels, precision=req.precision, tile=req.tile)
            except Exception as err:
                error = f"encoding with {vae.name} failed: {_error_line(err)}"
            else:
                self.latents, self.latents_family = er.latents, getattr(vae, "family", None)
                self.encoder_name, self.encoder_index, self.encode_seconds = vae.name, index, er.seconds
                res.settings["encoder_used"] = vae.name
                res.settings["encode_precision"] = er.precision_used
                return
        for o in res.outcomes:
            o.error = error

    def _pick_encoder(self):
        """(Vae, its index in the list or None), or a one-line reason no encoder can be used.

        "first": the first VAE in the list that loads and has an encoder (normally the first).
        A path: that file's VAE; when it cannot be used the request is bad (VaeLabError).
        """
        req = self.req
        if req.encoder == "first":
            reasons = []
            for i, path in enumerate(self.paths):
                try:
                    vae = self._vae(i)
                except Exception as err:
                    reasons.append(_entry_error(err, path))
                    continue
                if getattr(vae, "has_encoder", True):
                    return vae, i
                reasons.append(f"{vae.name} has no encoder")
            return "no VAE here has an encoder to make latents from the image (" + "; ".join(reasons) + ")", None
        try:
            vae = self.load(req.encoder)
        except Exception as err:
            raise VaeLabError(f"encoder {req.encoder}: {_error_line(err)}") from None
        if not getattr(vae, "has_encoder", True):
            raise VaeLabError(f"encoder {vae.name} has no encoder weights")
        return vae, None

    def _prepare_latents(self) -> None:
        import torch

        req = self.req
        lat = req.latents if req.latents.ndim == 4 else req.latents[None]
        self.latents = lat[req.batch_index : req.batch_index + 1].detach().to("cpu", torch.float32)
        self.size = tuple(req.image_size) if req.image_size else None
        if req.reference:
            self._step("decoding the reference in fp32")
            _reference_decode(self.result, req, self.latents, self.latents_family, self.load)
        else:
            self.result.metrics_note = "no reference chosen: PSNR/SSIM need a reference VAE in latent mode"

    def _prepare_lpips(self) -> None:
        if not self.req.lpips:
            self.result.lpips_note = "LPIPS: off"
        elif self.result.reference_image is not None:
            from vae_lab.compare.metrics import load_lpips

            self.lpips_model, self.result.lpips_note = load_lpips(self.req.lpips_dir, device=_metrics_device(self.req, None))

    def _run_one(self, i: int, o: VaeOutcome) -> None:
        """Decode (and with encoder="own", encode) with the i-th VAE; errors stay in its entry."""
        req = self.req
        vae = None
        try:
            vae = self._vae(i)
            o.name = getattr(vae, "name", None) or o.name
            o.family = getattr(vae, "family", None)
            o.kind = getattr(vae, "kind", None)
            latents, family = self.latents, self.latents_family
            if self.roundtrip and req.encoder == "own":
                if not getattr(vae, "has_encoder", True):
                    raise IncompatibleVae(f"{vae.name} has no encoder for its own round trip")
                er = vae.encode(self.pixels, precision=req.precision, tile=req.tile)
                latents, family = er.latents, getattr(vae, "family", None)
                o.encoder, o.encode_seconds = vae.name, er.seconds
            elif self.roundtrip:
                o.encoder = self.encoder_name
                if self.encoder_index == i:
                    o.encode_seconds = self.encode_seconds
            check_compatible(vae, latents, family)
            dr = vae.decode(latents, precision=req.precision, tile=req.tile, size=self.size)
            o.image = _to_uint8(dr.images)
            o.precision_used = dr.precision_used
            o.fallback = list(dr.fallback or [])
            o.unsupported = list(dr.unsupported or [])
            o.tiled = bool(dr.tiled)
            o.decode_seconds = dr.seconds
            o.peak_memory_bytes = dr.peak_memory_bytes
        except Exception as err:  # one VAE's failure never ends the run
            o.error, o.image = _error_line(err) if vae is not None else _entry_error(err, self.paths[i]), None
            return
        _measure(o, self.result, req, self.lpips_model, vae)

    def _difference_map(self) -> None:
        req, res = self.req, self.result
        if req.diff_pair is None:
            return
        a, b = req.diff_pair
        try:
            res.diff_image = res.difference_map(a, b, req.diff_gain)
            res.diff_label = f"|{res._entry(a)[0]} - {res._entry(b)[0]}| x{req.diff_gain:g}"
        except VaeLabError as err:
            res.diff_label = f"no difference map: {err}"


def _reference_decode(result, req, latents, latents_family, load):
    try:
        ref = load(req.reference)
        check_compatible(ref, latents, latents_family)
        dr = ref.decode(latents, precision="fp32", tile=req.tile, size=req.image_size)
        result.reference_image = _to_uint8(dr.images)
        result.reference_label = f"{ref.name} (fp32)"
    except Exception as err:
        result.metrics_note = f"no reference: {_name_of(req.reference)}: {_error_line(err)}"


def _metrics_device(req, vae):
    import torch

    if req.device:
        return req.device
    dev = getattr(vae, "device", None)
    if dev is not None:
        return str(dev)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _measure(o: VaeOutcome, result: CompareResult, req: CompareRequest, lpips_model, vae) -> None:
    from vae_lab.compare import metrics

    ref = result.reference_image
    if ref is None or o.image is None:
        return
    if ref.shape != o.image.shape:
        o.error = f"decoded {o.image.shape[1]}x{o.image.shape[0]}, reference is {ref.shape[1]}x{ref.shape[0]}"
        return
    dev = _metrics_device(req, vae)
    o.psnr = metrics.psnr(ref, o.image, device=dev)
    o.ssim = metrics.ssim(ref, o.image, device=dev) if min(ref.shape[:2]) >= 11 else None
    if lpips_model is not None:
        o.lpips = lpips_model(ref, o.image)
