"""The comparison as people and files read it: the caption under each image, the metrics
table (text for the CLI, strings for the tab), CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math

from vae_lab.compare.result import VaeOutcome

SSIM_DEFINITION = "Gaussian window sigma=1.5 (11x11), K1=0.01, K2=0.03, population covariance, per RGB channel, data range 1"


def display_rows(result) -> tuple[list[str], list[list[str]]]:
    """(headers, rows of strings) for people: the CLI table and the tab's dataframe."""
    headers = ["VAE", "family", "precision", "decode s", "peak MB", "PSNR dB", "SSIM", "LPIPS", "note"]
    body = []
    for o in result.outcomes:
        if o.error:
            err = o.error if len(o.error) <= 110 else o.error[:109] + "…"
            body.append([o.name, family_label(o.family), "", "", "", "", "", "", err])
            continue
        prec = o.precision_used or ""
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
                _fmt(o.lpips, "{:.4f}") if o.lpips is not None else ("n/a" if result.lpips_note else ""),
                ", ".join(note),
            ]
        )
    return headers, body

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

def to_csv(result) -> str:
    buf = io.StringIO()
    rows = result.rows()
    cols = list(rows[0]) if rows else ["vae"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        r = dict(r)
        r["fallback"] = "/".join(r["fallback"])
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()

def to_dict(result) -> dict:
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
        "results": result.rows(),
    }

def to_json(result) -> str:
    return json.dumps(to_dict(result), indent=2)


def caption_lines(o: VaeOutcome) -> list[str]:
    """The caption under one decoded image, shared by the tab's cells and the grid PNG:
    family, kind and precision (and any NaN fallback); times and peak memory; metrics;
    whose encoder made the latents when it was another VAE's. Empty for a failed entry."""
    if o.error:
        return []
    prec = o.precision_used or "?"
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
