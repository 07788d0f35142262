"""The tab's HTML: the side-by-side view, the before/after pair, the metrics table and the
status toast, from a `CompareResult`. Plain functions of their inputs, no Gradio.

The views are plain HTML (`<img>` PNG data URIs in equal cells) so that
`javascript/vae_lab.js` can zoom and pan every image of a view together with one CSS
transform; the same script drives the viewer's tools (fit, 1:1, loupe, keyboard), the
before/after divider, the flicker key and the table's numeric sort.
"""

from __future__ import annotations

import base64
import html
import io
import re

from vae_lab.compare.report import caption_lines, family_label, format_shift, same_weights

REFERENCE_LABEL = "Reference"
KEYS_HINT = ("wheel or + − : zoom · drag or arrows: pan · 0: fit · 1: 1:1 pixels · L: loupe · "
             "F: flicker A/B (pair view) · double-click: fit — all images move together")
EMPTY_VIEW = (
    '<div class="vae-lab-empty"><h2>VAE Lab: see what each VAE does to your image</h2>'
    "<p>Upload an image (or use latents), tick the VAEs to compare and press <b>Compare</b>. Each VAE "
    "decodes the same latents; you get the images side by side with synchronized zoom, PSNR/SSIM/LPIPS "
    "against the original, colour shift, a before/after slider and a difference map, and files to keep.</p>"
    "<p>No VAEs yet? Open <b>Get VAEs</b> below.</p></div>"
)


def png_data_uri(arr) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _frame(title: str, img) -> str:
    return (f'<div class="vae-lab-frame" tabindex="0"><img class="vae-lab-zoom" draggable="false" '
            f'alt="{_esc(title)}" src="{png_data_uri(img)}"><div class="vae-lab-loupe"></div></div>')


def histogram_svg(hist, ref_hist=None) -> str:
    """A small per-channel histogram (R, G, B lines; the reference dashed) as inline SVG."""
    import numpy as np

    w, h = 120, 36
    peak = float(max(np.sqrt(hist).max(), np.sqrt(ref_hist).max() if ref_hist is not None else 0, 1))
    bins = hist.shape[1]

    def line(counts, colour, dashed):
        pts = " ".join(f"{i * w / (bins - 1):.1f},{h - float(np.sqrt(c)) / peak * (h - 2):.1f}"
                       for i, c in enumerate(counts))
        dash = ' stroke-dasharray="2 2" opacity="0.6"' if dashed else ""
        return f'<polyline fill="none" stroke="{colour}" stroke-width="1"{dash} points="{pts}"/>'

    colours = ("#ef4444", "#22c55e", "#3b82f6")
    parts = []
    if ref_hist is not None:
        parts += [line(ref_hist[c], colours[c], True) for c in range(3)]
    parts += [line(hist[c], colours[c], False) for c in range(3)]
    title = "histogram per channel (dashed: reference)"
    return (f'<svg class="vae-lab-hist" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
            f'aria-label="{title}"><title>{title}</title>{"".join(parts)}</svg>')


def _cell(title: str, lines: list[str], img=None, error: str | None = None, cls: str = "", extra: str = "",
          name: str | None = None) -> str:
    caption = "".join(f"<span>{_esc(line)}</span>" for line in lines)
    if error is not None:
        body = f'<div class="vae-lab-error" role="alert">{_esc(error)}</div>'
    else:
        body = _frame(title, img)
    return (
        f'<figure class="vae-lab-cell {cls}" data-name="{_esc(name or title)}">{body}'
        f'<figcaption><b>{_esc(title)}</b>{caption}{extra}</figcaption></figure>'
    )


def _toolbar(view: str) -> str:
    return (
        f'<div class="vae-lab-tools" data-view="{view}">'
        '<button type="button" data-vae-lab="fit" title="fit the image to its cell (0)">Fit</button>'
        '<button type="button" data-vae-lab="1:1" title="one image pixel per screen pixel (1)">1:1</button>'
        '<button type="button" data-vae-lab="out" title="zoom out (−)">−</button>'
        '<button type="button" data-vae-lab="in" title="zoom in (+)">+</button>'
        '<button type="button" data-vae-lab="loupe" title="a magnifier at the same spot in every image (L)" '
        'aria-pressed="false">Loupe</button>'
        '<span class="vae-lab-readout" aria-live="polite">fit</span></div>'
    )


