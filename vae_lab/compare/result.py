"""What a comparison is asked for and what it gives back: `CompareRequest`, one `VaeOutcome`
per VAE, and the `CompareResult` (images, numbers, the difference map and the grid).

Plain data: the runner (`runner.py`) fills it, `report.py` turns it into tables, CSV and JSON.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from vae_lab.errors import VaeLabError

# "family": each latent family (channels + known family) is encoded by its first VAE that has an
# encoder, so any mix of VAEs compares; "first": the first VAE's encoder makes the latents for
# all (the others must share its latent space); "own": each VAE's own round trip.
ENCODERS = ("family", "first", "own")


@dataclass
class CompareRequest:
    """What to compare. Give exactly one of `image` (round trip) and `latents` (latent mode)."""

    image: Any = None  # HxWx3 uint8 numpy array (round trip)
    latents: Any = None  # torch.Tensor [B, C, h, w] or [C, h, w], diffusion space (latent mode)
    vae_paths: list[str] = field(default_factory=list)
    encoder: str = "family"  # "family" | "first" | "own" | path of a VAE whose encoder makes the latents
    precision: str = "auto"  # passed to Vae.encode/decode: "auto" (precision.auto_precision) | "fp32" | "fp16" | "bf16"
    tile: Any = "auto"  # passed to Vae.encode/decode: "auto" | True | False
    attention: str = "global"  # passed to Vae.encode/decode (every one, the reference's too): "global" | "window"
    attention_window: int | None = None  # pixels, for attention="window" (None: the engine's default)
    reference: str | None = None  # latent mode: a VAE path whose fp32 decode is the reference
    diff_pair: tuple | None = None  # (a, b): entries by index in `entries()` (0 = reference) or label
    diff_gain: float = 4.0
    latents_family: str | None = None  # family the latents come from, when known ("sd1", "sdxl", …)
    batch_index: int = 0  # which image of a latent batch
    image_size: tuple | None = None  # latent mode: (H, W) to crop decodes to (from the latent file)
    lpips: bool = True  # compute LPIPS when its weights are local
    lpips_dir: str | None = None  # folder with LPIPS weights (else $VAE_LAB_LPIPS_DIR / lpips package)
    device: str | None = None  # device for the VAEs and metrics (default: cuda when present, else cpu)
    names: dict = field(default_factory=dict)  # path -> the name to show (default: the VAE's file name)

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
    attention: str | None = None  # the decode's mid-block attention: "global", "window" (inexact) or "none"
    encode_seconds: float | None = None  # only when this VAE's own encoder ran for this entry
    decode_seconds: float | None = None
    peak_memory_bytes: int | None = None
    psnr: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    encoder: str | None = None  # name of the VAE whose encoder made the latents (round trip)
    latent_channels: int | None = None
    vae_hash: str | None = None  # A1111's "VAE hash" in infotexts: the first 10 hex of the file SHA-256
    weights_id: str | None = None  # content id of the weights (`identity.hashing.weights_id`)
    color_shift: tuple | None = None  # mean (R, G, B) of decode − reference, in 0–255 levels
    histogram: Any = None  # uint32 [3, 32]: per-channel histogram of the decode (reference: result's)

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
    reference_histogram: Any = None  # uint32 [3, 32], like `VaeOutcome.histogram`
    source: dict = field(default_factory=dict)  # {"name": "photo.png", "width": …, "height": …} when known

    @property
    def finished(self) -> int:
        """How many VAEs ran to the end (an image or their own error), not counting cancelled ones."""
        return sum(1 for o in self.outcomes if o.error != "cancelled")

    # ---- entries, table

    def entries(self) -> list[tuple[str, Any]]:
        """(label, uint8 image or None) in display order: the reference first when there is one."""
        out = []
        if self.reference_image is not None:
            out.append((self.reference_label or "reference", self.reference_image))
        out.extend((o.name, o.image) for o in self.outcomes)
        return out

    def rows(self, relative_to=None) -> list[dict]:
        """One dict per VAE for a table: raw numbers (None when absent).

        `relative_to`: folders (the VAE folders) that paths are written relative to, so a file
        shared with others does not give away where things live; a path outside them is
        written as its file name. None: paths as given.
        """
        rows = []
        for o in self.outcomes:
            rows.append(
                {
                    "vae": o.name,
                    "path": o.path if relative_to is None else _relative(o.path, relative_to),
                    "family": o.family,
                    "kind": o.kind,
                    "encoder": o.encoder,
                    "precision": o.precision_used,
                    "fallback": list(o.fallback or []),
                    "tiled": o.tiled,
                    "attention": o.attention,
                    "encode_s": o.encode_seconds,
                    "decode_s": o.decode_seconds,
                    "peak_memory_bytes": o.peak_memory_bytes,
                    "psnr": _finite_or_none(o.psnr),
                    "psnr_infinite": bool(o.psnr is not None and math.isinf(o.psnr)),
                    "ssim": o.ssim,
                    "lpips": o.lpips,
                    "color_shift_rgb": list(o.color_shift) if o.color_shift is not None else None,
                    "vae_hash": o.vae_hash,
                    "weights_id": o.weights_id,
                    "error": o.error,
                }
            )
        return rows

    # ---- reports (`vae_lab.compare.report` formats them)

    def display_rows(self) -> tuple[list[str], list[list[str]]]:
        """(headers, rows of strings) for people: the CLI table and the tab's dataframe."""
        from vae_lab.compare import report

        return report.display_rows(self)

    def table(self) -> str:
        from vae_lab.compare import report

        return report.table(self)

    def to_csv(self, relative_to=None) -> str:
        from vae_lab.compare import report

        return report.to_csv(self, relative_to)

    def to_dict(self, relative_to=None) -> dict:
        from vae_lab.compare import report

        return report.to_dict(self, relative_to)

    def to_json(self, relative_to=None) -> str:
        from vae_lab.compare import report

        return report.to_json(self, relative_to)

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
        from vae_lab.compare import report
        from vae_lab.compare.grid import Tile, make_grid

        tiles = []
        if self.reference_image is not None:
            tiles.append(Tile(self.reference_image, self.reference_label or "reference", ["reference"]))
        for o in self.outcomes:
            tiles.append(Tile(o.image, o.name, report.caption_lines(o), error=o.error))
        if include_diff and self.diff_image is not None:
            tiles.append(Tile(self.diff_image, "difference", [self.diff_label or ""]))
        return make_grid(tiles, columns=columns, tile=tile)


def _finite_or_none(v):
    return None if v is None or not math.isfinite(v) else float(v)


def _relative(path: str, roots) -> str:
    real = os.path.realpath(path)
    for root in roots:
        base = os.path.realpath(root)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return os.path.relpath(real, base).replace(os.sep, "/")
    return os.path.basename(os.path.normpath(path))
