"""The comparison as people and files read it: the caption under each image, the metrics
table (text for the CLI, strings for the tab), CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math

from vae_lab.compare.result import VaeOutcome
from vae_lab.units import format_bytes

SSIM_DEFINITION = "Gaussian window sigma=1.5 (11x11), K1=0.01, K2=0.03, population covariance, per RGB channel, data range 1"


def display_rows(result) -> tuple[list[str], list[list[str]]]:
    """(headers, rows of strings) for people: the CLI table and the tab's table."""
    headers = ["VAE", "family", "precision", "decode s", "peak MiB", "PSNR dB", "SSIM", "LPIPS",
               "colour shift R G B", "note"]
    same = same_weights(result.outcomes)
    body = []
    for o in result.outcomes:
        if o.error:
            err = o.error if len(o.error) <= 110 else o.error[:109] + "…"
            body.append([o.name, family_label(o.family), "", "", "", "", "", "", "", err])
            continue
        prec = o.precision_used or ""
        if o.unsupported:
            prec += f" ({'/'.join(o.unsupported)} unsupported here)"
        if o.fallback:
            prec += f" (after {'/'.join(o.fallback)} NaN)"
        note = []
        if o.tiled:
            note.append("tiled")
        if o.attention == "window":
            note.append("windowed attention (inexact)")
        if o.encoder and o.encoder != o.name:
            note.append(f"encoded by {o.encoder}")
        if o.name in same:
            note.append("same weights as " + ", ".join(same[o.name]))
        body.append(
            [
                o.name,
                family_label(o.family),
                prec,
                _fmt(o.decode_seconds, "{:.2f}"),
                _fmt(None if o.peak_memory_bytes is None else o.peak_memory_bytes / 2**20, "{:.0f}"),
                "inf" if (o.psnr is not None and math.isinf(o.psnr)) else _fmt(o.psnr, "{:.2f}"),
                _fmt(o.ssim, "{:.4f}"),
                _fmt(o.lpips, "{:.4f}") if o.lpips is not None else ("n/a" if result.lpips_note else ""),
                format_shift(o.color_shift),
                ", ".join(note),
            ]
        )
    return headers, body


def same_weights(outcomes) -> dict[str, list[str]]:
    """name -> the other entries with the identical weights id (one file under two names)."""
    by_id: dict[str, list[str]] = {}
    for o in outcomes:
        if o.weights_id:
            by_id.setdefault(o.weights_id, []).append(o.name)
    return {n: [m for m in names if m != n] for names in by_id.values() if len(names) > 1 for n in names}


def format_shift(shift) -> str:
    """'+1.2 -0.4 +0.3': the mean colour shift per channel in 0-255 levels ('' when unknown)."""
    if shift is None:
        return ""
    return " ".join(f"{v:+.1f}" for v in shift)


def table(result) -> str:
    """The metrics table as aligned text, with the reference and notes underneath."""
    headers, body = display_rows(result)
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    if result.reference_label:
        out.append(f"reference: {result.reference_label}")
    for note in (result.metrics_note, result.lpips_note):
        if note:
            out.append(note)
    if result.cancelled:
        out.append("cancelled: the entries marked so did not run")
    return "\n".join(out)

def to_csv(result, relative_to=None) -> str:
    buf = io.StringIO()
    rows = result.rows(relative_to)
    src = result.source or {}
    extra = {"source": src.get("name"), "source_width": src.get("width"), "source_height": src.get("height")}
    cols = (list(rows[0]) if rows else ["vae"]) + list(extra)
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        r = dict(r, **extra)
        r["fallback"] = "/".join(r["fallback"])
        if r.get("color_shift_rgb") is not None:
            r["color_shift_rgb"] = " ".join(f"{v:+.2f}" for v in r["color_shift_rgb"])
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def to_dict(result, relative_to=None) -> dict:
    return {
        "mode": result.mode,
        "reference": result.reference_label,
        "metrics_compare": "uint8 images as shown, as float in [0, 1]",
        "ssim": SSIM_DEFINITION,
        "metrics_note": result.metrics_note,
        "lpips_note": result.lpips_note,
        "diff": result.diff_label,
        "cancelled": result.cancelled,
        "settings": result.settings,
        "source": result.source or None,
        "results": result.rows(relative_to),
    }


def to_json(result, relative_to=None) -> str:
    return json.dumps(to_dict(result, relative_to), indent=2)


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
    if o.attention == "window":
        first.append("windowed attention")
    t = f"decode {o.decode_seconds:.2f} s" if o.decode_seconds is not None else "decode n/a"
    if o.encode_seconds:
        t += f" · encode {o.encode_seconds:.2f} s"
    lines = [" · ".join(first), f"{t} · peak {format_bytes(o.peak_memory_bytes, binary=True)}"]
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


def family_label(key: str | None) -> str:
    """'SDXL' for 'sdxl'; unknown keys as they are; '' for None."""
    from vae_lab.identity import families

    fam = families.get(key or "")
    return fam.label if fam else (key or "")


def _fmt(v, spec):
    return "" if v is None else spec.format(v)