def render_view(result, run_id: str = "") -> str:
    """The side-by-side view: the reference first (if any), then one cell per VAE."""
    cells = []
    if result.reference_image is not None:
        cells.append(_cell(REFERENCE_LABEL, [result.reference_label or ""], result.reference_image, cls="vae-lab-ref"))
    same = same_weights(result.outcomes)
    for o in result.outcomes:
        if o.error or o.image is None:
            cells.append(_cell(o.name, [family_label(o.family)], error=o.error or "no image", cls="vae-lab-failed"))
            continue
        lines = caption_lines(o)
        if o.color_shift is not None:
            lines.append("colour shift R G B " + format_shift(o.color_shift))
        if o.name in same:
            lines.append("same weights as " + ", ".join(same[o.name]))
        extra = histogram_svg(o.histogram, result.reference_histogram) if o.histogram is not None else ""
        cells.append(_cell(o.name, lines, o.image, extra=extra))
    cols = min(len(cells), 4) or 1
    return (
        f'<div class="vae-lab-view" data-run="{_esc(run_id)}">{_toolbar("view")}'
        f'<div class="vae-lab-sync vae-lab-grid" data-view="view" style="--vae-lab-cols:{cols}">{"".join(cells)}</div>'
        f'<p class="vae-lab-hint">{_esc(KEYS_HINT)}</p></div>'
    )


def pair_note(a, b) -> str:
    """'same weights', 'same family' or 'different latent spaces' for two outcomes (or '')."""
    if a is None or b is None:
        return ""
    if a.weights_id and a.weights_id == b.weights_id:
        return "same weights: the two decodes should be identical"
    if a.latent_channels and b.latent_channels and a.latent_channels != b.latent_channels:
        return "different latent spaces: each decoded its own family's latents"
    if a.family and a.family == b.family:
        return f"same family ({family_label(a.family)}): either can decode this model's latents"
    return ""


def render_pair(a_name: str, a_img, b_name: str, b_img, diff, gain: float, max_diff: int | None = None,
                note: str = "") -> str:
    """Before/after slider of two images next to their amplified difference map (with its scale)."""
    a, b = _esc(a_name), _esc(b_name)
    slider = (
        '<figure class="vae-lab-cell vae-lab-ba-cell">'
        '<div class="vae-lab-frame vae-lab-ba" tabindex="0" style="--vae-lab-pos:50%">'
        f'<img class="vae-lab-zoom" draggable="false" alt="{b}" src="{png_data_uri(b_img)}">'
        f'<div class="vae-lab-ba-top"><img class="vae-lab-zoom" draggable="false" alt="{a}" src="{png_data_uri(a_img)}"></div>'
        f'<span class="vae-lab-ba-label vae-lab-ba-a">A · {a}</span><span class="vae-lab-ba-label vae-lab-ba-b">B · {b}</span>'
        '<div class="vae-lab-ba-line"><div class="vae-lab-ba-handle" title="drag to wipe between A and B"></div></div>'
        '<div class="vae-lab-loupe"></div></div>'
        '<input class="vae-lab-ba-range" type="range" min="0" max="100" value="50" aria-label="before/after: A on the left, B on the right">'
        f'<figcaption><b>A: {a} ◀ ▶ B: {b}</b><span>drag the divider or the slider · F: flicker between A and B</span>'
        + (f'<span class="vae-lab-note">{_esc(note)}</span>' if note else "")
        + "</figcaption></figure>"
    )
    top = 255 / max(gain, 1e-9)
    scale = (
        '<div class="vae-lab-scale" aria-label="colour scale of the difference map">'
        '<span>0</span><i></i>'
        f'<span>≥ {top:.0f} levels</span></div>'
        + (f'<span>largest difference: {max_diff} of 255 levels</span>' if max_diff is not None else "")
    )
    diff_cell = _cell(f"|A − B| × {gain:g}", ["difference map: brighter = larger |A − B| per channel"], diff,
                      extra=scale, name="difference")
    return (
        f'<div class="vae-lab-sync vae-lab-grid vae-lab-pair" data-view="pair" style="--vae-lab-cols:2">{slider}'
        + diff_cell + "</div>"
    )


def metrics_table(result) -> tuple[list[str], list[list]]:
    """(headers, rows) for the metrics table; an empty LPIPS column says why in its header."""
    headers, rows = result.display_rows()
    if result.lpips_note and "LPIPS" in headers:
        headers = [f"LPIPS ({_lpips_reason(result.lpips_note)})" if h == "LPIPS" else h for h in headers]
    return headers, rows


_NUMERIC = re.compile(r"^(decode s|peak MiB|PSNR dB|SSIM|LPIPS)")


def _sort_value(text: str) -> str:
    if text == "inf":
        return "1e308"
    try:
        return repr(float(text))
    except ValueError:
        return ""


def metrics_html(headers, rows) -> str:
    """The metrics as an HTML table whose numeric columns sort as numbers (`vae_lab.js`)."""
    numeric = [bool(_NUMERIC.match(h)) for h in headers]
    head = "".join(
        f'<th scope="col" data-num="{int(n)}" tabindex="0" title="click to sort">{_esc(h)}</th>'
        for h, n in zip(headers, numeric)
    )
    body = []
    for r in rows:
        tds = []
        for text, n, h in zip(r, numeric, headers):
            attr = f' data-v="{_sort_value(text)}"' if n else ""
            cls = ' class="vae-lab-note-col"' if h == "note" else ""
            tds.append(f"<td{attr}{cls}>{_esc(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<div class="vae-lab-table-wrap"><table class="vae-lab-table"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _lpips_reason(note: str) -> str:
    """'LPIPS: no local weights (see docs/tab.md, LPIPS)' -> 'no local weights' (the status line has the rest)."""
    reason = note.split(":", 1)[1].strip() if note.lower().startswith("lpips:") else note
    return re.sub(r"\s*\(.*?\)\s*$", "", reason) or reason


def encoders_line(result) -> str:
    """'Latents: 32-channel from taef2 (for itself); 4-channel from kl_a (for kl_a, kl_b).'"""
    made = result.settings.get("encoders") or []
    if result.mode != "roundtrip":
        return ""
    if result.settings.get("encoder") == "own":
        return "Latents: each VAE's own encoder."
    parts = []
    for e in made:
        vaes = e["vaes"]
        who = "itself" if vaes == [e["encoder"]] else ", ".join(vaes)
        parts.append(f"{e['latent_channels']}-channel from {e['encoder']}'s encoder (for {who})")
    return ("Latents: " + "; ".join(parts) + ".") if parts else ""


def status_text(result) -> str:
    """The status line after a run: how many decoded, cancelled after how many, which encoder
    made which latents, what the metrics lack."""
    ok = sum(1 for o in result.outcomes if o.ok)
    n = len(result.outcomes)
    if result.cancelled:
        parts = [f"Cancelled after {result.finished} of {n} VAEs; the finished ones are shown."]
    else:
        parts = [f"{ok} of {n} VAEs decoded."]
    for extra in (encoders_line(result), f"Reference: {result.reference_label}." if result.reference_label else ""):
        if extra:
            parts.append(extra)
    for note in (result.metrics_note, result.lpips_note):
        if note:
            parts.append(note.rstrip(".") + ".")
    return " ".join(parts)


def status_line(result) -> str:
    """`status_text` as the status toast's HTML."""
    kind = "warn" if result.cancelled or any(not o.ok for o in result.outcomes) else "ok"
    return toast(status_text(result), kind)


def toast(text: str, kind: str = "info") -> str:
    """The status box under the Compare button: info, ok, warn or error (errors are alerts)."""
    role = ' role="alert"' if kind == "error" else ' role="status"'
    icon = {"error": "⚠ ", "warn": "", "ok": "✓ ", "info": ""}.get(kind, "")
    return f'<div class="vae-lab-toast vae-lab-toast-{kind}"{role}>{_esc(icon + text)}</div>'


def pair_labels(result) -> dict[str, int]:
    """Unique dropdown labels → entry index (`CompareResult.entries()`), for entries with an image."""
    out: dict[str, int] = {}
    for i, (label, img) in enumerate(result.entries()):
        if img is None:
            continue
        name, n = label, 2
        while name in out:
            name, n = f"{label} ({n})", n + 1
        out[name] = i
    return out


def image_preview(img, name: str) -> str:
    """A small preview of the uploaded image with its name and size."""
    from PIL import Image
    import numpy as np

    h, w = img.shape[:2]
    thumb = Image.fromarray(img)
    thumb.thumbnail((384, 384))
    return (f'<figure class="vae-lab-preview"><img alt="{_esc(name)}" src="{png_data_uri(np.asarray(thumb))}">'
            f'<figcaption>{_esc(name)} · {w}×{h}</figcaption></figure>')
